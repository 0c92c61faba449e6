"""`netdiff models download/verify` and offline generation against a local fake Hub (tests/hub_fake.py).

Every command runs as a real subprocess: huggingface_hub reads HF_ENDPOINT, HF_HOME and
HF_HUB_OFFLINE when it is imported, as it does for a user.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from hub_fake import FakeHub, hub_env, native_files, netdiff, one_line_error


@pytest.fixture(scope="module")
def hub():
    h = FakeHub().start()
    h.v1 = h.commit("lab/net", {**native_files(), "pytorch_model.bin": b"\x80\x04pickled" * 64})
    h.big = os.urandom(24 << 20)     # > huggingface_hub's 10 MiB read chunk, so a cut connection leaves bytes to resume from
    h.big_commit = h.commit("lab/big", {"config.json": b'{"format": "other"}', "big.safetensors": h.big})
    yield h
    h.stop()


@pytest.fixture(scope="module")
def fetched(hub, tmp_path_factory):
    """lab/net downloaded once (at main), into a cache laid out by huggingface_hub itself."""
    home = tmp_path_factory.mktemp("home")
    env = hub_env(home, hub.endpoint)
    dry = netdiff("models", "download", "lab/net", "--dry-run", env=env)
    gets_after_dry = len(hub.requests("GET", "/lfs/"))
    r = netdiff("models", "download", "lab/net", "--revision", "main", env=env)
    assert r.returncode == 0, r.stderr
    return {"home": home, "env": env, "dry": dry, "gets_after_dry": gets_after_dry, "run": r,
            "repo": home / "hf" / "hub" / "models--lab--net"}


def test_dry_run_sizes_and_fetches_nothing(hub, fetched):
    dry = fetched["dry"]
    assert dry.returncode == 0, dry.stderr
    files = native_files()
    total = sum(len(v) for v in files.values())       # the pickle is not counted: it is not fetched
    assert f"({total} bytes) in 3 files" in dry.stdout
    assert f"commit {hub.v1}" in dry.stdout and f"pin it as hf://lab/net@{hub.v1}" in dry.stdout
    assert "pytorch_model.bin" in dry.stdout and "--allow-pickle" in dry.stdout
    assert fetched["gets_after_dry"] == 0, "a dry run must not download"


def test_download_is_pinned_and_recorded(hub, fetched):
    out, repo = fetched["run"].stdout, fetched["repo"]
    assert f"main -> commit {hub.v1}" in out and f"--model hf://lab/net@{hub.v1}" in out
    assert (repo / "refs" / "main").read_text() == hub.v1
    snap = repo / "snapshots" / hub.v1
    assert sorted(p.name for p in snap.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    w = snap / "model.safetensors"
    # huggingface_hub's layout: a relative symlink into blobs/, named by the file's sha256 (LFS)
    assert w.is_symlink() and not os.path.isabs(os.readlink(w))
    assert Path(os.path.realpath(w)).name == hashlib.sha256(native_files()["model.safetensors"]).hexdigest()
    log = Path(fetched["home"]) / "data" / "netdiff" / "downloads.jsonl"
    rec = json.loads(log.read_text().splitlines()[-1])
    assert rec["repo"] == "lab/net" and rec["requested"] == "main" and rec["commit"] == hub.v1


def test_branch_moves_commit_stays(hub, fetched, tmp_path):
    env = hub_env(tmp_path, hub.endpoint)
    v2 = hub.commit("lab/moving", {**native_files(), "README.md": b"# v1\n"})
    hub.commit("lab/moving", {"README.md": b"# v2\n"})
    r = netdiff("models", "download", f"hf://lab/moving@{v2}", "--include", "README.md", env=env)
    assert r.returncode == 0, r.stderr
    snap = tmp_path / "hf" / "hub" / "models--lab--moving" / "snapshots" / v2
    assert (snap / "README.md").read_text() == "# v1\n"          # the commit asked for, not the branch head
    r = netdiff("models", "download", "lab/moving", "--include", "*.md", "--dry-run", env=env)
    head = re.search(r"commit ([0-9a-f]{40})", r.stdout).group(1)
    assert head != v2 and head == hub.repos["lab/moving"]["refs"]["main"]


def test_interrupted_download_resumes(hub, tmp_path):
    env = hub_env(tmp_path, hub.endpoint)
    sha = hashlib.sha256(hub.big).hexdigest()
    hub.drop_once.add("big.safetensors")
    r = netdiff("models", "download", "lab/big", env=env)
    assert r.returncode == 0, r.stderr
    ranges = [rng for _, path, rng in hub.requests("GET", f"/lfs/{sha}") if rng]
    assert ranges and int(ranges[0].split("=")[1].split("-")[0]) > 0, hub.requests("GET", f"/lfs/{sha}")
    blob = tmp_path / "hf" / "hub" / "models--lab--big" / "blobs" / sha
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha
    from engine.hub.cache import verify
    rep = verify("lab/big", cache_dir=tmp_path / "hf" / "hub")
    assert rep.ok and [f.name for f in rep.files] == ["big.safetensors", "config.json"]


def test_verify_catches_a_changed_byte(hub, tmp_path):
    env = hub_env(tmp_path, hub.endpoint)
    assert netdiff("models", "download", "lab/net", env=env).returncode == 0
    from engine.hub.cache import verify
    assert verify("lab/net", cache_dir=tmp_path / "hf" / "hub").ok
    blob = Path(os.path.realpath(tmp_path / "hf" / "hub" / "models--lab--net" / "snapshots" / hub.v1
                                 / "model.safetensors"))
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    bad = netdiff("models", "verify", "hf://lab/net", env=dict(env, HF_HUB_OFFLINE="1"))
    assert bad.returncode == 1
    assert "BAD  model.safetensors" in bad.stdout and "model.safetensors" in bad.stderr
    assert "ok   config.json" in bad.stdout and "Traceback" not in bad.stderr


def test_generate_offline_from_the_cache(hub, fetched, tmp_path, monkeypatch):
    """What HF_HUB_OFFLINE=1 does at import, done in this process (a second torch import in a
    subprocess costs tens of seconds on a loaded machine; the env itself is exercised by the
    offline `models verify` / `models info` subprocesses above and below)."""
    from click.testing import CliRunner
    from huggingface_hub import constants
    from engine.datasets import recipes as rp
    from engine.model.checkpoint import resolve
    from netdiff_tui.cli import main
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(fetched["home"] / "hf" / "hub"))
    before = len(hub.log)
    recipe = tmp_path / "lab.toml"
    recipe.write_text(f'label = "dns"\nmodel = "hf://lab/net@{hub.v1}"\ncount = 2\n')
    req = rp.load_recipe(recipe).request
    assert resolve(req.model) == fetched["repo"] / "snapshots" / hub.v1
    r = CliRunner().invoke(main, ["generate", "--model", f"hf://lab/net@{hub.v1}", "--label", "dns", "-n", "2",
                                  "--steps", "2", "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    assert len(rows) == 2 and {x["label"] for x in rows} == {"dns"}
    assert hub.v1 in (tmp_path / "out" / "generate.json").read_text()     # the commit that ran is recorded
    assert len(hub.log) == before, "offline generation must not touch the network"


def test_bad_references_are_one_line(hub, fetched, tmp_path):
    env = hub_env(tmp_path, hub.endpoint)
    e = one_line_error(netdiff("models", "download", "lab/nothere", env=env))
    assert "lab/nothere" in e and "no such repository" in e
    e = one_line_error(netdiff("models", "download", "lab/net", "--revision", "nope", env=env))
    assert "revision 'nope' does not exist" in e
    e = one_line_error(netdiff("models", "download", "lab/net", env=hub_env(tmp_path, None)))
    assert "cannot be reached" in e and "lab/net" in e                      # no network, nothing cached
    # offline, what is cached is the whole answer: nothing to fetch
    r = netdiff("models", "download", "lab/net", env=dict(fetched["env"], HF_HUB_OFFLINE="1"))
    assert r.returncode == 0 and f"commit {hub.v1}" in r.stdout and "(0 bytes) to download" in r.stdout, r.stderr
    # offline, a commit that was never downloaded: says what is missing and how to get it
    e = one_line_error(netdiff("models", "info", f"hf://lab/net@{'0' * 40}",
                               env=dict(fetched["env"], HF_HUB_OFFLINE="1")))
    assert "not in the Hub cache" in e and "netdiff models download lab/net" in e


def test_remote_info_and_pickles_on_request(hub, tmp_path):
    env = hub_env(tmp_path, hub.endpoint)
    r = netdiff("models", "info", "lab/big", "--json", env=env)          # not downloaded: described by the Hub
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    files = {f["name"]: f for f in d["files"]}
    assert d["commit"] == hub.big_commit and d["path"] is None
    assert files["big.safetensors"]["hash"] == hashlib.sha256(hub.big).hexdigest()
    assert files["big.safetensors"]["size"] == len(hub.big) and files["config.json"]["algorithm"] == "git-sha1"
    r = netdiff("models", "download", "lab/net", "--include", "*.bin", "--allow-pickle", "--dry-run", env=env)
    assert r.returncode == 0 and "pytorch_model.bin" in r.stdout and "arbitrary code" in r.stderr, r.stderr

"""`netdiff models list/info/verify/delete` on a Hub cache written by huggingface_hub itself
(snapshot_download from the fake Hub: blobs named by hash, snapshots as relative symlinks, refs).

In-process: these commands read the cache through huggingface_hub.constants.HF_HUB_CACHE,
which the tests point at a temporary cache (what HF_HOME/HF_HUB_CACHE do at import)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub_fake import DEFAULT_MODEL, FakeHub, native_files


def blob_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / "blobs").iterdir())


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from huggingface_hub import snapshot_download
    hub = FakeHub().start()
    root = tmp_path_factory.mktemp("hubcache")
    c = {"root": root, "hub": root / "hf" / "hub"}
    c["v1"] = hub.commit("lab/net", native_files(b"# v1\n"))
    c["v2"] = hub.commit("lab/net", {"README.md": b"# v2, same weights\n"})
    c["diff"] = hub.commit("lab/diff", {"model_index.json": b'{"_class_name": "StableDiffusionPipeline"}',
                                        "unet/config.json": b'{"sample_size": 8}',
                                        "unet/diffusion_pytorch_model.safetensors": os.urandom(4096)})
    for repo, rev in (("lab/net", c["v1"]), ("lab/net", "main"), ("lab/diff", "main")):
        snapshot_download(repo, revision=rev, cache_dir=c["hub"], endpoint=hub.endpoint)
    hub.stop()
    return c


@pytest.fixture
def env(cache, tmp_path, monkeypatch):
    """This process sees the cache as its Hub cache, offline; netdiff's own dirs are temporary."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache["hub"]))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args):
    from netdiff_tui.cli import main
    return CliRunner().invoke(main, [str(a) for a in args])


def test_list_shows_default_runs_and_hub_repos(cache, env):
    run = env / "runs" / "myrun"
    (run / "model").mkdir(parents=True)
    (run / "train_config.json").write_text("{}")
    for f in ("config.json", "model.safetensors"):
        shutil.copyfile(DEFAULT_MODEL / f, run / "model" / f)
    r = invoke("models", "list", "--json")
    assert r.exit_code == 0, r.output
    rows = {m["name"]: m for m in json.loads(r.output)["models"]}
    assert rows["default"]["kind"] == "default" and rows["default"]["ref"] == "default"
    assert rows["myrun"]["kind"] == "run" and len(rows["myrun"]["classes"]) == 20
    net = rows["lab/net"]
    assert (net["kind"], net["format"], len(net["classes"])) == ("hub", "native", 20)
    assert {x["commit"]: x["refs"] for x in net["revisions"]} == {cache["v1"]: [], cache["v2"]: ["main"]}
    assert net["size"] == blob_bytes(cache["hub"] / "models--lab--net")     # weights shared, counted once
    assert net["ref"] == f"hf://lab/net@{cache['v2']}"
    assert rows["lab/diff"]["format"] == "diffusers"
    table = invoke("models", "list")
    assert "lab/net" in table.output and "myrun" in table.output and cache["v2"][:12] in table.output


def test_info_files_hashes_and_recipes(cache, env):
    rdir = env / "config" / "netdiff" / "recipes"
    rdir.mkdir(parents=True)
    (rdir / "uses-v1.toml").write_text(f'label = "dns"\nmodel = "hf://lab/net@{cache["v1"]}"\n')
    r = invoke("models", "info", f"hf://lab/net@{cache['v1']}", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["commit"] == cache["v1"] and d["format"] == "native" and len(d["classes"]) == 20
    files = {f["name"]: f for f in d["files"]}
    w = native_files()["model.safetensors"]
    assert files["model.safetensors"] == {"name": "model.safetensors", "size": len(w), "algorithm": "sha256",
                                          "hash": hashlib.sha256(w).hexdigest()}
    assert files["README.md"]["algorithm"] == "git-sha1"
    assert d["recipes"] == [str(rdir / "uses-v1.toml")]
    shipped = json.loads((DEFAULT_MODEL / "config.json").read_text())
    assert d["config"]["data_manifest_sha256"] == shipped["data_manifest_sha256"]
    assert d["config"]["steps"] == shipped["steps"]


def test_verify_offline_every_revision(cache, env):
    from engine.hub.cache import verify
    for rev in (cache["v1"], "main"):
        rep = verify("lab/net", revision=rev)
        assert rep.ok and {f.algorithm for f in rep.files} == {"sha256", "git-sha1"}, rep
    r = invoke("models", "verify", "default")
    assert r.exit_code == 0 and "well-formed" in r.output
    mine = env / "mine"           # a local checkpoint has no published hashes: its structure is checked
    shutil.copytree(DEFAULT_MODEL, mine)
    with open(mine / "model.safetensors", "r+b") as f:
        f.truncate(f.seek(0, 2) - 100)
    r = invoke("models", "verify", str(mine))
    assert r.exit_code == 1 and "BAD  model.safetensors" in r.output and "tensor data is" in r.output


def test_delete_plan_then_execute(cache, env, tmp_path_factory):
    # work on a copy: the other tests of this module keep the full cache
    hub = tmp_path_factory.mktemp("copy") / "hub"
    shutil.copytree(cache["hub"], hub, symlinks=True)
    from huggingface_hub import constants
    constants.HF_HUB_CACHE = str(hub)          # restored by the env fixture's monkeypatch
    repo = hub / "models--lab--net"
    rdir = env / "config" / "netdiff" / "recipes"
    rdir.mkdir(parents=True)
    (rdir / "old.toml").write_text(f'label = "dns"\nmodel = "hf://lab/net@{cache["v1"]}"\n')
    before = blob_bytes(repo)
    # v1 shares config and weights with v2: deleting it frees only its README blob
    only_v1 = len(b"# v1\n")
    plan = invoke("models", "delete", "lab/net", "--revision", cache["v1"], "--dry-run")
    assert plan.exit_code == 0, plan.output
    assert f"frees 5 B ({only_v1} bytes)" in plan.output and "dry run: nothing deleted" in plan.output
    assert "recipe" in plan.output and "old.toml" in plan.output          # warned: a recipe still uses it
    assert blob_bytes(repo) == before and (repo / "snapshots" / cache["v1"]).exists()
    no = invoke("models", "delete", "lab/net", "--revision", cache["v1"])      # not a terminal, no --yes
    assert no.exit_code == 2 and "--yes" in no.output and (repo / "snapshots" / cache["v1"]).exists()
    done = invoke("models", "delete", "lab/net", "--revision", cache["v1"], "--yes")
    assert done.exit_code == 0 and "deleted" in done.output, done.output
    assert before - blob_bytes(repo) == only_v1
    assert not (repo / "snapshots" / cache["v1"]).exists() and (repo / "snapshots" / cache["v2"]).exists()
    from engine.hub.cache import verify
    assert verify("lab/net").ok                     # what is left is intact
    whole = blob_bytes(hub / "models--lab--diff")
    r = invoke("models", "delete", "hf://lab/diff", "--yes")
    assert r.exit_code == 0 and f"({whole} bytes)" in r.output and not (hub / "models--lab--diff").exists()


def test_delete_refuses(cache, env):
    for args, words in ((("default",), "cannot be deleted"), ((str(DEFAULT_MODEL),), "Hub cache only"),
                        (("lab/nothere",), "not in the Hub cache"),
                        (("lab/net", "--revision", "0" * 40), "is not cached")):
        r = invoke("models", "delete", *args, "--yes")
        assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output, r.output
        assert len([ln for ln in r.output.splitlines() if ln.startswith("netdiff: error:")]) == 1


def test_hub_checkpoint_resolution_offline(cache, env):
    from engine.errors import InputError
    from engine.hub.refs import resolve_ref
    from engine.model.checkpoint import resolve
    assert resolve(f"hf://lab/net@{cache['v1']}") == cache["hub"] / "models--lab--net" / "snapshots" / cache["v1"]
    assert resolve_ref("hf://lab/net@main").name == cache["v2"]          # a branch through refs/, offline
    assert resolve_ref(f"hf://lab/diff@{cache['diff']}").joinpath("unet", "config.json").is_file()
    with pytest.raises(InputError, match="not a netdiff checkpoint"):
        resolve(f"hf://lab/diff@{cache['diff']}")
    with pytest.raises(InputError, match="not in the Hub cache and offline mode"):
        resolve("hf://lab/other@" + "1" * 40)


def test_typed_branch_is_pinned_recipes_are_not(cache, env):
    """--model text names a branch and gets the commit it means now (offline: from refs/);
    a recipe or a request built in code must already name the commit."""
    from engine.datasets import request as rq
    pinned = f"hf://lab/net@{cache['v2']}"
    assert rq.parse_text("model", "hf://lab/net@main") == pinned
    assert rq.parse_text("model", "lab/net") == pinned            # bare org/name: no such local directory here
    assert rq.parse_text("model", pinned) == pinned
    with pytest.raises(rq.Problem, match="not a 40-hex commit"):
        rq.parse_value("model", "hf://lab/net@main")
    with pytest.raises(rq.Problem, match="not in the Hub cache"):
        rq.parse_text("model", "hf://lab/net@nobranch")

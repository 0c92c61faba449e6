"""`netdiff models import` (a run in the Hub layout with a model card) and `models push` to a
local fake Hub; the token comes only from HF_TOKEN / huggingface_hub's store and is never shown."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from click.testing import CliRunner

from hub_fake import DEFAULT_MODEL, FakeHub, hub_env, netdiff, one_line_error

TOKEN = "hf_fake_token_do_not_print_0123456789"


@pytest.fixture
def run_dir(tmp_path):
    """A finished training run: RUN/model/{config.json, model.safetensors} and an evaluation report."""
    run = tmp_path / "runs" / "lab-net"
    (run / "model").mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copyfile(DEFAULT_MODEL / f, run / "model" / f)
    (run / "train_config.json").write_text("{}")
    rep = tmp_path / "report"
    rep.mkdir()
    (rep / "report.json").write_text(json.dumps({"summary": {
        "mean_jsd": {"synthetic": 0.089, "random_bits": 0.306}, "mean_tvd": {"synthetic": 0.12, "random_bits": 0.4},
        "tstr_ratio_packet_bits_noports": 0.83}}))
    return run, rep


def test_import_writes_a_hub_layout_with_a_card(run_dir, tmp_path):
    from netdiff_tui.cli import main
    run, rep = run_dir
    out = tmp_path / "models" / "lab-net"
    r = CliRunner().invoke(main, ["models", "import", str(run), "-o", str(out), "--report", str(rep)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == (DEFAULT_MODEL / "model.safetensors").read_bytes()
    card = (out / "README.md").read_text()
    cfg = json.loads((DEFAULT_MODEL / "config.json").read_text())
    assert card.startswith("---\nlibrary_name: netdiffusion\n")
    assert "# lab-net" in card and f"`{cfg['data_manifest_sha256']}`" in card
    assert f"| training steps | {cfg['steps']} |" in card
    assert all(f"`{c}`" in card for c in cfg["classes"]) and "Classes (20)" in card
    assert "| synthetic | 0.089 | 0.120 |" in card and "packet_bits_noports: 0.830" in card
    assert hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest() in card
    again = CliRunner().invoke(main, ["models", "import", str(run), "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    bad = CliRunner().invoke(main, ["models", "import", str(tmp_path / "report"), "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "not a checkpoint" in bad.output and "Traceback" not in bad.output


def test_push_then_download_back(run_dir, tmp_path):
    run, rep = run_dir
    hub = FakeHub().start()
    try:
        env = hub_env(tmp_path / "home", hub.endpoint)
        e = one_line_error(netdiff("models", "push", run, "lab/shared", env=env))
        assert "no Hugging Face token" in e and "HF_TOKEN" in e
        assert not hub.requests("POST"), "nothing is sent without a token"
        r = netdiff("models", "push", run, "lab/shared", "--report", rep, env=dict(env, HF_TOKEN=TOKEN))
        assert r.returncode == 0, r.stderr
        commit = hub.repos["lab/shared"]["refs"]["main"]
        assert f"hf://lab/shared@{commit}" in r.stdout
        assert TOKEN not in r.stdout + r.stderr
        assert hub.tokens_seen and all(t == f"Bearer {TOKEN}" for t in hub.tokens_seen)
        files = hub.repos["lab/shared"]["commits"][commit]
        assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
        assert files["model.safetensors"] == (DEFAULT_MODEL / "model.safetensors").read_bytes()
        assert "0.089" in files["README.md"].decode()
        assert not (tmp_path / "home" / "hf" / "token").exists(), "we never write the token store"
        d = netdiff("models", "download", "lab/shared", env=env)
        assert d.returncode == 0 and commit in d.stdout, d.stderr
        from engine.hub.cache import verify
        rep = verify(f"hf://lab/shared@{commit}", cache_dir=tmp_path / "home" / "hf" / "hub")
        assert rep.ok and len(rep.files) == 3
    finally:
        hub.stop()

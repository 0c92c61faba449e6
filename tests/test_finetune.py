"""Fine-tuning (``netdiff train --init-from REF``): a run started from a checkpoint keeps its classes,
adds the data's new ones, and both generate valid flows. Tiny models on the loopback fixtures (CPU,
seconds); none needs the real data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from engine.errors import InputError
from netdiff_tui.cli import main

import tshark_judge
from conftest import FIXTURES

TINY = {"model": {"d_model": 32, "layers": 1, "heads": 2, "max_packets": 16, "presence_input": True,
                  "self_condition": True}, "batch_size": 4, "checkpoint_every": 2, "warmup_steps": 2,
        "log_every": 1, "test_fraction": 0.2}


def _encode(root: Path, captures: dict[str, str]) -> Path:
    from engine.datasets.encode import encode_files
    for label, name in captures.items():
        (root / "in" / label).mkdir(parents=True)
        shutil.copy(FIXTURES / name, root / "in" / label / name)
    encode_files(sorted((root / "in").rglob("*.pcap")), root / "ds", label_from_dir=True)
    return root / "ds"


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A tiny model of two classes: the checkpoint users fine-tune."""
    from engine.model.train import TrainConfig, train
    d = tmp_path_factory.mktemp("base")
    data = _encode(d, {"zoom": "eth.pcap", "dns": "sll.pcap"})
    train(data, d / "run", TrainConfig.from_dict({**TINY, "steps": 2}))
    return d / "run"


@pytest.fixture(scope="module")
def new_data(tmp_path_factory) -> Path:
    """The user's own traffic: one class the base has never seen."""
    return _encode(tmp_path_factory.mktemp("new"), {"iot": "eth_nsec.pcap"})


@pytest.fixture(scope="module")
def tiny_json(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "tiny.json"
    p.write_text(json.dumps({k: v for k, v in TINY.items() if k != "model"}))
    return p


@pytest.fixture(scope="module")
def ft_run(base_run, new_data, tiny_json, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ft") / "run"
    r = CliRunner().invoke(main, ["train", "--init-from", str(base_run), "--data", str(new_data), "--out", str(run),
                                  "--config", str(tiny_json), "--steps", "2", "-q"])
    assert r.exit_code == 0, r.output
    return run


def test_class_table_grows_and_keeps_old_rows():
    from engine.model.finetune import grow_class_table
    old = torch.randn(3, 8)                       # a, b + the null class
    new = grow_class_table(old, ["a", "b"], ["a", "b", "c", "d"])
    assert new.shape == (5, 8)
    torch.testing.assert_close(new[:2], old[:2])
    torch.testing.assert_close(new[2], old[:2].mean(0))
    torch.testing.assert_close(new[3], old[:2].mean(0))
    torch.testing.assert_close(new[4], old[2])    # the null row stays the null row
    swapped = grow_class_table(old, ["a", "b"], ["b", "x", "a"])        # by name, not by position
    torch.testing.assert_close(swapped[0], old[1])
    torch.testing.assert_close(swapped[2], old[0])
    with pytest.raises(ValueError):
        grow_class_table(old, ["a"], ["a", "b"])


def test_weights_at_step_zero(base_run, new_data, tmp_path):
    """Before any training step the run is the checkpoint: every weight equal, old class rows copied."""
    from engine.model.checkpoint import load_model
    from engine.model.denoiser import PacketDenoiser
    from engine.model.finetune import finetune_config
    from engine.model.train import _init_weights
    cfg = finetune_config(str(base_run), {k: v for k, v in TINY.items() if k != "model"})
    assert cfg.model["d_model"] == 32 and cfg.model["presence_input"] and cfg.init_from == str(base_run)
    old, ocfg, _ = load_model(base_run)
    assert ocfg["classes"] == ["dns", "zoom"]
    classes = ["dns", "zoom", "iot"]
    new = PacketDenoiser(num_classes=3, **cfg.model)
    assert _init_weights(new, str(base_run), classes) == ["iot"]
    a, b = old.state_dict(), new.state_dict()
    for k in a:
        if k != "c_emb.weight":
            assert torch.equal(a[k], b[k]), k
    assert torch.equal(b["c_emb.weight"][:2], a["c_emb.weight"][:2])
    assert torch.equal(b["c_emb.weight"][3], a["c_emb.weight"][2])
    # the same weights compute the same for an old class
    x, t, y = torch.randn(2, 16, 1105), torch.tensor([10, 900]), torch.tensor([0, 1])
    rows = torch.arange(16)[None] < torch.tensor([[4], [16]])
    with torch.no_grad():
        torch.testing.assert_close(new.eval()(x, t, y, rows, None), old(x, t, y, rows, None))


def test_finetuned_run_has_old_and_new_classes(base_run, ft_run):
    from engine.model.checkpoint import load_model
    _, cfg, d = load_model(ft_run)
    assert d == ft_run / "model"
    assert cfg["classes"] == ["dns", "zoom", "iot"] and cfg["model"]["num_classes"] == 3
    assert cfg["init_from"] == str(base_run)
    base = json.loads((base_run / "model" / "config.json").read_text())
    for key in ("lengths", "vocab", "ports", "joint"):          # old classes' tables come from the base
        assert cfg[key]["dns"] == base[key]["dns"] and cfg[key]["zoom"] == base[key]["zoom"], key
        assert "iot" in cfg[key], key
    w = load_file(ft_run / "model" / "model.safetensors")
    assert w["c_emb.weight"].shape[0] == 4
    # generative replay: 16 flows of each old class, sampled from the base, trained on with their labels
    rep = load_file(ft_run / "replay.safetensors")
    assert sorted(set(rep["labels"].tolist())) == [0, 1] and cfg["replay_flows"] == len(rep["labels"]) == 32
    assert rep["rows"].shape[1] == 1105 and rep["offsets"][-1] == rep["rows"].shape[0]
    assert json.loads((ft_run / "train_config.json").read_text())["classes"] == ["dns", "zoom", "iot"]


@pytest.mark.parametrize("label", ["iot", "zoom"])
def test_old_and_new_labels_generate_valid_flows(ft_run, tmp_path, label):
    out = tmp_path / "gen"
    r = CliRunner().invoke(main, ["generate", "--model", str(ft_run), "--label", label, "-n", "3", "--seed", "4",
                                  "--steps", "3", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    pcaps = sorted((out / label).glob("*.pcap"))
    assert len(pcaps) == 3
    r = CliRunner().invoke(main, ["check", *map(str, pcaps)])
    assert r.exit_code == 0, r.output
    if tshark_judge.available():
        for p in pcaps:
            v = tshark_judge.judge(p)
            assert v.frames > 0 and v.ok, (p, v.summary())


def test_resume_of_a_finetuned_run(base_run, new_data, tiny_json, tmp_path):
    """Stopped after its first checkpoint, the run continues with --resume to the same weights."""
    def cmd(run, steps, *extra):
        return ["train", "--init-from", str(base_run), "--data", str(new_data), "--out", str(run),
                "--config", str(tiny_json), "--steps", str(steps), "-q", *extra]
    assert CliRunner().invoke(main, cmd(tmp_path / "straight", 4)).exit_code == 0
    assert CliRunner().invoke(main, cmd(tmp_path / "parted", 2)).exit_code == 0
    r = CliRunner().invoke(main, cmd(tmp_path / "parted", 4, "--resume"))
    assert r.exit_code == 0, r.output
    a = load_file(tmp_path / "straight" / "checkpoints" / "step-0000004" / "model.safetensors")
    b = load_file(tmp_path / "parted" / "checkpoints" / "step-0000004" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "parted" / "model" / "config.json").read_text())["classes"] == ["dns", "zoom", "iot"]
    # the replay flows were sampled once, at the start; a resume without them is refused in one line
    (tmp_path / "parted" / "replay.safetensors").unlink()
    line = _one_line_error(cmd(tmp_path / "parted", 6, "--resume"))
    assert "replay.safetensors: missing" in line


def test_finetuned_run_is_listed(ft_run, tmp_path, monkeypatch):
    """`netdiff models list` finds runs under the settings' runs_dirs (by default ./runs and the data dir's)."""
    from engine.artifacts import find_models
    found = {Path(m.path).resolve(): m for m in find_models(tmp_path / "models", [ft_run.parent])}
    m = found[(ft_run / "model").resolve()]
    assert list(m.classes) == ["dns", "zoom", "iot"]


def _one_line_error(args) -> str:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


def _offline_cache(monkeypatch, hub_cache: Path) -> None:
    """This process reads its Hub cache from ``hub_cache``, offline (what HF_HOME and HF_HUB_OFFLINE do
    at import)."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_bad_ref_is_one_line(new_data, tmp_path, monkeypatch):
    _offline_cache(monkeypatch, tmp_path / "hub")
    base = ["train", "--data", str(new_data), "--out", str(tmp_path / "run")]
    line = _one_line_error([*base, "--init-from", str(tmp_path / "nowhere")])
    assert "nowhere" in line and "no such checkpoint" in line
    (tmp_path / "junk").mkdir()
    assert "not a model checkpoint" in _one_line_error([*base, "--init-from", str(tmp_path / "junk")])
    assert "not in the Hub cache" in _one_line_error([*base, "--init-from", "hf://org/name@" + "0" * 40])
    assert "only with the native model" in _one_line_error([*base, "--init-from", "default", "--model-type", "sd"])
    assert not (tmp_path / "run").exists()


def test_init_from_a_hub_checkpoint(base_run, new_data, tiny_json, tmp_path, monkeypatch):
    """hf://org/name@commit resolves through the Hub cache (no network) like any --model reference."""
    from huggingface_hub import snapshot_download
    from hub_fake import FakeHub
    hub = FakeHub().start()
    try:
        commit = hub.commit("lab/tiny", {n: (base_run / "model" / n).read_bytes()
                                         for n in ("config.json", "model.safetensors")})
        snapshot_download("lab/tiny", revision=commit, cache_dir=tmp_path / "hub", endpoint=hub.endpoint)
    finally:
        hub.stop()
    _offline_cache(monkeypatch, tmp_path / "hub")
    ref = f"hf://lab/tiny@{commit}"
    r = CliRunner().invoke(main, ["train", "--init-from", ref, "--data", str(new_data), "--out",
                                  str(tmp_path / "run"), "--config", str(tiny_json), "--steps", "1", "-q"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert cfg["classes"] == ["dns", "zoom", "iot"] and cfg["init_from"] == ref


def test_mismatched_shapes_are_one_line(base_run, new_data, tmp_path):
    cfg = tmp_path / "wide.json"
    cfg.write_text(json.dumps({**TINY, "model": {"d_model": 48}}))
    line = _one_line_error(["train", "--init-from", str(base_run), "--data", str(new_data),
                            "--out", str(tmp_path / "run"), "--config", str(cfg), "--steps", "1"])
    assert "weights do not fit this model" in line and "vs this run's" in line and ", 48)" in line


def test_a_run_must_keep_the_checkpoints_classes(base_run, new_data, tmp_path):
    from engine.model.train import train
    from engine.model.finetune import finetune_config
    cfg = finetune_config(str(base_run), {**{k: v for k, v in TINY.items() if k != "model"}, "classes": ["iot"]})
    with pytest.raises(InputError, match="classes differ.*dns, zoom") as ei:
        train(new_data, tmp_path / "run", cfg, steps=1)
    assert "\n" not in str(ei.value)


def test_a_longer_model_starts_from_the_checkpoints_positions(base_run, new_data, tmp_path):
    """max_packets grown (the 1024-packet leg of the shipped model, configs/default_model_1024.json):
    the first rows take the checkpoint's positions, the others keep the sinusoidal init, every other
    weight is copied, and on a flow no longer than the checkpoint's it computes what the checkpoint did.
    A shorter model is still refused."""
    from engine.model.checkpoint import load_model
    from engine.model.denoiser import PacketDenoiser
    from engine.model.finetune import finetune_config
    from engine.model.train import _init_weights
    cfg = finetune_config(str(base_run), {"model": {"max_packets": 40}})
    assert cfg.model["max_packets"] == 40 and cfg.model["d_model"] == 32
    old, _, _ = load_model(base_run)
    new = PacketDenoiser(num_classes=2, **cfg.model)
    fresh = new.pos.detach().clone()
    _init_weights(new, str(base_run), ["dns", "zoom"])
    a, b = old.state_dict(), new.state_dict()
    assert b["pos"].shape == (1, 40, 32)
    assert torch.equal(b["pos"][:, :16], a["pos"]) and torch.equal(b["pos"][:, 16:], fresh[:, 16:])
    assert all(torch.equal(a[k], b[k]) for k in a if k != "pos")
    x, t, y = torch.randn(2, 16, 1105), torch.tensor([10, 900]), torch.tensor([0, 1])
    rows = torch.arange(16)[None] < torch.tensor([[4], [16]])
    with torch.no_grad():
        torch.testing.assert_close(new.eval()(x, t, y, rows, None), old(x, t, y, rows, None))
    # and the run trains, exports and generates flows longer than the checkpoint's
    cfgf = tmp_path / "long.json"
    cfgf.write_text(json.dumps({**{k: v for k, v in TINY.items() if k != "model"}, "model": {"max_packets": 40}}))
    r = CliRunner().invoke(main, ["train", "--init-from", str(base_run), "--data", str(new_data),
                                  "--out", str(tmp_path / "run"), "--config", str(cfgf), "--steps", "2", "-q"])
    assert r.exit_code == 0, r.output
    long_model, _, _ = load_model(tmp_path / "run" / "model")
    assert long_model.config.max_packets == 40
    short = PacketDenoiser(num_classes=2, **{**cfg.model, "max_packets": 8})
    with pytest.raises(InputError, match="vs this run's"):
        _init_weights(short, str(base_run), ["dns", "zoom"])

"""LoRA fine-tuning of Stable Diffusion (engine.model.sd.train): the run directory, the adapter
diffusers loads, progress events, validation images, SIGKILL + --resume continuing exactly, and
checkpoints free of pickles (tiny offline pipelines, sd_tiny.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.errors import InputError
from engine.codec.layout import LAYOUT

from conftest import ROOT
from sd_tiny import ROWS, sd_cfg, sd_data, sd_run, tiny_sd  # noqa: F401  (fixtures)


def test_lora_run_directory_and_adapter(sd_run, tiny_sd):
    from diffusers import StableDiffusionPipeline
    from PIL import Image
    cfg = json.loads((sd_run / "config.json").read_text())
    assert cfg["model_type"] == "sd-lora" and cfg["family"] == "sd"
    assert cfg["base"]["path"] == str(tiny_sd["base"]) and "commit" in cfg["base"]
    assert cfg["classes"] == ["dns", "zoom"]
    assert cfg["prompts"]["zoom"] == "pixelated network data, type-zoom"
    assert cfg["geometry"] == {"rows": ROWS, "multiple": 16, "columns": LAYOUT.width, "filler": "absent (blue)",
                               "height": 16, "width": 1120}
    assert cfg["lora"]["rank"] == 4 and cfg["lora"]["targets"] == ["to_k", "to_q", "to_v", "to_out.0"]
    # events: the same typed events as native training
    kinds = [json.loads(l)["kind"] for l in (sd_run / "events.jsonl").read_text().splitlines()]
    assert kinds.count("TrainStep") == 2 and kinds[-1] == "TaskFinished"
    # validation images are cropped to the grid: one packet per row, one column per layout column
    for c in cfg["classes"]:
        with Image.open(sd_run / "validation" / "step-0000002" / f"{c}.png") as im:
            assert im.size == (LAYOUT.width, ROWS)
    # the adapter is what diffusers' load_lora_weights reads, and it changes the samples
    sd = load_file(sd_run / "pytorch_lora_weights.safetensors")
    assert sd and all(k.startswith("unet.") and "lora" in k for k in sd)
    assert any(".to_q." in k for k in sd) and any(".to_out.0." in k for k in sd)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd["base"], safety_checker=None)
    pipe.set_progress_bar_config(disable=True)

    def draw():
        return pipe("pixelated network data, type-zoom", height=16, width=1120, num_inference_steps=2,
                    generator=torch.Generator().manual_seed(0), output_type="np").images
    before = draw()
    pipe.load_lora_weights(sd_run, weight_name="pytorch_lora_weights.safetensors")
    assert not np.array_equal(before, draw())


def test_lora_checkpoints_hold_no_pickles(sd_run):
    from engine.model.checkpoint import load_optimizer
    cks = sorted((sd_run / "checkpoints").glob("step-*"))
    assert [c.name for c in cks] == ["step-0000002"]
    names = sorted(p.name for p in cks[0].iterdir())
    assert names == ["lora.safetensors", "optimizer.json", "optimizer.safetensors", "state.json"]
    opt_t = load_file(cks[0] / "optimizer.safetensors")
    assert any(k.endswith(".exp_avg") for k in opt_t) and any(k.endswith(".exp_avg_sq") for k in opt_t)
    # an entry naming a parameter the optimizer does not have is refused, in one line
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([p])
    with pytest.raises(InputError, match="param groups do not match|out of range"):
        load_optimizer(opt, cks[0])


def test_lora_config_and_cli_errors(sd_data, tiny_sd, tmp_path):
    from click.testing import CliRunner
    from engine.model.sd.train import SDTrainConfig
    from netdiff_tui.cli import main
    with pytest.raises(InputError, match="unknown SD training config keys: bogus"):
        SDTrainConfig.from_dict({"bogus": 1})
    with pytest.raises(InputError, match="rank must be"):
        SDTrainConfig.from_dict({"rank": 0})
    r = CliRunner().invoke(main, ["train", "--model-type", "sd", "--data", str(sd_data), "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "--base" in r.output
    r = CliRunner().invoke(main, ["train", "--model-type", "sd", "--base", str(tmp_path), "--data", str(sd_data),
                                  "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "model_index.json" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["train", "--data", str(sd_data), "--out", str(tmp_path / "r"), "--rank", "4"])
    assert r.exit_code == 2 and "only with --model-type sd" in r.output


def test_lora_sigkill_and_resume_continue_exactly(sd_data, tiny_sd, tmp_path):
    """A run killed with SIGKILL resumes from its last checkpoint and ends with the adapter an
    uninterrupted run of the same length ends with, bit for bit."""
    from engine.model.sd.train import train_lora
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"rank": 4, "rows": ROWS, "batch_size": 2, "checkpoint_every": 2,
                               "validation_every": 0, "log_every": 1, "test_fraction": 0.2}))
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "netdiff_tui", "train", "--model-type", "sd", "--base", str(tiny_sd["base"]),
           "--data", str(sd_data), "--out", str(run), "--config", str(cfg), "--steps", "100000", "-q"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (run / "checkpoints" / "step-0000002" / "state.json").exists():
        assert p.poll() is None, p.communicate()
        assert time.time() - t0 < 120, "no checkpoint within 120 s"
        time.sleep(0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=30)
    k = max(int(c.name.split("-")[1]) for c in (run / "checkpoints").glob("step-*") if (c / "state.json").exists())
    s = train_lora(sd_data, run, None, resume=True, steps=k + 2)
    assert s["steps"] == k + 2
    events = (run / "events.jsonl").read_text()
    assert f"resumed from step-{k:07d}" in events
    ref = tmp_path / "straight"
    train_lora(sd_data, ref, str(tiny_sd["base"]), sd_cfg(steps=k + 2, checkpoint_every=2))
    a = load_file(run / "pytorch_lora_weights.safetensors")
    b = load_file(ref / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    # without --resume the run directory is refused
    with pytest.raises(InputError, match="--resume"):
        train_lora(sd_data, run, str(tiny_sd["base"]), sd_cfg(steps=2))


def test_lora_base_from_the_hub_cache_records_its_commit(tiny_sd, sd_data, tmp_path, monkeypatch):
    """A Hub reference to a pinned base in the local Hub cache resolves offline (engine.hub.refs),
    and the run names the commit; sampling finds the base again by that reference."""
    import shutil
    from engine.datasets.generate import generate
    from engine.datasets.request import GenerationRequest
    from engine.model.sd.train import train_lora
    from huggingface_hub import constants
    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub"
    repo = cache / "models--netdiff-test--tiny-sd"
    shutil.copytree(tiny_sd["base"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = tmp_path / "run"
    train_lora(sd_data, run, f"hf://netdiff-test/tiny-sd@{commit}", sd_cfg(steps=1, gradient_checkpointing=True))
    base = json.loads((run / "config.json").read_text())["base"]
    assert base["commit"] == commit and base["ref"] == f"hf://netdiff-test/tiny-sd@{commit}"
    s = generate(GenerationRequest(label="zoom", count=1, model=str(run), steps=2), tmp_path / "out")
    assert s["base"]["commit"] == commit and s["flows"] == 1
    # a repository that is not in the cache is one line that says how to get it
    with pytest.raises(InputError, match="netdiff models download"):
        train_lora(sd_data, tmp_path / "run2", "hf://netdiff-test/absent@" + "1" * 40, sd_cfg(steps=1))

"""Tiny random-weight Stable Diffusion pipelines for the SD tests (built offline from configs,
as diffusers' own tests do), and a two-class dataset from the fixture captures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES

from engine.model.sd.tiny import TINY_SD, TINY_SD3  # noqa: F401  (configs shared with netdiff selftest)
ROWS = 16


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> dict:
    """``{"base": SD 1.5-layout pipeline dir, "controlnet": ControlNet dir}``."""
    from engine.model.sd.build import build_pipeline
    d = tmp_path_factory.mktemp("tinysd")
    build_pipeline(d / "base", TINY_SD, "sd", controlnet=d / "controlnet")
    return {"base": d / "base", "controlnet": d / "controlnet"}


@pytest.fixture(scope="session")
def tiny_sd3(tmp_path_factory) -> dict:
    from engine.model.sd.build import build_pipeline
    d = tmp_path_factory.mktemp("tinysd3")
    build_pipeline(d / "base", TINY_SD3, "sd3", controlnet=d / "controlnet")
    return {"base": d / "base", "controlnet": d / "controlnet"}


@pytest.fixture(scope="session")
def sd_data(tmp_path_factory) -> Path:
    """Two labeled classes encoded from the loopback fixture captures."""
    from engine.datasets.encode import encode_files
    d = tmp_path_factory.mktemp("sddata")
    for label, name in (("zoom", "eth.pcap"), ("dns", "sll.pcap")):
        (d / "in" / label).mkdir(parents=True)
        shutil.copy(FIXTURES / name, d / "in" / label / name)
    encode_files(sorted((d / "in").rglob("*.pcap")), d / "ds", label_from_dir=True)
    return d / "ds"


def sd_cfg(**kw):
    from engine.model.sd.train import SDTrainConfig
    return SDTrainConfig.from_dict({"rank": 4, "rows": ROWS, "batch_size": 2, "checkpoint_every": 2,
                                    "validation_every": 0, "validation_steps": 2, "log_every": 1,
                                    "sample_steps": 2, "sample_guidance": 1.0, "test_fraction": 0.2, **kw})


@pytest.fixture(scope="session")
def tiny_controlnet(tiny_sd, tmp_path_factory) -> Path:
    """The tiny ControlNet with its zero-initialised convolutions (the control image's embedding
    and the outputs) made random, so the control image visibly steers the samples (a fresh
    from_unet ControlNet adds exactly zero)."""
    import torch
    from diffusers import ControlNetModel
    cn = ControlNetModel.from_pretrained(tiny_sd["controlnet"])
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in [*cn.controlnet_down_blocks, cn.controlnet_mid_block, cn.controlnet_cond_embedding.conv_out]:
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.5)
    d = tmp_path_factory.mktemp("cn") / "controlnet"
    cn.save_pretrained(d, safe_serialization=True)
    return d


@pytest.fixture(scope="session")
def sd_run(tiny_sd, sd_data, tmp_path_factory) -> Path:
    """A LoRA run of 2 steps on the tiny SD 1.5-layout pipeline."""
    from engine.model.sd.train import train_lora
    run = tmp_path_factory.mktemp("sdrun") / "run"
    # guidance 2: validation and sampling go through classifier-free guidance
    s = train_lora(sd_data, run, str(tiny_sd["base"]), sd_cfg(steps=2, validation_every=2, sample_guidance=2.0))
    assert s["steps"] == 2
    return run

"""Tiny random-weight Stable Diffusion pipelines for the SD tests (built offline from configs,
as diffusers' own tests do), and a two-class dataset from the fixture captures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES

VAE = dict(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
           up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=4, layers_per_block=1,
           sample_size=32)
TEXT = dict(hidden_size=24, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, projection_dim=24)
TINY_SD = {
    "unet": dict(block_out_channels=(16, 32), layers_per_block=1, cross_attention_dim=24, norm_num_groups=8,
                 sample_size=8, in_channels=4, out_channels=4, attention_head_dim=4,
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")),
    "vae": VAE,
    "text_encoder": TEXT,
    "scheduler": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                      steps_offset=1, prediction_type="epsilon"),
}
TINY_SD3 = {
    "transformer": dict(sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
                        num_attention_heads=2, joint_attention_dim=24, caption_projection_dim=16,
                        pooled_projection_dim=48, out_channels=4, pos_embed_max_size=160),
    "vae": {**VAE, "use_quant_conv": False, "use_post_quant_conv": False, "shift_factor": 0.0609,
            "scaling_factor": 1.5035},
    "text_encoder": TEXT,
    "scheduler": dict(shift=3.0),
}
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

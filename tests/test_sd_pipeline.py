"""Stable Diffusion model type: the image grid, canny edges, base references, text-to-image and
img2img generation through repair, pcap writing and export (tiny offline pipelines, sd_tiny.py).

SD 1.5 layout (UNet) is tested end to end here and in test_lora_*/test_controlnet_*; SD3 (MMDiT,
two CLIP encoders, no T5) is tested end to end by test_sd3_train_and_sample_all_modes.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from engine.errors import InputError
from engine.codec.layout import LAYOUT

from sd_tiny import sd_cfg, sd_data, sd_run, tiny_sd, tiny_sd3  # noqa: F401  (fixtures)
import tshark_judge


def _judge_all(out):
    pcaps = sorted(out.rglob("*.pcap"))
    assert pcaps
    if not tshark_judge.available():
        pytest.skip("tshark not installed")
    for p in pcaps:
        v = tshark_judge.judge(p)
        assert v.ok, (p, v.summary())


def test_sd_grid_roundtrip_pads_never_resizes():
    from engine.model.sd.grid import Geometry, flows_to_pixels, pixels_to_flows
    g = Geometry(rows=100, multiple=64)
    assert (g.height, g.width, g.columns) == (128, 1152, LAYOUT.width)
    rng = np.random.default_rng(0)
    m = rng.integers(-1, 2, (2, 37, LAYOUT.width)).astype(np.int8)
    px = flows_to_pixels(m, g)
    assert px.shape == (2, 3, 128, 1152)
    # padding rows and columns are the filler, absent = blue
    assert torch.all(px[:, :, 37:] == torch.tensor([-1.0, -1.0, 1.0]).view(1, 3, 1, 1))
    assert torch.all(px[:, :, :, LAYOUT.width:] == torch.tensor([-1.0, -1.0, 1.0]).view(1, 3, 1, 1))
    # a noisy image still snaps back to the same cells, cropped to the grid
    noisy = (px + 0.6 * torch.rand(px.shape, generator=torch.Generator().manual_seed(1)) - 0.3).clamp(-1, 1)
    back = pixels_to_flows(noisy, g)
    assert back[0].shape == (100, LAYOUT.width)
    assert np.array_equal(back[0][:37], m[0]) and np.all(back[1][37:] == -1)
    # diffusers' np output ([0, 1], channels last) decodes the same
    back2 = pixels_to_flows(((px + 1) / 2).permute(0, 2, 3, 1).numpy(), g)
    assert np.array_equal(back2[1][:37], m[1])
    with pytest.raises(ValueError):
        flows_to_pixels(np.zeros((1, 101, LAYOUT.width)), g)


def test_sd_pixel_multiple_from_configs(tiny_sd, tiny_sd3):
    from engine.model.sd.pipeline import family_of, load_pipeline, pixel_multiple
    sd = load_pipeline(tiny_sd["base"], family_of(tiny_sd["base"]))
    sd3 = load_pipeline(tiny_sd3["base"], family_of(tiny_sd3["base"]))
    # VAE: 4 blocks = 8x; UNet: 2 down blocks = 2x; SD3: patch size 2
    assert pixel_multiple(sd) == 16 and pixel_multiple(sd3) == 16
    assert family_of(tiny_sd["base"]) == "sd" and family_of(tiny_sd3["base"]) == "sd3"


def test_sd_canny_edges():
    from engine.model.sd.canny import canny
    im = np.zeros((32, 48, 3), np.uint8)
    im[:, :24, 0] = 255           # red | green: grey 76 | 150, a strong step
    im[:, 24:, 1] = 255
    e = canny(im)
    cols = np.nonzero(e.any(axis=0))[0]
    assert len(cols) == 1 and abs(int(cols[0]) - 23) <= 1 and e[:, cols[0]].all()
    # a weak step (grey 10 apart: magnitude 40 < low) gives nothing; a weak edge is kept only
    # when it touches a strong one
    flat = np.full((32, 48, 3), 100, np.uint8)
    flat[:, 24:] = 110
    assert not canny(flat).any()
    mid = np.full((32, 48, 3), 0, np.uint8)
    mid[:, 24:] = 35               # magnitude 140: between the thresholds, alone
    assert not canny(mid).any()
    mid[:16, 24:] = 80             # the upper half is strong and touches the weak lower half
    e = canny(mid)
    assert e[:16].any() and e[16:].any()
    with pytest.raises(ValueError):
        canny(np.zeros((4, 4), np.uint8))


def test_sd_base_reference_errors(tmp_path):
    from engine.model.sd.pipeline import family_of, resolve_base
    with pytest.raises(InputError, match="no model_index.json|no such"):
        resolve_base(str(tmp_path))
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    d, commit = resolve_base(str(tmp_path))
    assert commit is None
    with pytest.raises(InputError, match="not supported"):
        family_of(d)
    (tmp_path / "model_index.json").write_text("{broken")
    with pytest.raises(InputError, match="unreadable"):
        family_of(d)


def test_sd_generate_cli_text2img_tshark_clean(sd_run, tmp_path):
    from click.testing import CliRunner
    from netdiff_tui.cli import main
    out = tmp_path / "zoom"
    r = CliRunner().invoke(main, ["generate", "--model", str(sd_run), "--label", "zoom", "-n", "3", "-o", str(out),
                                  "--steps", "2", "--packets-min", "3", "-q"])
    assert r.exit_code == 0, r.output
    gen = json.loads((out / "generate.json").read_text())["summary"]
    assert gen["model_type"] == "sd-lora" and gen["mode"] == "text2img" and gen["compliance_clean"]
    rows = (out / "manifest.csv").read_text().splitlines()
    assert len(rows) == 4 and all(",zoom," in r for r in rows[1:])
    assert all(int(r.split(",")[2]) >= 3 for r in rows[1:])      # packets_min held (redraws)
    _judge_all(out)
    # an unknown class is one line
    r = CliRunner().invoke(main, ["generate", "--model", str(sd_run), "--label", "nope", "-n", "1",
                                  "-o", str(tmp_path / "x"), "-q"])
    assert r.exit_code == 2 and "not one of the run's classes" in r.output


def test_sd_generate_same_seed_same_bytes(sd_run, tmp_path):
    from engine.datasets.generate import generate
    from engine.datasets.request import GenerationRequest
    req = GenerationRequest(label="dns", count=2, model=str(sd_run), steps=2, seed=5)
    generate(req, tmp_path / "a")
    generate(req, tmp_path / "b")
    for p in sorted((tmp_path / "a" / "dns").glob("*.pcap")):
        assert p.read_bytes() == (tmp_path / "b" / "dns" / p.name).read_bytes()


def test_sd_img2img_like_then_export(sd_run, sd_data, tmp_path):
    from click.testing import CliRunner
    from engine.datasets.generate import generate
    from engine.datasets.request import GenerationRequest
    from netdiff_tui.cli import main
    out = tmp_path / "gen"
    s = generate(GenerationRequest(label="zoom", count=3, model=str(sd_run), steps=2, like=str(sd_data),
                                   strength=0.5), out)
    assert s["mode"] == "img2img" and s["guides"]["flows"] >= 1 and s["compliance_clean"]
    man = (out / "manifest.csv").read_text().splitlines()
    assert all(r.split(",")[-1] for r in man[1:])           # every flow names its guide
    exp = tmp_path / "export"
    r = CliRunner().invoke(main, ["export", str(out), "-o", str(exp), "-q"])
    assert r.exit_code == 0, r.output
    assert len(list(exp.rglob("*.pcap"))) == 3
    _judge_all(exp)


def test_sd3_train_and_sample_all_modes(tiny_sd3, sd_data, tmp_path):
    from diffusers import StableDiffusion3Pipeline
    from engine.datasets.generate import generate
    from engine.datasets.request import GenerationRequest
    from engine.model.sd.train import train_lora
    run = tmp_path / "run"
    s = train_lora(sd_data, run, str(tiny_sd3["base"]), sd_cfg(steps=2, gradient_checkpointing=True))
    cfg = json.loads((run / "config.json").read_text())
    assert s["family"] == "sd3" and cfg["family"] == "sd3" and cfg["model_type"] == "sd-lora"
    # the adapter is what diffusers' SD3 pipeline loads
    pipe = StableDiffusion3Pipeline.from_pretrained(tiny_sd3["base"], text_encoder_3=None, tokenizer_3=None)
    pipe.load_lora_weights(run, weight_name="pytorch_lora_weights.safetensors")
    for kw, mode in (({}, "text2img"), ({"like": str(sd_data)}, "img2img"),
                     ({"like": str(sd_data), "controlnet": str(tiny_sd3["controlnet"])}, "controlnet")):
        out = tmp_path / mode
        g = generate(GenerationRequest(label="dns", count=2, model=str(run), steps=2, **kw), out)
        assert g["mode"] == mode and g["family"] == "sd3" and g["compliance_clean"], g
    _judge_all(tmp_path / "controlnet")


def test_sd_run_config_is_range_checked(sd_run, tmp_path):
    from engine.datasets.generate import generate
    from engine.datasets.request import GenerationRequest
    bad = tmp_path / "run"
    shutil.copytree(sd_run, bad)
    cfg = json.loads((bad / "config.json").read_text())
    for key, value in (("geometry", {**cfg["geometry"], "rows": -3}), ("classes", "zoom"),
                       ("family", "flux"), ("sampling", {"steps": 10**9})):
        (bad / "config.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(InputError, match="not a valid sd-lora run config"):
            generate(GenerationRequest(label="zoom", count=1, model=str(bad)), tmp_path / "o")
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "pytorch_lora_weights.safetensors").unlink()
    with pytest.raises(InputError, match="--resume"):
        generate(GenerationRequest(label="zoom", count=1, model=str(bad)), tmp_path / "o")

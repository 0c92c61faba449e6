"""ControlNet sampling of SD LoRA runs (the paper's method): canny edges of real flows of the
class steer the images; the flows go through repair, pcap writing and the manifest's
provenance like every generated dataset (tiny offline pipelines, sd_tiny.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.errors import InputError

from sd_tiny import sd_data, sd_run, tiny_controlnet, tiny_sd  # noqa: F401  (fixtures)
import tshark_judge


def test_controlnet_generate_repaired_tshark_clean(sd_run, sd_data, tiny_controlnet, tmp_path):
    from engine.datasets.generate import generate
    from engine.datasets.request import GenerationRequest
    from engine.progress import TaskProgress
    events = []
    out = tmp_path / "zoom"
    s = generate(GenerationRequest(label="zoom", count=3, model=str(sd_run), steps=2, like=str(sd_data),
                                   controlnet=str(tiny_controlnet), controlnet_scale=0.5), out,
                 on_event=events.append)
    assert s["mode"] == "controlnet" and s["compliance_clean"]
    assert s["guides"]["controlnet"] == str(tiny_controlnet) and s["guides"]["controlnet_scale"] == 0.5
    gen = json.loads((out / "generate.json").read_text())
    assert gen["request"]["controlnet"] == str(tiny_controlnet)
    rows = (out / "manifest.csv").read_text().splitlines()[1:]
    assert len(rows) == 3 and all(r.split(",")[-1] for r in rows)     # provenance: the guide flow
    # progress inside each image, from the pipeline's step callback (fractions of a flow)
    assert any(isinstance(e, TaskProgress) and e.task == "generate" and e.done % 1 for e in events)
    pcaps = sorted(out.rglob("*.pcap"))
    assert len(pcaps) == 3
    if not tshark_judge.available():
        pytest.skip("tshark not installed")
    for p in pcaps:
        v = tshark_judge.judge(p)
        assert v.ok, (p, v.summary())


def test_controlnet_control_image_steers_samples(sd_run, sd_data, tiny_controlnet):
    from engine.datasets.encoded import load_flow, read_manifest
    from engine.model.sd.sample import SDSampler
    s = SDSampler(sd_run, controlnet=str(tiny_controlnet))
    assert s.kind == "controlnet"
    rows = [r for r in read_manifest(sd_data) if r["label"] == "zoom"]
    a, _ = load_flow(sd_data / rows[0]["file"])
    b, _ = load_flow(sd_data / rows[1]["file"])
    b = b[:, ::-1].copy()        # a different edge map
    def draw(guide, scale):
        return s.images("zoom", [11], 2, 1.0, guides=[guide], controlnet_scale=scale)
    base = draw(a, 0.0)
    assert np.array_equal(base, draw(b, 0.0))          # scale 0: the control image does nothing
    assert not np.array_equal(draw(a, 1.0), base)      # scale 1: it steers
    assert not np.array_equal(draw(a, 1.0), draw(b, 1.0))


def test_controlnet_request_errors(sd_run, tmp_path):
    from engine.datasets.generate import generate
    from engine.datasets.request import GenerationRequest, validate
    req = GenerationRequest(label="zoom", count=1, model=str(sd_run), controlnet=str(tmp_path))
    with pytest.raises(Exception, match="needs"):
        validate(req)
    with pytest.raises(InputError, match="controlnet needs like|needs"):
        generate(req, tmp_path / "o")
    # a directory that is no ControlNet is one line naming it
    (tmp_path / "guides").mkdir()
    with pytest.raises(InputError, match="config.json"):
        generate(GenerationRequest(label="zoom", count=1, model=str(sd_run), like=str(tmp_path / "guides"),
                                   controlnet=str(tmp_path / "guides")), tmp_path / "o2")


def test_controlnet_cli(sd_run, sd_data, tiny_controlnet, tmp_path):
    from click.testing import CliRunner
    from netdiff_tui.cli import main
    out = tmp_path / "dns"
    r = CliRunner().invoke(main, ["generate", "--model", str(sd_run), "--label", "dns", "-n", "2", "-o", str(out),
                                  "--steps", "2", "--like", str(sd_data), "--controlnet", str(tiny_controlnet),
                                  "--controlnet-scale", "0.8", "-q"])
    assert r.exit_code == 0, r.output
    g = json.loads((out / "generate.json").read_text())
    assert g["summary"]["mode"] == "controlnet" and g["request"]["controlnet_scale"] == 0.8
    r = CliRunner().invoke(main, ["generate", "--model", str(sd_run), "--label", "dns", "-n", "1",
                                  "-o", str(tmp_path / "x"), "--controlnet", str(tiny_controlnet)])
    assert r.exit_code == 2 and "like" in r.output and "Traceback" not in r.output

"""bench/bench_sd.py --tiny: the GPU benchmark's code path (random-initialised pipeline from
configs, LoRA steps, sampling with and without the ControlNet) runs on CPU and reports figures;
its tiny pipeline has SD 1.5's block structure (images in multiples of 64), and its full-size
configs are checked against SD 1.5's parameter count."""

from __future__ import annotations

import importlib.util
import json

import numpy as np

from conftest import ROOT


def test_sd_bench_tiny_runs_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_sd", ROOT / "bench" / "bench_sd.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "sd.json"
    # two precisions in one process, as the GPU run does (fp16, bf16)
    from accelerate.state import AcceleratorState
    try:
        res = bench.main(["--tiny", "--dtypes", "no,bf16", "--batches", "1", "--sample-images", "1",
                          "--sample-batch", "1", "--work", str(tmp_path / "w"), "--json", str(out)])
    finally:
        # the bench leaves accelerate's process-wide state at bf16; later tests in this process
        # build Accelerator(mixed_precision="no") and accelerate refuses a change of precision
        AcceleratorState._reset_state(True)
    assert json.loads(out.read_text()) == res
    assert res["rows"] == 64 and (tmp_path / "w" / "run-no-1" / "config.json").exists()
    geo = json.loads((tmp_path / "w" / "run-no-1" / "config.json").read_text())["geometry"]
    assert (geo["multiple"], geo["height"], geo["width"]) == (64, 64, 1152)
    assert [(r["dtype"], r["batch"]) for r in res["train"]] == [("no", 1), ("bf16", 1)]
    assert all(r["steps_per_s"] > 0 and np.isfinite(r["loss"]) for r in res["train"])
    assert [(r["dtype"], r["controlnet"]) for r in res["sample"]] == [("no", False), ("no", True),
                                                                      ("bf16", False), ("bf16", True)]
    assert all(r["images_per_s"] > 0 and r["images"] >= 1 for r in res["sample"])
    # the full-size configs are SD 1.5's: 860 M UNet parameters (counted from the config, no weights)
    from diffusers import UNet2DConditionModel
    with __import__("torch").device("meta"):
        unet = UNet2DConditionModel(**bench.SD15["unet"])
    assert 855e6 < sum(p.numel() for p in unet.parameters()) < 865e6

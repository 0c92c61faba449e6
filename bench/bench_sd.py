"""Stable Diffusion model type on a GPU: LoRA training speed and memory, sampling speed.

    python bench/bench_sd.py [--json OUT] [--dtypes fp16,bf16] [--batches 1,4,8]
    python bench/bench_sd.py --tiny          # CPU, tiny components: checks the script (tests run it)

No download: the pipeline is random-initialised from SD 1.5's published component configs
(written below: UNet 860 M, VAE 84 M, CLIP ViT-L/14 text encoder 123 M parameters), with a
ControlNet made from the UNet (ControlNetModel.from_unet, its zero convolutions made random
so it costs what a trained one costs). Speed and memory do not depend on the weights' values.

Measured, per compute dtype:

* LoRA training (rank 128 on to_q/k/v/out.0, AdamW; 8-bit when bitsandbytes is installed) on
  1024 x 1152 images (1024 packets x 1105 columns padded to a multiple of 64): steps/s and
  peak GPU memory at each batch size, timed after warm-up steps.
* Sampling at the full 1024-row size, 20 steps, guidance 7.5: images/s text-to-image and with
  the ControlNet (canny edges of a flow image), at the batch size the sampler picks.

Flows come from tests/fixtures (encoded here), the only data the device machine has.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# runwayml/stable-diffusion-v1-5: unet/config.json, vae/config.json, text_encoder/config.json
SD15 = {
    "unet": dict(act_fn="silu", attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
                 center_input_sample=False, cross_attention_dim=768,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2,
                 mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32, out_channels=4, sample_size=64,
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")),
    "vae": dict(act_fn="silu", block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
                sample_size=512, scaling_factor=0.18215),
    "text_encoder": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                         max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu",
                         vocab_size=49408),
    "scheduler": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                      num_train_timesteps=1000, steps_offset=1, prediction_type="epsilon"),
}
# SD 1.5's block structure (4 UNet levels: images in multiples of 64) with tiny widths
TINY = {
    "unet": dict(block_out_channels=(8, 16, 16, 16), layers_per_block=1, cross_attention_dim=24, norm_num_groups=8,
                 sample_size=8, attention_head_dim=4, down_block_types=SD15["unet"]["down_block_types"],
                 up_block_types=SD15["unet"]["up_block_types"]),
    "vae": dict(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=4,
                layers_per_block=1, sample_size=32),
    "text_encoder": dict(hidden_size=24, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=77, projection_dim=24),
    "scheduler": SD15["scheduler"],
}


def make_data(d: Path) -> Path:
    from engine.datasets.encode import encode_files
    for label, name in (("zoom", "eth.pcap"), ("dns", "sll.pcap")):
        (d / "in" / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "tests" / "fixtures" / name, d / "in" / label / name)
    encode_files(sorted((d / "in").rglob("*.pcap")), d / "ds", label_from_dir=True)
    return d / "ds"


def make_pipeline(d: Path, tiny: bool) -> tuple[Path, Path]:
    from diffusers import ControlNetModel
    from engine.model.sd.build import build_pipeline
    dt = torch.float32 if tiny else torch.float16
    build_pipeline(d / "base", TINY if tiny else SD15, "sd", controlnet=d / "cn0", dtype=dt)
    cn = ControlNetModel.from_pretrained(d / "cn0")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in [*cn.controlnet_down_blocks, cn.controlnet_mid_block, cn.controlnet_cond_embedding.conv_out]:
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.02)
    cn.to(dt).save_pretrained(d / "controlnet", safe_serialization=True)
    return d / "base", d / "controlnet"


def bench_train(data: Path, base: Path, run: Path, dtype: str, batch: int, rows: int, steps: int,
                warmup: int) -> dict:
    from engine.model.sd.train import SDTrainConfig, train_lora
    from engine.progress import TrainStep
    cfg = SDTrainConfig(steps=warmup + steps, batch_size=batch, rank=128 if rows > 64 else 4, rows=rows,
                        mixed_precision=dtype, checkpoint_every=10**6, validation_every=0, log_every=1,
                        test_fraction=0.0)
    marks = []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train_lora(data, run, str(base), cfg, on_event=lambda ev: isinstance(ev, TrainStep) and
               marks.append((ev.step, time.perf_counter(), ev.loss)))
    (s0, t0, _), (s1, t1, loss) = marks[warmup - 1], marks[-1]
    out = {"dtype": dtype, "batch": batch, "steps_per_s": round((s1 - s0) / (t1 - t0), 3),
           "images_per_s": round(batch * (s1 - s0) / (t1 - t0), 3), "loss": round(loss, 4)}
    if torch.cuda.is_available():
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def bench_sample(run: Path, controlnet: Path | None, data: Path, dtype: str, steps: int, n: int,
                 guidance: float, batch: int | None = None) -> dict:
    from engine.datasets.encoded import load_flow, read_manifest
    from engine.model.sd.sample import SDSampler, auto_batch
    tdt = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(dtype, torch.float32)
    s = SDSampler(run, controlnet=str(controlnet) if controlnet else None, dtype=tdt)
    bs = batch or auto_batch(s.device, s.geom)
    flows = [load_flow(data / r["file"])[0] for r in read_manifest(data)]
    guides = [flows[i % len(flows)] for i in range(bs)] if controlnet else None
    s.images("zoom", list(range(bs)), 2, guidance, guides=guides)        # warm-up (kernels, allocator)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0, done = time.perf_counter(), 0
    while done < n:
        s.images("zoom", list(range(done, done + bs)), steps, guidance, guides=guides)
        done += bs
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    el = time.perf_counter() - t0
    out = {"dtype": dtype, "controlnet": bool(controlnet), "batch": bs, "images": done, "steps": steps,
           "images_per_s": round(done / el, 3), "s_per_image": round(el / done, 3)}
    if torch.cuda.is_available():
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del s
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny components on CPU (checks the script)")
    ap.add_argument("--dtypes", default=None, help="compute dtypes (default fp16,bf16 on GPU; no on CPU)")
    ap.add_argument("--batches", default=None, help="training batch sizes (default 1,4,8; tiny 1,2)")
    ap.add_argument("--train-steps", type=int, default=None, help="timed training steps (default 10; tiny 2)")
    ap.add_argument("--sample-images", type=int, default=None, help="images per sampling figure (default 16)")
    ap.add_argument("--sample-batch", type=int, default=None, help="images per pipeline call (default: the "
                    "sampler's choice from free memory)")
    ap.add_argument("--work", default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--base", default=None, help="use this SD pipeline directory instead of building one")
    ap.add_argument("--controlnet", default=None, help="with --base: its ControlNet directory")
    ap.add_argument("--data", default=None, help="encoded dataset (default: tests/fixtures encoded here)")
    ap.add_argument("--json", default=None, help="write the figures here")
    a = ap.parse_args(argv)
    gpu = torch.cuda.is_available() and not a.tiny
    if not gpu and not a.tiny:
        ap.error("no CUDA device: run with --tiny (CPU check) or on a GPU machine")
    dtypes = (a.dtypes or ("fp16,bf16" if gpu else "no")).split(",")
    batches = [int(b) for b in (a.batches or ("1,4,8" if not a.tiny else "1,2")).split(",")]
    steps = a.train_steps or (10 if not a.tiny else 2)
    n_img = a.sample_images or (16 if not a.tiny else 2)
    rows, warmup, s_steps = (1024, 3, 20) if not a.tiny else (64, 1, 2)
    work = Path(a.work or tempfile.mkdtemp(prefix="bench_sd."))
    work.mkdir(parents=True, exist_ok=True)
    res = {"device": torch.cuda.get_device_name(0) if gpu else "cpu", "tiny": a.tiny, "rows": rows,
           "torch": torch.__version__, "train": [], "sample": []}
    try:
        import diffusers
        res["diffusers"] = diffusers.__version__
        t = time.perf_counter()
        data = Path(a.data) if a.data else make_data(work)
        if a.base:
            if not a.controlnet:
                ap.error("--base needs --controlnet")
            base, cn = Path(a.base), Path(a.controlnet)
        else:
            base, cn = make_pipeline(work, a.tiny)
        res["build_s"] = round(time.perf_counter() - t, 1)
        print(f"pipeline built in {res['build_s']} s ({res['device']})", flush=True)
        for dt in dtypes:
            # accelerate keeps one process-wide state and refuses another precision in the same process
            from accelerate.state import AcceleratorState
            AcceleratorState._reset_state(True)
            run = None
            for b in batches:
                run = work / f"run-{dt}-{b}"
                r = bench_train(data, base, run, dt, b, rows, steps, warmup)
                res["train"].append(r)
                print("train", json.dumps(r), flush=True)
            for ctrl in (None, cn):
                r = bench_sample(run, ctrl, data, dt, s_steps, n_img, 7.5, a.sample_batch)
                res["sample"].append(r)
                print("sample", json.dumps(r), flush=True)
    finally:
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return res


if __name__ == "__main__":
    main()

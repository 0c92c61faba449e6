"""Sampling a LoRA run into flows, and ``generate`` for SD runs.

``netdiff generate --model RUN`` lands here when ``RUN/config.json`` says
``model_type: "sd-lora"``. Three ways to draw an image:

- text-to-image from the class's prompt;
- ``--like CAPTURES``: img2img from the image of a real flow of the class,
  noised to ``strength`` (SDEdit; what the native model does with --like);
- ``--like CAPTURES --controlnet REF``: text-to-image steered by a ControlNet
  whose control image is the canny edge map of a real flow's image (the
  paper's method), ``controlnet_scale`` as its conditioning scale.

Images are cropped to the grid and snapped to the three colours
(:mod:`engine.model.sd.grid`), padding rows dropped, and then treated as the
native model's samples are: flows shorter than ``packets_min`` are drawn
again (seeds by flow index and attempt, so results do not depend on batch
size), one transport per flow, then the same repair and writing as every
generated dataset (:mod:`engine.datasets.generate`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from engine.errors import InputError
from engine.progress import CancelToken, Message, OnEvent, TaskFinished, TaskProgress, TaskStarted, check_stop

from engine.model.sd.grid import Geometry, flows_to_pixels, pixels_to_flows, to_uint8
from engine.model.sd.pipeline import family_of, load_pipeline, pixel_multiple, resolve_base
from engine.model.sd.train import ADAPTER, MODEL_TYPE


def sd_run_dir(ref) -> Path | None:
    """The run directory when ``ref`` names a local SD LoRA run, else None (a native checkpoint)."""
    if ref is None or str(ref) in ("", "default"):
        return None
    d = Path(str(ref)).expanduser()
    try:
        cfg = json.loads((d / "config.json").read_text()) if (d / "config.json").is_file() else {}
    except (OSError, ValueError):
        return None
    return d if isinstance(cfg, dict) and cfg.get("model_type") == MODEL_TYPE else None


def load_run(d: Path) -> dict:
    """A run's config.json, every field sampling reads checked."""
    p = d / "config.json"
    try:
        cfg = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InputError(p, f"unreadable: {e}") from None
    try:
        classes, prompts = cfg["classes"], cfg["prompts"]
        assert isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes), "classes"
        assert isinstance(prompts, dict) and all(isinstance(prompts.get(c), str) for c in classes), "prompts"
        assert cfg.get("family") in ("sd", "sd3"), "family"
        assert isinstance(cfg["base"]["ref"], str), "base.ref"
        geom = Geometry.from_dict(cfg["geometry"])
        assert 1 <= geom.rows <= 65536 and 1 <= geom.multiple <= 1024, "geometry"
        s = cfg.get("sampling", {})
        assert isinstance(s.get("steps", 20), int) and 1 <= s.get("steps", 20) <= 10000, "sampling.steps"
        assert isinstance(s.get("guidance", 7.5), (int, float)), "sampling.guidance"
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        raise InputError(p, f"not a valid {MODEL_TYPE} run config (bad or missing {e})") from None
    if not (d / ADAPTER).is_file():
        raise InputError(d, f"run has no {ADAPTER} yet (training unfinished: --resume it)")
    return {**cfg, "_geometry": geom}


def adapter_hash(d: Path) -> str:
    with open(d / ADAPTER, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def auto_batch(device: torch.device, geom: Geometry) -> int:
    """Images per pipeline call: on CUDA from free memory (about 6 GiB per 1024 x 1152
    fp16 image with classifier-free guidance, scaled by pixels), on CPU 4."""
    if device.type != "cuda":
        return 4
    free, _ = torch.cuda.mem_get_info(device)
    per = 6 * 2**30 * (geom.height * geom.width) / (1024 * 1152)
    return int(max(1, min(32, (free * 0.7) // per)))


class SDSampler:
    """A loaded LoRA run, ready to draw flows."""

    def __init__(self, run_dir: Path, device=None, controlnet=None, img2img: bool = False,
                 dtype: torch.dtype | None = None):
        self.dir = Path(run_dir)
        self.cfg = load_run(self.dir)
        self.geom: Geometry = self.cfg["_geometry"]
        self.family = self.cfg["family"]
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.float16 if self.device.type == "cuda" else torch.float32)
        if self.device.type == "cpu":
            from engine.model.diffusion import cpu_threads
            torch.set_num_threads(cpu_threads())
        base_dir, commit = resolve_base(self.cfg["base"]["ref"])
        want = self.cfg["base"].get("commit")
        if want and commit and want != commit:
            raise InputError(base_dir, f"base is at commit {commit}; the run was trained on {want}")
        if family_of(base_dir) != self.family:
            raise InputError(base_dir, f"base is not a {self.family} pipeline, as the run was trained on")
        kind = "controlnet" if controlnet else ("img2img" if img2img else "text2img")
        self.kind = kind
        self.pipe = load_pipeline(base_dir, self.family, dtype, kind, controlnet)
        try:
            self.pipe.load_lora_weights(self.dir, weight_name=ADAPTER)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise InputError(self.dir / ADAPTER, f"cannot load the adapter: {str(e).splitlines()[0]}") from None
        # merged into the base weights: no per-step LoRA matmuls while sampling
        self.pipe.fuse_lora()
        self.pipe.to(self.device)
        if self.geom.height % pixel_multiple(self.pipe) or self.geom.width % pixel_multiple(self.pipe):
            raise InputError(base_dir, f"base needs image sides in multiples of {pixel_multiple(self.pipe)}; the "
                                       f"run's images are {self.geom.height} x {self.geom.width}")

    def images(self, label: str, seeds: list[int], steps: int, guidance: float, prompt: str = "",
               guides: list[np.ndarray] | None = None, strength: float = 0.5, controlnet_scale: float = 0.5,
               callback=None) -> np.ndarray:
        """``(B, H, W, 3)`` float images in [0, 1], one per seed (and guide flow, when given)."""
        text = prompt or self.cfg["prompts"][label]
        b = len(seeds)
        kw = dict(prompt=[text] * b, height=self.geom.height, width=self.geom.width, num_inference_steps=steps,
                  guidance_scale=guidance, generator=[torch.Generator().manual_seed(s) for s in seeds],
                  output_type="np", callback_on_step_end=callback)
        if self.family == "sd3":
            kw["max_sequence_length"] = 77
        if self.kind != "text2img":
            if guides is None or len(guides) != b:
                raise ValueError("img2img and ControlNet sampling need one guide flow per image")
            g = [m[:self.geom.rows] for m in guides]
            buf = np.full((b, self.geom.rows, self.geom.columns), -1, np.int8)
            for j, m in enumerate(g):
                buf[j, :len(m)] = m
            px = (flows_to_pixels(buf, self.geom) + 1.0) / 2.0      # [0, 1]
            if self.kind == "img2img":
                kw.update(image=px, strength=strength)
                if "height" not in inspect.signature(self.pipe.__call__).parameters:
                    kw.pop("height")      # SD 1.5's img2img takes the image's size
                    kw.pop("width")
            else:
                from PIL import Image

                from engine.model.sd.canny import canny
                full = to_uint8(px.permute(0, 2, 3, 1).numpy())
                ctrl = [Image.fromarray(np.repeat(canny(im)[..., None], 3, axis=2), "RGB") for im in full]
                kw["image" if self.family == "sd" else "control_image"] = ctrl
                kw["controlnet_conditioning_scale"] = controlnet_scale
        with torch.no_grad():
            return self.pipe(**kw).images


def sample_sd_flows(sampler: SDSampler, label: str, indices: list[int], seed: int, steps: int, guidance: float,
                    packets_min: int, packets_max: int, transport: str = "any", batch_size: int | None = None,
                    max_attempts: int = 4, prompt: str = "", guides: list[np.ndarray] | None = None,
                    strength: float = 0.5, controlnet_scale: float = 0.5, on_event: OnEvent | None = None,
                    cancel: CancelToken | None = None, stats=None) -> dict[int, np.ndarray]:
    """The flows ``indices`` of a request as ``{index: (packets, width) int8}``; as
    :func:`engine.model.sample.sample_flows` does for the native model."""
    from engine.model.diffusion import cut_at_padding
    from engine.model.guide import assign_guides
    from engine.model.sample import (PROTO_NUM, SampleStats, _better, flow_proto, force_transport,
                                     majority_proto)
    from engine.model.streams import flow_seed

    if label not in sampler.cfg["classes"]:
        raise InputError(None, f"label {label!r} is not one of the run's classes: {', '.join(sampler.cfg['classes'])}")
    want = PROTO_NUM.get(transport)
    stats = stats if stats is not None else SampleStats()
    emit = on_event or (lambda ev: None)
    bs = batch_size or auto_batch(sampler.device, sampler.geom)
    total = len(indices)
    emit(TaskStarted("sample", total, "flows"))
    done: dict[int, np.ndarray] = {}
    best: dict[int, np.ndarray] = {}
    pending = [(i, 0) for i in indices]
    assigned = assign_guides(len(guides), seed, max(indices) + 1) if (guides and indices) else None
    while pending:
        check_stop()
        if cancel is not None:
            cancel.check()
        chunk, pending = pending[:bs], pending[bs:]
        n_done = len(done)

        def on_step(pipe, k, t, kwargs, n=len(chunk), n_done=n_done):
            if cancel is not None:
                cancel.check()
            emit(TaskProgress("sample", n_done + n * (k + 1) / max(1, pipe.num_timesteps), total, "flows",
                              f"denoising step {k + 1}/{pipe.num_timesteps}"))
            return kwargs
        g = [guides[assigned[i]] for i, _ in chunk] if guides else None
        imgs = sampler.images(label, [flow_seed(seed, i, a) for i, a in chunk], steps, guidance, prompt, g,
                              strength, controlnet_scale, on_step)
        stats.drawn += len(chunk)
        retry = []
        for (i, a), m in zip(chunk, pixels_to_flows(imgs, sampler.geom)):
            m = cut_at_padding(m)[:packets_max]
            short = len(m) < packets_min
            wrong = want is not None and flow_proto(m) != want
            if not (short or wrong):
                done[i] = force_transport(m, want if want is not None else majority_proto(m))
                continue
            if i not in best or _better(m, best[i], packets_min, want):
                best[i] = m
            if a + 1 < max_attempts:
                retry.append((i, a + 1))
                stats.redrawn_short += int(short)
                stats.redrawn_transport += int(wrong and not short)
            else:
                done[i] = force_transport(best[i], want if want is not None else majority_proto(best[i]))
                stats.gave_up += 1
        pending = retry + pending
        emit(TaskProgress("sample", len(done), total, "flows"))
    return done


def generate_sd(req, out: Path, plan, emit: OnEvent, cancel: CancelToken | None, batch_size: int | None,
                t0: float, window: int) -> dict:
    """The body of :func:`engine.datasets.generate.generate` for an SD LoRA run: the same
    windows, partial directory, ``--resume``, repair and writing; only the sampler differs."""
    from engine.datasets.generate import class_guides, write_window
    from engine.datasets.partial import fingerprint, window_progress
    from engine.model.guide import guide_order
    from engine.model.sample import SampleStats
    from engine.model.sd import require_libraries

    require_libraries()
    run_dir = sd_run_dir(req.model)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError(None, "SD runs sample in one process (one GPU); run generate without accelerate launch")
    ctrl = req.controlnet
    if ctrl and not req.like:
        raise InputError(None, "controlnet needs like (the real flows whose edges steer the images)")
    sampler = SDSampler(run_dir, controlnet=ctrl, img2img=bool(req.like and not ctrl))
    cfg, geom = sampler.cfg, sampler.geom
    if req.label not in cfg["classes"]:
        raise InputError(None, f"label {req.label!r} is not one of the run's classes: {', '.join(cfg['classes'])}")
    pmax = min(req.packets_max, geom.rows)
    if req.packets_max > geom.rows:
        emit(Message("warning", f"packets_max {req.packets_max} > the run's {geom.rows} packets per image; "
                                f"flows have at most {geom.rows}"))
    pmin = min(req.packets_min, pmax)
    steps = req.steps or cfg.get("sampling", {}).get("steps", 20)
    guidance = req.guidance if req.guidance is not None else cfg.get("sampling", {}).get("guidance", 7.5)
    guides, guide_ids = class_guides(req, pmin, emit)
    if guides:
        how = f"ControlNet {ctrl}, scale {req.controlnet_scale:g}" if ctrl else f"img2img, strength {req.strength:g}"
        emit(Message("info", f"{len(guides)} real {req.label} flows to start from ({req.like}); {how}"))
    mhash = adapter_hash(run_dir)
    info = {"model_dir": str(run_dir), "model_hash": mhash, "model_type": MODEL_TYPE, "family": sampler.family,
            "base": cfg["base"], "mode": sampler.kind, "steps": steps, "guidance": guidance,
            "guides": None if not guides else {"from": str(req.like), "flows": len(guides), "strength": req.strength,
                                                "split": req.like_split, "controlnet": ctrl,
                                                "controlnet_scale": req.controlnet_scale},
            "processes": 1}
    start = plan.begin(fingerprint(req, mhash, steps, guidance, guides, window), emit)
    order = guide_order(len(guides), req.seed) if guides else None
    count = req.count
    emit(TaskStarted("generate", count, "flows"))
    t_s = time.time()
    bs = batch_size       # None: SD sizes its own
    for a in range(start, count, window):
        check_stop()
        if cancel is not None:
            cancel.check()
        b = min(a + window, count)
        stats = SampleStats()
        flows = sample_sd_flows(sampler, req.label, list(range(a, b)), req.seed, steps, guidance, pmin, pmax,
                                req.transport, bs, prompt=req.prompt, guides=guides, strength=req.strength,
                                controlnet_scale=req.controlnet_scale,
                                on_event=window_progress(emit, a, count, 1), cancel=cancel, stats=stats)
        write_window(req, plan, [flows[i] for i in range(a, b)], a, emit, mhash, stats, False, order, guide_ids)
        del flows
    info["sample_seconds"] = round(time.time() - t_s, 3)
    summary = plan.finish(req, info)
    summary["seconds"] = round(time.time() - t0, 3)
    emit(TaskFinished("generate", summary))
    return summary

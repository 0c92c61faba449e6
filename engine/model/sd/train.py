"""LoRA fine-tuning of a Stable Diffusion pipeline on flow images:
``netdiff train --model-type sd --base REF --data DIR --out RUN``.

Follows diffusers' ``train_text_to_image_lora.py``: the base pipeline is
frozen; a LoRA adapter (peft) on the denoiser's attention projections
(to_q/to_k/to_v/to_out.0) is trained on the noise-prediction loss (SD 1.5:
epsilon or v-prediction as the scheduler says; SD3: flow matching); one
caption per class ("pixelated network data, type-<class>"); mixed precision,
gradient checkpointing and 8-bit AdamW (bitsandbytes, on CUDA) as options;
accelerate for devices and processes.

Every random draw is a function of ``(seed, step, rank)`` (which flows form a
batch, VAE latent samples, noise, timesteps), and a checkpoint holds the
adapter and the optimizer state, so ``--resume`` continues exactly as an
uninterrupted run would. Checkpoints are safetensors + JSON only (accelerate's
``save_state`` would pickle the optimizer and RNG states).

Run directory::

    RUN/config.json                       model_type "sd-lora": base (ref, path, commit), family,
                                          classes, prompts, geometry, lora, training settings
    RUN/split.json                        train/test flows (test flows are never trained on)
    RUN/events.jsonl                      typed progress events (engine.progress)
    RUN/checkpoints/step-NNNNNNN/         lora.safetensors, optimizer.safetensors + .json, state.json
    RUN/validation/step-NNNNNNN/<class>.png   validation images (cropped to the grid)
    RUN/pytorch_lora_weights.safetensors  the adapter (diffusers' load_lora_weights reads it)
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from engine.outdir import atomic_write_bytes
from engine.codec.layout import LAYOUT_VERSION
from engine.errors import Cancelled, InputError
from engine.progress import CancelToken, EventLog, Message, OnEvent, TaskFinished, TrainStep, fanout

from engine.model.sd.grid import Geometry, flows_to_pixels, to_uint8
from engine.model.sd.pipeline import (LORA_TARGETS, PROMPT_TEMPLATE, class_prompts, denoiser, encode_prompts,
                                      family_of, load_pipeline, pixel_multiple, resolve_base)
from engine.model.checkpoint import list_checkpoints, load_optimizer, peak_rss_mb, read_checkpoint, write_checkpoint

MODEL_TYPE = "sd-lora"
MAX_ROWS = 4096      # 4x the paper's 1024: a 4096 x 1152 image is already ~4x SD's native pixel count
ADAPTER = "pytorch_lora_weights.safetensors"


@dataclass
class SDTrainConfig:
    """A LoRA run's settings (``--config FILE.json`` overrides any field; CLI options win)."""

    steps: int = 2000
    batch_size: int = 1               # per process
    rank: int = 128                   # the paper's SD 1.5 rank
    alpha: float | None = None        # LoRA alpha; None = rank (scale 1)
    lr: float = 1e-4
    rows: int = 1024                  # packets per image (the paper's 1024)
    prompt_template: str = PROMPT_TEMPLATE
    prompts: dict = field(default_factory=dict)   # per-class caption overrides
    classes: list | None = None
    mixed_precision: str = "no"       # "fp16" / "bf16" on GPU
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = True        # when bitsandbytes imports and the device is CUDA
    adam_weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    class_balance: float = 0.5        # class sampling mass ~ n_flows ** balance
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    validation_every: int = 500       # 0 = never
    validation_steps: int = 20
    log_every: int = 10
    seed: int = 1234
    test_fraction: float = 0.1
    split_seed: int = 1234
    sample_steps: int = 20
    sample_guidance: float = 7.5

    @classmethod
    def from_dict(cls, d: dict) -> "SDTrainConfig":
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names - {"_comment"})
        if bad:
            raise InputError(None, f"unknown SD training config keys: {', '.join(bad)}")
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        cfg.check()
        return cfg

    @classmethod
    def load(cls, path) -> "SDTrainConfig":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise InputError(path, f"cannot read training config: {e}") from None
        if not isinstance(d, dict):
            raise InputError(path, "training config must be a JSON object")
        return cls.from_dict(d)

    def check(self) -> None:
        for name, lo in (("steps", 1), ("batch_size", 1), ("rank", 1), ("rows", 1), ("checkpoint_every", 1),
                         ("keep_checkpoints", 1), ("validation_every", 0), ("validation_steps", 1),
                         ("log_every", 1), ("sample_steps", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise InputError(None, f"{name} must be an integer >= {lo}, got {v!r}")
        if self.rows > MAX_ROWS:
            raise InputError(None, f"rows {self.rows}: at most {MAX_ROWS} packets per image")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise InputError(None, f"lr must be in (0, 1), got {self.lr!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise InputError(None, f"mixed_precision {self.mixed_precision!r}: choose no, fp16 or bf16")
        if not 0.0 <= self.test_fraction < 1.0:
            raise InputError(None, f"test_fraction must be in [0, 1), got {self.test_fraction!r}")


def _adam(params, cfg: SDTrainConfig, device, emit):
    if cfg.use_8bit_adam and torch.device(device).type == "cuda":
        try:
            import bitsandbytes as bnb
            return bnb.optim.AdamW8bit(params, lr=cfg.lr, weight_decay=cfg.adam_weight_decay)
        except ImportError:
            emit(Message("info", "bitsandbytes is not installed: plain AdamW"))
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.adam_weight_decay)


def lora_state(net) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict
    return {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(net).items()}


def save_adapter(run: Path, pipe, family: str) -> Path:
    """``pytorch_lora_weights.safetensors`` as diffusers writes it, renamed into place."""
    from diffusers.utils import convert_state_dict_to_diffusers
    net = denoiser(pipe)
    layers = lora_state(net)
    tmp = run / ".adapter.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if family == "sd":
        type(pipe).save_lora_weights(tmp, unet_lora_layers=convert_state_dict_to_diffusers(layers),
                                     safe_serialization=True)
    else:
        type(pipe).save_lora_weights(tmp, transformer_lora_layers=layers, safe_serialization=True)
    os.replace(tmp / ADAPTER, run / ADAPTER)
    shutil.rmtree(tmp, ignore_errors=True)
    return run / ADAPTER


def _save_checkpoint(run: Path, step: int, net, opt, keep: int) -> None:
    # no RNG state: every step draws from its own seeded generators (step_seed)
    write_checkpoint(run, step, {"lora": lora_state(net)}, opt, keep, rng=False)


def _load_checkpoint(ck: Path, net, opt) -> int:
    from peft.utils import set_peft_model_state_dict
    step, (sd,) = read_checkpoint(ck, "lora")
    own = {k for k in lora_state(net)}
    if set(sd) != own:
        raise InputError(ck / "lora.safetensors", "adapter does not match this run's LoRA layers "
                                                  f"({len(set(sd) ^ own)} differing tensors)")
    dtype = next(p for p in net.parameters() if p.requires_grad).dtype
    set_peft_model_state_dict(net, {k: v.to(dtype) for k, v in sd.items()})
    load_optimizer(opt, ck)
    return step


def _prepare(data: Path, run: Path, base, cfg: SDTrainConfig, resume: bool, steps: int | None, overrides: dict):
    """The run's config (the stored one on resume) and split, written once."""
    from engine.datasets.encoded import read_manifest
    from engine.model.data import load_split, make_split
    cfg_path, split_path = run / "config.json", run / "split.json"
    if not (data / "manifest.csv").exists():
        raise InputError(data, "not a dataset directory (no manifest.csv); make one with netdiff encode")
    stored = None
    if resume and cfg_path.exists():
        try:
            stored = json.loads(cfg_path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(cfg_path, f"unreadable: {e}") from None
        if stored.get("model_type") != MODEL_TYPE:
            raise InputError(cfg_path, f"model_type {stored.get('model_type')!r} is not {MODEL_TYPE!r}")
        cfg = SDTrainConfig.from_dict(stored["train"])
        base = base or stored["base"]["ref"]
    elif not resume and (list_checkpoints(run) or (run / ADAPTER).exists()):
        raise InputError(run, "run directory has a LoRA run already (use --resume, or another --out)")
    if base is None:
        raise InputError(None, "--base: name the Stable Diffusion pipeline to fine-tune")
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    if steps is not None:
        cfg.steps = int(steps)
    cfg.check()
    rows = read_manifest(data)
    split = load_split(split_path) if split_path.exists() else make_split(rows, cfg.test_fraction, cfg.split_seed)
    classes = cfg.classes or sorted({r["label"] for r in rows})
    return cfg, stored, str(base), split, classes


def train_lora(data_dir, run_dir, base: str | None = None, cfg: SDTrainConfig | None = None, resume: bool = False,
               steps: int | None = None, overrides: dict | None = None, on_event: OnEvent | None = None,
               cancel: CancelToken | None = None, time_limit: float | None = None) -> dict:
    """Train (or resume) a LoRA run; returns a summary. Raises Cancelled after saving on a stop request;
    past ``time_limit`` seconds saves and writes the adapter as it is (as engine.model.train.train)."""
    from engine.model.sd import require_libraries
    from engine.model.stopping import StopPoll
    StopPoll.check(time_limit)
    require_libraries()
    from accelerate import Accelerator
    from peft import LoraConfig

    from engine.model.data import load_table
    from engine.model.train_config import step_seed

    started = StopPoll.clock()
    data, run = Path(data_dir), Path(run_dir)
    cfg, stored, base, split, classes = _prepare(data, run, base, cfg or SDTrainConfig(), resume, steps,
                                                 overrides or {})
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise InputError(None, "mixed_precision fp16 needs a CUDA device (bf16 or no work on CPU)")
    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    is_main, rank, world = acc.is_main_process, acc.process_index, acc.num_processes
    if acc.device.type == "cpu":
        from engine.model.diffusion import cpu_threads
        torch.set_num_threads(cpu_threads())    # same bits however busy the cores are; see cpu_threads
    if is_main:
        run.mkdir(parents=True, exist_ok=True)
    acc.wait_for_everyone()
    emit = fanout(on_event, EventLog(run / "events.jsonl")) if is_main else (lambda ev: None)

    base_dir, commit = resolve_base(base)
    family = family_of(base_dir)
    if stored is not None and stored["base"].get("commit") and commit and stored["base"]["commit"] != commit:
        raise InputError(base_dir, f"base is at commit {commit}, the run was started on {stored['base']['commit']}")
    wdtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision, torch.float32)
    pipe = load_pipeline(base_dir, family, torch.float32)
    dev = acc.device
    geom = Geometry(cfg.rows, pixel_multiple(pipe))
    prompts = class_prompts(classes, cfg.prompt_template, cfg.prompts)
    info = {"model_type": MODEL_TYPE, "family": family, "layout": LAYOUT_VERSION,
            "base": {"ref": base, "path": str(base_dir), "commit": commit},
            "classes": classes, "prompts": prompts, "geometry": geom.to_dict(),
            "lora": {"rank": cfg.rank, "alpha": cfg.alpha or cfg.rank, "targets": list(LORA_TARGETS),
                     "weights": ADAPTER},
            "sampling": {"steps": cfg.sample_steps, "guidance": cfg.sample_guidance},
            "train": asdict(cfg), "train_flows": None, "test_flows": len(split["test"])}
    if is_main and not (run / "split.json").exists():
        atomic_write_bytes(run / "split.json", [json.dumps(split, indent=1).encode()])

    table = load_table(data, cfg.rows, files=split["train"], classes=classes)
    info["train_flows"] = len(table)
    weights = table.sample_weights(cfg.class_balance)
    if is_main:
        atomic_write_bytes(run / "config.json", [json.dumps(info, indent=2).encode()])

    # frozen parts in the compute dtype; the VAE stays fp32 (SD 1.5's VAE overflows in fp16)
    pipe.vae.to(dev)
    for m in (pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None),
              getattr(pipe, "text_encoder_3", None), denoiser(pipe)):
        if m is not None:
            m.requires_grad_(False)
    net = denoiser(pipe)
    net.to(dev, dtype=wdtype)
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        if getattr(pipe, name, None) is not None:
            getattr(pipe, name).to(dev, dtype=wdtype)
    # encoded once (the encoders are frozen); they stay on the device because the pipeline
    # picks its execution device from its first module
    cond = encode_prompts(pipe, family, [prompts[c] for c in classes], dev)

    torch.manual_seed(cfg.seed)
    net.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha or cfg.rank, init_lora_weights="gaussian",
                               target_modules=list(LORA_TARGETS)))
    for p in net.parameters():      # trainable LoRA parameters in fp32, as diffusers' cast_training_params
        if p.requires_grad:
            p.data = p.data.float()
    if cfg.gradient_checkpointing:
        net.enable_gradient_checkpointing()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = _adam(params, cfg, dev, emit)
    start = 0
    cks = list_checkpoints(run)
    if resume and cks:
        start = _load_checkpoint(cks[-1], net, opt)
        emit(Message("info", f"resumed from {cks[-1].name}"))
    net_p, opt = acc.prepare(net, opt)

    # validation sampling calls set_timesteps on the pipeline's scheduler; training reads its own copy
    sched = copy.deepcopy(pipe.scheduler)
    vae = pipe.vae
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    scale = vae.config.scaling_factor
    n_train_t = sched.config.num_train_timesteps
    gbatch = cfg.batch_size * world

    def checkpoint(step):
        if is_main:
            _save_checkpoint(run, step, net, opt, cfg.keep_checkpoints)
        acc.wait_for_everyone()

    def loss_at(step: int) -> torch.Tensor:
        rng = np.random.default_rng(step_seed(cfg.seed, step, 0, "batch"))
        # the global batch is drawn alike on every rank; each takes its slice
        idx = rng.choice(len(table), size=gbatch, replace=True, p=weights)
        idx = idx[rank * cfg.batch_size:(rank + 1) * cfg.batch_size]
        x, y = table.batch(idx, cfg.rows)
        px = flows_to_pixels(x, geom).to(dev)
        g = torch.Generator().manual_seed(step_seed(cfg.seed, step, rank, "noise"))
        with torch.no_grad():
            dist = vae.encode(px).latent_dist
            eps = torch.randn(dist.mean.shape, generator=g).to(dev)
            latents = ((dist.mean + dist.std * eps) - shift) * scale
        noise = torch.randn(latents.shape, generator=g).to(dev)
        b = len(idx)
        kw = {k: v[y.to(v.device)].to(dev, wdtype) for k, v in cond.items()}
        with acc.autocast():
            if family == "sd":
                t = torch.randint(0, n_train_t, (b,), generator=g).to(dev)
                noisy = sched.add_noise(latents, noise, t)
                target = noise if sched.config.prediction_type == "epsilon" else sched.get_velocity(latents, noise, t)
                pred = net_p(noisy.to(wdtype), t, encoder_hidden_states=kw["prompt_embeds"]).sample
            else:   # flow matching (rectified flow), uniform over the training sigmas
                i = torch.randint(0, n_train_t, (b,), generator=g)
                sig = sched.sigmas[i].to(dev).view(b, 1, 1, 1)
                t = sched.timesteps[i].to(dev)
                noisy = (1.0 - sig) * latents + sig * noise
                target = noise - latents
                pred = net_p(hidden_states=noisy.to(wdtype), timestep=t, encoder_hidden_states=kw["prompt_embeds"],
                             pooled_projections=kw["pooled_prompt_embeds"]).sample
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    def validate(step: int):
        if not (is_main and cfg.validation_every and (step % cfg.validation_every == 0 or step == cfg.steps)):
            return
        from PIL import Image
        net.eval()
        d = run / "validation" / f"step-{step:07d}"
        d.mkdir(parents=True, exist_ok=True)
        for j, c in enumerate(classes):
            g = torch.Generator().manual_seed(cfg.seed + j)
            kw = {k: v[j:j + 1].to(dev, wdtype) for k, v in cond.items()}
            with torch.no_grad(), acc.autocast():
                im = pipe(**kw, height=geom.height, width=geom.width, num_inference_steps=cfg.validation_steps,
                          guidance_scale=cfg.sample_guidance, generator=g, output_type="np").images
            path = d / f"{c}.png"
            img = Image.fromarray(to_uint8(im, geom)[0], "RGB")
            img.save(path.with_suffix(".png.tmp"), format="PNG")
            os.replace(path.with_suffix(".png.tmp"), path)
        net.train()
        emit(Message("info", f"validation images for step {step} in {d}"))

    t0, s0, loss_acc, n_acc = time.time(), start, 0.0, 0
    step = start
    net.train()
    emit(Message("info", f"LoRA rank {cfg.rank} on {family} base {base}: {len(table)} flows, {len(classes)} classes, "
                         f"images {geom.height}x{geom.width} ({geom.rows}x{geom.columns} grid)"))
    limited = False
    with StopPoll(acc, cancel, time_limit, started) as poll:
        while step < cfg.steps:
            why = poll()
            if why == "stop":
                checkpoint(step)
                emit(Message("info", f"stopped at step {step}; checkpoint saved, --resume continues"))
                raise Cancelled(f"training stopped at step {step}")
            if why == "time":
                limited = True
                emit(Message("warning", f"time limit reached at step {step} of {cfg.steps}: writing the adapter "
                                        f"as it is; --resume continues to step {cfg.steps}"))
                break
            loss = loss_at(step)
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            if cfg.max_grad_norm:
                acc.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            step += 1
            loss_acc += float(loss.detach())
            n_acc += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                el = time.time() - t0
                ips = (step - s0) / el if el > 0 else 0.0
                mem = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else peak_rss_mb()
                emit(TrainStep(step, cfg.steps, loss_acc / n_acc, cfg.lr, ips,
                               (cfg.steps - step) / ips if ips > 0 else 0.0, mem))
                loss_acc, n_acc = 0.0, 0
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                checkpoint(step)
            validate(step)
    checkpoint(step)
    summary = {"steps": step, "run_dir": str(run), "seconds": round(time.time() - t0, 2), "family": family,
               "train_flows": len(table), "classes": len(classes)}
    if limited:
        summary.update(time_limited=True, steps_planned=cfg.steps)
    if is_main:
        save_adapter(run, pipe, family)
        summary["adapter"] = str(run / ADAPTER)
    acc.wait_for_everyone()
    emit(TaskFinished("train", summary))
    return summary

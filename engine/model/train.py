"""Training the native model: ``netdiff train --data DIR --out RUN_DIR``.

Built on ``accelerate``: the same code runs on one CPU, one GPU (optional
mixed precision) or several processes under ``accelerate launch`` (each rank
takes its slice of every global batch; DDP averages gradients).

Everything random is a function of ``(seed, step, rank)``: which flows form a
batch, the timesteps, the noise and the label dropout. With the model,
EMA and optimizer state saved at a checkpoint, ``--resume`` continues exactly
where an uninterrupted run would be.

Run directory::

    RUN_DIR/train_config.json     the full configuration (written once)
    RUN_DIR/split.json            train/test flows (test flows are never trained on)
    RUN_DIR/events.jsonl          typed progress events (engine.progress)
    RUN_DIR/checkpoints/step-NNNNNNN/ model.safetensors, ema.safetensors,
                                  optimizer.safetensors + optimizer.json, rng.safetensors, state.json (step)
    RUN_DIR/model/                exported EMA weights + config.json (what generate loads)

A checkpoint is safetensors and JSON only (engine.model.checkpoint), never a
pickle; the learning rate is a function of the step (:func:`lr_at`), so the step
is all the scheduler state there is. A checkpoint of an older netdiff
(``optimizer.pt``) is refused with a line saying how to go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from engine.errors import Cancelled, InputError
from engine.codec.layout import LAYOUT, LAYOUT_VERSION
from engine.progress import (CancelToken, EventLog, Message, OnEvent, TaskFinished, TaskProgress, TaskStarted,
                             TrainStep, fanout)

from engine.model.checkpoint import (list_checkpoints, load_optimizer, load_rng, peak_rss_mb, read_checkpoint,
                                     refuse_pickled_state, save_model, write_checkpoint)
from engine.model.data import load_split, load_table, make_split, manifest_hash
from engine.model.denoiser import PacketDenoiser
from engine.model.finetune import (REPLAY, load_replay, load_source_weights, merge_priors, read_source,
                                   run_classes, sample_replay, save_replay)
from engine.codec.matrix import present_rows, row_proto
from engine.model.diffusion import train_scheduler, training_target
from engine.model.lengths import impose, length_bucket
from engine.model.stopping import StopPoll
from engine.model.train_config import TrainConfig, lr_at, step_seed


class EMA:
    """Exponential moving average of the weights, with the usual warmup."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict({k: v.clone() for k, v in self.shadow.items()})


def _save_checkpoint(run_dir: Path, step: int, model, ema: EMA, opt, keep: int, classes: list[str]) -> Path:
    return write_checkpoint(run_dir, step, {"model": model.state_dict(), "ema": ema.shadow}, opt, keep,
                            classes=classes)


def _load_checkpoint(ck: Path, model, ema: EMA, opt) -> int:
    """Weights, EMA, optimizer and RNG state of a checkpoint, each checked against this run; returns its step."""
    refuse_pickled_state(ck)
    step, (weights, shadow) = read_checkpoint(ck, "model", "ema")
    own = model.state_dict()
    for name, sd in (("model", weights), ("ema", shadow)):
        if sd.keys() != own.keys() or any(sd[k].shape != own[k].shape for k in own):
            raise InputError(ck / f"{name}.safetensors", "weights do not fit this run's model (another config?)")
    model.load_state_dict(weights)
    ema.shadow = shadow
    load_optimizer(opt, ck)
    load_rng(ck)
    return step


def _init_weights(model: PacketDenoiser, ref: str, classes: list[str]) -> list[str]:
    """Copy the weights of checkpoint ``ref`` into ``model`` (built for ``classes``, which must hold every
    class of the checkpoint; its class table grows for the others); returns the classes added.
    See :mod:`engine.model.finetune`."""
    return load_source_weights(model, read_source(ref), classes)


def _prepare_run(data_dir: Path, run_dir: Path, cfg: TrainConfig, resume: bool, is_main: bool,
                 steps: int | None) -> tuple[TrainConfig, dict]:
    """Config and split for the run (written once by the main process, read back on resume)."""
    cfg_path, split_path = run_dir / "train_config.json", run_dir / "split.json"
    if resume and cfg_path.exists():
        cfg = TrainConfig.load(cfg_path)    # the run's own config wins on resume
    elif cfg.init_from:
        # the checkpoint's classes, then the data's new ones: fixed here, so a resume reads them back
        from engine.datasets.encoded import read_manifest
        cfg.classes = run_classes(read_source(cfg.init_from), cfg.classes,
                                  [r["label"] for r in read_manifest(data_dir)])
    if steps is not None:
        cfg.steps = int(steps)              # --steps may extend a run
    if not resume and list_checkpoints(run_dir):
        raise InputError(run_dir, "run directory has checkpoints already (use --resume, or another --out)")
    if resume and split_path.exists():
        split = load_split(split_path)
    elif cfg.split_file:
        split = load_split(cfg.split_file)
    else:
        from engine.datasets.encoded import read_manifest
        split = make_split(read_manifest(data_dir), cfg.test_fraction, cfg.split_seed)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        if not split_path.exists():
            split_path.write_text(json.dumps(split, indent=1) + "\n")
    return cfg, split


def column_weights(weights: dict) -> torch.Tensor:
    """``(width,)`` loss weight per layout column: 1, or the weight of the field or block
    (``engine.codec.layout`` names, e.g. ``meta_iat``, ``ipv4_tl``, ``tcp``) it belongs to."""
    w = torch.ones(LAYOUT.width)
    for name, v in weights.items():
        try:
            cols = LAYOUT.cols(name)
        except Exception:
            try:
                cols = LAYOUT.block(name)
            except Exception:
                raise InputError(None, f"field_weights: {name!r} is no field or block of the layout") from None
        if not float(v) > 0:
            raise InputError(None, f"field_weights: weight of {name!r} must be > 0, got {v!r}")
        w[cols] = float(v)
    return w


def train(data_dir: str | os.PathLike, run_dir: str | os.PathLike, cfg: TrainConfig | None = None,
          resume: bool = False, steps: int | None = None, on_event: OnEvent | None = None,
          cancel: CancelToken | None = None, accelerator=None, time_limit: float | None = None) -> dict:
    """Train (or resume) a run; returns a summary dict. Raises Cancelled after saving on a stop request.

    ``time_limit`` (seconds from this call, e.g. a batch job's wall time less the export's): at the
    first step past it the run saves a checkpoint and exports its model as at that step (summary
    ``time_limited``), so a lease or an allocation that ends never loses the leg; ``--resume``
    continues to ``steps``. Export and calibration run after the limit."""
    started = StopPoll.clock()
    StopPoll.check(time_limit)
    run = _Run.start(Path(data_dir), Path(run_dir), cfg or TrainConfig(), resume, steps, on_event, accelerator)
    cfg, step = run.cfg, run.start_step
    t0 = time.time()
    run.model.train()
    limited = False
    with StopPoll(run.acc, cancel, time_limit, started) as poll:
        while step < cfg.steps:
            why = poll()
            if why == "stop":
                run.checkpoint(step)
                run.emit(Message("info", f"stopped at step {step}; checkpoint saved, --resume continues"))
                raise Cancelled(f"training stopped at step {step}")
            if why == "time":
                limited = True
                run.emit(Message("warning", f"time limit reached at step {step} of {cfg.steps}: exporting the "
                                            f"model as it is; --resume continues to step {cfg.steps}"))
                break
            run.log(step + 1, run.train_step(step), t0)
            step += 1
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                run.checkpoint(step)
    run.checkpoint(step)
    return run.finish(step, t0, limited)


class _Run:
    """One training run's pieces, set up by :meth:`start`; :func:`train` reads as its loop."""

    @classmethod
    def start(cls, data_dir: Path, run_dir: Path, cfg: TrainConfig, resume: bool, steps: int | None,
              on_event: OnEvent | None, accelerator) -> "_Run":
        """Accelerator, config and split, training table, model, EMA, optimizer; resumed when asked."""
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration
        if accelerator is None:
            # cpu=True without CUDA: several processes (accelerate launch --multi_gpu / torchrun) then use gloo
            accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available(),
                                      project_config=ProjectConfiguration(project_dir=str(run_dir)))
        from engine.distributed import end_group_at_exit
        end_group_at_exit(accelerator.state)
        r = cls()
        r.acc, r.run_dir = accelerator, run_dir
        r.is_main, r.rank, r.world = r.acc.is_main_process, r.acc.process_index, r.acc.num_processes
        if not (data_dir / "manifest.csv").exists():
            raise InputError(data_dir, "not a dataset directory (no manifest.csv); make one with netdiff encode")
        r.cfg, split = _prepare_run(data_dir, run_dir, cfg, resume, r.is_main, steps)
        cfg = r.cfg
        r.acc.wait_for_everyone()
        r.emit = fanout(on_event, EventLog(run_dir / "events.jsonl")) if r.is_main else (lambda ev: None)
        r._load_data(data_dir, split)
        r._build_model(resume)
        r._add_replay(resume)
        r.start_step = 0
        cks = list_checkpoints(run_dir)
        if resume and cks:
            r.start_step = _load_checkpoint(cks[-1], r.model, r.ema, r.opt)
            r.emit(Message("info", f"resumed from {cks[-1].name}"))
        r.model, r.opt = r.acc.prepare(r.model, r.opt)
        r.raw = r.acc.unwrap_model(r.model)
        r.col_w = column_weights(cfg.field_weights).to(r.acc.device)
        r.ema.shadow = {k: v.to(r.acc.device) for k, v in r.ema.shadow.items()}
        r.info = {"classes": r.classes,
                  "scheduler": {k: v for k, v in dict(r.sched.config).items() if not k.startswith("_")},
                  "sampling": {"steps": cfg.sample_steps, "guidance": cfg.sample_guidance, "solver": cfg.sample_solver},
                  "data_manifest_sha256": manifest_hash(data_dir), "seed": cfg.seed, "layout": LAYOUT_VERSION,
                  "train_flows": len(r.table), "test_flows": len(split["test"]), "split_seed": split.get("seed"),
                  **r._priors()}
        r.loss_acc, r.n_acc = 0.0, 0
        return r

    def _load_data(self, data_dir: Path, split: dict) -> None:
        """The train side of the split as one table, and each flow's sampling weight."""
        self.classes = self.cfg.classes
        if self.classes is None:
            from engine.datasets.encoded import read_manifest
            self.classes = sorted({r["label"] for r in read_manifest(data_dir)})
        self.L = int(self.cfg.model.get("max_packets", 128))
        self.table = load_table(data_dir, self.L, files=split["train"], classes=self.classes)
        self.weights = self.table.sample_weights(self.cfg.class_balance)
        self.batches, self.replay = self.table, 0      # batches come from here (the table + any replay flows)

    def _add_replay(self, resume: bool) -> None:
        """Generative replay (engine.model.finetune): the old classes' flows, sampled from the checkpoint
        before the first step, join the batches with ``replay_share`` of the mass."""
        cfg = self.cfg
        if not (cfg.init_from and cfg.replay_flows > 0):
            return
        if not 0 <= cfg.replay_share < 1:
            raise InputError(None, f"replay_share must be in [0, 1), got {cfg.replay_share!r}")
        path = self.run_dir / REPLAY
        if resume and list_checkpoints(self.run_dir):
            if not path.exists():
                raise InputError(path, "missing: the run trained on replay flows sampled at its start; "
                                       "start it again (another --out)")
            mats, labels = load_replay(path, len(self.classes), LAYOUT.width)
        else:
            src = read_source(cfg.init_from)
            with torch.random.fork_rng(devices=[]):     # training draws stay what they would be
                mats, labels = sample_replay(self.model, src, self.classes, int(cfg.replay_flows), cfg.seed, self.L)
            if self.is_main:
                save_replay(path, mats, labels)
            self.emit(Message("info", f"{len(mats)} replay flows of {len(src.classes or [])} classes sampled "
                                      f"from {cfg.init_from}"))
        if mats:
            self.batches = self.table.extended(mats, labels, [f"replay:{i}" for i in range(len(mats))])
            self.weights = np.concatenate([self.weights * (1 - cfg.replay_share),
                                           np.full(len(mats), cfg.replay_share / len(mats))])
            self.replay = len(mats)

    def _priors(self) -> dict:
        """The sampling tables for the exported model; a run started from a checkpoint takes the
        checkpoint's for the classes its data has no flows of."""
        fitted = self.table.priors(self.L)
        if not self.cfg.init_from:
            return fitted
        counts = np.bincount(self.table.labels, minlength=len(self.classes))
        merged = merge_priors(fitted, dict(zip(self.classes, counts.tolist())), read_source(self.cfg.init_from))
        return {**merged, "init_from": str(self.cfg.init_from), "replay_flows": self.replay}

    def _build_model(self, resume: bool) -> None:
        cfg = self.cfg
        if cfg.num_threads:
            torch.set_num_threads(int(cfg.num_threads))
        torch.manual_seed(cfg.seed)
        self.model = PacketDenoiser(num_classes=len(self.classes), width=LAYOUT.width, **cfg.model)
        if cfg.init_from and not (resume and list_checkpoints(self.run_dir)):
            added = _init_weights(self.model, cfg.init_from, self.classes)
            self.emit(Message("info", f"weights initialised from {cfg.init_from}"
                                      + (f"; classes added: {', '.join(added)}" if added else "")))
        if self.model.config.self_condition and cfg.prediction_type != "sample":
            raise InputError(None, "self_condition needs prediction_type 'sample'")
        self.ema = EMA(self.model, cfg.ema_decay)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = train_scheduler(cfg.prediction_type, beta_schedule=cfg.beta_schedule)

    def _batch(self, step: int) -> tuple[list[tuple], bool]:
        """This rank's slice of the step's global batch, noised, as parts of one length bucket each:
        ``[(x_t, target, t, y, rows, x0 on the CPU), ...]`` and the self-conditioning coin."""
        cfg = self.cfg
        rng = np.random.default_rng(step_seed(cfg.seed, step, 0, "batch"))
        gbatch = cfg.batch_size * self.world
        idx = rng.choice(len(self.batches), size=gbatch, replace=True,
                         p=self.weights)[self.rank * cfg.batch_size:(self.rank + 1) * cfg.batch_size]
        # on a GPU the batch travels as int8 and the noise is drawn there: at 1024 packets a float
        # batch and its noise made on the CPU cost more than the step itself
        dev = self.acc.device if self.acc.device.type == "cuda" else torch.device("cpu")
        g = torch.Generator(device=dev).manual_seed(step_seed(cfg.seed, step, self.rank, "noise"))
        groups = self._buckets(idx)
        drawn = []
        for pos, length in groups:
            x0_cpu, y = self.batches.batch(idx[pos], length, torch.int8 if dev.type == "cuda" else torch.float32)
            drawn.append((pos, x0_cpu, y, torch.randn((len(pos), length, x0_cpu.shape[2]), generator=g, device=dev)))
        t_all = torch.randint(0, self.sched.config.num_train_timesteps, (len(idx),), generator=g, device=dev)
        drop_all = torch.rand(len(idx), generator=g, device=dev) < cfg.label_dropout
        # the same coin on every rank (seeded without the rank), so all ranks run the same graph
        sc = np.random.default_rng(step_seed(cfg.seed, step, 0, "selfcond")).random() < cfg.self_condition_rate
        parts = []
        for pos, x0_cpu, y, noise in drawn:
            sel = torch.from_numpy(pos).to(dev)
            t, drop = t_all[sel], drop_all[sel]
            x0, y = x0_cpu.to(dev).float(), y.to(dev)
            y = torch.where(drop, torch.full_like(y, len(self.classes)), y)      # the null class
            xt = self.sched.add_noise(x0, noise, t)
            target = training_target(self.sched, x0, noise, t)
            rows = present_rows(x0)
            xt, target, t, y, rows = (v.to(self.acc.device) for v in (xt, target, t, y, rows))
            parts.append((xt, target, t, y, rows, x0_cpu))
        return parts, sc

    def _buckets(self, idx: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """``[(positions in idx, rows), ...]``: the batch split by length bucket, shortest first, as the
        sampler sees flows (engine.model.lengths.length_bucket); one part of ``L`` rows for a model not
        told the length (it learns the padding rows too) or with ``length_buckets`` off."""
        everything = [(np.arange(len(idx)), self.L)]
        if not (self.cfg.length_buckets and getattr(self.raw.config, "presence_input", False)):
            return everything
        offsets = self.batches.offsets
        n = np.minimum(offsets[idx + 1] - offsets[idx], self.L)       # the batch's flows only, not the table
        b = np.array([length_bucket(int(k), self.L) for k in n])
        return [(np.flatnonzero(b == v), int(v)) for v in np.unique(b)]

    def _self_condition(self, xt, t, y, rows_in, rows, x0, sc):
        """The model's own estimate to condition on (zeros when the coin says no)."""
        # zeros (= "no estimate yet", as at the first sampling step) keep every weight in the
        # graph, which DistributedDataParallel needs
        x0_prev = torch.zeros_like(xt)
        if sc:
            with torch.no_grad():   # the unwrapped module: no DDP hooks on this pass
                x0_prev = self.raw(xt, t, y, rows_in, None).clamp(-1.0, 1.0)
                if rows_in is not None:
                    protos = torch.from_numpy(row_proto(x0[:, 0].numpy())).to(x0_prev.device)
                    x0_prev = impose(x0_prev, rows, protos)
        return x0_prev

    def train_step(self, step: int) -> float:
        """One optimizer step and EMA update; returns the loss.

        The batch's length buckets run one after the other, each backward adding to the gradients
        (DDP syncs on the last); every part's loss is divided by the whole batch's weight, so the
        step is the one the whole batch would take at the parts' lengths."""
        cfg, raw = self.cfg, self.raw
        parts, sc = self._batch(step)
        for gp in self.opt.param_groups:
            gp["lr"] = lr_at(cfg, step)
        col_w = self.col_w
        # padding rows are given (and imposed when sampling) to a presence_input model: the loss is
        # over packet rows; a model that decides presence learns the padding too
        weights = [rows[..., None].float() if raw.config.presence_input
                   else torch.ones((*xt.shape[:2], 1), device=xt.device) for xt, _, _, _, rows, _ in parts]
        denom = (sum(w.sum() for w in weights) * col_w.sum()).clamp(min=1)
        self.opt.zero_grad(set_to_none=True)
        total = 0.0
        for k, ((xt, target, t, y, rows, x0), w) in enumerate(zip(parts, weights)):
            rows_in = rows if raw.config.presence_input else None
            x0_prev = self._self_condition(xt, t, y, rows_in, rows, x0, sc) if raw.config.self_condition else None
            last = k == len(parts) - 1
            with contextlib.nullcontext() if (last or self.world == 1) else self.acc.no_sync(self.model):
                pred = self.model(xt, t, y, rows_in, x0_prev)
                loss = (((pred.float() - target.float()) ** 2) * w * col_w).sum() / denom
                self.acc.backward(loss)
            total += float(loss.detach())
        if cfg.grad_clip:
            self.acc.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.ema.update(raw, step)
        return total

    def log(self, step: int, loss: float, t0: float) -> None:
        """Mean loss, speed and memory every ``log_every`` steps (``step`` = steps done)."""
        cfg = self.cfg
        self.loss_acc += loss
        self.n_acc += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            el = time.time() - t0
            ips = (step - self.start_step) / el if el > 0 else 0.0
            mem = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else peak_rss_mb()
            self.emit(TrainStep(step, cfg.steps, self.loss_acc / self.n_acc, lr_at(cfg, step - 1), ips,
                                (cfg.steps - step) / ips if ips > 0 else 0.0, mem))
            self.loss_acc, self.n_acc = 0.0, 0

    def checkpoint(self, step: int) -> None:
        if self.is_main:
            _save_checkpoint(self.run_dir, step, self.raw, self.ema, self.opt, self.cfg.keep_checkpoints,
                             self.classes)
        self.acc.wait_for_everyone()

    def calibrate(self, export: PacketDenoiser, info: dict, flows: int) -> dict:
        """The exported model's decoder calibration, every class (a fine-tuned model's old classes
        too: their weights moved); sampled on the training device."""
        from engine.model.calibrate import calibrate
        cfg = self.cfg
        total = len(self.classes) * cfg.calibrate_rounds
        self.emit(TaskStarted("calibrate", total, "rounds"))
        done = 0

        def tick(label: str, r: int) -> None:
            nonlocal done
            done += 1
            self.emit(TaskProgress("calibrate", done, total, "rounds", f"{label} {r + 1}/{cfg.calibrate_rounds}"))
        model = export.to(self.acc.device).eval()
        try:
            cal = calibrate(model, {**info, "model": dict(model.config)}, self.classes, flows,
                            cfg.calibrate_rounds, cfg.seed, on_round=tick)
        finally:
            export.to("cpu")
        self.emit(TaskFinished("calibrate", {"classes": len(cal)}))
        return cal

    def finish(self, step: int, t0: float, time_limited: bool = False) -> dict:
        """Export the EMA weights as the run's model/; returns the summary."""
        summary = {"steps": step, "run_dir": str(self.run_dir), "seconds": round(time.time() - t0, 2),
                   "train_flows": len(self.table), "classes": len(self.classes)}
        if time_limited:
            summary.update(time_limited=True, steps_planned=self.cfg.steps)
        if self.is_main:
            export = PacketDenoiser.from_config(self.raw.config)
            self.ema.copy_to(export)
            info = {**self.info, "steps": step}
            flows = self.cfg.calibrate_flows
            if flows is None:
                flows = 64 if step >= 500 else 0
            if flows > 0:
                info["calibration"] = self.calibrate(export, info, flows)
            save_model(self.run_dir / "model", export, info)
            summary["model"] = str(self.run_dir / "model")
        self.acc.wait_for_everyone()
        self.emit(TaskFinished("train", summary))
        return summary

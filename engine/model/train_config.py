"""A training run's definition: :class:`TrainConfig` (``netdiff train --config FILE.json`` overrides any
field) and the two functions of it and the step that make a run reproducible and resumable:
:func:`step_seed` (every random draw of a step) and :func:`lr_at` (the learning rate). The loop that
uses them is :mod:`engine.model.train`."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from engine.errors import InputError


@dataclass
class TrainConfig:
    """Everything that defines a training run (``--config FILE.json`` overrides any field)."""

    model: dict = field(default_factory=lambda: {"d_model": 160, "layers": 4, "heads": 4, "max_packets": 128})
    steps: int = 6000
    batch_size: int = 16              # per process
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1         # cosine decays to lr * this
    grad_clip: float = 1.0
    prediction_type: str = "sample"        # x0; "v_prediction", "epsilon" also work
    beta_schedule: str = "squaredcos_cap_v2"
    label_dropout: float = 0.1        # null class for classifier-free guidance
    class_balance: float = 0.5        # class sampling mass ~ n_flows ** balance
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 1234
    test_fraction: float = 0.1
    split_seed: int = 1234
    split_file: str | None = None     # use this split instead of making one
    classes: list | None = None       # default: every label in the dataset
    mixed_precision: str = "no"       # "fp16"/"bf16" on GPU
    sample_steps: int = 20
    sample_guidance: float = 1.0
    sample_solver: str = "dpm"
    num_threads: int | None = None    # torch CPU threads (None = torch's default); 1 holds up best on shared cores
    init_from: str | None = None      # start from this checkpoint's weights (modules it lacks start at zero)
    self_condition_rate: float = 0.5  # share of steps that feed the model its own estimate (self_condition models)
    field_weights: dict = field(default_factory=dict)   # {layout field or block: loss weight}, others 1
    replay_flows: int = 0             # with init_from: flows per old class sampled from it and trained on
    replay_share: float = 0.25        # share of every batch drawn from those replay flows
    # flows per class and round sampled to calibrate the field decoder (engine.model.calibrate; 0 = off);
    # None: 64 for a run of >= 500 steps, off for shorter trial runs (it costs minutes on a CPU)
    calibrate_flows: int | None = None
    calibrate_rounds: int = 3         # rounds of that calibration (engine.model.calibrate)
    # a model told each flow's length (presence_input) trains every flow over its length bucket's rows
    # (128, 256, ... max_packets), the context it is sampled in; a 1024-row model's short flows then
    # cost what they cost a 128-row model (engine.model.lengths.length_bucket)
    length_buckets: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names - {"_comment"})
        if bad:
            raise InputError(None, f"unknown training config keys: {', '.join(bad)}")
        base = cls()
        kw = {k: v for k, v in d.items() if k in names}
        if "model" in kw:
            kw["model"] = {**base.model, **kw["model"]}
        return cls(**{**asdict(base), **kw})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as e:
            raise InputError(path, f"cannot read training config: {e}") from None


def step_seed(seed: int, step: int, rank: int, what: str) -> int:
    h = hashlib.sha256(f"{seed}/{step}/{rank}/{what}".encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warmup then cosine to ``lr * min_lr_ratio``; a pure function of the step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))

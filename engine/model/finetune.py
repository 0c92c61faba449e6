"""Starting a run from a checkpoint's weights (``netdiff train --init-from REF``): fine-tuning,
with the classes of the new data added to the checkpoint's.

The new run keeps every class of the checkpoint, in its order, and appends the data's classes
it lacks. The class-embedding table grows to match: old rows are copied, each new row starts at
the mean of the old class rows (a "typical class", which the new flows then pull towards their
own), and the null row of classifier-free guidance keeps its value. Every other weight is loaded
as it is, so the architecture is the checkpoint's (:func:`finetune_config` reads it from there).
The sampling tables (lengths, vocab, ports, joint, profiles) of classes the new data has no flows of come
from the checkpoint (:func:`merge_priors`), so ``generate --label OLD`` keeps working.

The user's data holds only the new classes, so training on it alone moves the shared weights
away from the old ones (bench/finetune.md measured an old class's mean JSD going from 0.119 to
0.149 in 400 steps). Generative replay holds them: before the first step the run samples
``replay_flows`` flows of every old class from the checkpoint (which it still is, exactly) and
draws ``replay_share`` of every batch from them, with their labels (:func:`sample_replay`;
cached in ``RUN/replay.safetensors`` for ``--resume``).

``REF`` is a model reference (``default``, a run directory, a checkpoint directory, a Hub
reference; :func:`engine.model.checkpoint.resolve`) or a training checkpoint
``RUN/checkpoints/step-N``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from engine.errors import InputError

from .checkpoint import PRIOR_KEYS, WEIGHTS, resolve

#: A fine-tuning run trains briefly and gently; a --config file overrides any of these.
FINETUNE_DEFAULTS = {"steps": 1000, "lr": 2e-4, "warmup_steps": 50, "checkpoint_every": 250, "num_threads": 1,
                     "replay_flows": 16, "replay_share": 0.25}
REPLAY = "replay.safetensors"


@dataclass
class Source:
    """The checkpoint a run starts from."""

    path: Path                  # the directory errors name
    weights: Path
    classes: list[str] | None   # None: an older training checkpoint that did not record them
    config: dict | None         # its exported model's config.json (architecture, scheduler, priors)
    model: dict | None          # its PacketDenoiser config


def _read_json(p: Path, what: str) -> dict:
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InputError(p, f"init_from: unreadable {what}: {e}") from None
    if not isinstance(d, dict):
        raise InputError(p, f"init_from: {what} is not a JSON object")
    return d


def read_source(ref: str | os.PathLike) -> Source:
    """The checkpoint ``ref`` names, read far enough to check and plan a run; one-line errors."""
    d = Path(str(ref)).expanduser()
    if (d / WEIGHTS).is_file() and (d / "state.json").is_file() and not (d / "config.json").exists():
        # a training checkpoint: classes in its state.json (older ones: the run's config); the
        # architecture and priors in the run's exported model, else its train_config.json
        run = d.parent.parent
        state = _read_json(d / "state.json", "checkpoint state")
        train_cfg = _read_json(run / "train_config.json", "run config") \
            if (run / "train_config.json").is_file() else {}
        config = _read_json(run / "model" / "config.json", "model config") \
            if (run / "model" / "config.json").is_file() else None
        classes = state.get("classes") or train_cfg.get("classes")
        model = (config or {}).get("model") or train_cfg.get("model")
    else:
        d = resolve(str(ref))
        config = _read_json(d / "config.json", "model config")
        classes, model = config.get("classes"), config.get("model")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise InputError(d, "init_from: the checkpoint's class list is not a list of names")
    return Source(d, d / WEIGHTS, classes, config, model if isinstance(model, dict) else None)


def finetune_config(ref: str | os.PathLike, overrides: dict | None = None):
    """A :class:`~engine.model.train_config.TrainConfig` that fine-tunes ``ref``: its architecture, prediction
    type, noise schedule and sampling defaults, :data:`FINETUNE_DEFAULTS`, then ``overrides`` (a
    ``--config`` file's fields; its ``model`` keys replace the checkpoint's one by one, and a shape they
    change is refused when the weights are loaded)."""
    from .train_config import TrainConfig
    src = read_source(ref)
    if src.model is None:
        raise InputError(src.path, "init_from: the checkpoint does not say its model configuration "
                                   "(no config.json); give \"model\" in --config")
    base: dict = {**FINETUNE_DEFAULTS, "init_from": str(ref),
                  "model": {k: v for k, v in src.model.items() if k not in ("num_classes", "width")
                            and not k.startswith("_")}}
    sched = (src.config or {}).get("scheduler") or {}
    for key in ("prediction_type", "beta_schedule"):
        if isinstance(sched.get(key), str):
            base[key] = sched[key]
    sampling = (src.config or {}).get("sampling") or {}
    for key in ("steps", "guidance", "solver"):
        if key in sampling:
            base[f"sample_{key}"] = sampling[key]
    over = dict(overrides or {})
    if isinstance(over.get("model"), dict):
        over["model"] = {**base["model"], **over["model"]}
    return TrainConfig.from_dict({**base, **over})


def run_classes(src: Source, wanted: list[str] | None, data_labels: list[str]) -> list[str]:
    """The new run's classes: ``wanted`` (a config's explicit list, which must hold every class of the
    checkpoint), else the checkpoint's classes followed by the data's new ones, sorted."""
    if wanted is not None:
        check_keeps_classes(src, wanted)
        return list(wanted)
    old = list(src.classes or [])
    return old + sorted(set(data_labels) - set(old))


def check_keeps_classes(src: Source, classes: list[str]) -> None:
    """A run started from a checkpoint keeps all its classes (they stay usable)."""
    missing = [c for c in (src.classes or []) if c not in classes]
    if missing:
        more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        raise InputError(src.path, f"init_from: the checkpoint's classes differ from this run's: it has "
                                   f"{', '.join(missing[:4])}{more}, which the run lacks (a run started from a "
                                   "checkpoint keeps every class it has; leave \"classes\" out to get them)")


def grow_class_table(old: torch.Tensor, old_classes: list[str], classes: list[str]) -> torch.Tensor:
    """``(len(classes) + 1, d)`` class embeddings from the checkpoint's ``(len(old_classes) + 1, d)``:
    rows of classes it has are copied (by name), new classes start at the mean of its class rows,
    and the last row (the null class) is its null row."""
    k = len(old_classes)
    if old.ndim != 2 or old.shape[0] != k + 1:
        raise ValueError(f"c_emb.weight {tuple(old.shape)} does not hold {k} classes + the null class")
    new = old[:k].mean(0, keepdim=True).repeat(len(classes) + 1, 1)
    at = {c: i for i, c in enumerate(old_classes)}
    for i, c in enumerate(classes):
        if c in at:
            new[i] = old[at[c]]
    new[len(classes)] = old[k]
    return new


def load_source_weights(model: torch.nn.Module, src: Source, classes: list[str]) -> list[str]:
    """Copy the checkpoint's weights into ``model`` (built for ``classes``); returns the classes added.

    Modules the checkpoint lacks keep their (zero) init (``row_emb``, ``sc_inp``: a presence or
    self-conditioning model started from a plain one computes what the plain one did); a model with
    more packets per flow (``max_packets``) takes the checkpoint's positions for its first rows. Any
    other difference (a shape, a missing or extra weight) is a one-line error."""
    check_keeps_classes(src, classes)
    try:
        sd = load_file(src.weights)
    except Exception as e:      # safetensors header errors, unreadable file
        raise InputError(src.weights, f"init_from: cannot read weights: {e}") from None
    added = []
    if src.classes is not None and "c_emb.weight" in sd and src.classes != classes:
        try:
            sd["c_emb.weight"] = grow_class_table(sd["c_emb.weight"], src.classes, classes)
        except ValueError as e:
            raise InputError(src.weights, f"init_from: {e}") from None
        added = [c for c in classes if c not in src.classes]
    own = model.state_dict()
    if "pos" in sd and "pos" in own and sd["pos"].shape[0] == 1 and own["pos"].shape[2:] == sd["pos"].shape[2:] \
            and own["pos"].shape[1] > sd["pos"].shape[1]:
        # a longer model (max_packets grown, e.g. 128 -> 1024): the learned positions of the first rows,
        # the sinusoidal init the checkpoint's table started from for the rows it never saw
        grown = own["pos"].clone()
        grown[:, : sd["pos"].shape[1]] = sd["pos"]
        sd["pos"] = grown
    bad = [f"{k} {tuple(v.shape)} vs this run's {tuple(own[k].shape)}" for k, v in sd.items()
           if k in own and own[k].shape != v.shape]
    if bad:
        raise InputError(src.path, f"init_from: weights do not fit this model ({'; '.join(bad[:3])}); "
                                   "a fine-tuning run keeps the checkpoint's model configuration")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    bad = [k for k in missing if not k.startswith(("row_emb.", "sc_inp."))] + list(unexpected)
    if bad:
        raise InputError(src.path, f"init_from: weights do not fit this model ({', '.join(bad[:4])})")
    return added


def merge_priors(fitted: dict, flows_per_class: dict[str, int], src: Source | None) -> dict:
    """The sampling tables of a run: fitted on its data for classes it has flows of; the checkpoint's
    for the others (a class with neither has no table, and sampling falls back as for older models)."""
    out = {}
    src_cfg = (src.config if src is not None else None) or {}
    for key in PRIOR_KEYS:
        if key not in fitted:
            continue
        table, old = {}, src_cfg.get(key) if isinstance(src_cfg.get(key), dict) else {}
        for c, v in fitted[key].items():
            if flows_per_class.get(c, 0) > 0:
                table[c] = v
            elif c in old:
                table[c] = old[c]
        out[key] = table
    return out


def sample_replay(model, src: Source, classes: list[str], per_class: int, seed: int,
                  max_packets: int) -> tuple[list[np.ndarray], list[int]]:
    """``per_class`` flows of every class of the checkpoint, sampled from ``model`` as it is before
    training (= the checkpoint, with the grown class table), with their class indices in ``classes``.
    Raw samples (not repaired): what the checkpoint does is what the run should keep doing."""
    from .sample import SampleOptions, sample_flows
    if src.config is None or not src.classes:
        raise InputError(src.path, "init_from: replay needs the checkpoint's config.json (classes, sampling "
                                   "tables); set \"replay_flows\": 0 in --config to train without it")
    cfg = {**src.config, "classes": classes}
    opts = SampleOptions(seed=seed, steps=int((src.config.get("sampling") or {}).get("steps", 20)),
                         packets_max=max_packets)
    mats, labels = [], []
    was = model.training
    model.eval()
    for c in src.classes:
        got = sample_flows(model, cfg, c, list(range(per_class)), opts)
        for i in sorted(got):
            if len(got[i]):
                mats.append(got[i].astype(np.int8))
                labels.append(classes.index(c))
    model.train(was)
    return mats, labels


def save_replay(path: Path, mats: list[np.ndarray], labels: list[int]) -> None:
    """The replay flows as one safetensors file (rows, offsets, labels), written atomically."""
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in mats])]).astype(np.int64)
    rows = np.concatenate(mats) if mats else np.zeros((0, 0), np.int8)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"rows": torch.from_numpy(rows), "offsets": torch.from_numpy(offsets),
               "labels": torch.tensor(labels, dtype=torch.int64)}, tmp)
    os.replace(tmp, path)


def load_replay(path: Path, n_classes: int, width: int) -> tuple[list[np.ndarray], list[int]]:
    """What :func:`save_replay` wrote, checked against the run (class indices, row width)."""
    try:
        t = load_file(path)
        rows, offsets, labels = t["rows"].numpy(), t["offsets"].numpy(), t["labels"].numpy()
    except Exception as e:
        raise InputError(path, f"replay flows unreadable: {e}") from None
    ok = (offsets.ndim == 1 and len(offsets) == len(labels) + 1 and offsets[0] == 0
          and np.all(np.diff(offsets) > 0) and offsets[-1] == len(rows)
          and (len(rows) == 0 or rows.shape[1] == width) and np.all((labels >= 0) & (labels < n_classes)))
    if not ok:
        raise InputError(path, "replay flows do not fit this run")
    return [rows[a:b] for a, b in zip(offsets[:-1], offsets[1:])], labels.tolist()

"""Checkpoints on disk: ``model.safetensors`` + ``config.json``; no pickles anywhere.

``config.json`` holds::

    format          "netdiff-native-1"
    model           PacketDenoiser config (d_model, layers, ...)
    classes         class labels, index order
    layout          engine.codec.layout.LAYOUT_VERSION the model was trained on
    scheduler       DDPMScheduler config (prediction type, betas)
    sampling        defaults: steps, guidance, solver
    data_manifest_sha256, seed, steps, split  provenance
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from engine.errors import InputError
from engine.codec.layout import LAYOUT_VERSION

from .denoiser import PacketDenoiser

FORMAT = "netdiff-native-1"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "default_model"
WEIGHTS = "model.safetensors"


def model_config(model: PacketDenoiser) -> dict:
    return {k: v for k, v in dict(model.config).items() if not k.startswith("_")}


def dump_config(cfg: dict) -> str:
    """config.json text: indented, except the per-class tables (``lengths``, ``vocab``,
    ``ports``), which take one line per class (indented, they would run to a megabyte)."""
    big = {k: cfg[k] for k in ("lengths", "vocab", "ports") if isinstance(cfg.get(k), dict) and cfg[k]}
    text = json.dumps({k: v for k, v in cfg.items() if k not in big}, indent=2)
    if not big:
        return text + "\n"
    parts = [text[:-2]]      # without the closing "\n}"
    for k, table in big.items():
        rows = ",\n".join(f"    {json.dumps(c)}: {json.dumps(v, separators=(',', ':'))}" for c, v in table.items())
        parts.append(f',\n  "{k}": {{\n{rows}\n  }}')
    return "".join(parts) + "\n}\n"


def save_model(out: str | os.PathLike, model: PacketDenoiser, info: dict) -> Path:
    """Write weights and config into ``out`` (written to temp names, then renamed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    cfg = {"format": FORMAT, "model": model_config(model), "layout": LAYOUT_VERSION, **info}
    save_file(sd, out / (WEIGHTS + ".tmp"), metadata={"format": FORMAT, "layout": LAYOUT_VERSION})
    (out / "config.json.tmp").write_text(dump_config(cfg))
    os.replace(out / (WEIGHTS + ".tmp"), out / WEIGHTS)
    os.replace(out / "config.json.tmp", out / "config.json")
    return out


def resolve(ref: str | os.PathLike | None) -> Path:
    """Checkpoint reference -> directory holding model.safetensors + config.json.

    ``None``/"default" is the shipped model; a training run directory resolves
    to its exported ``model/``; a Hub reference (``hf://org/name@commit``, see
    :mod:`engine.hub.refs`) resolves to its snapshot in the Hub cache, with no
    network when that commit is cached.
    """
    if ref is None or str(ref) in ("", "default"):
        d = DEFAULT_MODEL_DIR
        if not (d / WEIGHTS).exists():
            raise InputError(d, "the default model checkpoint is not installed")
        return d
    s = str(ref)
    from engine.hub.refs import parse_ref, resolve_ref
    r = parse_ref(ref if isinstance(ref, os.PathLike) else s)
    if r.kind == "hub":
        return _hub_checkpoint(r, resolve_ref(r))
    d = Path(s)
    if not d.exists():
        raise InputError(d, "no such checkpoint directory")
    if d.is_file():
        d = d.parent
    if not (d / WEIGHTS).exists() and (d / "model" / WEIGHTS).exists():
        d = d / "model"
    if not (d / WEIGHTS).exists() or not (d / "config.json").exists():
        raise InputError(d, f"not a model checkpoint (needs {WEIGHTS} and config.json)")
    return d


def _hub_checkpoint(r, d: Path) -> Path:
    """A resolved Hub snapshot must be one of ours: say so naming the reference, not the cache path."""
    if not (d / WEIGHTS).is_file() or not (d / "config.json").is_file():
        raise InputError(None, f"{r}: not a netdiff checkpoint (the repository has no {WEIGHTS} + config.json "
                               "at its root)")
    try:
        fmt = json.loads((d / "config.json").read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        fmt = None
    if fmt != FORMAT:
        raise InputError(None, f"{r}: not a netdiff checkpoint (config.json format is {fmt!r}, "
                               f"not {FORMAT!r})")
    return d


def weights_hash(d: str | os.PathLike) -> str:
    """sha256 of the weights file (first 16 hex digits) -- names the model in manifests."""
    h = hashlib.sha256()
    with open(Path(d) / WEIGHTS, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def load_model(ref: str | os.PathLike | None, device: str | torch.device = "cpu") -> tuple[PacketDenoiser, dict, Path]:
    """Load a checkpoint; returns ``(model in eval mode, config dict, directory)``."""
    d = resolve(ref)
    try:
        cfg = json.loads((d / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(d / "config.json", f"unreadable: {e}") from None
    if cfg.get("format") != FORMAT:
        raise InputError(d / "config.json", f"format {cfg.get('format')!r} is not {FORMAT!r}")
    if cfg.get("layout") != LAYOUT_VERSION:
        raise InputError(d, f"model was trained on layout {cfg.get('layout')!r}, this build uses {LAYOUT_VERSION!r}")
    model = PacketDenoiser.from_config(cfg["model"])
    try:
        sd = load_file(d / WEIGHTS)
        model.load_state_dict(sd)
    except Exception as e:   # safetensors header errors, shape mismatches
        raise InputError(d / WEIGHTS, f"cannot load weights: {e}") from None
    model.to(device).eval()
    return model, cfg, d

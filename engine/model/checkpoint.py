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
import shutil
import time
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


#: config.json's per-class sampling tables (engine.model.data.FlowTable.priors fits them from the
#: training flows; calibration, engine.model.calibrate, from the trained model's samples)
PRIOR_KEYS = ("lengths", "directions", "heads", "vocab", "ports", "joint", "profiles", "tcp_options", "calibration")


def dump_config(cfg: dict) -> str:
    """config.json text: indented, except the per-class tables (:data:`PRIOR_KEYS`), which take
    one line per class (indented, they would run to megabytes)."""
    big = {k: cfg[k] for k in PRIOR_KEYS if isinstance(cfg.get(k), dict) and cfg[k]}
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


def tables_hash(cfg: dict) -> str:
    """sha256 (first 16 hex digits) of a config's sampling tables (:data:`PRIOR_KEYS`)."""
    blob = json.dumps({k: cfg.get(k) for k in PRIOR_KEYS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def weights_hash(d: str | os.PathLike) -> str:
    """sha256 of the weights file (first 16 hex digits) -- names the model in manifests."""
    with open(Path(d) / WEIGHTS, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


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
    # torch's own .to: diffusers' ModelMixin.to first imports its hooks, peft and transformers'
    # model zoo (1.4 s of every sampling worker's start-up) to check for quantization this model has none of
    torch.nn.Module.to(model, device).eval()
    from .critic import load_critic
    model.critic = load_critic(d)       # None without critic.safetensors (engine.model.critic)
    return model, cfg, d


# -- training state: optimizer and RNG as safetensors + JSON (a checkpoint is never unpickled) ------

OPTIMIZER_TENSORS, OPTIMIZER_JSON, RNG_TENSORS = "optimizer.safetensors", "optimizer.json", "rng.safetensors"


def save_optimizer(opt: torch.optim.Optimizer, d: str | os.PathLike) -> None:
    """``optimizer.safetensors``: every tensor of ``opt.state_dict()["state"]`` as ``"<param index>.<name>"``;
    ``optimizer.json``: the param groups and the state's non-tensor entries."""
    d = Path(d)
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, d / OPTIMIZER_TENSORS)
    (d / OPTIMIZER_JSON).write_text(json.dumps({"param_groups": sd["param_groups"], "scalars": scalars}))


def load_optimizer(opt: torch.optim.Optimizer, d: str | os.PathLike) -> None:
    """The state :func:`save_optimizer` wrote, checked against ``opt`` (indices, names, settings, shapes)."""
    d = Path(d)
    try:
        meta = json.loads((d / OPTIMIZER_JSON).read_text())
        tensors = load_file(d / OPTIMIZER_TENSORS)
        groups, scalars = meta["param_groups"], meta["scalars"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(d, f"optimizer state unreadable: {e}") from None
    params = [p for g in opt.param_groups for p in g["params"]]
    if not isinstance(groups, list) or not isinstance(scalars, dict) or len(groups) != len(opt.param_groups) \
            or any(not isinstance(g, dict) or len(g.get("params", ())) != len(o["params"])
                   for g, o in zip(groups, opt.param_groups)):
        raise InputError(d / OPTIMIZER_JSON, "param groups do not match this run's trainable parameters")
    now = opt.state_dict()["param_groups"]
    for g, o in zip(groups, now):
        bad = sorted(set(g) - set(o))
        if bad:
            raise InputError(d / OPTIMIZER_JSON, f"unknown optimizer settings {bad}")
        for k, v in o.items():      # JSON has no tuples: betas come back as the optimizer holds them
            if isinstance(v, tuple) and isinstance(g.get(k), list):
                g[k] = tuple(g[k])
    state: dict[int, dict] = {}
    for key, v in [*tensors.items(), *scalars.items()]:
        pid, _, name = key.partition(".")
        if not pid.isdigit() or not 0 <= int(pid) < len(params) or not name:
            raise InputError(d, f"optimizer state entry {key!r} is out of range ({len(params)} parameters)")
        if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape != params[int(pid)].shape:
            raise InputError(d / OPTIMIZER_TENSORS, f"{key}: shape {tuple(v.shape)} does not fit parameter "
                                                    f"{pid} {tuple(params[int(pid)].shape)}")
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_rng(d: str | os.PathLike) -> None:
    """torch's global generators (CPU, and each CUDA device) as uint8 tensors."""
    t = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        t.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(t, Path(d) / RNG_TENSORS)


def load_rng(d: str | os.PathLike) -> None:
    f = Path(d) / RNG_TENSORS
    try:
        t = load_file(f)
    except (OSError, ValueError) as e:
        raise InputError(f, f"RNG state unreadable: {e}") from None
    cpu = torch.get_rng_state()
    if "cpu" not in t or t["cpu"].dtype != torch.uint8 or t["cpu"].shape != cpu.shape:
        raise InputError(f, "no CPU generator state of the expected size")
    torch.set_rng_state(t["cpu"])
    if torch.cuda.is_available():
        states = [t[f"cuda.{i}"] for i in range(torch.cuda.device_count()) if f"cuda.{i}" in t]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def refuse_pickled_state(ck: Path) -> None:
    """A checkpoint of an older netdiff holds ``optimizer.pt`` (a pickle): never load it; say how to go on."""
    if (ck / "optimizer.pt").exists() and not (ck / OPTIMIZER_TENSORS).exists():
        raise InputError(ck / "optimizer.pt", "optimizer state of an older netdiff is a pickle, which this version "
                                              "never loads (it can run code); restart the run (another --out, no "
                                              "--resume), or start one from these weights: \"init_from\": "
                                              f"\"{ck}\" in its --config")


# -- training checkpoints: <run>/checkpoints/step-NNNNNNN/, written whole or not at all ----------------
# The native trainer and the LoRA trainer keep their state the same way; only what they save differs.

def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """A run's complete checkpoints, oldest first (a ``.partial`` one or one without state.json is not)."""
    d = Path(run_dir) / "checkpoints"
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("step-*") if (p / "state.json").exists())


def write_checkpoint(run_dir: str | os.PathLike, step: int, tensors: dict[str, dict[str, torch.Tensor]],
                     opt: torch.optim.Optimizer, keep: int, rng: bool = True, **state) -> Path:
    """``checkpoints/step-NNNNNNN/``: each of ``tensors`` as ``<name>.safetensors``, the optimizer (and torch's
    generators when ``rng``), and ``state.json`` = step, time and ``state``; renamed into place, then all
    but the newest ``keep`` checkpoints removed."""
    final = Path(run_dir) / "checkpoints" / f"step-{step:07d}"
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, sd in tensors.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()}, tmp / f"{name}.safetensors")
    save_optimizer(opt, tmp)
    if rng:
        save_rng(tmp)
    (tmp / "state.json").write_text(json.dumps({"step": step, "time": time.time(), **state}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint(ck: Path, *names: str) -> tuple[int, list[dict[str, torch.Tensor]]]:
    """The step in ``state.json`` (checked) and the tensors of ``<name>.safetensors`` for each name."""
    try:
        step = json.loads((ck / "state.json").read_text())["step"]
        tensors = [load_file(ck / f"{n}.safetensors") for n in names]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(ck, f"checkpoint unreadable: {e}") from None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise InputError(ck / "state.json", f"step {step!r} is not a step number")
    return step, tensors


def peak_rss_mb() -> float:
    """This process's peak resident memory (0 where the platform cannot say)."""
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except Exception:
        return 0.0

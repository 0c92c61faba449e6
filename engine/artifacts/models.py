"""Checkpoints and training runs on disk: ``config.json`` + ``model.safetensors`` (a checkpoint),
``train_config.json`` (a training run, its model under ``model/`` once exported)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import engine
from engine.artifacts.fields import Fields, read_json_object
from engine.errors import InputError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAIN_CONFIG = "train_config.json"
DEFAULT_MODEL_DIR = Path(engine.__file__).resolve().parent / "default_model"
MAX_CLASSES = 100_000
MAX_STEPS = 10**12


@dataclass
class Checkpoint:
    """What a checkpoint's ``config.json`` says (the loader, engine.model.checkpoint, checks the rest)."""

    path: Path
    format: str = ""
    classes: tuple[str, ...] = ()
    steps: int | None = None
    layout: str | None = None
    model: dict = field(default_factory=dict)        # architecture: name -> number/text
    sampling: dict = field(default_factory=dict)     # sampling defaults: name -> number/text
    facts: dict = field(default_factory=dict)        # other top-level scalars (seed, split, hashes)
    weights_size: int = 0
    class_flows: dict = field(default_factory=dict)  # class -> training flows the model learned it from


def read_checkpoint(d: str | Path) -> Checkpoint:
    """A checkpoint directory's config.

    Raises:
        InputError: config.json missing, unreadable, or with a field of the wrong type or range.
    """
    d = Path(d)
    raw = read_json_object(d / CONFIG)
    f = Fields(raw, d / CONFIG)
    w = d / WEIGHTS
    facts = {k: v for k, v in f.scalars().items() if k not in ("format", "steps", "layout")}
    return Checkpoint(d, f.str_("format"), f.str_list("classes", MAX_CLASSES), f.int_("steps", 0, MAX_STEPS),
                      f.str_("layout") or None, f.obj("model").scalars(), f.obj("sampling").scalars(), facts,
                      w.stat().st_size if w.is_file() else 0, class_flows(raw))


def class_flows(cfg: dict) -> dict[str, int]:
    """Per class, the training flows the model learned it from: the counts of its length table
    (``config.json`` key ``lengths``, :func:`engine.model.lengths.length_prior`). Empty for a config
    without that table; malformed rows are skipped, not trusted."""
    table = cfg.get("lengths")
    out: dict[str, int] = {}
    if not isinstance(table, dict):
        return out
    for c, rows in list(table.items())[:MAX_CLASSES]:
        if isinstance(rows, list):
            out[str(c)] = sum(r[2] for r in rows if isinstance(r, list) and len(r) == 3
                              and isinstance(r[2], int) and 0 <= r[2] < 2**31)
    return out


def classes_text(classes, flows: dict | None = None) -> str:
    """One line for people: ``classes (N): a, b`` or, where the checkpoint says how many training
    flows each class had, ``classes (N; training flows): a 218, b 39``."""
    classes = list(classes)
    if flows and all(c in flows for c in classes):
        return f"classes ({len(classes)}; training flows): " + ", ".join(f"{c} {flows[c]}" for c in classes)
    return f"classes ({len(classes)}): {', '.join(classes)}"


@dataclass
class ModelEntry:
    """One model a user can generate from (or a training run that has not exported one yet)."""

    name: str
    kind: str                      # "default", "local" or "run"
    path: Path                     # the directory generate would load (``--model``)
    classes: tuple[str, ...] = ()
    steps: int | None = None
    size: int = 0                  # bytes of the weights file
    checkpoint: Checkpoint | None = None
    status: str = "ready"          # "ready", "training ...", or a one-line error

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def layout(self) -> str | None:
        return self.checkpoint.layout if self.checkpoint is not None else None


def model_entry(d: Path, name: str, kind: str) -> ModelEntry:
    """A checkpoint directory -> its entry; a bad config becomes the status line, never an exception."""
    try:
        c = read_checkpoint(d)
    except InputError as e:
        w = d / WEIGHTS
        return ModelEntry(name, kind, d, size=w.stat().st_size if w.is_file() else 0, status=str(e))
    status = "ready" if c.weights_size else f"{WEIGHTS} missing"
    return ModelEntry(name, kind, d, c.classes, c.steps, c.weights_size, c, status)


def is_checkpoint(d: Path) -> bool:
    return (d / CONFIG).is_file() and (d / WEIGHTS).is_file()


def candidate_dirs(root: Path, depth: int = 2):
    """``root`` and its subdirectories, ``depth`` levels down (hidden ones skipped)."""
    if not root.is_dir():
        return
    level = [root]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            yield d
            try:
                nxt += sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                pass
        level = nxt


def find_runs(root: str | Path) -> list[Path]:
    """Training run directories (``train_config.json``) under ``root``, two levels down."""
    return [d for d in candidate_dirs(Path(root).expanduser()) if (d / TRAIN_CONFIG).is_file()]


def latest_step(run: Path) -> int | None:
    """The newest ``checkpoints/step-N`` of a run."""
    steps = []
    for c in (run / "checkpoints").glob("step-*"):
        n = c.name.split("-", 1)[1]
        if n.isdigit() and len(n) <= 12:
            steps.append(int(n))
    return max(steps) if steps else None


def run_entry(run: Path) -> ModelEntry:
    if is_checkpoint(run / "model"):
        return model_entry(run / "model", run.name, "run")
    try:
        classes = Fields(read_json_object(run / TRAIN_CONFIG), run / TRAIN_CONFIG).str_list("classes", MAX_CLASSES)
        status = "training (no exported model yet)"
    except InputError as e:
        classes, status = (), str(e)
    return ModelEntry(run.name, "run", run, classes, latest_step(run), 0, None, status)


def find_models(models_dir: str | Path, runs_dirs: list[str | Path]) -> list[ModelEntry]:
    """The shipped default, every checkpoint under ``models_dir`` (``NAME/`` or ``NAME/model/``),
    every training run under ``runs_dirs``."""
    out: list[ModelEntry] = []
    if DEFAULT_MODEL_DIR.is_dir():
        out.append(model_entry(DEFAULT_MODEL_DIR, "default", "default"))
    models_dir = Path(models_dir).expanduser()
    if models_dir.is_dir():
        for d in sorted(p for p in models_dir.iterdir() if p.is_dir()):
            if is_checkpoint(d):
                out.append(model_entry(d, d.name, "local"))
            elif is_checkpoint(d / "model"):
                out.append(model_entry(d / "model", d.name, "local"))
    seen = set()
    for root in runs_dirs:
        for run in find_runs(root):
            if run.resolve() not in seen:
                seen.add(run.resolve())
                out.append(run_entry(run))
    return out

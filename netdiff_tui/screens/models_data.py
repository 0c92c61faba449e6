"""What the Models pane shows and starts, as plain data (no Textual here).

Rows are the console's model entries (the shipped default, the user's checkpoints and runs) and
every Hub cache repo (engine.hub.cache); details are engine.hub.cache.info; downloads, verification and
deletion are engine.hub's. Long work (a download, a fine-tuning run) is the ``netdiff``
command line the CLI would run, as a detached job (:func:`download_argv`, :func:`finetune_plan`).
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.constants import CAPTURE_EXTS
from engine.artifacts.models import classes_text as class_list_text
from engine.errors import InputError
from engine.hub.cache import human_size, hub_entries

FINETUNE_CONFIG = "finetune_config.json"
# PacketDenoiser takes these from the run (its classes, the layout), not from the config's model dict
RUN_OWNED_MODEL_KEYS = ("num_classes", "width")

# what "last used" is measured against; tests pin it so snapshots do not age
now = time.time


def display_path(p: str | os.PathLike) -> str:
    """A path as the detail panel shows it: the home directory as ``~``."""
    s, home = str(p), str(Path.home())
    return "~" + s[len(home):] if home not in ("", "/") and (s == home or s.startswith(home + os.sep)) else s


def age(t: float | None) -> str:
    """``3d ago`` style age of a time stamp, ``-`` when unknown."""
    if not t:
        return "-"
    s = max(0.0, now() - t)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{int(s // n)}{unit} ago"
    return f"{int(s)}s ago"


@dataclass
class PaneRow:
    """One line of the Models table: a local checkpoint or run (from engine.artifacts.ModelEntry)
    or a Hub cache repository (from engine.hub.cache.ModelRow)."""

    name: str
    kind: str                        # default, local, run, hub
    ref: str                         # what --model takes
    path: str | None
    format: str                      # native, diffusers, lora, other, "-"
    classes: list[str]
    size: int                        # weights (local) or size on disk (hub)
    steps: int | None = None
    layout: str | None = None
    revisions: list[dict] = field(default_factory=list)
    last_used: float | None = None
    status: str = "ready"


def local_row(m) -> PaneRow:
    """An engine.artifacts.ModelEntry as a row (its weights' access time is "last used")."""
    from engine.hub.cache import NATIVE_FORMAT
    p = Path(m.path)
    last = None
    try:
        st = (p / "model.safetensors").stat()
        last = max(st.st_atime, st.st_mtime)
    except OSError:
        pass
    c = m.checkpoint
    fmt = "-" if c is None else "native" if c.format == NATIVE_FORMAT else (c.format or "native")
    return PaneRow(m.name, m.kind, "default" if m.kind == "default" else str(p), str(p), fmt, list(m.classes),
                   m.size, m.steps, m.layout, [], last, m.status)


def hub_rows(cache_dir=None) -> list[PaneRow]:
    """Every model repository in huggingface_hub's cache (scan_cache_dir; slow on a big cache)."""
    return [PaneRow(r.name, r.kind, r.ref, r.path, r.format, list(r.classes), r.size, None, None,
                    list(r.revisions), r.last_used, r.status) for r in hub_entries(cache_dir)]


def revision_text(r: PaneRow) -> str:
    """Short commit of a Hub row's newest revision (+ its branches; ``+N`` more revisions)."""
    if not r.revisions:
        return "-"
    x = r.revisions[0]
    s = x["commit"][:8] + (f" ({','.join(x['refs'])})" if x["refs"] else "")
    return s + (f" +{len(r.revisions) - 1}" if len(r.revisions) > 1 else "")


COLUMNS = ("name", "kind", "classes", "steps", "size", "layout", "revision", "last used", "format", "status")


def table_row(r: PaneRow) -> tuple[str, ...]:
    """The cells of :data:`COLUMNS`."""
    status = "ready" if r.status == "ready" else r.status.split(" (")[0]
    return (r.name, r.kind, str(len(r.classes)) if r.classes else "-", "-" if r.steps is None else str(r.steps),
            human_size(r.size) if r.size else "-", r.layout or "-", revision_text(r), age(r.last_used), r.format,
            status)


def details_text(row: PaneRow, info: dict | None, error: str = "", verify=None) -> str:
    """The detail panel: where it lives, how to use it, config, classes, files, recipes, last verification.

    Plain text (no markup): file names and config values are shown as they are."""
    ref = row.ref if row.kind in ("default", "hub") else display_path(row.ref)
    lines = [f"{row.name}  ({row.kind}, {row.format})", f"use as: --model {ref}"]
    if row.path:
        lines.append(f"where: {display_path(row.path)}")
    if row.status != "ready":
        lines.append(f"status: {row.status}")
    if row.kind == "hub" and row.revisions:
        lines.append("revisions: " + ", ".join(f"{x['commit'][:12]} {human_size(x['size'])}"
                                               + (f" ({', '.join(x['refs'])})" if x["refs"] else "")
                                               for x in row.revisions))
    lines.append(f"size: {human_size(row.size)}   last used: {age(row.last_used)}")
    if verify is not None:
        lines.append("")
        lines += verify_lines(verify)
    if error:
        lines += ["", error]
    if info is None:
        if not error:
            lines += ["", "reading files..."]
        return "\n".join(lines)
    classes = info.get("classes") or row.classes
    if classes:
        lines += ["", class_list_text(classes, info.get("class_flows"))]
    cfg = info.get("config") or {}
    if cfg:
        lines.append("")
        for k, v in cfg.items():
            lines.append(f"{k}: {json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v}")
    files = info.get("files") or []
    lines += ["", f"files ({len(files)}, {human_size(info.get('size', 0))}):"]
    for f in files:
        lines.append(f"  {f['name']}  {human_size(f['size'])}  {str(f['hash'])[:12]}")
    recipes = info.get("recipes") or []
    lines += ["", "used by recipes: " + (", ".join(Path(p).name for p in recipes) if recipes else "none")]
    return "\n".join(lines)


def verify_lines(rep) -> list[str]:
    """A verification report (engine.hub.cache.VerifyReport) as the detail panel's lines."""
    if rep.ok:
        kind = "structure" if rep.files and rep.files[0].algorithm == "structure" else "hashes"
        out = [f"verify: ok, {len(rep.files)} file(s), {kind} match"]
    else:
        out = [f"verify: DAMAGED, {len(rep.bad)} of {len(rep.files)} file(s):"]
        out += [f"  BAD {f.name}: {f.problem}" for f in rep.bad]
        out.append("  delete the revision and download it again")
    if rep.missing:
        out.append(f"  not downloaded: {', '.join(rep.missing)}")
    return out


def verify_summary(rep) -> str:
    """One line for a notification."""
    if rep.ok:
        return f"{rep.ref}: {len(rep.files)} file(s) intact"
    bad = rep.bad
    return f"{rep.ref}: {len(bad)} damaged file(s): " + ", ".join(f"{f.name} ({f.problem})" for f in bad)


def plan_text(plan) -> str:
    """A download plan (engine.hub.download.DownloadPlan): files, sizes, what is fetched."""
    lines = [f"{plan.ref.repo_id}: " + (f"{plan.requested} -> " if plan.requested and plan.requested != plan.commit
                                        else "") + f"commit {plan.commit}"]
    for f in plan.files:
        lines.append(f"  {f.name}  {human_size(f.size or 0)}  {'cached' if f.cached else 'to fetch'}")
    if plan.skipped:
        lines.append(f"  left out by the patterns: {', '.join(plan.skipped)}")
    lines.append(f"total {human_size(plan.total_bytes)} in {len(plan.files)} file(s); "
                 f"{human_size(plan.fetch_bytes)} to download")
    return "\n".join(lines)


def delete_text(plan) -> str:
    """A delete plan (engine.hub.delete.DeletePlan): revisions, bytes freed, recipes that still use it."""
    lines = [f"{plan.repo_id}: delete {len(plan.revisions)} revision(s)"]
    for r in plan.revisions:
        lines.append(f"  {r['commit'][:12]}" + (f" ({', '.join(r['refs'])})" if r["refs"] else "")
                     + f"  {human_size(r['size'])}")
    lines.append(f"frees {human_size(plan.freed_bytes)} ({plan.freed_bytes} bytes)")
    for rc in plan.recipes:
        lines.append(f"warning: recipe {Path(rc).name} uses this model; it will need a download again")
    return "\n".join(lines)


def split_globs(text: str) -> list[str]:
    """``*.json, unet/*`` or space separated -> the globs."""
    return [g for g in text.replace(",", " ").split() if g]


def download_argv(repo: str, commit: str | None, include: list[str]) -> list[str]:
    """``netdiff models download`` arguments, pinned to the commit the size was shown for."""
    argv = ["models", "download", repo]
    if commit:
        argv += ["--revision", commit]
    for g in include:
        argv += ["--include", g]
    return argv


@dataclass
class FineTune:
    """A fine-tuning run to start: the arguments, and the config file they name (None: nothing to write)."""

    argv: list[str]
    out: Path
    config: dict | None = None
    config_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def write_config(self) -> None:
        """Write the config next to the run (temp + rename: a half-written config is never read)."""
        if self.config is None or self.config_path is None:
            return
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_name(self.config_path.name + ".tmp")
        tmp.write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.config_path)


@functools.lru_cache(maxsize=1)
def train_options() -> frozenset[str]:
    """The long options ``netdiff train`` takes in this installation (``--init-from`` may or may not be one)."""
    from netdiff_tui.cli import main
    import netdiff_tui.cmd_model  # noqa: F401  (registers train on main)
    cmd = main.commands["train"]
    return frozenset(o for p in cmd.params for o in getattr(p, "opts", ()) if o.startswith("--"))


def parse_classes(text: str) -> list[str]:
    return [c for c in text.replace(",", " ").split() if c]


def finetune_plan(row: PaneRow, data: str, classes_text: str, steps_text: str, out: str,
                  options: set[str] | None = None, time_limit_text: str = "") -> FineTune:
    """The ``netdiff train`` arguments that fine-tune ``row`` on an encoded dataset.

    Native checkpoints start from their weights: ``--init-from`` (the checkpoint's architecture and
    classes plus the data's new ones; a class list given in the form goes into a training config),
    or where this ``netdiff train`` lacks it, ``init_from`` in a training config with the checkpoint's
    architecture and classes. A Stable Diffusion pipeline gets a LoRA adapter (``--model-type sd --base``).

    Raises:
        InputError: one line naming the field that is wrong.
    """
    options = train_options() if options is None else options
    data_p, out_p = Path(data).expanduser(), Path(out).expanduser()
    if not data.strip():
        raise InputError(None, "data: give an encoded dataset directory (netdiff encode)")
    if not (data_p / "manifest.csv").is_file():
        caps = data_p.is_dir() and next((p for p in data_p.rglob("*") if p.suffix in CAPTURE_EXTS), None)
        hint = (f"; it holds captures: encode them first with `netdiff encode {data_p} --label-from-dir "
                f"-o {data_p}-encoded`" if caps else "; make one with netdiff encode")
        raise InputError(data_p, "not an encoded dataset (no manifest.csv)" + hint)
    try:
        steps = int(steps_text)
    except ValueError:
        raise InputError(None, f"steps: {steps_text!r} is not a whole number") from None
    if steps < 1:
        raise InputError(None, "steps: must be >= 1")
    if not out.strip():
        raise InputError(None, "output run directory: give one")
    if out_p.exists() and (out_p / "checkpoints").is_dir() and any((out_p / "checkpoints").iterdir()):
        raise InputError(out_p, "run directory has checkpoints already; choose another output run directory")
    classes = parse_classes(classes_text)
    argv = ["train", "--data", str(data_p), "--out", str(out_p), "--steps", str(steps)]
    limit = time_limit_text.strip()
    if limit:
        import click
        from netdiff_tui.cli import Duration
        if "--time-limit" not in options:
            raise InputError(None, "time limit: this netdiff train has no --time-limit; leave the field empty")
        try:
            Duration().convert(limit, None, None)
        except click.BadParameter as e:
            raise InputError(None, f"time limit: {e.message}") from None
        argv += ["--time-limit", limit]
    if row.format == "diffusers":
        if classes and set(classes) != set(_manifest_labels(data_p)):
            raise InputError(None, "classes: a LoRA run trains on every class of its dataset; "
                                   "leave the field empty or encode only the classes wanted")
        return FineTune(argv + ["--model-type", "sd", "--base", row.ref], out_p,
                        notes=["LoRA adapter on the Stable Diffusion pipeline"])
    if row.format != "native" or row.kind == "hub" and not row.revisions:
        raise InputError(None, f"{row.name}: fine-tuning starts from a native checkpoint or a diffusers "
                               f"pipeline, not a {row.format} one")
    labels = _manifest_labels(data_p)
    if "--init-from" in options:
        return _finetune_init_from(row, argv, classes, labels, out_p)
    return _finetune_config_only(row, argv, classes, labels, out_p)


def _finetune_init_from(row: PaneRow, argv: list[str], classes: list[str], labels: list[str],
                        out: Path) -> FineTune:
    """``netdiff train --init-from``: the engine takes the checkpoint's architecture and classes and adds
    the data's new ones; an explicit class list (a training config) must keep every old class."""
    own = list(row.classes)
    argv = argv + ["--init-from", row.ref]
    new = sorted(set(labels) - set(own))
    notes = [f"new classes from the data: {', '.join(new)}"] if new else []
    if not classes or classes == own:
        return FineTune(argv, out, notes=notes)
    missing = [c for c in own if c not in classes]
    if missing:
        raise InputError(None, "classes: a fine-tuned model keeps every class of its checkpoint; missing: "
                               + ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else "")
                               + " (leave the field empty for the checkpoint's plus the data's new ones)")
    if not set(classes) & set(labels):
        raise InputError(out, "the data has flows of none of the classes given")
    cfg_path = out / FINETUNE_CONFIG
    return FineTune(argv + ["--config", str(cfg_path)], out, {"classes": classes}, cfg_path, notes)


def _finetune_config_only(row: PaneRow, argv: list[str], classes: list[str], labels: list[str],
                          out: Path) -> FineTune:
    """A ``netdiff train`` without ``--init-from``: ``init_from`` in a training config with the
    checkpoint's architecture; the classes must be the checkpoint's (its weights are per class)."""
    base = _native_config(row)
    own = list(base.get("classes") or ())
    if not classes:
        classes = own
    if own and classes != own:
        if set(classes) == set(own):
            classes = own       # same classes: keep the checkpoint's order, which its weights index by
        else:
            extra = sorted(set(classes) - set(own))
            missing = sorted(set(own) - set(classes))
            raise InputError(None, "classes: fine-tuning keeps the checkpoint's classes (its weights are per class)"
                                   + (f"; not in it: {', '.join(extra)}" if extra else "")
                                   + (f"; missing: {', '.join(missing)}" if missing else ""))
    have = set(labels)
    absent = [c for c in classes if c not in have]
    if len(absent) == len(classes):
        raise InputError(out, "the data has no flows of the checkpoint's classes ("
                              + ", ".join(classes[:6]) + (", ..." if len(classes) > 6 else "") + ")")
    model = {k: v for k, v in (base.get("model") or {}).items() if k not in RUN_OWNED_MODEL_KEYS}
    config = {"model": model, "classes": classes, "steps": int(argv[argv.index("--steps") + 1]),
              "init_from": row.ref}
    notes = ["netdiff train has no --init-from here: init_from is in the training config"]
    cfg_path = out / FINETUNE_CONFIG
    return FineTune(argv + ["--config", str(cfg_path)], out, config, cfg_path, notes)


def _native_config(row: PaneRow) -> dict:
    from engine.model.checkpoint import resolve
    d = resolve(row.ref)
    try:
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(d / "config.json", f"unreadable checkpoint config: {e}") from None
    if not isinstance(cfg, dict):
        raise InputError(d / "config.json", "checkpoint config is not a JSON object")
    return cfg


def _manifest_labels(data: Path) -> list[str]:
    from engine.datasets.encoded import read_manifest
    return sorted({r["label"] for r in read_manifest(data)})


def default_run_dir(runs_dir: Path, row: PaneRow) -> Path:
    """``<runs>/<name>-ft``, numbered when taken."""
    base = runs_dir / (row.name.replace("/", "-") + "-ft")
    p, n = base, 1
    while p.exists():
        n += 1
        p = base.with_name(f"{base.name}{n}")
    return p

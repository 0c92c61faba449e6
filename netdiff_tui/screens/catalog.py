"""What the console lists: checkpoints, jobs and reports found on disk (no Textual here).

Everything is read from the files the engine writes (``config.json``,
``events.jsonl``, ``compliance.json``, ``report.json``); nothing is loaded
into torch, so listing stays instant.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import engine

WEIGHTS = "model.safetensors"
DEFAULT_MODEL_DIR = Path(engine.__file__).resolve().parent / "default_model"


# -- models --------------------------------------------------------------------------------

@dataclass
class ModelInfo:
    """One local checkpoint (or a training run that has not exported one yet)."""

    name: str
    kind: str                      # "default", "local" or "run"
    path: Path                     # the directory generate would load (``--model``)
    classes: tuple[str, ...] = ()
    steps: int | None = None
    size: int = 0                  # bytes of the weights file
    layout: str | None = None
    config: dict = field(default_factory=dict)
    status: str = "ready"          # "ready", "training" or an error line

    @property
    def ready(self) -> bool:
        return self.status == "ready"


def human_size(n: int) -> str:
    if n <= 0:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _read_json(p: Path) -> dict | None:
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def checkpoint_info(d: Path, name: str, kind: str) -> ModelInfo:
    """A checkpoint directory -> its row (errors become the status line, never an exception)."""
    cfg = _read_json(d / "config.json")
    w = d / WEIGHTS
    size = w.stat().st_size if w.is_file() else 0
    if cfg is None:
        return ModelInfo(name, kind, d, size=size, status="config.json missing or unreadable")
    classes = cfg.get("classes") or ()
    status = "ready" if size else f"{WEIGHTS} missing"
    return ModelInfo(name, kind, d, tuple(str(c) for c in classes), cfg.get("steps"), size,
                     None if cfg.get("layout") is None else str(cfg.get("layout")), cfg, status)


def _latest_checkpoint_step(run: Path) -> int | None:
    steps = []
    for c in (run / "checkpoints").glob("step-*"):
        try:
            steps.append(int(c.name.split("-", 1)[1]))
        except ValueError:
            pass
    return max(steps) if steps else None


def _is_checkpoint(d: Path) -> bool:
    return (d / "config.json").is_file() and (d / WEIGHTS).is_file()


def find_models(models_dir: Path, runs_dirs: list[Path]) -> list[ModelInfo]:
    """The shipped default, every checkpoint under ``models_dir``, every training run under ``runs_dirs``."""
    out: list[ModelInfo] = []
    if DEFAULT_MODEL_DIR.is_dir():
        out.append(checkpoint_info(DEFAULT_MODEL_DIR, "default", "default"))
    if models_dir.is_dir():
        for d in sorted(p for p in models_dir.iterdir() if p.is_dir()):
            if _is_checkpoint(d):
                out.append(checkpoint_info(d, d.name, "local"))
            elif _is_checkpoint(d / "model"):
                out.append(checkpoint_info(d / "model", d.name, "local"))
    seen = set()
    for root in runs_dirs:
        for run in _candidate_dirs(root):
            if not (run / "train_config.json").is_file() or run.resolve() in seen:
                continue
            seen.add(run.resolve())
            if _is_checkpoint(run / "model"):
                out.append(checkpoint_info(run / "model", run.name, "run"))
            else:
                tc = _read_json(run / "train_config.json") or {}
                out.append(ModelInfo(run.name, "run", run, tuple(tc.get("classes") or ()),
                                     _latest_checkpoint_step(run), 0, None, tc, "training (no exported model yet)"))
    return out


def model_details(m: ModelInfo) -> str:
    """Multi-line description for the details pane."""
    c = m.config
    lines = [f"[b]{m.name}[/b]  ({m.kind})", f"path: {m.path}", f"status: {m.status}"]
    if m.classes:
        lines.append(f"classes ({len(m.classes)}): {', '.join(m.classes)}")
    if m.steps is not None:
        lines.append(f"steps: {m.steps}")
    if m.layout:
        lines.append(f"layout: {m.layout}")
    if m.size:
        lines.append(f"weights: {human_size(m.size)}")
    if isinstance(c.get("model"), dict):
        lines.append("architecture: " + ", ".join(f"{k}={v}" for k, v in sorted(c["model"].items())))
    if isinstance(c.get("sampling"), dict):
        lines.append("sampling defaults: " + ", ".join(f"{k}={v}" for k, v in sorted(c["sampling"].items())))
    for k in ("format", "seed", "data_manifest_sha256", "split"):
        if k in c and not isinstance(c[k], (dict, list)):
            lines.append(f"{k}: {c[k]}")
    if m.ready:
        lines.append(f"\nuse: netdiff generate --model {m.path if m.kind != 'default' else 'default'} --label ...")
    return "\n".join(lines)


# -- jobs ----------------------------------------------------------------------------------

@dataclass
class JobInfo:
    """A directory with an ``events.jsonl``: a training run or a generation."""

    name: str
    path: Path                      # the events.jsonl
    kind: str                       # "train", "generate" or "job"
    modified: float = 0.0
    size: int = 0

    @property
    def age(self) -> str:
        s = max(0, time.time() - self.modified)
        for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
            if s >= n:
                return f"{int(s // n)}{unit} ago"
        return f"{int(s)}s ago"


def _candidate_dirs(root: Path, depth: int = 2):
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


def job_kind(d: Path) -> str:
    if (d / "train_config.json").is_file():
        return "train"
    if (d / "job.json").is_file():
        j = _read_json(d / "job.json") or {}
        return str(j.get("kind", "job"))
    if (d / "generate.json").is_file():
        return "generate"
    return "job"


def find_jobs(dirs: list[Path]) -> list[JobInfo]:
    """Every directory holding an ``events.jsonl`` under ``dirs`` (newest first)."""
    out, seen = [], set()
    for root in dirs:
        for d in _candidate_dirs(root):
            ev = d / "events.jsonl"
            if ev.is_file() and ev.resolve() not in seen:
                seen.add(ev.resolve())
                st = ev.stat()
                out.append(JobInfo(d.name, ev, job_kind(d), st.st_mtime, st.st_size))
    return sorted(out, key=lambda j: -j.modified)


def events_path(p: str | Path) -> Path:
    """A job directory or its events file -> the events file."""
    p = Path(p).expanduser()
    return p / "events.jsonl" if p.is_dir() else p


# -- reports -------------------------------------------------------------------------------

@dataclass
class ReportView:
    """A report made readable: a title, summary lines and one table."""

    kind: str                       # "compliance" or "evaluation"
    path: Path
    title: str
    summary: list[str]
    columns: list[str]
    rows: list[list[str]]


def find_report(p: str | Path) -> Path:
    """A report file, or a directory holding compliance.json / report.json."""
    p = Path(p).expanduser()
    if p.is_dir():
        for name in ("compliance.json", "report.json"):
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(f"{p}: no compliance.json or report.json in this directory")
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    return p


def short_path(p: Path) -> str:
    """The last two components of a path (what a title needs)."""
    return str(Path(*p.parts[-2:])) if len(p.parts) >= 2 else str(p)


def _n(v) -> str:
    return "-" if v is None else str(v)


def _f(v, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    try:
        return f"{float(v):.{nd}f}"
    except (TypeError, ValueError):
        return str(v)


def load_report(p: str | Path) -> ReportView:
    """Read a ``compliance.json`` (repair/check) or an evaluation ``report.json``.

    Raises ValueError with a one-line message for anything else.
    """
    path = find_report(p)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text (expected a JSON report)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a report (expected a JSON object)")
    if "rules" in d and "totals" in d:
        return _compliance_view(path, d)
    if "fidelity" in d and "classes" in d:
        return _evaluation_view(path, d)
    if d.get("repaired") is False:
        raise ValueError(f"{path}: flows were not repaired ({d.get('reason', 'no reason given')})")
    raise ValueError(f"{path}: neither a compliance report (rules, totals) nor an evaluation report (fidelity)")


def _compliance_view(path: Path, d: dict) -> ReportView:
    rep = d.get("mode") == "repair"
    t = d["totals"]
    clean = d.get("clean")
    summary = [
        f"{d.get('mode', '?')} of {d.get('source') or path.parent.name}: {d.get('packets')} packets in "
        f"{d.get('flows')} flows",
        f"violating any rule: before {t['before']['packets']} packets / {t['before']['flows']} flows"
        + (f"; changed {t['changed']['packets']} / {t['changed']['flows']}" if "changed" in t else "")
        + f"; after {t['after']['packets']} / {t['after']['flows']}",
        "result: " + ("clean: every enabled rule holds" if clean else "NOT clean"),
    ]
    cols = ["rule", "scope", "on", "before pkts", "before flows"]
    if rep:
        cols += ["changed pkts", "after pkts", "after flows", "fields changed"]
    rows = []
    for r in d["rules"]:
        row = [r["name"], r.get("scope", ""), "yes" if r.get("enabled", True) else "off",
               _n(r["before"]["packets"]), _n(r["before"]["flows"])]
        if rep:
            ch, af = r.get("changed") or {}, r.get("after") or {}
            row += [_n(ch.get("packets")), _n(af.get("packets")), _n(af.get("flows")),
                    ", ".join(f"{k} {v}" for k, v in sorted((ch.get("fields") or {}).items()))]
        rows.append(row)
    return ReportView("compliance", path, f"Compliance {'repair' if rep else 'check'}: {short_path(path)}", summary, cols, rows)


def _evaluation_view(path: Path, d: dict) -> ReportView:
    cands = list(d["fidelity"])
    classes = list(d["classes"])
    s = d.get("summary", {})
    summary = [f"real: {d.get('inputs', {}).get('real', '?')}  synthetic: {d.get('inputs', {}).get('synthetic', '?')}",
               "mean JSD (macro): " + ", ".join(f"{c} {_f((s.get('mean_jsd') or {}).get(c))}" for c in cands)]
    if "synthetic_beats_baselines_on_mean_jsd" in s:
        summary.append("synthetic beats every baseline on mean JSD: "
                       + ("yes" if s["synthetic_beats_baselines_on_mean_jsd"] else "no"))
    ratios = [(f, s.get(f"tstr_ratio_{f}")) for f in ("packet_bits_noports", "flow_stats_noports")]
    if any(v is not None for _, v in ratios):
        summary.append("train-synthetic / train-real macro-F1 (no ports): "
                       + ", ".join(f"{f.split('_noports')[0].replace('_', ' ')} {_f(v, 2)}x" for f, v in ratios
                                   if v is not None))
    close = (s.get("closeness") or {}).get("synthetic") or {}
    if close.get("median_dcr_ratio") is not None:
        summary.append(f"distance to the nearest real train flow: {_f(close['median_dcr_ratio'], 2)}x the real "
                       f"test flows' (below 1 = copying), exact copies {_f(close.get('exact_copies'))}")
    cols = ["class"] + [f"{c} JSD" for c in cands] + [f"{c} TVD" for c in cands]
    rows = []
    for c in classes:
        row = [c]
        for m in ("jsd", "tvd"):
            for k in cands:
                cl = (d["fidelity"][k].get("classes") or {}).get(c) or {}
                row.append(_f((cl.get("mean") or {}).get(m)))
        rows.append(row)
    row = ["all classes"]
    for m in ("jsd", "tvd"):
        row += [_f((d["fidelity"][k].get("overall") or {}).get(m)) for k in cands]
    rows.append(row)
    return ReportView("evaluation", path, f"Evaluation: {short_path(path)}", summary, cols, rows)


# -- following a job -----------------------------------------------------------------------

class EventTail:
    """Incremental reader of an ``events.jsonl`` (complete lines only), decoded by the engine.

    :meth:`engine.progress.EventLog.follow` blocks while waiting; the console polls
    this instead so that its worker can stop between polls.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.pos = 0
        self._buf = b""
        self.bad_lines = 0

    def poll(self) -> list:
        from engine.progress import event_from_dict
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, 2)
                if size < self.pos:          # truncated / replaced: start over
                    self.pos, self._buf = 0, b""
                f.seek(self.pos)
                chunk = f.read()
                self.pos = f.tell()
        except FileNotFoundError:
            return []
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        out = []
        for ln in lines:
            if not ln.strip():
                continue
            try:
                out.append(event_from_dict(json.loads(ln)))
            except (ValueError, KeyError, TypeError):
                self.bad_lines += 1
        return out

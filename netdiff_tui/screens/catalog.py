"""What the console shows of the engine's files: rows, details and report tables (no Textual here).

Reading and discovery are engine.artifacts' (typed, range-checked readers); following a job is
engine.progress.EventLog.follow. This module only turns what they return into text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.artifacts.models import classes_text
from engine.constants import CAPTURE_EXTS
from engine.artifacts import (ComplianceReport, Counts, EvaluationSummary, JobEntry, ModelEntry, events_path,
                              find_jobs, find_models, read_report)

# The console's row types are the engine's entries.
ModelInfo = ModelEntry
JobInfo = JobEntry

__all__ = ["JobInfo", "ModelInfo", "ReportView", "age", "events_path", "find_jobs", "find_models", "human_size",
           "load_report", "model_details", "report_view", "short_path"]


def human_size(n: int) -> str:
    if n <= 0:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def age(modified: float) -> str:
    s = max(0, time.time() - modified)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{int(s // n)}{unit} ago"
    return f"{int(s)}s ago"


def model_details(m: ModelEntry) -> str:
    """Multi-line description for the details pane."""
    lines = [f"[b]{m.name}[/b]  ({m.kind})", f"path: {m.path}", f"status: {m.status}"]
    if m.classes:
        lines.append(classes_text(m.classes, m.checkpoint.class_flows if m.checkpoint else None))
    if m.steps is not None:
        lines.append(f"steps: {m.steps}")
    if m.layout:
        lines.append(f"layout: {m.layout}")
    if m.size:
        lines.append(f"weights: {human_size(m.size)}")
    c = m.checkpoint
    if c is not None:
        if c.model:
            lines.append("architecture: " + ", ".join(f"{k}={v}" for k, v in sorted(c.model.items())))
        if c.sampling:
            lines.append("sampling defaults: " + ", ".join(f"{k}={v}" for k, v in sorted(c.sampling.items())))
        if c.format:
            lines.append(f"format: {c.format}")
        for k in ("seed", "data_manifest_sha256", "split"):
            if k in c.facts:
                lines.append(f"{k}: {c.facts[k]}")
    if m.ready:
        lines.append(f"\nuse: netdiff generate --model {m.path if m.kind != 'default' else 'default'} --label ...")
    return "\n".join(lines)


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
    plot: list[str] = field(default_factory=list)      # a text bar chart beside the table


def bars(values: dict[str, float | None], width: int = 24, unit: str = "") -> list[str]:
    """``{name: value}`` as text bars scaled to the largest value (a terminal plot that any font,
    colour depth or monochrome terminal draws)."""
    known = {k: v for k, v in values.items() if v is not None and v == v}
    top = max(known.values(), default=0.0)
    pad = max((len(k) for k in values), default=0)
    out = []
    for k, v in values.items():
        if k not in known:
            out.append(f"{k:<{pad}}  -")
            continue
        n = int(round(width * v / top)) if top > 0 else 0
        out.append(f"{k:<{pad}}  {'█' * n}{'·' * (width - n)} {v:.3f}{unit}")
    return out


def short_path(p: Path) -> str:
    """The last two components of a path (what a title needs)."""
    return str(Path(*p.parts[-2:])) if len(p.parts) >= 2 else str(p)


def _n(v) -> str:
    return "-" if v is None else str(v)


def _f(v, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{float(v):.{nd}f}"


def load_report(p: str | Path) -> ReportView:
    """Read a ``compliance.json`` or an evaluation ``report.json`` (or a directory holding one).

    Raises:
        InputError: one line for anything that is neither.
    """
    return report_view(read_report(p))


def report_view(r: ComplianceReport | EvaluationSummary) -> ReportView:
    return _compliance_view(r) if isinstance(r, ComplianceReport) else _evaluation_view(r)


def _pf(c: Counts | None) -> str:
    return "-" if c is None else f"{_n(c.packets)} / {_n(c.flows)}"


def _compliance_view(r: ComplianceReport) -> ReportView:
    rep = r.mode == "repair"
    summary = [
        f"{r.mode} of {r.source or r.path.parent.name}: {_n(r.packets)} packets in {_n(r.flows)} flows",
        f"violating any rule: before {_n(r.before.packets)} packets / {_n(r.before.flows)} flows"
        + (f"; changed {_pf(r.changed)}" if r.changed is not None else "")
        + f"; after {_pf(r.after)}",
        "result: " + ("clean: every enabled rule holds" if r.clean else "NOT clean"),
    ]
    cols = ["rule", "scope", "on", "before pkts", "before flows"]
    if rep:
        cols += ["changed pkts", "after pkts", "after flows", "fields changed"]
    rows = []
    for x in r.rules:
        row = [x.name, x.scope, "yes" if x.enabled else "off", _n(x.before.packets), _n(x.before.flows)]
        if rep:
            ch, af = x.changed or Counts(), x.after or Counts()
            row += [_n(ch.packets), _n(af.packets), _n(af.flows),
                    ", ".join(f"{k} {v}" for k, v in sorted(x.fields_changed.items()))]
        rows.append(row)
    return ReportView("compliance", r.path, f"Compliance {'repair' if rep else 'check'}: {short_path(r.path)}",
                      summary, cols, rows)


def _evaluation_view(r: EvaluationSummary) -> ReportView:
    cands = r.candidates
    summary = [f"real: {r.real}  synthetic: {r.synthetic}",
               "mean JSD (macro): " + ", ".join(f"{c} {_f(r.mean_jsd.get(c))}" for c in cands)]
    if r.beats_baselines is not None:
        summary.append("synthetic beats every baseline on mean JSD: " + ("yes" if r.beats_baselines else "no"))
    if r.tstr_ratios:
        summary.append("train-synthetic / train-real macro-F1 (no ports): "
                       + ", ".join(f"{f.split('_noports')[0].replace('_', ' ')} {_f(v, 2)}x"
                                   for f, v in r.tstr_ratios.items()))
    if r.dcr_ratio is not None:
        summary.append(f"distance to the nearest real train flow: {_f(r.dcr_ratio, 2)}x the real "
                       f"test flows' (below 1 = copying), exact copies {_f(r.exact_copies)}")
    fl = r.flow_length_jsd
    if fl.get("synthetic_vs_test") is not None:
        summary.append(f"flow length, whole flows (JSD): {_f(fl.get('synthetic_vs_train'))} vs train, "
                       f"{_f(fl.get('synthetic_vs_test'))} vs test (real train vs test {_f(fl.get('real_train_vs_test'))})")
    cols = ["class"] + [f"{c} JSD" for c in cands] + [f"{c} TVD" for c in cands]
    rows = []
    for cl in r.classes:
        rows.append([cl] + [_f(r.per_class[k][cl][m]) for m in ("jsd", "tvd") for k in cands])
    rows.append(["all classes"] + [_f(r.overall[k][m]) for m in ("jsd", "tvd") for k in cands])
    plot = ["mean JSD per candidate (lower is closer to the real flows):"] + bars(r.mean_jsd)
    if r.tstr_ratios:
        plot += ["train-synthetic / train-real macro-F1 (1 = as useful as real):"]
        plot += bars({f.split("_noports")[0].replace("_", " "): v for f, v in r.tstr_ratios.items()}, unit="x")
    return ReportView("evaluation", r.path, f"Evaluation: {short_path(r.path)}", summary, cols, rows, plot)


# -- jobs ----------------------------------------------------------------------------------

@dataclass
class JobState:
    """What the Jobs view shows of one job beside its events: its record, read off the UI thread."""

    path: Path                      # the job directory
    status: str                     # running, done, failed, cancelled ("" when there is no job.json)
    reason: str
    device: str
    out: Path | None
    tail: list[str]
    result: list[str]               # readable result lines once done
    report: Path | None             # compliance.json / report.json of its output, when there is one
    dataset: Path | None            # its output's dataset directory (for the flow viewer, export)
    data_card: str = ""             # README.md of an export
    memory: str = ""                # resident memory of its process while it runs here ("1.2 GiB")


def process_memory(pid: int) -> str:
    """A local process's resident memory (VmRSS of /proc/PID/status, its own, not its children's), "" if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return human_size(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return ""


def report_of(out: Path | None) -> Path | None:
    if out is None:
        return None
    for name in ("compliance.json", "report.json"):
        if (out / name).is_file():
            return out / name
    return None


def result_lines(kind: str, result: dict, out: Path | None) -> list[str]:
    """A finished job's result as a few lines: files, flow counts, compliance summary."""
    lines = []
    if out is not None:
        lines.append(f"output: {out.name}/")
    if "flows" in result:
        lines.append(f"{result.get('flows')} flows"
                     + (f", {result['packets']} packets" if "packets" in result else "")
                     + (f", label {result['label']}" if result.get("label") else "")
                     + (f", {result['seconds']} s" if "seconds" in result else ""))
    rep = report_of(out)
    if rep is not None and rep.name == "compliance.json":
        try:
            r = read_report(rep)
        except Exception as e:      # an unreadable report is said, never raised into the view
            lines.append(f"compliance: {e}")
        else:
            lines.append(f"compliance: {'clean' if r.clean else 'NOT clean'}; violating before "
                         f"{_n(r.before.packets)} packets / {_n(r.before.flows)} flows, after {_pf(r.after)}")
    if out is not None and out.is_dir():
        n = sum(1 for p in out.rglob("*") if p.is_file())
        lines.append(f"{n} files")
    gen, vet = result.get("generated"), result.get("vetted")
    if kind == "balance" and isinstance(gen, dict) and gen:
        # a balance's top-up per class, and what its consistency filter kept of the draws
        line = f"synthetic: {sum(v for v in gen.values() if isinstance(v, int))} flows in {len(gen)} classes"
        if isinstance(vet, dict) and vet:
            drawn = sum(v.get("drawn", 0) for v in vet.values() if isinstance(v, dict))
            prob = next((v.get("min_prob") for v in vet.values() if isinstance(v, dict)), None)
            line += f", kept of {drawn} drawn (class probability >= {prob})"
        lines.append(line)
    shown = {"flows", "packets", "label", "seconds", "out"}
    # paths differ by machine and say nothing the output line does not
    extra = [f"{k} {v}" for k, v in result.items() if k not in shown and v is not None
             and not isinstance(v, (dict, list)) and not str(v).startswith("/")][:6]
    if extra:
        lines.append(", ".join(extra))
    return lines


def job_state(d: Path, tail: int = 8) -> JobState:
    """Read a job directory's record, log tail, result and output (cheap files only)."""
    from engine.artifacts.jobs import effective_status, log_tail, read_job
    from engine.errors import InputError
    from .flowdata import dataset_of
    d = Path(d)
    lines = log_tail(d, tail)
    try:
        rec = read_job(d)
    except InputError:
        return JobState(d, "", "", "", None, lines, [], None, None)
    status, reason = effective_status(rec)
    out = Path(rec.out) if rec.out else None
    result = result_lines(rec.kind, rec.result, out) if status == "done" else []
    card = ""
    if status == "done" and rec.kind == "export" and out is not None and (out / "README.md").is_file():
        card = (out / "README.md").read_text(encoding="utf-8", errors="replace")
    from engine.artifacts.jobs import job_alive
    memory = process_memory(rec.pid) if status == "running" and job_alive(rec) else ""
    return JobState(d, status, reason, rec.device, out, lines, result, report_of(out),
                    dataset_of(out) if out is not None else None, card, memory)


# -- datasets (export inputs) ------------------------------------------------------------------

@dataclass
class DatasetInfo:
    """A directory ``netdiff export`` takes: a generation's output, an export, or real class folders."""

    path: Path
    kind: str                       # "generated", "export" or "captures"
    classes: dict[str, int]         # class -> flows (-1: not counted, real captures)

    @property
    def flows(self) -> int:
        return sum(n for n in self.classes.values() if n > 0)


def dataset_info(d: str | Path) -> DatasetInfo:
    """What a dataset directory holds, by its own records (generate.json, manifest.json) or its folders.

    Raises:
        InputError: neither a generation, an export, nor a folder of ``<class>/*.pcap``.
    """
    from engine.artifacts import read_export_manifest, read_generate
    from engine.errors import InputError
    d = Path(d).expanduser()
    if (d / "generate.json").is_file():
        g = read_generate(d)
        return DatasetInfo(d, "generated", {g.label: g.flows or 0})
    if (d / "manifest.json").is_file():
        m = read_export_manifest(d)
        return DatasetInfo(d, "export", {c: v.get("real", 0) + v.get("synthetic", 0) for c, v in m.classes.items()})
    if d.is_dir():
        classes = {c.name: -1 for c in sorted(d.iterdir()) if c.is_dir()
                   and any(p.suffix in CAPTURE_EXTS for p in c.iterdir())}
        if classes:
            return DatasetInfo(d, "captures", classes)
    raise InputError(d, "not a dataset (a generation output, an export, or <class>/*.pcap folders)")


def find_datasets(roots: list[str | Path]) -> list[DatasetInfo]:
    """Generations and exports under ``roots`` (two levels down), by path."""
    from engine.artifacts.models import candidate_dirs
    from engine.errors import InputError
    out, seen = [], set()
    for root in roots:
        for d in candidate_dirs(Path(root).expanduser()):
            if d.resolve() in seen or not ((d / "generate.json").is_file() or (d / "manifest.json").is_file()):
                continue
            seen.add(d.resolve())
            try:
                out.append(dataset_info(d))
            except InputError:
                continue        # an unreadable record: not offered for export
    return sorted(out, key=lambda x: str(x.path))

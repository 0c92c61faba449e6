"""What the console shows of the engine's files: rows, details and report tables (no Textual here).

Reading and discovery are engine.artifacts' (typed, range-checked readers); following a job is
engine.progress.EventLog.follow. This module only turns what they return into text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

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
        lines.append(f"classes ({len(m.classes)}): {', '.join(m.classes)}")
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
    cols = ["class"] + [f"{c} JSD" for c in cands] + [f"{c} TVD" for c in cands]
    rows = []
    for cl in r.classes:
        rows.append([cl] + [_f(r.per_class[k][cl][m]) for m in ("jsd", "tvd") for k in cands])
    rows.append(["all classes"] + [_f(r.overall[k][m]) for m in ("jsd", "tvd") for k in cands])
    return ReportView("evaluation", r.path, f"Evaluation: {short_path(r.path)}", summary, cols, rows)

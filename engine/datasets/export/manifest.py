"""The export's manifest.csv / manifest.json and the dataset-level facts they carry."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

from engine.datasets.export.options import EXPORT_VERSION, ExportOptions
from engine.outdir import atomic_write_bytes

MANIFEST_COLUMNS = ["file", "class", "flow_id", "split", "origin", "proto", "packets", "bytes", "duration_s",
                    "client_ip", "client_port", "server_ip", "server_port", "start_ns", "source",
                    "recipe", "recipe_sha256", "model", "model_hash", "seed", "compliance"]


def dataset_info(rows: list[dict], opts: ExportOptions, sources, merged: list[str], notes: list[str]) -> dict:
    """The ``dataset`` object of manifest.json (also what the data card is written from)."""
    return {"format": "netdiff-export", "version": EXPORT_VERSION, "flows": len(rows),
            "options": {"pcapng": opts.pcapng, "split": opts.split, "seed": opts.seed,
                        "flow_config": asdict(opts.flow_config), **opts.selection()},
            "inputs": _input_dirs(sources), "classes": counts(rows), "merged_pcapng": merged,
            "compliance": _compliance(sources), "fidelity": _fidelity(sources), "notes": notes}


def write_manifests(data: Path, rows: list[dict], info: dict) -> None:
    buf = io.StringIO()
    wr = csv.DictWriter(buf, MANIFEST_COLUMNS, lineterminator="\n", extrasaction="ignore")
    wr.writeheader()
    wr.writerows(rows)
    atomic_write_bytes(data / "manifest.csv", [buf.getvalue().encode()])
    atomic_write_bytes(data / "manifest.json",
                           [json.dumps({"dataset": info, "flows": [{k: r.get(k, "") for k in MANIFEST_COLUMNS}
                                                                   for r in rows]},
                                       indent=1, default=str).encode()])


def _input_dirs(sources) -> list[str]:
    seen = {}
    for s in sources:
        i, rel = s.key.split(":", 1)
        root = s.path
        for _ in range(rel.count("/") + 1):
            root = root.parent
        seen.setdefault(int(i), str(root))
    return [seen[i] for i in sorted(seen)]


def counts(rows) -> dict:
    c: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        c[r["class"]][r["origin"]] += 1
        if r["split"]:
            c[r["class"]][r["split"]] += 1
        c[r["class"]]["packets"] += int(r["packets"])
    return {k: dict(v) for k, v in sorted(c.items())}


def _compliance(sources) -> dict:
    out = {}
    for s in sources:
        if s.info.get("compliance_report"):
            out.setdefault(s.cls, set()).add(s.info.get("compliance", ""))
    return {k: sorted(v) for k, v in sorted(out.items())}


def _fidelity(sources) -> dict:
    """Top-level numbers of a fidelity report shipped next to a generated dataset, if any."""
    out = {}
    for d in sorted({s.path.parent.parent for s in sources if s.origin == "synthetic"}):
        for name in ("fidelity.json", "evaluation.json", "report.json"):
            f = d / name
            if f.is_file():
                try:
                    j = json.loads(f.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(j, dict):
                    flat = {k: v for k, v in j.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                    if flat:
                        out[d.name] = flat
                break
    return out

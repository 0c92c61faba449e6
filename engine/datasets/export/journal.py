"""Resume state of an interrupted export: the journal of finished flows and the fingerprint of its arguments."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from engine.datasets.export.options import EXPORT_VERSION, ExportOptions
from engine.datasets.export.scan import Source


class Journal:
    """Append-only JSON lines; a torn last line (a kill mid-write) is ignored."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for ln in self.path.read_text(encoding="utf-8").split("\n"):
            if not ln.strip():
                continue
            try:
                out.append(json.loads(ln))
            except ValueError:
                break
        return out

    def append(self, rec: dict) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(rec, sort_keys=True) + "\n").encode())
        finally:
            os.close(fd)


def fingerprint(sources: list[Source], opts: ExportOptions) -> dict:
    """What must match for a rerun to continue an interrupted export rather than start over."""
    srcs = []
    for s in sources:
        st = s.path.stat()
        srcs.append([s.key, str(s.path.resolve()), st.st_size, st.st_mtime_ns])
    return {"version": EXPORT_VERSION, "pcapng": opts.pcapng, "split": opts.split, "seed": opts.seed,
            "flow_config": asdict(opts.flow_config), "sources": srcs, **opts.selection()}

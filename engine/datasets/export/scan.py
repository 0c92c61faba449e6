"""Export inputs -> sources: generated or exported datasets (manifest.csv) and real labeled capture folders."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from engine.artifacts.datasets import GENERATE, read_generate, read_manifest_rows
from engine.artifacts.fields import read_json_object
from engine.artifacts.reports import COMPLIANCE, compliance_line
from engine.constants import CAPTURE_EXTS
from engine.errors import InputError
from engine.inputs import files_in


@dataclass
class Source:
    """One input file: a real capture, or one generated flow file."""

    key: str                 # stable id: "<input index>:<relative path>"
    path: Path
    cls: str
    origin: str              # "real" | "synthetic"
    rows: list = field(default_factory=list)     # generator manifest rows for this file
    info: dict = field(default_factory=dict)     # dataset-level metadata (recipe, model, compliance)


def scan_inputs(inputs: list[str | os.PathLike]) -> list[Source]:
    """Input folders -> sources, in a fixed order."""
    sources: list[Source] = []
    if not inputs:
        raise InputError(None, "no input directories")
    for i, d in enumerate(map(Path, inputs)):
        if not d.exists():
            raise InputError(d, "no such directory")
        if not d.is_dir():
            raise InputError(d, "is not a directory (export takes dataset or capture directories)")
        man = d / "manifest.csv"
        if man.is_file():
            sources += _scan_dataset(i, d, man)
            continue
        found = False
        direct = files_in(d, CAPTURE_EXTS, recursive=False, drop_twins=True)
        if direct:
            found = True
            for f in direct:
                sources.append(Source(f"{i}:{f.name}", f, d.name, "real"))
        for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            for f in files_in(sub, CAPTURE_EXTS, recursive=False, drop_twins=True):
                found = True
                sources.append(Source(f"{i}:{sub.name}/{f.name}", f, sub.name, "real"))
        if not found:
            raise InputError(d, "holds no manifest.csv and no <class>/*.pcap captures")
    return sources


def select_classes(sources: list[Source], classes: tuple[str, ...] | list[str]) -> list[Source]:
    """The sources of ``classes`` (all when empty); a class the inputs lack is an error naming those they hold."""
    if not classes:
        return sources
    have = sorted({s.cls for s in sources})
    missing = [c for c in classes if c not in have]
    if missing:
        raise InputError(None, f"no flows of class {', '.join(missing)} in the inputs "
                               f"(they hold: {', '.join(have) or 'none'})")
    want = set(classes)
    return [s for s in sources if s.cls in want]


def _scan_dataset(i: int, d: Path, man: Path) -> list[Source]:
    rows = read_manifest_rows(man, need=())
    if not rows:
        return []
    cols = rows[0].keys()
    if "file" not in cols or not ({"label", "class"} & set(cols)):
        raise InputError(man, "manifest has no 'file' and 'label' columns; not a generated or exported dataset")
    info: dict = {}
    if (d / GENERATE).is_file():
        g = read_generate(d)
        info.update(recipe=g.recipe, recipe_sha256=g.recipe_sha256, model=g.model or "default",
                    model_hash=g.model_hash)
    cj = d / COMPLIANCE
    if cj.is_file():
        info["compliance"] = compliance_line(read_json_object(cj))
        info["compliance_report"] = str(cj)
    by_file: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_file[r["file"]].append(r)
    out = []
    for rel in sorted(by_file):
        f = d / rel
        if not f.is_file():
            raise InputError(man, f"lists {rel!r}, which does not exist")
        r0 = by_file[rel][0]
        cls = r0.get("class") or r0.get("label") or f.parent.name
        origin = r0.get("origin") or ("synthetic" if str(r0.get("synthetic", "1")) not in ("0", "false", "False")
                                      else "real")
        out.append(Source(f"{i}:{rel}", f, cls, origin, by_file[rel], info))
    return out

"""Export inputs -> sources: generated or exported datasets (manifest.csv) and real labeled capture folders."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InputError

CAPTURE_EXTS = (".pcap", ".pcapng", ".cap")


@dataclass
class Source:
    """One input file: a real capture, or one generated flow file."""

    key: str                 # stable id: "<input index>:<relative path>"
    path: Path
    cls: str
    origin: str              # "real" | "synthetic"
    rows: list = field(default_factory=list)     # generator manifest rows for this file
    info: dict = field(default_factory=dict)     # dataset-level metadata (recipe, model, compliance)


def _captures_in(d: Path) -> list[Path]:
    """Capture files of a folder; a .pcapng with a classic .pcap copy of the same name is read once."""
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in CAPTURE_EXTS
                   and not p.name.startswith("."))
    pcap_stems = {p.stem for p in files if p.suffix.lower() == ".pcap"}
    return [p for p in files if p.suffix.lower() == ".pcap" or p.stem not in pcap_stems]


def _hash_request(d: dict) -> str:
    core = {k: v for k, v in d.items() if k != "extra"}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=list).encode()).hexdigest()


def compliance_summary(rep) -> str:
    """One short string out of a repair/compliance report (whatever its exact shape)."""
    if not isinstance(rep, dict):
        return ""
    if "groups" in rep and isinstance(rep["groups"], list):
        parts = [compliance_summary(g) for g in rep["groups"]]
        return "clean" if parts and all(p == "clean" for p in parts) else "; ".join(p for p in parts if p)
    if rep.get("repaired") is False:
        return "not repaired"
    for k in ("clean", "compliant", "ok"):
        if k in rep and isinstance(rep[k], bool):
            if rep[k]:
                return "clean"
            after = (rep.get("totals") or {}).get("after") or {}
            if isinstance(after.get("packets"), int):
                return f"{after['packets']} packets in {after.get('flows', '?')} flows still violate"
            break
    for k in ("remaining", "violations_after", "errors", "remaining_violations"):
        v = rep.get(k)
        if isinstance(v, int):
            return "clean" if v == 0 else f"{v} remaining violations"
        if isinstance(v, dict):
            n = sum(x for x in v.values() if isinstance(x, int))
            return "clean" if n == 0 else f"{n} remaining violations"
    return "not clean" if any(rep.get(k) is False for k in ("clean", "compliant", "ok")) else "repaired"


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
        direct = _captures_in(d)
        if direct:
            found = True
            for f in direct:
                sources.append(Source(f"{i}:{f.name}", f, d.name, "real"))
        for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            for f in _captures_in(sub):
                found = True
                sources.append(Source(f"{i}:{sub.name}/{f.name}", f, sub.name, "real"))
        if not found:
            raise InputError(d, "holds no manifest.csv and no <class>/*.pcap captures")
    return sources


def _scan_dataset(i: int, d: Path, man: Path) -> list[Source]:
    with open(man, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    cols = rows[0].keys()
    if "file" not in cols or not ({"label", "class"} & set(cols)):
        raise InputError(man, "manifest has no 'file' and 'label' columns; not a generated or exported dataset")
    info: dict = {}
    gj = d / "generate.json"
    if gj.is_file():
        try:
            g = json.loads(gj.read_text())
            req = g.get("request", {})
            extra = req.get("extra") or {}
            info["recipe"] = extra.get("recipe", "")
            info["recipe_sha256"] = extra.get("recipe_sha256") or (_hash_request(req) if req else "")
            info["model"] = req.get("model") or "default"
            info["model_hash"] = g.get("summary", {}).get("model_hash", "")
        except (OSError, ValueError) as e:
            raise InputError(gj, f"unreadable: {e}") from None
    cj = d / "compliance.json"
    if cj.is_file():
        try:
            info["compliance"] = compliance_summary(json.loads(cj.read_text()))
            info["compliance_report"] = str(cj)
        except (OSError, ValueError) as e:
            raise InputError(cj, f"unreadable: {e}") from None
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

"""Datasets the engine writes: a generation (``generate.json`` + ``manifest.csv``) and an export
(``manifest.json`` + ``manifest.csv``)."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.artifacts.fields import Fields, read_json_object, reading
from engine.errors import InputError

GENERATE = "generate.json"
MANIFEST_CSV = "manifest.csv"
MANIFEST_JSON = "manifest.json"
BIG = 2**63 - 1
MAX_ROWS = 10_000_000


@dataclass
class GenerateRecord:
    """What a generation says about itself: the request it ran and what came out."""

    path: Path
    request: dict                       # the request as JSON values (engine.datasets.request names them)
    label: str = ""
    model: str = ""                     # as requested ("" = the default)
    recipe: str = ""
    recipe_sha256: str = ""             # the recipe's hash, else the request's own
    model_hash: str = ""
    flows: int | None = None
    packets: int | None = None
    compliance_clean: bool | None = None


def request_hash(req: dict) -> str:
    """sha256 of a request without its free-form ``extra`` (what identifies a generation recipe)."""
    core = {k: v for k, v in req.items() if k != "extra"}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=list).encode()).hexdigest()


def read_generate(d: str | Path) -> GenerateRecord:
    """A generated dataset's ``generate.json``.

    Raises:
        InputError: missing, unreadable, or a field of the wrong type or range.
    """
    p = Path(d) / GENERATE
    f = Fields(read_json_object(p, "generation record"), p)
    req = f.obj("request")
    extra = req.obj("extra")
    s = f.obj("summary")
    return GenerateRecord(p, req.d, req.str_("label"), req.str_("model"), extra.str_("recipe"),
                          extra.str_("recipe_sha256") or (request_hash(req.d) if req.d else ""),
                          s.str_("model_hash"), s.int_("flows", 0, BIG), s.int_("packets", 0, BIG),
                          s.bool_("compliance_clean"))


@dataclass
class ExportManifest:
    """An export's ``manifest.json`` dataset section."""

    path: Path
    format: str
    version: int
    flows: int
    classes: dict[str, dict[str, int]]      # class -> {"real", "synthetic", "train", "test", "packets"}
    options: dict = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    merged_pcapng: tuple[str, ...] = ()


def read_export_manifest(d: str | Path) -> ExportManifest:
    """Raises InputError naming the file and the first bad field."""
    p = Path(d) / MANIFEST_JSON
    f = Fields(read_json_object(p, "export manifest"), p)
    ds = f.obj("dataset", required=True)
    fmt = ds.str_("format")
    if fmt != "netdiff-export":
        raise InputError(p, f"dataset.format: expected netdiff-export, found {fmt!r}")
    classes = {}
    cl = ds.obj("classes")
    for name in cl.d:
        c = cl.obj(name)
        classes[str(name)] = {k: c.int_(k, 0, BIG) for k in c.d}
    return ExportManifest(p, fmt, ds.int_("version", 0, 1000, 0), ds.int_("flows", 0, BIG, 0), classes,
                          ds.obj("options").d, ds.str_list("inputs"), ds.str_list("merged_pcapng"))


def read_manifest_rows(path: str | Path, need: tuple[str, ...] = ("file",)) -> list[dict[str, str]]:
    """The rows of a ``manifest.csv`` (generation, encoding or export), every cell text.

    Raises:
        InputError: unreadable, a needed column missing, a row longer than the header, a cell
            over csv's limit (128 KiB), or a ``file`` that leaves the dataset directory.
    """
    p = Path(path)
    with reading(p, "CSV"):
        with open(p, newline="", encoding="utf-8") as fh:
            rd = csv.DictReader(fh)
            try:
                missing = [c for c in need if c not in (rd.fieldnames or [])]
                if missing:
                    raise InputError(p, f"no {', '.join(repr(c) for c in missing)} column")
                rows = []
                for i, r in enumerate(rd, 2):
                    if None in r:
                        raise InputError(p, f"line {i}: more cells than columns")
                    if i > MAX_ROWS:
                        raise InputError(p, f"more than {MAX_ROWS} rows")
                    f = r.get("file")
                    if f is not None and (f.startswith("/") or ".." in Path(f).parts):
                        raise InputError(p, f"line {i}: file {f!r} is outside the dataset")
                    rows.append({k: v if v is not None else "" for k, v in r.items()})
            except csv.Error as e:
                raise InputError(p, f"not a CSV manifest: {e}") from None
    return rows

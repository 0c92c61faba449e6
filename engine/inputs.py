"""Input paths -> the files they name: one rule for every command and screen.

An input is a file (taken whatever its extension), a directory (the files in it with one of
the wanted extensions, recursively, skipping ``.hidden`` and ``_private`` names and the
``manifest.csv`` of a dataset), ``~`` expanded, or a glob pattern when no file has that exact
name. With ``drop_twins`` a capture kept twice, ``x.pcap`` next to ``x.pcapng`` (the real data
keeps pcapng originals beside their classic copies), is taken once, as ``x.pcap``: readers of
labeled collections (export, evaluation, guides) ask for that; encode and repair read every file
they are given.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from engine.constants import CAPTURE_EXTS, MANIFEST
from engine.errors import InputError

_GLOB_CHARS = frozenset("*?[")


def files_in(d: str | os.PathLike, exts: Iterable[str] = CAPTURE_EXTS, recursive: bool = True,
             drop_twins: bool = False) -> list[Path]:
    """The files under directory ``d`` with one of ``exts`` (case-insensitive), sorted; may be empty."""
    exts = tuple(e.lower() for e in exts)
    root = Path(d)
    found: list[Path] = []
    for top, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(x for x in dirs if not x.startswith((".", "_"))) if recursive else []
        found += [Path(top) / f for f in files
                  if f.lower().endswith(exts) and not f.startswith((".", "_")) and f != MANIFEST]
    found = sorted(p for p in found if p.is_file())
    return _drop_twins(found) if drop_twins else found


def _drop_twins(files: list[Path]) -> list[Path]:
    classic = {(p.parent, p.stem) for p in files if p.suffix.lower() == ".pcap"}
    return [p for p in files if p.suffix.lower() != ".pcapng" or (p.parent, p.stem) not in classic]


def resolve_inputs(inputs: Iterable[str | os.PathLike], exts: Iterable[str] = CAPTURE_EXTS,
                   recursive: bool = True, what: str = "captures", drop_twins: bool = False) -> list[Path]:
    """Every file the inputs name, in input order (a directory's or a glob's files sorted).

    Raises:
        InputError: an input that does not exist, a directory or glob with no such file (one line
            naming it), or no inputs at all.
    """
    exts = tuple(exts)
    out: list[Path] = []
    seen: set[Path] = set()
    given = list(inputs)
    if not given:
        raise InputError(None, f"no input {what} given")
    for raw in given:
        p = Path(os.path.expanduser(os.fspath(raw)))
        if p.is_dir():
            found = files_in(p, exts, recursive, drop_twins)
            if not found:
                raise InputError(p, f"directory holds no {what} ({', '.join(exts)})")
        elif p.exists():
            found = [p]
        elif _GLOB_CHARS & set(str(p)):
            found = sorted(Path(q) for q in glob.glob(str(p), recursive=True) if Path(q).is_file())
            if not found:
                raise InputError(p, "pattern matches no file")
        else:
            raise InputError(p, "no such file or directory")
        for f in found:
            if f not in seen:
                seen.add(f)
                out.append(f)
    return out

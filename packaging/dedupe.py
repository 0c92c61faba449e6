"""Shared libraries that the bundle would hold twice, turned into links (build.spec).

Wheels vendor their native dependencies with auditwheel, and two wheels built the same way
carry byte-identical copies: scipy.libs holds numpy.libs' libgfortran (2.8 MB) and libquadmath
because scipy's OpenBLAS links the same Fortran runtime as numpy's. PyInstaller collects both.
The dynamic loader opens a library by path and recognises a file it has already loaded, so a
relative symbolic link in place of the second copy loads the same code; tar keeps the link.
PyInstaller (6.0 and later) writes a ``SYMLINK`` TOC entry as a link, the same kind it uses
for the top-level links to ``*.libs`` directories, so no post-build step is needed.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path, PurePosixPath


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _rel(target: str, link: str) -> str:
    """The relative path from the directory of ``link`` to ``target`` (both bundle paths)."""
    return os.path.relpath(target, str(PurePosixPath(link).parent) or ".")


def link_duplicates(binaries: list[tuple[str, str, str]], min_size: int = 64 * 1024
                    ) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, int]]]:
    """``binaries`` (PyInstaller TOC entries ``(dest, src, typecode)``) with every BINARY whose file
    has the same bytes as another's replaced by a SYMLINK to the one that stays (the first by
    destination path); SYMLINK entries that pointed at a replaced copy point at the kept one
    (PyInstaller puts its top-level links to ``*.libs`` among the datas: :func:`retarget_links` them).
    Returns the new list and ``(linked dest, kept dest, bytes saved)`` for each replaced copy.
    Files under ``min_size`` are left alone: not worth a link."""
    by_size: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for dest, src, kind in binaries:
        if kind == "BINARY" and not os.path.islink(src):
            size = os.path.getsize(src)
            if size >= min_size:
                by_size[size].append((dest.replace(os.sep, "/"), src))
    keep_of: dict[str, str] = {}         # replaced dest -> kept dest
    saved = []
    for size, group in by_size.items():
        if len(group) < 2:
            continue
        by_hash: dict[str, list[str]] = defaultdict(list)
        for dest, src in group:
            by_hash[_digest(src)].append(dest)
        for dests in by_hash.values():
            kept, *copies = sorted(dests)
            for d in copies:
                keep_of[d] = kept
                saved.append((d, kept, size))
    out = [(dest, _rel(keep_of[dest.replace(os.sep, "/")], dest.replace(os.sep, "/")), "SYMLINK")
           if kind == "BINARY" and dest.replace(os.sep, "/") in keep_of else (dest, src, kind)
           for dest, src, kind in binaries]
    saved.sort()
    return retarget_links(out, saved), saved


def retarget_links(toc: list[tuple[str, str, str]], linked: list[tuple[str, str, int]]) -> list[tuple[str, str, str]]:
    """``toc`` with each SYMLINK entry that points at a copy :func:`link_duplicates` replaced pointing
    at the kept file instead (a link to a link works too; one hop is plainer)."""
    keep_of = {d: kept for d, kept, _ in linked}
    out = []
    for dest, src, kind in toc:
        d = dest.replace(os.sep, "/")
        target = os.path.normpath(str(PurePosixPath(d).parent / src)).replace(os.sep, "/") if kind == "SYMLINK" else ""
        out.append((dest, _rel(keep_of[target], d), kind) if target in keep_of else (dest, src, kind))
    return out


if __name__ == "__main__":      # report duplicates in a built bundle: python packaging/dedupe.py DIST_DIR
    import sys
    root = Path(sys.argv[1])
    files = [(str(p.relative_to(root)), str(p), "BINARY") for p in sorted(root.rglob("*.so*")) if p.is_file()
             and not p.is_symlink()]
    for d, kept, size in link_duplicates(files)[1]:
        print(f"{size / 1e6:6.2f} MB  {d}  (same bytes as {kept})")

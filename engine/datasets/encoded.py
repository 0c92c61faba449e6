"""Encoded datasets on disk: one file per flow plus a manifest.

Layout of a dataset directory (``netdiff encode -o DIR``)::

    DIR/manifest.csv          one row per flow (file, label, flow id, addresses, ...)
    DIR/encode.json           layout version, flow settings, per-input statistics
    DIR/<label>/<flow>.npz    matrix (int8) + meta (JSON string), no pickles
    DIR/<label>/<flow>.png    or the paper's image (metadata in a text chunk)
    DIR/<label>/<flow>.csv    or nprint CSV

The directory appears complete or not at all: it is built next to its final
place and renamed at the end.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from engine.outdir import atomic_write_bytes, current_umask
from engine.codec.matrix import COL_IAT, FlowMeta, iat_to_gaps
from engine.constants import FLOW_EXTS
from engine.errors import InputError
from engine.codec.layout import LAYOUT, LAYOUT_VERSION, bits_to_uint
from engine.codec.packets import ip_int, ip_str

FORMATS = ("npz", "png", "nprint")
EXT = {"npz": ".npz", "png": ".png", "nprint": ".csv"}
MANIFEST_COLUMNS = ["file", "label", "flow_id", "proto", "init_ip", "init_port", "resp_ip", "resp_port",
                    "packets", "start_ns", "duration_s", "source"]


def meta_to_json(meta: FlowMeta) -> dict:
    d = asdict(meta)
    d["init_ip"], d["resp_ip"] = ip_str(meta.init_ip), ip_str(meta.resp_ip)
    d["layout"] = LAYOUT_VERSION
    return d


def meta_from_json(d: dict) -> FlowMeta:
    d = dict(d)
    d.pop("layout", None)
    for k in ("init_ip", "resp_ip"):
        if isinstance(d.get(k), str):
            d[k] = ip_int(d[k])
    return FlowMeta(**{k: d[k] for k in FlowMeta.__dataclass_fields__ if k in d})


def save_npz(path: str | os.PathLike, m: np.ndarray, meta: FlowMeta, atomic: bool = True) -> None:
    """Write one flow; ``atomic=False`` inside a directory that is itself renamed into place."""
    bio = io.BytesIO()
    np.savez(bio, matrix=m.astype(np.int8), meta=np.array(json.dumps(meta_to_json(meta))))
    if atomic:
        atomic_write_bytes(path, [bio.getvalue()])
    else:
        with open(path, "wb") as f:
            f.write(bio.getbuffer())


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, FlowMeta]:
    try:
        with np.load(path, allow_pickle=False) as z:
            m = z["matrix"]
            meta = meta_from_json(json.loads(str(z["meta"])))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise InputError(path, f"not a netdiff flow file: {e}") from None
    if m.ndim != 2 or m.shape[1] != LAYOUT.width:
        raise InputError(path, f"matrix has shape {m.shape}, expected (packets, {LAYOUT.width})")
    return m, meta


def write_flow(path: Path, m: np.ndarray, meta: FlowMeta, fmt: str, atomic: bool = True) -> None:
    if fmt == "npz":
        save_npz(path, m, meta, atomic)
    elif fmt == "png":
        from engine.codec.image import write_png
        write_png(path, m, meta_to_json(meta))
    elif fmt == "nprint":
        from engine.codec.nprint_csv import write_csv
        write_csv(path, m, meta)
    else:
        raise ValueError(f"unknown format {fmt!r}")


def load_flow(path: str | os.PathLike) -> tuple[np.ndarray, FlowMeta]:
    """Read one flow file of any supported format."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".npz":
        return load_npz(path)
    if ext == ".png":
        from engine.codec.image import read_png
        m, meta = read_png(path)
        if meta is None:
            meta = FlowMeta(path.stem, "", 0, ip_int("10.0.0.1"), ip_int("10.0.0.2"), 0, 0, 0, len(m), str(path))
        else:
            meta = meta_from_json(meta)
        return m, meta
    if ext == ".csv":
        from engine.codec.nprint_csv import read_csv
        return read_csv(path)
    raise InputError(path, f"unknown flow file type {ext!r} (expected .npz, .png or .csv)")


def flow_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and dataset directories into flow files (sorted, manifest order where present)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            man = p / "manifest.csv"
            if man.exists():
                with open(man, newline="") as f:
                    out += [p / r["file"] for r in csv.DictReader(f)]
            else:
                out += sorted(q for q in p.rglob("*") if q.suffix.lower() in FLOW_EXTS and q.name != "manifest.csv")
        elif p.exists():
            out.append(p)
        else:
            raise InputError(p, "no such file or directory")
    return out


class DatasetWriter:
    """Build a dataset directory in a temp sibling; :meth:`commit` renames it into place.

    Use as a context manager: an exception (or cancellation) removes the
    partial directory, so nothing complete-looking is ever left behind.
    """

    def __init__(self, out: str | os.PathLike, fmt: str = "npz", force: bool = False):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        self.out = Path(out)
        self.fmt = fmt
        if self.out.exists() and not self.out.is_dir():
            raise InputError(self.out, "exists and is not a directory")
        if self.out.exists() and any(self.out.iterdir()) and not force:
            raise InputError(self.out, "output directory exists and is not empty (use --force to replace it)")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".partial", dir=self.out.parent))
        os.chmod(self.tmp, 0o777 & ~current_umask())     # it becomes OUT: mkdtemp's 0700 would ignore the umask
        self.rows: list[dict] = []
        self.info: dict = {"layout": LAYOUT_VERSION, "columns": LAYOUT.width, "format": fmt}
        self._made: set[str] = set()

    def add(self, m: np.ndarray, meta: FlowMeta) -> str:
        label = meta.label or "unlabeled"
        if label not in self._made:
            (self.tmp / label).mkdir(parents=True, exist_ok=True)
            self._made.add(label)
        rel = f"{label}/{meta.flow_id}{EXT[self.fmt]}"
        write_flow(self.tmp / rel, m, meta, self.fmt, atomic=False)
        dur = float(iat_to_gaps(bits_to_uint(m[1:, COL_IAT]).astype(np.int64)).sum()) / 1e9 if len(m) > 1 else 0.0
        self.rows.append({"file": rel, "label": meta.label, "flow_id": meta.flow_id, "proto": meta.proto,
                          "init_ip": ip_str(meta.init_ip), "init_port": meta.init_port,
                          "resp_ip": ip_str(meta.resp_ip), "resp_port": meta.resp_port,
                          "packets": len(m), "start_ns": meta.start_ns, "duration_s": round(dur, 6),
                          "source": meta.source})
        return rel

    def commit(self) -> Path:
        buf = io.StringIO()
        w = csv.DictWriter(buf, MANIFEST_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_bytes(self.tmp / "manifest.csv", [buf.getvalue().encode()])
        atomic_write_bytes(self.tmp / "encode.json", [json.dumps(self.info, indent=2, default=str).encode()])
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, et, ev, tb) -> None:
        if et is not None:
            self.abort()


def read_manifest(d: str | os.PathLike) -> list[dict]:
    p = Path(d) / "manifest.csv"
    if not p.exists():
        raise InputError(d, "not a dataset directory (no manifest.csv)")
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def iter_dataset(d: str | os.PathLike) -> Iterator[tuple[np.ndarray, FlowMeta]]:
    for r in read_manifest(d):
        yield load_flow(Path(d) / r["file"])


def load_flows(paths: list[Path], threads: int = 2) -> list[tuple[np.ndarray, FlowMeta]]:
    """Load many flow files; PNG decoding (zlib, GIL released) runs on two threads."""
    if len(paths) < 2 or threads < 2:
        return [load_flow(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(threads) as ex:
        return list(ex.map(load_flow, paths))

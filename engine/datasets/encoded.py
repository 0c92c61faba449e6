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
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from engine.outdir import atomic_write_bytes, current_umask
from engine.codec.matrix import COL_IAT, FlowMeta, iat_to_gaps
from engine.codec.matrix_check import check_shape, flow_matrix
from engine.codec.record_limits import TS_LIMIT_NS
from engine.constants import FLOW_EXTS
from engine.errors import InputError
from engine.inputs import files_in, resolve_inputs
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


# field -> (lowest, highest) of a flow's metadata; decode writes these into packet headers
META_RANGES = {"proto": (0, 255), "init_ip": (0, 0xFFFFFFFF), "resp_ip": (0, 0xFFFFFFFF),
               "init_port": (0, 65535), "resp_port": (0, 65535), "start_ns": (0, TS_LIMIT_NS - 1),
               "packets": (0, 1 << 31)}


def meta_from_json(d: dict) -> FlowMeta:
    """A flow's metadata from JSON, every field type- and range-checked (ValueError otherwise)."""
    if not isinstance(d, dict):
        raise ValueError(f"metadata is a JSON {type(d).__name__}, not an object")
    d = dict(d)
    d.pop("layout", None)
    for k in ("init_ip", "resp_ip"):
        if isinstance(d.get(k), str):
            d[k] = ip_int(d[k])
    missing = [k for k in ("flow_id", "label", "proto", "init_ip", "resp_ip", "init_port", "resp_port",
                           "start_ns", "packets") if k not in d]
    if missing:
        raise ValueError(f"metadata lacks {', '.join(missing)}")
    for k in ("flow_id", "label", "source"):
        if k in d and not isinstance(d[k], str):
            raise ValueError(f"metadata {k} must be a string, got {d[k]!r:.40}")
    for k, (lo, hi) in META_RANGES.items():
        v = d[k]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"metadata {k} {v!r:.40} is out of range ({lo} to {hi})")
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


def load_npz(path: str | os.PathLike, snap: bool = False) -> tuple[np.ndarray, FlowMeta]:
    """Read one ``.npz`` flow; its matrix and metadata are checked (see engine.codec.matrix_check)."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with z:
            if "matrix" not in z.files or "meta" not in z.files:
                raise ValueError(f"holds {', '.join(z.files) or 'no arrays'}, expected matrix and meta")
            # shape and dtype from the header first: a forged header must not make us allocate
            with z.zip.open("matrix.npy") as f:
                major, _minor = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if major == 1
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)
            if dtype.hasobject:
                raise ValueError(f"matrix has dtype {dtype} (object arrays are never loaded)")
            check_shape(path, shape)
            m = z["matrix"]
            raw = z["meta"]
            if raw.dtype.kind != "U" or raw.ndim != 0:
                raise ValueError(f"meta is a {raw.dtype} array of shape {raw.shape}, not a JSON string")
            meta = meta_from_json(json.loads(str(raw)))
    except (OSError, ValueError, EOFError, json.JSONDecodeError, zipfile.BadZipFile) as e:
        raise InputError(path, f"not a netdiff flow file: {e}") from None
    return flow_matrix(path, m, snap), meta


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


def load_flow(path: str | os.PathLike, snap: bool = False) -> tuple[np.ndarray, FlowMeta]:
    """Read one flow file of any supported format.

    The matrix is checked (engine.codec.matrix_check): values other than 1, 0,
    -1 are refused unless ``snap`` (PNG pixels always snap to the nearest
    colour: that is the image format's own rule).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".npz":
        return load_npz(path, snap)
    if ext == ".png":
        from engine.codec.image import read_png
        m, meta = read_png(path)
        if meta is None:
            meta = FlowMeta(path.stem, "", 0, ip_int("10.0.0.1"), ip_int("10.0.0.2"), 0, 0, 0, len(m), str(path))
        else:
            try:
                meta = meta_from_json(meta)
            except ValueError as e:
                raise InputError(path, f"netdiff text chunk: {e}") from None
        return m, meta
    if ext == ".csv":
        from engine.codec.nprint_csv import read_csv
        return read_csv(path, snap)
    raise InputError(path, f"unknown flow file type {ext!r} (expected .npz, .png or .csv)")



def flow_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and dataset directories into flow files (sorted, manifest order where present)."""
    out: list[Path] = []
    for p in (Path(x).expanduser() for x in paths):
        if p.is_dir():
            man = p / "manifest.csv"
            if man.exists():
                out += [p / r["file"] for r in read_manifest(p)]
            else:
                out += files_in(p, FLOW_EXTS)
        else:
            out += resolve_inputs([p], FLOW_EXTS, what="flow files")    # a file, or a glob
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
    """A dataset's manifest rows (checked by the one manifest reader: a ``file`` column, each
    naming a file inside the dataset)."""
    from engine.artifacts.datasets import read_manifest_rows
    p = Path(d) / "manifest.csv"
    if not p.exists():
        raise InputError(d, "not a dataset directory (no manifest.csv)")
    return read_manifest_rows(p)


def iter_dataset(d: str | os.PathLike) -> Iterator[tuple[np.ndarray, FlowMeta]]:
    for r in read_manifest(d):
        yield load_flow(Path(d) / r["file"])


def load_flows(paths: list[Path], threads: int = 2, snap: bool = False) -> list[tuple[np.ndarray, FlowMeta]]:
    """Load many flow files; PNG decoding (zlib, GIL released) runs on two threads."""
    if len(paths) < 2 or threads < 2:
        return [load_flow(p, snap) for p in paths]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(threads) as ex:
        return list(ex.map(lambda p: load_flow(p, snap), paths))

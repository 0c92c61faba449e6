"""A dataset's flows for the flow viewer: which flows a directory holds, one flow's bit matrix and
its decoded packet list. No Textual here; decoding is engine.codec's."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.constants import CAPTURE_EXTS, ICMP, PROTO_NAME, TCP
from engine.errors import InputError

TCP_FLAGS = "FSRPAUEC"          # bit 0 .. 7
PROTO = {num: name.upper() for num, name in PROTO_NAME.items()}


def flow_files(d: str | Path) -> list[Path]:
    """The per-flow captures of a dataset directory (a generation or an export), sorted by relative path.

    Raises:
        InputError: not a directory, or no capture files in it.
    """
    d = Path(d).expanduser()
    if not d.is_dir():
        raise InputError(d, "not a dataset directory (a generation or export output)")
    files = sorted((p for p in d.rglob("*") if p.suffix in CAPTURE_EXTS and p.is_file()
                    and p.parent != d), key=lambda p: p.relative_to(d).as_posix())
    if not files:
        raise InputError(d, "holds no per-flow .pcap files")
    return files


def dataset_of(path: str | Path) -> Path | None:
    """The dataset directory a report or job output belongs to: the nearest directory with a manifest.csv."""
    p = Path(path).expanduser()
    for d in [p] + list(p.parents)[:3]:
        if d.is_dir() and (d / "manifest.csv").is_file():
            return d
    return None


@dataclass
class PacketRow:
    time: str
    dir: str
    proto: str
    ports: str
    length: int
    flags: str


@dataclass
class FlowView:
    """One flow: its bit matrix (rows packets, columns bits; 1, 0, -1 absent) and packet list."""

    path: Path
    matrix: np.ndarray
    packets: list[PacketRow]


def _flags(v: int) -> str:
    return "".join(c for i, c in enumerate(TCP_FLAGS) if v >> i & 1) or "-"


def read_flow(path: str | Path) -> FlowView:
    """Decode one flow capture.

    Raises:
        InputError: the file is not a capture or holds no IPv4 flow.
    """
    from engine.codec import capture as cap
    from engine.codec import packets as pk
    from engine.codec.flows import FlowConfig
    from engine.codec.pipeline import encode_capture
    path = Path(path)
    parts = [pk.parse(b, 0, Counter()) for b in cap.CaptureReader(path)]
    p = pk.Packets.concat(parts) if parts else pk.Packets.empty()
    if not len(p):
        raise InputError(path, "holds no IPv4 TCP/UDP/ICMP packets")
    order = np.argsort(p.ts_ns, kind="stable")
    p = p.take(order)
    t0, client = int(p.ts_ns[0]), int(p.src[0])
    total_len = (p.ip[:, 2].astype(np.int32) << 8) | p.ip[:, 3]
    rows = [PacketRow(f"{(int(t) - t0) / 1e9:.4f}", "->" if int(s) == client else "<-", PROTO.get(int(pr), str(pr)),
                      f"{sp}>{dp}" if pr != ICMP else "-", int(n), _flags(int(fl)) if pr == TCP else "")
            for t, s, pr, sp, dp, n, fl in zip(p.ts_ns, p.src, p.proto, p.sport, p.dport, total_len, p.flags)]
    mats = [b.flow(i) for b in encode_capture(path, FlowConfig(min_packets=1)) for i in range(len(b))]
    if not mats:
        raise InputError(path, "holds no flow to draw")
    return FlowView(path, np.concatenate(mats) if len(mats) > 1 else mats[0], rows)

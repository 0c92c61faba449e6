"""nprint CSV (the nprint tool's ``-4 -t -u -i`` columns) <-> matrix, for interop.

nprint writes one row per packet: ``src_ip`` then IPv4 (480, addresses
included), TCP (480), UDP (64) and ICMP (64) bits, ``-1`` for absent. The
direction column is recovered from ``src_ip`` (the first row's sender is the
initiator); gaps come from an ``rts`` column (microseconds, nprint ``-R``)
when there is one, else they are zero.
"""

from __future__ import annotations

import io
import os

import numpy as np

from engine.outdir import atomic_write_bytes
from engine.codec.matrix import COL_DIR, COL_IAT, FlowMeta, gaps_to_iat, iat_to_gaps
from engine.errors import InputError
from engine.codec.layout import ABSENT, IAT_BITS, LAYOUT, bits_to_uint, uint_to_bits
from engine.codec.packets import ip_int, ip_str

CSV_BLOCKS = ("ipv4", "tcp", "udp", "icmp")


def csv_columns() -> list[str]:
    cols = []
    for proto in CSV_BLOCKS:
        for f in LAYOUT.fields:
            if f.proto == proto:
                cols += [f"{proto}_{f.name}_{i}" for i in range(f.width)]
    return cols


def _addr_bits(a: np.ndarray) -> np.ndarray:
    return uint_to_bits(a.astype(np.uint64), 32)


def matrix_to_csv(m: np.ndarray, meta: FlowMeta) -> str:
    """One flow as nprint CSV text (with an ``rts`` column for the gaps)."""
    fwd = m[:, COL_DIR] != 0
    src = np.where(fwd, meta.init_ip, meta.resp_ip).astype(np.uint64)
    dst = np.where(fwd, meta.resp_ip, meta.init_ip).astype(np.uint64)
    parts = []
    for proto in CSV_BLOCKS:
        for f in LAYOUT.fields:
            if f.proto != proto:
                continue
            if f.in_image:
                parts.append(m[:, LAYOUT.cols(f.qualname)])
            else:   # ipv4 src/dst
                bits = _addr_bits(src if f.name == "src" else dst)
                present = m[:, LAYOUT.cols("ipv4_ver").start] != ABSENT
                bits[~present] = ABSENT
                parts.append(bits)
    body = np.concatenate(parts, axis=1).astype(np.int8)
    rts = np.cumsum(iat_to_gaps(bits_to_uint(m[:, COL_IAT]).astype(np.int64))) // 1000
    out = io.StringIO()
    out.write("src_ip,rts," + ",".join(csv_columns()) + "\n")
    for i in range(len(body)):
        out.write(ip_str(src[i]) + "," + str(int(rts[i])) + "," + ",".join(map(str, body[i].tolist())) + "\n")
    return out.getvalue()


def write_csv(path: str | os.PathLike, m: np.ndarray, meta: FlowMeta) -> None:
    atomic_write_bytes(path, [matrix_to_csv(m, meta).encode()])


def read_csv(path: str | os.PathLike) -> tuple[np.ndarray, FlowMeta]:
    """Read an nprint CSV; returns the matrix and a meta with the flow's addresses."""
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read nprint CSV: {e}") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InputError(path, "empty nprint CSV")
    header = lines[0].split(",")
    pos = {c: i for i, c in enumerate(header)}
    want = csv_columns()
    missing = [c for c in want if c not in pos]
    if missing:
        raise InputError(path, f"not an nprint CSV with -4 -t -u -i columns (missing {missing[0]}"
                               f"{' and %d more' % (len(missing) - 1) if len(missing) > 1 else ''})")
    rows = [ln.split(",") for ln in lines[1:]]
    if any(len(r) != len(header) for r in rows):
        bad = next(i for i, r in enumerate(rows) if len(r) != len(header))
        raise InputError(path, f"row {bad + 2} has {len(rows[bad])} fields, header has {len(header)}")
    try:
        arr = np.array([[r[pos[c]] for c in want] for r in rows], dtype=np.int8) if rows else \
            np.zeros((0, len(want)), np.int8)
    except ValueError:
        raise InputError(path, "bit columns must hold 1, 0 or -1") from None
    n = len(arr)
    m = np.full((n, LAYOUT.width), ABSENT, np.int8)
    c = 0
    src_bits = dst_bits = None
    for proto in CSV_BLOCKS:
        for f in LAYOUT.fields:
            if f.proto != proto:
                continue
            blk = arr[:, c:c + f.width]
            c += f.width
            if f.in_image:
                m[:, LAYOUT.cols(f.qualname)] = blk
            elif f.name == "src":
                src_bits = blk
            else:
                dst_bits = blk
    src = bits_to_uint(src_bits).astype(np.uint32)
    dst = bits_to_uint(dst_bits).astype(np.uint32)
    if "src_ip" in pos and n:
        try:
            src = np.array([ip_int(r[pos["src_ip"]]) for r in rows], np.uint32)
        except ValueError as e:
            raise InputError(path, f"src_ip column: {e}") from None
    init = int(src[0]) if n else 0
    resp = int(dst[0]) if n else 0
    m[:, COL_DIR] = (src == init).astype(np.int8)
    if "rts" in pos and n:
        rts_us = np.array([float(r[pos["rts"]] or 0) for r in rows])
        gaps = np.diff(rts_us, prepend=rts_us[0]) * 1000
        m[:, COL_IAT] = uint_to_bits(gaps_to_iat(gaps), IAT_BITS)
    else:
        m[:, COL_IAT] = 0
    sport = bits_to_uint(m[:1, LAYOUT.cols("tcp_sprt")]) if n else [0]
    meta = FlowMeta(flow_id=os.path.splitext(os.path.basename(path))[0], label="", proto=0,
                    init_ip=init, resp_ip=resp, init_port=int(sport[0]), resp_port=0,
                    start_ns=0, packets=n, source=os.fspath(path))
    return m, meta

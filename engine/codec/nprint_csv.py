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
from engine.codec.matrix_check import check_shape, flow_matrix
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


def read_csv(path: str | os.PathLike, snap: bool = False) -> tuple[np.ndarray, FlowMeta]:
    """Read an nprint CSV; returns the matrix and a meta with the flow's addresses.

    Bit cells must be 1, 0 or -1 (``snap`` rounds numbers onto them instead);
    ``rts`` must be a time >= 0 (µs). Anything else: one line naming the file,
    the line and the column.
    """
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
    check_shape(path, (len(lines) - 1, LAYOUT.width))
    rows = [ln.split(",") for ln in lines[1:]]
    if any(len(r) != len(header) for r in rows):
        bad = next(i for i, r in enumerate(rows) if len(r) != len(header))
        raise InputError(path, f"row {bad + 2} has {len(rows[bad])} fields, header has {len(header)}")
    arr = _bits(path, np.array([[r[pos[c]].strip() for c in want] for r in rows]), want, snap)
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
        rts_us = _times(path, [r[pos["rts"]] for r in rows])
        gaps = np.diff(rts_us, prepend=rts_us[0]) * 1000
        m[:, COL_IAT] = uint_to_bits(gaps_to_iat(gaps), IAT_BITS)
    else:
        m[:, COL_IAT] = 0
    sport = bits_to_uint(m[:1, LAYOUT.cols("tcp_sprt")]) if n else [0]
    meta = FlowMeta(flow_id=os.path.splitext(os.path.basename(path))[0], label="", proto=0,
                    init_ip=init, resp_ip=resp, init_port=int(sport[0]), resp_port=0,
                    start_ns=0, packets=n, source=os.fspath(path))
    return m, meta


def _where(want: list[str]):
    return lambda r, c: f"line {r + 2}, column {want[c]}"


def _bits(path, cells: np.ndarray, want: list[str], snap: bool) -> np.ndarray:
    """``(n, k)`` cell strings -> int8 bits; anything but 1, 0, -1 refused (or rounded when ``snap``)."""
    out = np.full(cells.shape, 2, np.int8)       # 2: not yet a bit
    for text, v in (("1", 1), ("0", 0), ("-1", -1)):
        out[cells == text] = v
    odd = out == 2
    if not odd.any():
        return out
    if not snap:
        r, c = np.argwhere(odd)[0]
        more = int(odd.sum()) - 1
        raise InputError(path, f"{_where(want)(r, c)} is {cells[r, c][:20]!r}, not 1, 0 or -1"
                               + (f" ({more} more bad values)" if more else "")
                               + " (decode and repair --snap round numbers onto the nearest)")
    try:
        vals = cells.astype(np.float64)
    except ValueError:
        r, c = next((r, c) for r, c in np.argwhere(odd) if not _number(cells[r, c]))
        raise InputError(path, f"{_where(want)(r, c)} is {cells[r, c][:20]!r}, not a number") from None
    return flow_matrix(path, vals, snap=True, where=_where(want), width=len(want))


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _times(path, cells: list[str]) -> np.ndarray:
    """The ``rts`` column: µs since the flow's first packet, finite and >= 0 (empty reads as 0)."""
    text = np.array([t.strip() or "0" for t in cells])
    try:
        out = text.astype(np.float64)
    except ValueError:
        out = np.array([float(t) if _number(t) else np.nan for t in text])
    bad = ~(np.isfinite(out) & (out >= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(path, f"line {i + 2}, column rts is {cells[i][:20]!r}, not a time in µs >= 0")
    return out

"""pcapng blocks: sections, interfaces (link type, timestamp resolution) and packet blocks.

Every block's lengths (leading and trailing), every packet's interface,
lengths and time, and every interface option's extent are range-checked
(see engine.codec.record_limits for the policy).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from engine.codec.record_limits import CHUNK, MAX_BLOCK, corrupt, record_problem
from engine.errors import InputError

SHB = b"\x0a\x0d\x0d\x0a"
BOM_LE, BOM_BE = b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"
IDB, OPB, SPB, EPB = 1, 2, 3, 6
# smallest legal length of each block type (header, fixed fields, trailer)
MIN_LEN = {IDB: 20, OPB: 32, SPB: 16, EPB: 32, 0x0A0D0D0A: 28}
OPT_TSRESOL = 9


class _Section:
    """State of the current section: byte order and its interfaces."""

    def __init__(self, endian: str):
        self.endian = endian
        # (linktype, num, den): ns = raw * num // den
        self.ifaces: list[tuple[int, int, int]] = []


def read(f, first: bytes, path: str, info, acc) -> Iterator:
    """Walk the blocks from ``first`` (the 4 bytes already read from ``f``), feeding ``acc``."""
    info.format = "pcapng"
    buf = first + f.read(CHUNK)
    pos = 0          # file offset of buf[0]
    sec = _Section("<")
    nread = 0
    eof = False
    while True:
        mv = memoryview(buf)
        n = len(buf)
        off = 0
        offs, caps, wires, tss, lts = [], [], [], [], []
        while off + 12 <= n:
            done = nread + len(offs)
            if bytes(mv[off:off + 4]) == SHB:
                sec = _section(mv, off, path, pos, done)
            btype, blen = struct.unpack_from(sec.endian + "II", mv, off)
            if blen < MIN_LEN.get(btype, 12) or blen % 4 or blen > MAX_BLOCK:
                raise corrupt(path, "pcapng block", pos + off,
                              f"block type {btype} has length {blen}", done)
            if off + blen > n:
                break
            (tail,) = struct.unpack_from(sec.endian + "I", mv, off + blen - 4)
            if tail != blen:
                raise corrupt(path, "pcapng block", pos + off,
                              f"length {blen} at its start but {tail} at its end", done)
            if btype == IDB:
                lt = _interface(mv, off, blen, sec, path, pos, done)
                info.linktypes.add(lt)
            elif btype in (EPB, OPB, SPB):
                data, cap, wire, ts, lt = _packet(mv, off, blen, btype, sec, path, pos, done)
                offs.append(data)
                caps.append(cap)
                wires.append(wire)
                tss.append(ts)
                lts.append(lt)
            off += blen
        if offs:
            acc.add(buf, np.asarray(offs, np.int64), np.asarray(caps, np.int32),
                    np.asarray(wires, np.int32), np.asarray(tss, np.int64), np.asarray(lts, np.int32))
            nread += len(offs)
        pos += off
        buf = buf[off:]
        info.packets = nread
        info.bytes_read = pos
        yield from acc.drain(final=False)
        if eof:
            break
        more = f.read(CHUNK)
        if not more:
            eof = True
            if not buf:
                break
        buf = buf + more
    yield from acc.drain(final=True)
    if buf:
        raise InputError(path, f"truncated: file ends inside a pcapng block ({nread} packets read)")


def _section(mv, off, path, pos, done) -> _Section:
    """A section header starts a new section: byte order from its magic, no interfaces yet."""
    bom = bytes(mv[off + 8:off + 12])
    if bom not in (BOM_LE, BOM_BE):
        raise corrupt(path, "pcapng section header", pos + off, f"byte-order magic 0x{bom.hex()}", done)
    sec = _Section("<" if bom == BOM_LE else ">")
    if off + 16 <= len(mv):
        vmaj, vmin = struct.unpack_from(sec.endian + "HH", mv, off + 12)
        if vmaj != 1:
            raise corrupt(path, "pcapng section header", pos + off,
                          f"version {vmaj}.{vmin} (expected 1.x)", done)
    return sec


def _interface(mv, off, blen, sec, path, pos, done) -> int:
    """Add an interface description to the section; returns its link type."""
    e = sec.endian
    lt, _reserved, _snap = struct.unpack_from(e + "HHI", mv, off + 8)
    num, den = 1000, 1       # default resolution: microseconds
    o, end = off + 16, off + blen - 4
    while o + 4 <= end:
        code, olen = struct.unpack_from(e + "HH", mv, o)
        if code == 0:
            break
        if o + 4 + olen > end:
            raise corrupt(path, "pcapng interface block", pos + off,
                          f"option {code} of length {olen} runs past the block", done)
        if code == OPT_TSRESOL:
            if olen != 1:
                raise corrupt(path, "pcapng interface block", pos + off,
                              f"timestamp resolution option has length {olen} (expected 1)", done)
            num, den = _resolution(mv[o + 4], path, pos + off, done)
        o += 4 + ((olen + 3) & ~3)
    sec.ifaces.append((lt, num, den))
    return lt


def _resolution(r: int, path, at, done) -> tuple[int, int]:
    """if_tsresol -> (num, den) with ns = units * num // den."""
    if r & 0x80:
        e = r & 0x7F
        if e > 63:      # units finer than 2^-63 s cannot count even one second in 64 bits
            raise corrupt(path, "pcapng interface block", at, f"timestamp resolution 2^-{e} s is out of range", done)
        return 1_000_000_000, 1 << e
    if r > 19:          # 10^-19 s units overflow 64 bits within two seconds
        raise corrupt(path, "pcapng interface block", at, f"timestamp resolution 10^-{r} s is out of range", done)
    return (10 ** (9 - r), 1) if r <= 9 else (1, 10 ** (r - 9))


def _packet(mv, off, blen, btype, sec, path, pos, done):
    """An enhanced, obsolete or simple packet block -> (data offset, caplen, wirelen, ts ns, linktype)."""
    e = sec.endian
    if btype == EPB:
        iid, th, tl, cap, wire = struct.unpack_from(e + "IIIII", mv, off + 8)
        data = off + 28
    elif btype == OPB:
        iid, _drops, th, tl, cap, wire = struct.unpack_from(e + "HHIIII", mv, off + 8)
        data = off + 28
    else:
        # a simple packet block belongs to the first interface and carries no time
        iid, th, tl = 0, 0, 0
        (wire,) = struct.unpack_from(e + "I", mv, off + 8)
        cap = min(wire, blen - 16)
        data = off + 12
    what = f"pcapng packet block {done + 1}"
    if iid >= len(sec.ifaces):
        raise corrupt(path, what, pos + off,
                      f"interface {iid} is not defined ({len(sec.ifaces)} interfaces in this section)", done)
    if data + cap > off + blen - 4:
        raise corrupt(path, what, pos + off, f"captured length {cap} exceeds the block", done)
    lt, num, den = sec.ifaces[iid]
    ts = ((th << 32) | tl) * num // den
    problem = record_problem(cap, wire, ts)
    if problem:
        raise corrupt(path, what, pos + off, problem, done)
    return data, cap, wire, ts, lt

"""Classic pcap records: the file header, then 16-byte record headers each followed by its frame."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from engine.codec.record_limits import CHUNK, MAX_RECORD, MAX_WIRE, corrupt, record_problem
from engine.errors import InputError

# magic -> (byte order, ns per fraction unit)
MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1),
}


def read(f, magic: bytes, path: str, info, acc) -> Iterator:
    """Walk the records after ``magic`` (already read from ``f``), feeding ``acc``.

    Fills ``info`` (format, link types, packets and bytes read) as it goes.
    """
    endian, ts_div = MAGICS[magic]
    rest = f.read(20)
    if len(rest) < 20:
        raise InputError(path, "truncated: file ends inside the pcap file header (0 packets read)")
    vmaj, vmin, _tz, _sig, _snap, linktype = struct.unpack(endian + "HHiIII", rest)
    if vmaj != 2:
        # libpcap reads only major version 2; anything else is not a pcap header
        raise InputError(path, f"corrupt pcap file header: version {vmaj}.{vmin} (expected 2.x) (0 packets read)")
    linktype &= 0x0FFFFFFF   # upper bits carry FCS info
    info.format = "pcap-ns" if ts_div == 1 else "pcap"
    info.linktypes.add(linktype)
    frac_limit = 1_000_000_000 // ts_div
    rec = struct.Struct(endian + "IIII")
    pos = 24
    buf = b""
    nread = 0
    while True:
        more = f.read(CHUNK)
        buf = buf + more if buf else more
        if not buf:
            break
        mv = memoryview(buf)
        off = 0
        n = len(buf)
        offs, caps, wires, sec, frac = [], [], [], [], []
        while off + 16 <= n:
            s, fr, cap, wire = rec.unpack_from(mv, off)
            # one test on the common path; _bad says which field and why
            if cap > MAX_RECORD or wire < cap or wire > MAX_WIRE or fr >= frac_limit:
                raise corrupt(path, f"record {nread + len(offs) + 1}", pos + off,
                              _bad(s, fr, cap, wire, ts_div, frac_limit), nread + len(offs))
            if off + 16 + cap > n:
                break
            offs.append(off + 16)
            caps.append(cap)
            wires.append(wire)
            sec.append(s)
            frac.append(fr)
            off += 16 + cap
        if offs:
            ts = np.asarray(sec, np.int64) * 1_000_000_000 + np.asarray(frac, np.int64) * ts_div
            acc.add(buf, np.asarray(offs, np.int64), np.asarray(caps, np.int32),
                    np.asarray(wires, np.int32), ts, np.full(len(offs), linktype, np.int32))
            nread += len(offs)
        pos += off
        buf = buf[off:]
        info.packets = nread
        info.bytes_read = pos
        yield from acc.drain(final=False)
        if not more:
            break
    yield from acc.drain(final=True)
    if buf:
        raise InputError(path, f"truncated: file ends inside packet record {nread + 1} ({nread} packets read)")


def _bad(sec: int, frac: int, cap: int, wire: int, ts_div: int, frac_limit: int) -> str:
    if frac >= frac_limit:
        unit = "nanoseconds" if ts_div == 1 else "microseconds"
        return f"timestamp fraction {frac} {unit} is out of range (0 to {frac_limit - 1})"
    return record_problem(cap, wire, sec * 1_000_000_000 + frac * ts_div)

"""Flow files out of original packet records: classic nanosecond pcap, or pcapng with per-packet comments."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator

from engine.codec import capture as cap

Record = cap.Record


def iter_records(path: str | os.PathLike) -> Iterator[Record]:
    """Every packet record of a pcap/pcapng, in file order (the order engine.codec.capture counts them)."""
    return cap.CaptureReader(path).records()


def pcap_file(records: list[Record]) -> bytes:
    """Records -> a nanosecond classic pcap (all records share one link type)."""
    lt = records[0].linktype if records else cap.LINK_ETHERNET
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, lt)]
    for r in records:
        s, ns = divmod(r.ts_ns, 1_000_000_000)
        out.append(struct.pack("<IIII", s, ns, r.caplen, r.wirelen))
        out.append(r.data)
    return b"".join(out)


def _opt(code: int, val: bytes) -> bytes:
    return struct.pack("<HH", code, len(val)) + val + b"\0" * ((4 - len(val) % 4) % 4)


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


class PcapngWriter:
    """Minimal pcapng writer: one SHB, one IDB per link type (ns resolution), EPBs with comments."""

    def __init__(self, f, app: str = "netdiff export"):
        self.f = f
        self.ifaces: dict[int, int] = {}
        shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _opt(4, app.encode()) + _opt(0, b"")
        f.write(_block(0x0A0D0D0A, shb))

    def write(self, r: Record, comment: str) -> None:
        iid = self.ifaces.get(r.linktype)
        if iid is None:
            iid = self.ifaces[r.linktype] = len(self.ifaces)
            body = struct.pack("<HHI", r.linktype, 0, 262144) + _opt(9, b"\x09") + _opt(0, b"")
            self.f.write(_block(1, body))
        body = (struct.pack("<IIIII", iid, r.ts_ns >> 32, r.ts_ns & 0xFFFFFFFF, r.caplen, r.wirelen)
                + r.data + b"\0" * ((4 - r.caplen % 4) % 4) + _opt(1, comment.encode()) + _opt(0, b""))
        self.f.write(_block(6, body))


def pcapng_file(records: list[Record]) -> bytes:
    bio = io.BytesIO()
    w = PcapngWriter(bio)
    for r in records:
        w.write(r, "")
    return bio.getvalue()


def flow_file_bytes(records: list[Record]) -> tuple[bytes, str]:
    """(file bytes, extension): classic pcap, or pcapng when link types are mixed."""
    if len({r.linktype for r in records}) > 1:
        return pcapng_file(records), ".pcapng"
    return pcap_file(records), ".pcap"

"""Vectorized link-layer and IPv4/TCP/UDP/ICMP parsing of :class:`RawBatch` windows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields

import numpy as np

from engine.codec import capture as cap
from engine.constants import ICMP, TCP, UDP  # noqa: F401  (packets.TCP ... are used by codec modules)
TRANSPORTS = {TCP: "tcp", UDP: "udp", ICMP: "icmp"}
# Not a skip: counted in the same Counter so reports show it next to the skips.
CUT_NOTE = "kept: header options cut by snaplen (missing bytes read as 0)"
# Skip reasons of packets that claim IPv4 (by link type or EtherType) and break
# it: a compliance check counts them as violations. Every other reason is a
# packet the layout does not cover (other protocols, fragments, headers the
# snap length cut), which a check reports but cannot judge.
MALFORMED_IPV4 = "malformed IPv4 header"
MALFORMED_TRANSPORT = "malformed transport header"
MALFORMED = (MALFORMED_IPV4, MALFORMED_TRANSPORT)


@dataclass
class Packets:
    """IPv4 TCP/UDP/ICMP packets as arrays (one row per packet).

    Attributes:
        ts_ns: ``(n,)`` int64 capture time in ns.
        ip: ``(n, 60)`` uint8 IPv4 header, zero past its length.
        l4: ``(n, 60)`` uint8 transport header, zero past its length.
        ihl: ``(n,)`` int16 IPv4 header length in bytes.
        l4len: ``(n,)`` int16 transport header length in bytes.
        proto: ``(n,)`` uint8 (6, 17 or 1).
        src, dst: ``(n,)`` uint32 addresses.
        sport, dport: ``(n,)`` uint16 ports (0 for ICMP).
        flags: ``(n,)`` uint16 TCP flags (0 otherwise).
        seq: ``(n,)`` int64 arrival order, used to keep sorting stable.
        psum: ``(n,)`` int64 one's-complement sum (mod 65535) of the transport
            payload as 16-bit words, or -1 where the payload was not fully
            captured: lets checksums of real captures be verified although the
            matrix holds no payload. All -1 unless the reader was asked for
            payload sums.
    """

    ts_ns: np.ndarray
    ip: np.ndarray
    l4: np.ndarray
    ihl: np.ndarray
    l4len: np.ndarray
    proto: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    flags: np.ndarray
    seq: np.ndarray
    psum: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_ns)

    def take(self, idx) -> "Packets":
        return Packets(*(getattr(self, f.name)[idx] for f in fields(self)))

    @staticmethod
    def concat(parts: list["Packets"]) -> "Packets":
        return Packets(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Packets)))

    @staticmethod
    def empty() -> "Packets":
        z = lambda dt, *s: np.zeros((0, *s), dt)  # noqa: E731
        return Packets(z(np.int64), z(np.uint8, 60), z(np.uint8, 60), z(np.int16), z(np.int16),
                       z(np.uint8), z(np.uint32), z(np.uint32), z(np.uint16), z(np.uint16),
                       z(np.uint16), z(np.int64), z(np.int64))


def _be16(a: np.ndarray, i: int) -> np.ndarray:
    return (a[:, i].astype(np.uint32) << 8) | a[:, i + 1]


def _be32(a: np.ndarray, i: int) -> np.ndarray:
    return ((a[:, i].astype(np.uint32) << 24) | (a[:, i + 1].astype(np.uint32) << 16)
            | (a[:, i + 2].astype(np.uint32) << 8) | a[:, i + 3])


def l3_offsets(b: cap.RawBatch) -> tuple[np.ndarray, np.ndarray]:
    """Offset of the IP header in each frame, and whether it is IPv4 at all.

    Returns:
        ``(off, is_ipv4)``: ``(n,)`` int64 and bool; ``off`` is meaningless where not IPv4.
    """
    fr, lt = b.frame, b.linktype
    n = len(lt)
    off = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)

    eth = lt == cap.LINK_ETHERNET
    if eth.any():
        et = _be16(fr, 12)
        o = np.full(n, 14)
        for _ in range(2):          # 802.1Q / 802.1ad, up to two tags
            tagged = eth & np.isin(et, (0x8100, 0x88A8, 0x9100))
            et = np.where(tagged, (fr[np.arange(n), o + 2].astype(np.uint32) << 8) | fr[np.arange(n), o + 3], et)
            o = np.where(tagged, o + 4, o)
        m = eth & (et == 0x0800)
        off[m], ok[m] = o[m], True
    raw = np.isin(lt, (cap.LINK_RAW, 12, 14, cap.LINK_IPV4))
    if raw.any():
        m = raw & ((fr[:, 0] >> 4) == 4)
        off[m], ok[m] = 0, True
    sll = lt == cap.LINK_SLL
    if sll.any():
        m = sll & (_be16(fr, 14) == 0x0800)
        off[m], ok[m] = 16, True
    sll2 = lt == cap.LINK_SLL2
    if sll2.any():
        m = sll2 & (_be16(fr, 0) == 0x0800)
        off[m], ok[m] = 20, True
    null = lt == cap.LINK_NULL
    if null.any():
        # the AF value is in the byte order of the machine that captured
        af_le = fr[:, 0].astype(np.uint32) | (fr[:, 1].astype(np.uint32) << 8) | (fr[:, 2].astype(np.uint32) << 16) | (fr[:, 3].astype(np.uint32) << 24)
        m = null & ((af_le == 2) | (_be32(fr, 0) == 2))
        off[m], ok[m] = 4, True
    loop = lt == cap.LINK_LOOP
    if loop.any():
        m = loop & (_be32(fr, 0) == 2)
        off[m], ok[m] = 4, True
    return off, ok


def parse(b: cap.RawBatch, seq0: int, skipped: Counter) -> Packets:
    """Keep the IPv4 TCP/UDP/ICMP packets of a batch; count the others in ``skipped`` by reason."""
    off, is4 = l3_offsets(b)
    known = np.isin(b.linktype, list(cap.LINK_NAMES))
    skipped["unsupported link type"] += int((~known).sum())
    skipped["not IPv4"] += int((known & ~is4).sum())
    rows = np.nonzero(is4)[0]
    l3 = b.frame[rows[:, None], off[rows, None] + np.arange(cap.L3_WINDOW)]
    avail = b.caplen[rows].astype(np.int64) - off[rows]
    ver = l3[:, 0] >> 4
    ihl = (l3[:, 0] & 0x0F).astype(np.int16) * 4
    proto = l3[:, 9]
    foff = _be16(l3, 6) & 0x1FFF
    # a first byte that was captured and is not IPv4's breaks the header; a header the
    # snap length cut may be fine, we cannot tell
    broken = (avail >= 1) & ((ver != 4) | (ihl < 20))
    good = ~broken & (avail >= 1) & (avail >= ihl)
    skipped[MALFORMED_IPV4] += int(broken.sum())
    skipped["IPv4 header cut by snaplen"] += int((~broken & ~good).sum())
    tp = good & np.isin(proto, (TCP, UDP, ICMP))
    skipped["other IPv4 protocol"] += int((good & ~tp).sum())
    frag = tp & (foff != 0)
    skipped["IPv4 fragment without transport header"] += int(frag.sum())
    tp &= ~frag
    # transport header window, starting right after the IPv4 header
    l4 = l3[np.arange(len(rows))[:, None], np.minimum(ihl[:, None] + np.arange(60), cap.L3_WINDOW - 1)]
    doff = (l4[:, 12] >> 4).astype(np.int16) * 4
    l4len = np.where(proto == TCP, doff, 8).astype(np.int16)
    min_l4 = np.where(proto == TCP, 20, 8)
    bad_doff = tp & (proto == TCP) & (doff < 20) & (avail >= ihl + 13)   # offset byte captured
    whole = tp & ~bad_doff & (avail >= ihl + min_l4)
    skipped[MALFORMED_TRANSPORT] += int(bad_doff.sum())
    skipped["transport header cut by snaplen"] += int((tp & ~whole & ~bad_doff).sum())
    # Snaplen may cut TCP options: keep the packet, the missing bytes read as 0 (EOL).
    skipped[CUT_NOTE] += int((whole & (avail < ihl + l4len)).sum())
    k = np.nonzero(whole)[0]
    l3, l4, ihl, l4len, proto = l3[k], l4[k], ihl[k], l4len[k], proto[k]
    col = np.arange(60)
    ip = np.where(col[None, :] < ihl[:, None], l3[:, :60], 0).astype(np.uint8)
    l4 = np.where(col[None, :] < l4len[:, None], l4, 0).astype(np.uint8)
    isport = proto != ICMP
    sel = rows[k]
    if b.even_sum is None:
        psum = np.full(len(sel), -1, np.int64)
    else:
        psum = _payload_sums(b, sel, off[sel], ihl.astype(np.int64), l4len.astype(np.int64),
                             _be16(ip, 2).astype(np.int64))
    return Packets(
        ts_ns=b.ts_ns[rows[k]], ip=ip, l4=l4, ihl=ihl, l4len=l4len, proto=proto,
        src=_be32(ip, 12), dst=_be32(ip, 16),
        sport=np.where(isport, _be16(l4, 0), 0).astype(np.uint16),
        dport=np.where(isport, _be16(l4, 2), 0).astype(np.uint16),
        flags=np.where(proto == TCP, _be16(l4, 12) & 0x01FF, 0).astype(np.uint16),
        seq=seq0 + rows[k].astype(np.int64),
        psum=psum,
    )


def _payload_sums(b: cap.RawBatch, sel, l3off, ihl, l4len, tl) -> np.ndarray:
    """One's-complement sums of transport payloads from the whole-frame byte sums."""
    start = l3off + ihl + l4len                  # payload start within the frame
    end = l3off + tl                             # IPv4 packet end (Ethernet padding after it)
    caplen = b.caplen[sel].astype(np.int64)
    win = b.frame[sel].astype(np.int64)
    col = np.arange(cap.FRAME_WINDOW)[None, :]
    even_col = (col % 2) == 0
    before = col < start[:, None]
    trailer = (col >= end[:, None]) & (col < caplen[:, None])
    e = b.even_sum[sel] - (win * (before & even_col)).sum(1) - (win * (trailer & even_col)).sum(1)
    o = b.odd_sum[sel] - (win * (before & ~even_col)).sum(1) - (win * (trailer & ~even_col)).sum(1)
    s = np.where(start % 2 == 0, e * 256 + o, o * 256 + e) % 65535
    # unverifiable: payload not fully captured, or a trailer beyond the window we keep
    bad = (end > caplen) | ((end < caplen) & (caplen > cap.FRAME_WINDOW)) | (start > end)
    return np.where(bad, -1, s)


def ip_str(a: int) -> str:
    a = int(a)
    return f"{a >> 24 & 255}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"


def ip_int(s: str) -> int:
    p = [int(x) for x in s.split(".")]
    if len(p) != 4 or any(not 0 <= x <= 255 for x in p):
        raise ValueError(f"not an IPv4 address: {s!r}")
    return p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]

"""Internet checksums of decoded packets, vectorized over rows.

The checksums are those of the packet exactly as :func:`engine.codec.matrix.decode_matrices`
writes it: header bits from the matrix, addresses from the flow's metadata,
and a payload of zero bytes up to the IPv4 total length. Zero bytes add
nothing to a one's-complement sum, so the payload only enters through the
length in the TCP/UDP pseudo-header. Headers are summed as 16-bit words made
with ``np.packbits`` over the header's bit columns (in wire order), masked to
the header length.
"""

from __future__ import annotations

import numpy as np

from engine.codec.layout import LAYOUT
from .batch import IP4_FIXED, Batch

COL_IP_OPT = LAYOUT.cols("ipv4_opt")
COL_TCP = LAYOUT.block("tcp")
COL_UDP = LAYOUT.block("udp")
COL_ICMP = LAYOUT.block("icmp")


def fold(s: np.ndarray) -> np.ndarray:
    """Fold a sum of 16-bit words to 16 bits with end-around carry."""
    s = np.asarray(s, np.int64)
    for _ in range(3):
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _words(b: Batch, rows: np.ndarray, cols: slice) -> np.ndarray:
    """16-bit words of byte-aligned header columns ``cols`` (wire order; absent bits = 0)."""
    by = b.ones[rows, cols.start // 8:cols.stop // 8].astype(np.int64)
    return (by[:, 0::2] << 8) | by[:, 1::2]


def _masked_sum(words: np.ndarray, nwords: np.ndarray, skip: int | None = None) -> np.ndarray:
    w = words.copy()
    if skip is not None:
        w[:, skip] = 0
    w[np.arange(w.shape[1])[None, :] >= nwords[:, None]] = 0
    return w.sum(axis=1)


def _addr_sum(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)


def ipv4(b: Batch, rows: np.ndarray) -> np.ndarray:
    """Correct IPv4 header checksum of ``rows`` (indices)."""
    fixed = _words(b, rows, IP4_FIXED)                      # 6 words, word 5 is the checksum
    s = fixed.sum(axis=1) - fixed[:, 5]
    src, dst = (x[rows] for x in b.src_dst())
    s += _addr_sum(src, dst)
    optw = (b.ihl_bytes()[rows] - 20) // 2
    s += _masked_sum(_words(b, rows, COL_IP_OPT), np.minimum(optw, 20))
    return (~fold(s)) & 0xFFFF


def _payload(b: Batch, rows: np.ndarray) -> np.ndarray:
    """Sum of the real payload words where known (checking a capture), else 0 (zero payload)."""
    if b.payload_sum is None:
        return 0
    return np.maximum(b.payload_sum[rows], 0)


def _pseudo(b: Batch, rows: np.ndarray, proto: int) -> np.ndarray:
    src, dst = (x[rows] for x in b.src_dst())
    l4len = b.ip_len()[rows] - b.ihl_bytes()[rows]
    return _addr_sum(src, dst) + proto + l4len


def tcp(b: Batch, rows: np.ndarray) -> np.ndarray:
    """Correct TCP checksum of ``rows`` (zero payload, pseudo-header from the flow's addresses)."""
    words = _words(b, rows, COL_TCP)                   # 30 words, word 8 is the checksum
    nw = np.minimum(b.l4_hdr_bytes()[rows] // 2, 30)
    s = _masked_sum(words, nw, skip=8) + _pseudo(b, rows, 6) + _payload(b, rows)
    return (~fold(s)) & 0xFFFF


def udp(b: Batch, rows: np.ndarray) -> np.ndarray:
    """Correct UDP checksum of ``rows``; a computed 0 is sent as 0xFFFF."""
    words = _words(b, rows, COL_UDP)                   # 4 words, word 3 is the checksum
    s = words.sum(axis=1) - words[:, 3] + _pseudo(b, rows, 17) + _payload(b, rows)
    c = (~fold(s)) & 0xFFFF
    return np.where(c == 0, 0xFFFF, c)


def icmp(b: Batch, rows: np.ndarray) -> np.ndarray:
    """Correct ICMP checksum of ``rows`` (header and zero payload; no pseudo-header)."""
    words = _words(b, rows, COL_ICMP)                  # 4 words, word 1 is the checksum
    s = words.sum(axis=1) - words[:, 1] + _payload(b, rows)
    return (~fold(s)) & 0xFFFF


# -- rules -------------------------------------------------------------------------------

from .batch import Plan  # noqa: E402
from .rule import Rule  # noqa: E402


class _ChecksumRule(Rule):
    field_name = ""
    proto = ""
    compute = staticmethod(lambda b, rows: rows)

    def plan(self, b: Batch) -> Plan:
        p = Plan()
        sel = np.ones(b.n, bool) if self.proto == "ipv4" else b.rows_of(self.proto)
        rows = np.nonzero(sel)[0]
        if len(rows) == 0:
            return p
        want = self.compute(b, rows)
        cur = b.get(self.field_name)[rows]
        bad = self.violates(cur, want)
        if b.payload_sum is not None and self.proto != "ipv4":
            bad &= b.payload_sum[rows] >= 0     # payload not captured: cannot be judged
        p.field(self.field_name, rows[bad], want[bad])
        return p

    @staticmethod
    def violates(cur, want):
        return cur != want


class Ipv4Checksum(_ChecksumRule):
    name = "ipv4_checksum"
    description = "IPv4 header checksum correct"
    field_name, proto, compute = "ipv4_cksum", "ipv4", staticmethod(ipv4)


class TcpChecksum(_ChecksumRule):
    name = "tcp_checksum"
    description = "TCP checksum correct (pseudo-header with the flow's addresses; real payload when checking a capture, else the zero payload the decoder writes)"
    field_name, proto, compute = "tcp_cksum", "tcp", staticmethod(tcp)


class UdpChecksum(_ChecksumRule):
    name = "udp_checksum"
    description = "UDP checksum correct or 0 (none); a computed 0 is sent as 0xFFFF"
    field_name, proto, compute = "udp_cksum", "udp", staticmethod(udp)

    @staticmethod
    def violates(cur, want):
        return (cur != want) & (cur != 0)


class IcmpChecksum(_ChecksumRule):
    name = "icmp_checksum"
    description = "ICMP checksum correct (header and payload)"
    field_name, proto, compute = "icmp_cksum", "icmp", staticmethod(icmp)

"""Packets <-> bit matrix, vectorized over every packet of a batch.

A flow's matrix is ``(packets, LAYOUT.width)`` int8 with values 1, 0, -1.
Column meaning comes from :mod:`engine.codec.layout`; this module only maps wire
bits to columns through ``LAYOUT.wire_map``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.codec import capture as cap
from engine.codec.flows import FlowBatch
from engine.codec.layout import ABSENT, COL_DIR, IAT_BITS, IAT_SCALE, LAYOUT, bits_to_uint, uint_to_bits
from engine.codec.packets import ICMP, TCP, UDP
from engine.outdir import atomic_write_bytes

WIRE = LAYOUT.wire_map
COL_IPV4, COL_IPV6, COL_TCP, COL_UDP, COL_ICMP = (LAYOUT.block(p) for p in ("ipv4", "ipv6", "tcp", "udp", "icmp"))
COL_IAT = LAYOUT.cols("meta_iat")
IAT_MAX = (1 << IAT_BITS) - 1


@dataclass
class FlowMeta:
    """What a flow's matrix does not hold: addresses, start time, provenance.

    Ports, unlike addresses, are header bits and live in the matrix; the ones
    here are the initiator's and responder's as first seen (for manifests).
    """

    flow_id: str
    label: str
    proto: int
    init_ip: int
    resp_ip: int
    init_port: int
    resp_port: int
    start_ns: int
    packets: int
    source: str = ""


def gaps_to_iat(gap_ns: np.ndarray) -> np.ndarray:
    """Quantize gaps (ns, >= 0) to IAT codes: round(log2(1 + gap_us) * IAT_SCALE)."""
    g = np.maximum(np.asarray(gap_ns, np.float64), 0) / 1000.0
    return np.minimum(np.rint(np.log2(1.0 + g) * IAT_SCALE), IAT_MAX).astype(np.int64)


def iat_to_gaps(code: np.ndarray) -> np.ndarray:
    """IAT codes -> gaps in ns (int64)."""
    return np.rint((np.exp2(np.asarray(code, np.float64) / IAT_SCALE) - 1.0) * 1000.0).astype(np.int64)


def encode_flows(fb: FlowBatch) -> np.ndarray:
    """Encode every packet of a :class:`FlowBatch`.

    Returns:
        ``(n, LAYOUT.width)`` int8; flow ``i`` is rows ``fb.offsets[i]:fb.offsets[i+1]``.
    """
    p = fb.packets
    n = len(p)
    m = np.full((n, LAYOUT.width), ABSENT, np.int8)
    ipbits = np.unpackbits(p.ip, axis=1).astype(np.int8)       # (n, 480)
    w = WIRE["ipv4"]
    blk = ipbits[:, w]
    blk[w[None, :] >= (p.ihl[:, None].astype(np.int64) * 8)] = ABSENT
    m[:, COL_IPV4] = blk
    l4bits = np.unpackbits(p.l4, axis=1).astype(np.int8)       # (n, 480)
    for proto, col, name in ((TCP, COL_TCP, "tcp"), (UDP, COL_UDP, "udp"), (ICMP, COL_ICMP, "icmp")):
        rows = p.proto == proto
        if not rows.any():
            continue
        w = WIRE[name]
        blk = l4bits[rows][:, w]
        blk[w[None, :] >= (p.l4len[rows][:, None].astype(np.int64) * 8)] = ABSENT
        m[np.ix_(rows, np.arange(col.start, col.stop))] = blk
    m[:, COL_DIR] = fb.forward.astype(np.int8)
    m[:, COL_IAT] = uint_to_bits(iat_codes(p.ts_ns, fb.offsets), IAT_BITS)
    return m


def iat_codes(ts_ns: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """IAT codes of flows laid back to back, with error feedback.

    Each gap is measured from the *decoded* time of the previous packet, so
    quantization errors do not add up along a flow: every decoded timestamp
    is within ``IAT_REL_ERROR * (1 + gap_us)`` of the original. The loop runs
    over packet positions (at most ``max_packets``), vectorized across flows.
    """
    n = len(ts_ns)
    sizes = np.diff(offsets)
    code = np.zeros(n, np.int64)
    rec = np.asarray(ts_ns, np.int64).copy()     # decoded times so far
    if n == 0:
        return code
    for k in range(1, int(sizes.max())):
        rows = offsets[:-1][sizes > k] + k
        q = gaps_to_iat(ts_ns[rows] - rec[rows - 1])
        code[rows] = q
        rec[rows] = rec[rows - 1] + iat_to_gaps(q)
    return code


def present_rows(m):
    """Rows that hold a packet (padding rows have direction and IPv4 version absent).

    ``m``: ``(..., LAYOUT.width)`` numpy array or torch tensor; returns ``(...)`` bool.
    """
    ver = LAYOUT.cols("ipv4_ver")
    return (m[..., COL_DIR] != ABSENT) | (m[..., ver.start] != ABSENT)


#: transport blocks by IP protocol number, in the order a row carrying several is read
TRANSPORT_COLS = {6: COL_TCP, 17: COL_UDP, 1: COL_ICMP}


def row_proto(m: np.ndarray) -> np.ndarray:
    """Per row of ``(..., LAYOUT.width)``: 6, 17, 1 or 0, the first transport block present
    in :data:`TRANSPORT_COLS` order (TCP, then UDP, then ICMP), as decoding reads a row."""
    out = np.zeros(m.shape[:-1], np.int64)
    for p, col in reversed(TRANSPORT_COLS.items()):
        out[m[..., col.start] != ABSENT] = p
    return out


def _wire_bytes(m: np.ndarray, cols: slice, proto: str, nbytes: int) -> np.ndarray:
    """Columns of one block back to header bytes; absent bits become 0."""
    bits = np.zeros((m.shape[0], nbytes * 8), np.uint8)
    bits[:, WIRE[proto]] = m[:, cols] == 1
    return np.packbits(bits, axis=1)


ETH_FWD = bytes.fromhex("020000000002" "020000000001" "0800")   # dst, src, type
ETH_REV = bytes.fromhex("020000000001" "020000000002" "0800")


def decode_matrices(mats: list[np.ndarray], metas: list[FlowMeta], linktype: int = cap.LINK_ETHERNET):
    """Rebuild packets from flow matrices.

    Headers come from the bits, addresses from ``metas`` (by direction),
    timestamps from each flow's start and its IAT codes, payloads are zero
    bytes up to the IPv4 total length. All flows' packets are merged in time
    order.

    Returns:
        ``(heads, head_len, frame_len, ts_ns)``: ``(n, H)`` header bytes of each
        frame and their count, the frame length, and the time, ready for
        :func:`engine.codec.capture.pcap_bytes`.
    """
    if not mats:
        z = np.zeros(0, np.int64)
        return np.zeros((0, 134), np.uint8), z, z, z
    rows = [present_rows(x) for x in mats]
    keep = [i for i, r in enumerate(rows) if r.any()]
    mats, metas, rows = [mats[i] for i in keep], [metas[i] for i in keep], [rows[i] for i in keep]
    if not mats:
        return decode_matrices([], [], linktype)
    m = np.concatenate([x[r] for x, r in zip(mats, rows)])
    counts = np.array([int(r.sum()) for r in rows])
    n = len(m)
    fwd = m[:, COL_DIR] != 0            # absent direction counts as forward
    init_ip = np.repeat(np.array([x.init_ip for x in metas], np.uint32), counts)
    resp_ip = np.repeat(np.array([x.resp_ip for x in metas], np.uint32), counts)
    src = np.where(fwd, init_ip, resp_ip)
    dst = np.where(fwd, resp_ip, init_ip)

    ip = _wire_bytes(m, COL_IPV4, "ipv4", 60)
    ip[:, 12:16] = src.astype(">u4").view(np.uint8).reshape(n, 4)
    ip[:, 16:20] = dst.astype(">u4").view(np.uint8).reshape(n, 4)
    ihl = (ip[:, 0] & 0x0F).astype(np.int64) * 4
    ihl = np.maximum(ihl, 20)
    tl = (ip[:, 2].astype(np.int64) << 8) | ip[:, 3]
    rp = row_proto(m)
    is_tcp, is_udp, is_icmp = rp == TCP, rp == UDP, rp == ICMP
    l4 = np.zeros((n, 60), np.uint8)
    if is_tcp.any():
        l4[is_tcp] = _wire_bytes(m[is_tcp], COL_TCP, "tcp", 60)
    if is_udp.any():
        l4[is_udp, :8] = _wire_bytes(m[is_udp], COL_UDP, "udp", 8)
    if is_icmp.any():
        l4[is_icmp, :8] = _wire_bytes(m[is_icmp], COL_ICMP, "icmp", 8)
    l4len = np.where(is_tcp, np.maximum((l4[:, 12] >> 4).astype(np.int64) * 4, 20),
                     np.where(is_udp | is_icmp, 8, 0))
    hdr = ihl + l4len
    iplen = np.maximum(tl, hdr)
    link = 14 if linktype == cap.LINK_ETHERNET else 0
    frame_len = link + iplen
    heads = np.zeros((n, link + 120), np.uint8)
    if link:
        heads[:, :14] = np.where(fwd[:, None], np.frombuffer(ETH_FWD, np.uint8), np.frombuffer(ETH_REV, np.uint8))
    col = np.arange(60)
    heads[:, link:link + 60] = ip
    msk = col[None, :] < l4len[:, None]
    rows_i = np.nonzero(msk)[0]
    heads[rows_i, (link + ihl[:, None] + col)[msk]] = l4[msk]
    head_len = link + hdr

    code = bits_to_uint(m[:, COL_IAT]).astype(np.int64)
    gap = iat_to_gaps(code)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gap[starts] = 0
    # cumulative time within each flow
    csum = np.cumsum(gap)
    base = np.repeat(csum[starts] - gap[starts], counts) if n else csum
    ts = np.repeat(np.array([x.start_ns for x in metas], np.int64), counts) + (csum - base)
    order = np.argsort(ts, kind="stable")
    return heads[order], head_len[order], frame_len[order], ts[order]


def write_pcap(path, mats, metas, linktype: int = cap.LINK_ETHERNET, nanosecond: bool = True) -> int:
    """Decode matrices and write them atomically as one pcap; returns the packet count."""
    heads, hl, ln, ts = decode_matrices(mats, metas, linktype)
    data = cap.pcap_bytes(heads, hl, ln, ln, ts, linktype, nanosecond)
    atomic_write_bytes(path, [memoryview(data)])
    return len(ln)

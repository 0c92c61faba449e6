"""Bidirectional 5-tuple flows, assembled in a stream of packet batches.

A flow is the packets of one (proto, address, port, address, port) pair in
either direction; its initiator is the sender of its first packet. A flow
ends when the 5-tuple is idle longer than ``idle_timeout``, when a TCP SYN
(without ACK) arrives after a FIN or RST was seen in it (connection reuse),
or when it reaches ``max_packets`` (the next packet starts a new flow).
Flows with fewer than ``min_packets`` packets are dropped.

Packets of flows that may still grow are carried from one batch to the next,
so memory is bounded by the packets of open flows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from engine.codec.packets import TCP, Packets
from engine.constants import MAX_FLOW_PACKETS

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


@dataclass(frozen=True)
class FlowConfig:
    """How packets are cut into flows.

    Attributes:
        idle_timeout: seconds without a packet after which a flow ends.
        max_packets: a flow ends at this many packets (the paper uses 1024).
        min_packets: flows with fewer packets are dropped.
    """

    idle_timeout: float = 120.0
    max_packets: int = MAX_FLOW_PACKETS
    min_packets: int = 2


@dataclass
class FlowBatch:
    """Finished flows: packets grouped by flow, in time order within a flow.

    Attributes:
        packets: all packets, flow after flow.
        offsets: ``(f + 1,)`` int64; flow ``i`` is ``packets[offsets[i]:offsets[i + 1]]``.
        init_ip, resp_ip: ``(f,)`` uint32 initiator and responder address.
        init_port, resp_port: ``(f,)`` ports (0 for ICMP).
        proto: ``(f,)`` uint8.
        forward: ``(n,)`` bool, packet sent by the initiator.
    """

    packets: Packets
    offsets: np.ndarray
    init_ip: np.ndarray
    resp_ip: np.ndarray
    init_port: np.ndarray
    resp_port: np.ndarray
    proto: np.ndarray
    forward: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1


def _segment(p: Packets, cfg: FlowConfig):
    """Sort packets by (5-tuple, time) and find where flows start.

    Returns:
        ``(order, flow_start, key_last, ts)``: the sort order; per sorted packet,
        whether it starts a flow and whether it is its 5-tuple's last; sorted times.
    """
    lo_first = (p.src < p.dst) | ((p.src == p.dst) & (p.sport <= p.dport))
    a_ip = np.where(lo_first, p.src, p.dst).astype(np.uint64)
    b_ip = np.where(lo_first, p.dst, p.src).astype(np.uint64)
    a_pt = np.where(lo_first, p.sport, p.dport).astype(np.uint64)
    b_pt = np.where(lo_first, p.dport, p.sport).astype(np.uint64)
    k1 = (a_ip << np.uint64(32)) | b_ip
    k2 = (a_pt << np.uint64(24)) | (b_pt << np.uint64(8)) | p.proto.astype(np.uint64)
    order = np.lexsort((p.seq, p.ts_ns, k2, k1))
    k1, k2 = k1[order], k2[order]
    ts = p.ts_ns[order]
    fl = p.flags[order]
    tcp = p.proto[order] == TCP
    n = len(order)
    idx = np.arange(n)
    newkey = np.ones(n, bool)
    newkey[1:] = (k1[1:] != k1[:-1]) | (k2[1:] != k2[:-1])
    gap = np.zeros(n, np.int64)
    gap[1:] = ts[1:] - ts[:-1]
    idle = newkey | (gap > int(cfg.idle_timeout * 1e9))
    synonly = tcp & ((fl & SYN) != 0) & ((fl & ACK) == 0)
    finrst = tcp & ((fl & (FIN | RST)) != 0)
    mark = idle | synonly
    lastmark = np.maximum.accumulate(np.where(mark, idx, 0))
    prevmark = np.zeros(n, np.int64)
    prevmark[1:] = lastmark[:-1]
    cum = np.cumsum(finrst)
    before = np.where(prevmark > 0, cum[np.maximum(prevmark - 1, 0)], 0)
    seen = np.zeros(n, np.int64)
    seen[1:] = cum[:-1] - before[1:]
    reuse = synonly & ~newkey & (seen > 0)
    seg_start = idle | reuse
    seg_id = np.cumsum(seg_start) - 1
    seg_first = idx[seg_start]
    pos = idx - seg_first[seg_id]
    flow_start = seg_start | (pos % cfg.max_packets == 0)
    # the last packet of its 5-tuple in this batch: a flow ending elsewhere is closed
    key_last = np.ones(n, bool)
    key_last[:-1] = newkey[1:]
    return order, flow_start, key_last, ts


class FlowAssembler:
    """Feed packet batches, get finished flows.

    >>> fa = FlowAssembler(FlowConfig())
    >>> for batch in packet_batches: ...
    ...     for flows in fa.feed(batch): ...
    >>> for flows in fa.finish(): ...
    """

    def __init__(self, cfg: FlowConfig = FlowConfig()):
        self.cfg = cfg
        self.carry = Packets.empty()
        self.dropped_short = 0      # flows dropped for min_packets
        self.dropped_short_packets = 0

    def feed(self, p: Packets) -> Iterator[FlowBatch]:
        allp = Packets.concat([self.carry, p]) if len(self.carry) else p
        yield from self._cut(allp, final=False)

    def finish(self) -> Iterator[FlowBatch]:
        allp, self.carry = self.carry, Packets.empty()
        if len(allp):
            yield from self._cut(allp, final=True)

    def _cut(self, p: Packets, final: bool) -> Iterator[FlowBatch]:
        n = len(p)
        if n == 0:
            return
        order, flow_start, key_last, ts = _segment(p, self.cfg)
        flow_id = np.cumsum(flow_start) - 1
        nflows = int(flow_id[-1]) + 1
        size = np.bincount(flow_id, minlength=nflows)
        first_idx = np.nonzero(flow_start)[0]
        last_idx = np.append(first_idx[1:], n) - 1
        if final:
            done = np.ones(nflows, bool)
        else:
            horizon = int(ts.max()) - int(self.cfg.idle_timeout * 1e9)
            full = size >= self.cfg.max_packets
            later_seg = ~key_last[last_idx]          # the key continues after this flow
            done = full | later_seg | (ts[last_idx] < horizon)
        keep_pkt = ~done[flow_id]
        self.carry = p.take(order[keep_pkt])
        done_ok = done & (size >= self.cfg.min_packets)
        short = done & ~done_ok
        self.dropped_short += int(short.sum())
        self.dropped_short_packets += int(size[short].sum())
        if not done_ok.any():
            return
        # emit finished flows ordered by their first packet's time
        fids = np.nonzero(done_ok)[0]
        fids = fids[np.lexsort((p.seq[order[first_idx[fids]]], ts[first_idx[fids]]))]
        sel = _gather_ranges(first_idx[fids], size[fids])
        pk = p.take(order[sel])
        offsets = np.concatenate([[0], np.cumsum(size[fids])]).astype(np.int64)
        first = pk.take(offsets[:-1])
        fwd_src = np.repeat(first.src, size[fids])
        fwd_sport = np.repeat(first.sport, size[fids])
        forward = (pk.src == fwd_src) & (pk.sport == fwd_sport)
        yield FlowBatch(pk, offsets, first.src, first.dst, first.sport, first.dport, first.proto, forward)


def _gather_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    from engine.codec.capture import _ranges
    return np.repeat(starts, lengths) + _ranges(lengths)


def flows_of(batches: Iterable[Packets], cfg: FlowConfig = FlowConfig()) -> Iterator[FlowBatch]:
    fa = FlowAssembler(cfg)
    for b in batches:
        yield from fa.feed(b)
    yield from fa.finish()

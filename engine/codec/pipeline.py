"""Capture file -> finished flows, each as a bit matrix plus its metadata."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.codec import capture as cap
from engine.codec import packets as pk
from engine.codec.matrix import FlowMeta, encode_flows
from engine.codec.flows import FlowAssembler, FlowConfig
from engine.progress import CancelToken, OnEvent, TaskFinished, TaskProgress, TaskStarted


@dataclass
class CaptureStats:
    """Counts a user sees in ``netdiff inspect`` and encode summaries."""

    path: str
    format: str = "?"
    linktypes: list = field(default_factory=list)
    packets: int = 0
    encoded_packets: int = 0
    flows: int = 0
    flows_by_proto: Counter = field(default_factory=Counter)
    packets_by_proto: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    dropped_short_flows: int = 0
    dropped_short_packets: int = 0
    first_ns: int | None = None
    last_ns: int | None = None

    def to_dict(self) -> dict:
        return {
            "path": self.path, "format": self.format,
            "link_types": [f"{cap.LINK_NAMES.get(t, 'unknown')} ({t})" for t in self.linktypes],
            "packets": self.packets, "encoded_packets": self.encoded_packets, "flows": self.flows,
            "flows_by_proto": dict(self.flows_by_proto), "packets_by_proto": dict(self.packets_by_proto),
            "skipped": {k: v for k, v in self.skipped.items() if v},
            "dropped_short_flows": self.dropped_short_flows,
            "dropped_short_packets": self.dropped_short_packets,
            "duration_s": None if self.first_ns is None else (self.last_ns - self.first_ns) / 1e9,
        }


@dataclass
class EncodedFlows:
    """A batch of finished flows.

    Attributes:
        matrix: ``(n, LAYOUT.width)`` int8, flows back to back.
        offsets: ``(f + 1,)``; flow ``i`` is ``matrix[offsets[i]:offsets[i+1]]``.
        metas: one :class:`FlowMeta` per flow.
        psum: ``(n,)`` payload checksum sums per row (see :class:`engine.codec.packets.Packets`).
    """

    matrix: np.ndarray
    offsets: np.ndarray
    metas: list[FlowMeta]
    psum: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.metas)

    def flow(self, i: int) -> np.ndarray:
        return self.matrix[self.offsets[i]:self.offsets[i + 1]]


def encode_capture(path: str | os.PathLike, cfg: FlowConfig = FlowConfig(), label: str = "",
                   stats: CaptureStats | None = None, on_event: OnEvent | None = None,
                   cancel: CancelToken | None = None, batch_packets: int = 65536,
                   first_index: int = 0, flow_prefix: str | None = None,
                   payload_sums: bool = False) -> Iterator[EncodedFlows]:
    """Read a capture and yield its flows encoded, batch after batch.

    Flow ids are ``<flow_prefix>-<n>`` (default prefix: the file's stem),
    numbered in the order flows finish.
    ``payload_sums=True`` fills :attr:`EncodedFlows.psum` (for checking a
    capture's checksums); otherwise it is all -1.
    Raises :class:`~engine.errors.InputError` on bad input.
    """
    path = os.fspath(path)
    stats = stats if stats is not None else CaptureStats(path)
    rdr = cap.CaptureReader(path, batch_packets, payload_sums)
    fa = FlowAssembler(cfg)
    stem = flow_prefix or Path(path).stem
    task = f"encode {Path(path).name}"
    emit = on_event or (lambda e: None)
    emit(TaskStarted(task, total=rdr.size, unit="B"))
    nflow = first_index
    seq = 0

    def batches():
        nonlocal seq
        for b in rdr:
            if cancel is not None:
                cancel.check()
            p = pk.parse(b, seq, stats.skipped)
            seq += len(b.ts_ns)
            stats.packets = seq
            if len(b.ts_ns):
                lo, hi = int(b.ts_ns.min()), int(b.ts_ns.max())
                stats.first_ns = lo if stats.first_ns is None else min(stats.first_ns, lo)
                stats.last_ns = hi if stats.last_ns is None else max(stats.last_ns, hi)
            emit(TaskProgress(task, done=rdr.info.bytes_read, total=rdr.size, unit="B"))
            yield p

    def emit_flows(fb):
        nonlocal nflow
        m = encode_flows(fb)
        metas = []
        sizes = np.diff(fb.offsets)
        for i in range(len(fb)):
            proto = int(fb.proto[i])
            metas.append(FlowMeta(
                flow_id=f"{stem}-{nflow:06d}", label=label, proto=proto,
                init_ip=int(fb.init_ip[i]), resp_ip=int(fb.resp_ip[i]),
                init_port=int(fb.init_port[i]), resp_port=int(fb.resp_port[i]),
                start_ns=int(fb.packets.ts_ns[fb.offsets[i]]), packets=int(sizes[i]), source=path))
            nflow += 1
            stats.flows_by_proto[pk.TRANSPORTS[proto]] += 1
            stats.packets_by_proto[pk.TRANSPORTS[proto]] += int(sizes[i])
        stats.flows += len(fb)
        stats.encoded_packets += len(fb.packets)
        return EncodedFlows(m, fb.offsets, metas, fb.packets.psum)

    for p in batches():
        for fb in fa.feed(p):
            yield emit_flows(fb)
    for fb in fa.finish():
        yield emit_flows(fb)
    stats.format = rdr.info.format
    stats.linktypes = sorted(rdr.info.linktypes)
    stats.dropped_short_flows = fa.dropped_short
    stats.dropped_short_packets = fa.dropped_short_packets
    emit(TaskFinished(task, summary=stats.to_dict()))

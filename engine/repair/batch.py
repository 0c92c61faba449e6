"""Many flows as one matrix, plus the per-flow and per-direction helpers rules share.

A :class:`Batch` holds every packet of every flow back to back in one
``(N, LAYOUT.width)`` int8 matrix, so a rule is a handful of numpy operations
over all packets of all flows at once. Nothing here loops over packets.

Rules do not write the matrix directly: they return a :class:`Plan` -- a
list of :class:`Edit` (columns, rows, new bits) -- which the pipeline both
counts (rows whose bits would change) and applies. A rule's violations are
exactly the packets its edits would change, so "count" and "fix" cannot
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.codec.matrix import iat_to_gaps
from engine.codec.layout import ABSENT, COL_DIR, LAYOUT, uint_to_bits
from engine.constants import PROTO_NUM

TCP_FIXED = slice(LAYOUT.block("tcp").start, LAYOUT.cols("tcp_opt").start)
IP4_FIXED = slice(LAYOUT.block("ipv4").start, LAYOUT.cols("ipv4_opt").start)
BLOCK = {p: LAYOUT.block(p) for p in ("ipv4", "ipv6", "tcp", "udp", "icmp", "meta")}
FIELD_COLS = {f.qualname: LAYOUT.cols(f.qualname) for f in LAYOUT.image_fields()}


def _overlap(a: slice, b: slice) -> bool:
    return a.start < b.stop and b.start < a.stop
TRANSPORTS = ("tcp", "udp", "icmp")


@dataclass
class Edit:
    """New bits for some columns of some rows.

    Attributes:
        name: what is edited, for the report: a field name (``tcp_seq``) or a
            block (``udp``).
        cols: column slice.
        rows: ``(k,)`` int64 row indices.
        bits: ``(k, cols width)`` int8 values to write, or a function making them
            (so counting never builds bits it will not write).
        values: for a whole-field edit, the ``(k,)`` new field values (lets
            :meth:`changed` compare numbers instead of bits).
        exact: the rule guarantees every row in ``rows`` changes.
    """

    name: str
    cols: slice
    rows: np.ndarray
    bits: object
    values: np.ndarray | None = None

    exact: bool = False

    def changed(self, b: "Batch") -> np.ndarray:
        """Rows (indices) whose bits this edit would change."""
        if len(self.rows) == 0 or self.exact:
            return self.rows
        if self.values is not None and not b.absent_any(self.cols)[self.rows].any():
            return self.rows[b.get(self.name)[self.rows] != self.values]
        cur = b.m[self.rows, self.cols]
        return self.rows[(cur != self.materialize()).any(axis=1)]

    def materialize(self) -> np.ndarray:
        if callable(self.bits):
            self.bits = np.asarray(self.bits(), np.int8)
        return self.bits


@dataclass
class MetaEdit:
    """New addresses or ports of some flows (they live in FlowMeta, not in the matrix)."""

    name: str
    flows: np.ndarray          # (k,) flow indices
    values: dict               # attribute -> (k,) array


@dataclass
class Plan:
    edits: list[Edit] = field(default_factory=list)
    meta: list[MetaEdit] = field(default_factory=list)
    # Rows a rule flags without editing them (a violation it cannot fix
    # in this pass); counted as violations.
    flagged: np.ndarray | None = None

    def field(self, name: str, rows: np.ndarray, values) -> None:
        """Add an edit writing numeric ``values`` into field ``name`` of ``rows``."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.nonzero(rows)[0]
        if len(rows) == 0:
            return
        f = LAYOUT.field(name)
        vals = np.broadcast_to(np.asarray(values, np.int64), rows.shape)
        self.edits.append(Edit(name, LAYOUT.cols(name), rows, uint_to_bits(vals, f.width), vals))

    def bits(self, name: str, cols: slice, rows: np.ndarray, bits, exact: bool = True) -> None:
        """Add an edit writing ``bits`` (an array for ``rows``, or a function making it)
        into ``cols`` of ``rows``; ``exact``: every one of ``rows`` really changes."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.nonzero(rows)[0]
        if len(rows) == 0:
            return
        self.edits.append(Edit(name, cols, rows, bits, exact=exact))


class Batch:
    """Flows back to back in one matrix, with their addresses.

    Attributes:
        m: ``(N, LAYOUT.width)`` int8 of {1, 0, -1}.
        offsets: ``(F + 1,)``; flow ``i`` is rows ``offsets[i]:offsets[i+1]`` (every flow non-empty).
        fid: ``(N,)`` flow index of each row.
        init_ip, resp_ip: ``(F,)`` int64 addresses (updated by the address rule).
        flow_ids: ``F`` flow ids (for deterministic replacements).
        opts: the :class:`~engine.repair.pipeline.RepairOptions`.
    """

    def __init__(self, m: np.ndarray, offsets: np.ndarray, init_ip, resp_ip, flow_ids, opts, start_ns=None):
        self.m = m
        self.offsets = np.asarray(offsets, np.int64)
        self.n = len(m)
        self.nf = len(self.offsets) - 1
        self.sizes = np.diff(self.offsets)
        self.fid = np.repeat(np.arange(self.nf), self.sizes)
        self.starts = self.offsets[:-1]
        self.first = np.zeros(self.n, bool)
        self.first[self.starts] = True
        self.init_ip = np.asarray(init_ip, np.int64).copy()
        self.resp_ip = np.asarray(resp_ip, np.int64).copy()
        self.flow_ids = list(flow_ids)
        self.start_ns = np.zeros(self.nf, np.int64) if start_ns is None else np.asarray(start_ns, np.int64)
        self.opts = opts
        # per row: one's-complement sum of the real payload (check of a capture), -1 unknown;
        # None: payloads are the decoder's zero bytes
        self.payload_sum: np.ndarray | None = None
        self.idx = np.arange(self.n)
        self.version = 0
        self._cache: dict = {}
        self.counting = False      # set while a rule only counts: it may skip fix-only work
        self._fields: dict[str, np.ndarray] = {}   # field values, dropped when an edit touches them
        # Bit-packed views of the matrix, kept in step with every edit: "is 1"
        # and "is absent", 8 columns a byte. Every protocol block and option
        # area starts on a byte boundary, so field values, presence tests,
        # checksum words and option bytes are read from these.
        self.ones = np.packbits(m == 1, axis=1)
        self.absent = np.packbits(m == ABSENT, axis=1)

    # -- cache ----------------------------------------------------------------
    def cached(self, key, fn):
        hit = self._cache.get(key)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        val = fn()
        self._cache[key] = (self.version, val)
        return val

    def touch(self) -> None:
        self.version += 1

    def apply(self, plan: Plan) -> None:
        for e in plan.edits:
            self.m[e.rows, e.cols] = e.materialize()
            for name in [k for k in self._fields if _overlap(FIELD_COLS[k], e.cols)]:
                del self._fields[name]
            b0, b1 = e.cols.start // 8, -(-e.cols.stop // 8)
            seg = self.m[e.rows, b0 * 8:b1 * 8]
            self.ones[e.rows, b0:b1] = np.packbits(seg == 1, axis=1)
            self.absent[e.rows, b0:b1] = np.packbits(seg == ABSENT, axis=1)
        for me in plan.meta:
            for attr, vals in me.values.items():
                getattr(self, attr)[me.flows] = vals
        if plan.edits or plan.meta:
            self.touch()

    # -- fields ---------------------------------------------------------------
    def get(self, name: str) -> np.ndarray:
        """Field values as int64 (absent bits read as 0)."""
        v = self._fields.get(name)
        if v is None:
            v = self._fields[name] = packed_field(self.ones, LAYOUT.cols(name))
        return v

    def absent_any(self, cols: slice) -> np.ndarray:
        """Per row: any absent cell in ``cols``."""
        def calc():
            if cols.start % 8 == 0 and cols.stop % 8 == 0:
                return self.absent[:, cols.start // 8:cols.stop // 8].any(axis=1)
            if cols.stop - cols.start <= 48:
                return packed_field(self.absent, cols) != 0
            return (self.m[:, cols] == ABSENT).any(axis=1)
        return self.cached(("absent", cols.start, cols.stop), calc)

    def present_any(self, cols: slice) -> np.ndarray:
        """Per row: any present (non-absent) cell in ``cols`` (byte-aligned ``cols``)."""
        def calc():
            return (self.absent[:, cols.start // 8:cols.stop // 8] != 0xFF).any(axis=1)
        return self.cached(("present", cols.start, cols.stop), calc)

    @property
    def fwd(self) -> np.ndarray:
        """Sent by the initiator (absent direction counts as forward, as the decoder does)."""
        return self.cached("fwd", lambda: self.m[:, COL_DIR] != 0)

    def transport(self) -> np.ndarray:  # noqa: D401
        """Per row: 0 tcp, 1 udp, 2 icmp, -1 none -- by which block's first bit is present
        (the decoder's order of precedence)."""
        def calc():
            t = np.full(self.n, -1, np.int8)
            for i, p in reversed(list(enumerate(TRANSPORTS))):
                t[self.m[:, BLOCK[p].start] != ABSENT] = i
            return t
        return self.cached("transport", calc)

    def rows_of(self, proto: str) -> np.ndarray:
        return self.transport() == TRANSPORTS.index(proto)

    def ihl_bytes(self) -> np.ndarray:
        return self.cached("ihl", lambda: np.maximum(self.get("ipv4_hl") * 4, 20))

    def l4_hdr_bytes(self) -> np.ndarray:
        def calc():
            t = self.transport()
            return np.where(t == 0, np.maximum(self.get("tcp_doff") * 4, 20), np.where(t > 0, 8, 0))
        return self.cached("l4hdr", calc)

    def ip_len(self) -> np.ndarray:
        """IPv4 length as the decoder writes the packet: max(total length, headers)."""
        return self.cached("iplen", lambda: np.maximum(self.get("ipv4_tl"), self.ihl_bytes() + self.l4_hdr_bytes()))

    def payload(self) -> np.ndarray:
        """Transport payload bytes of each row (zero bytes in the decoded packet)."""
        return self.cached("payload", lambda: self.ip_len() - self.ihl_bytes() - self.l4_hdr_bytes())

    def src_dst(self) -> tuple[np.ndarray, np.ndarray]:
        def calc():
            fwd = self.fwd
            a, b = self.init_ip[self.fid], self.resp_ip[self.fid]
            return np.where(fwd, a, b), np.where(fwd, b, a)
        return self.cached("srcdst", calc)

    def flow_transport(self) -> np.ndarray:
        """Per flow: the transport of its first packet (0 tcp, 1 udp, 2 icmp, -1 none)."""
        return self.transport()[self.starts]

    def flow_times(self) -> tuple[np.ndarray, np.ndarray]:
        """Per flow: first and last packet time (ns), as the decoder will write them."""
        def calc():
            gap = np.where(self.first, 0, iat_to_gaps(self.get("meta_iat")))
            dur = np.add.reduceat(gap, self.starts) if self.n else np.zeros(self.nf, np.int64)
            return self.start_ns, self.start_ns + dur
        return self.cached("flow_times", calc)

    # -- per-flow helpers -----------------------------------------------------
    def flow_any(self, mask: np.ndarray) -> np.ndarray:
        """Per flow: whether any of its rows is in ``mask``."""
        if self.n == 0:
            return np.zeros(self.nf, bool)
        return np.add.reduceat(mask.astype(np.int64), self.starts) > 0

    def excl_cumsum(self, v: np.ndarray) -> np.ndarray:
        """Per flow, the sum of ``v`` over the rows before each row (int64)."""
        v = np.asarray(v, np.int64)
        cs = np.cumsum(v)
        ex = cs - v
        return ex - np.repeat(ex[self.starts], self.sizes)

    def last_where(self, mask: np.ndarray, inclusive: bool = True) -> np.ndarray:
        """Per row, index of the last row of the same flow at or before it (or strictly
        before it when ``inclusive`` is False) where ``mask`` holds; -1 if none."""
        cand = np.where(mask, self.idx, -1)
        last = np.maximum.accumulate(cand) if self.n else cand
        if not inclusive:
            last = np.concatenate([[-1], last[:-1]]) if self.n else last
        start = np.repeat(self.starts, self.sizes)
        return np.where(last >= start, last, -1)

    def first_where(self, mask: np.ndarray) -> np.ndarray:
        """Per flow, index of its first row where ``mask`` holds; -1 if none."""
        if self.n == 0:
            return np.zeros(self.nf, np.int64)
        big = self.n + 1
        f = np.minimum.reduceat(np.where(mask, self.idx, big), self.starts)
        return np.where(f == big, -1, f)

    def last_in_flow_where(self, mask: np.ndarray) -> np.ndarray:
        """Per flow, index of its last row where ``mask`` holds; -1 if none."""
        if self.n == 0:
            return np.zeros(self.nf, np.int64)
        return np.maximum.reduceat(np.where(mask, self.idx, -1), self.starts)

    def dir_first(self, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per flow, first forward and first backward row (within ``mask``), -1 if none."""
        fwd = self.fwd
        if mask is None:
            return self.cached("dir_first", lambda: (self.first_where(fwd), self.first_where(~fwd)))
        return self.first_where(mask & fwd), self.first_where(mask & ~fwd)



_POP8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def popcount(a: np.ndarray) -> np.ndarray:
    """Set bits per element of an unsigned integer array."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(a)
    a = np.ascontiguousarray(a)
    return _POP8[a.view(np.uint8)].reshape(*a.shape, a.itemsize).sum(axis=-1)


def packed_field(packed: np.ndarray, cols: slice) -> np.ndarray:
    """Read the bits of ``cols`` (at most 57 wide) from an ``np.packbits`` array as int64."""
    s, e = cols.start, cols.stop
    b0, b1 = s // 8, (e - 1) // 8 + 1
    v = packed[:, b0].astype(np.int64)
    for i in range(b0 + 1, b1):
        v = (v << 8) | packed[:, i]
    v >>= (b1 * 8 - e)
    return v & ((1 << (e - s)) - 1)

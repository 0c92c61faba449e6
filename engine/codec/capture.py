"""Streaming capture reading (pcap, pcapng) and pcap building (written atomically by engine.outdir).

The reader picks the record walk by the file's magic (engine.codec.pcap_classic,
engine.codec.pcapng). Those walk record headers in Python (records are
variable-length, so that walk is inherently sequential) and range-check every
field (engine.codec.record_limits); everything per packet -- link layer, IPv4
and transport parsing -- runs with numpy over whole batches. Memory is bounded
by the batch size, whatever the size of the file.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from engine.codec import pcap_classic, pcapng
from engine.errors import InputError

# Link types we understand (LINKTYPE_* numbers).
LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_LOOP, LINK_SLL, LINK_IPV4, LINK_IPV6, LINK_SLL2 = (
    0, 1, 101, 108, 113, 228, 229, 276)
LINK_NAMES = {LINK_NULL: "null", LINK_ETHERNET: "ethernet", LINK_RAW: "raw", 12: "raw",
              14: "raw", LINK_LOOP: "loop", LINK_SLL: "linux-sll", LINK_IPV4: "ipv4",
              LINK_IPV6: "ipv6", LINK_SLL2: "linux-sll2"}

L3_WINDOW = 120          # IPv4 header (<= 60) + transport header (<= 60)
FRAME_WINDOW = 24 + L3_WINDOW   # link headers we parse are at most 24 bytes
PCAP_MAGICS = pcap_classic.MAGICS
PCAPNG_SHB = pcapng.SHB


@dataclass
class RawBatch:
    """Packets of one batch as fixed windows (before IPv4 parsing).

    Attributes:
        ts_ns: ``(n,)`` int64 capture time, ns since the epoch.
        frame: ``(n, FRAME_WINDOW)`` uint8, first bytes of each frame, zero-filled past caplen.
        caplen: ``(n,)`` int32 captured length.
        wirelen: ``(n,)`` int32 original length.
        linktype: ``(n,)`` int32 link type of each packet's interface.
        even_sum, odd_sum: ``(n,)`` int64 sums of the frame's bytes at even and
            odd offsets (from the frame's start) over its whole captured length,
            so checksums over payloads can be verified without keeping payloads;
            ``None`` unless the reader was asked for them (``payload_sums=True``).
    """

    ts_ns: np.ndarray
    frame: np.ndarray
    caplen: np.ndarray
    wirelen: np.ndarray
    linktype: np.ndarray
    even_sum: np.ndarray | None
    odd_sum: np.ndarray | None


@dataclass
class CaptureInfo:
    """What a reader learned about a file (filled while reading)."""

    path: str
    format: str = "?"
    linktypes: set = field(default_factory=set)
    packets: int = 0
    bytes_read: int = 0
    size: int = 0


def _err(path, problem):
    return InputError(path, problem)


class CaptureReader:
    """Iterate over a pcap/pcapng file in batches of :class:`RawBatch`.

    Raises :class:`InputError` (one line, naming the file) for an empty,
    non-capture or truncated file and for the first record with a field out
    of range (engine.codec.record_limits); the error says how many packets
    were read before it.
    """

    def __init__(self, path: str | os.PathLike, batch_packets: int = 65536, payload_sums: bool = False):
        self.path = os.fspath(path)
        self.batch_packets = batch_packets
        # only a compliance check of a capture needs them; they cost a third of encoding
        self.payload_sums = payload_sums
        try:
            self.size = os.path.getsize(self.path)
        except OSError as e:
            raise _err(self.path, f"cannot open: {e.strerror}") from None
        if os.path.isdir(self.path):
            raise _err(self.path, "is a directory, not a capture file")
        self.info = CaptureInfo(self.path, size=self.size)

    def __iter__(self) -> Iterator[RawBatch]:
        return self._walk(_Accumulator(self.batch_packets, self.payload_sums))

    def records(self) -> Iterator["Record"]:
        """Every packet record with its original bytes, in file order (for copying packets as they are)."""
        return self._walk(_RecordSink())

    def _walk(self, acc) -> Iterator:
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise _err(self.path, f"cannot open: {e.strerror}") from None
        with f:
            head = f.read(4)
            if len(head) == 0:
                raise _err(self.path, "empty file (0 bytes), not a capture")
            if head in pcap_classic.MAGICS:
                yield from pcap_classic.read(f, head, self.path, self.info, acc)
            elif head == pcapng.SHB:
                yield from pcapng.read(f, head, self.path, self.info, acc)
            else:
                raise _err(self.path, f"not a pcap or pcapng capture (starts with 0x{head.hex()})")


@dataclass
class Record:
    """One packet record as stored in the file."""

    ts_ns: int
    caplen: int
    wirelen: int
    linktype: int
    data: bytes


class _RecordSink:
    """Reader sink that hands out whole records (bytes copied) instead of batches."""

    def __init__(self):
        self.recs: list[Record] = []

    def add(self, buf: bytes, offs, caps, wires, ts, lts):
        mv = memoryview(buf)
        self.recs += [Record(int(t), int(c), int(w), int(lt), bytes(mv[o:o + c]))
                      for o, c, w, t, lt in zip(offs.tolist(), caps.tolist(), wires.tolist(), ts.tolist(), lts.tolist())]

    def drain(self, final: bool) -> Iterator[Record]:
        recs, self.recs = self.recs, []
        yield from recs


class _Accumulator:
    """Gathers fixed windows of packets from chunk buffers into batches."""

    def __init__(self, batch_packets: int, payload_sums: bool = False):
        self.batch_packets = batch_packets
        self.payload_sums = payload_sums
        self.parts: list[RawBatch] = []
        self.count = 0

    def add(self, buf: bytes, offs, caps, wires, ts, lts):
        arr = np.frombuffer(buf, np.uint8)
        arr = np.concatenate([arr, np.zeros(FRAME_WINDOW, np.uint8)])
        idx = offs[:, None] + np.arange(FRAME_WINDOW)
        frame = arr[idx]
        frame[np.arange(FRAME_WINDOW)[None, :] >= caps[:, None]] = 0
        if not self.payload_sums:
            self.parts.append(RawBatch(ts, frame, caps, wires, lts, None, None))
            self.count += len(offs)
            return
        # byte sums by absolute parity; a frame's even offsets are the buffer's
        # even positions when the frame starts at an even position
        end = offs + caps
        idx2 = np.empty(2 * len(offs), np.int64)
        idx2[0::2], idx2[1::2] = offs, end
        ok = caps > 0
        evn = arr.copy()
        evn[1::2] = 0
        s_all = np.where(ok, np.add.reduceat(arr, idx2, dtype=np.int64)[0::2], 0)
        s_even_abs = np.where(ok, np.add.reduceat(evn, idx2, dtype=np.int64)[0::2], 0)
        odd_start = (offs % 2) == 1
        even_sum = np.where(odd_start, s_all - s_even_abs, s_even_abs)
        self.parts.append(RawBatch(ts, frame, caps, wires, lts, even_sum, s_all - even_sum))
        self.count += len(offs)

    def drain(self, final: bool) -> Iterator[RawBatch]:
        if not self.parts or (not final and self.count < self.batch_packets):
            return
        b = RawBatch(*(None if getattr(self.parts[0], k) is None else np.concatenate([getattr(p, k) for p in self.parts])
                       for k in ("ts_ns", "frame", "caplen", "wirelen", "linktype", "even_sum", "odd_sum")))
        self.parts, self.count = [], 0
        yield b


def pcap_bytes(heads: np.ndarray, head_len: np.ndarray, frame_len: np.ndarray,
               wire_len: np.ndarray, ts_ns: np.ndarray, linktype: int, nanosecond: bool = True) -> np.ndarray:
    """Build a whole classic pcap file in one numpy buffer, without a per-packet loop.

    Each frame is its header bytes followed by zero bytes up to its length.

    Args:
        heads: ``(n, H)`` uint8, the first bytes of every frame.
        head_len: ``(n,)`` how many bytes of ``heads`` belong to the frame.
        frame_len: ``(n,)`` captured length of each frame (>= head_len).
        wire_len: ``(n,)`` original length of each frame.
        ts_ns: ``(n,)`` int64 timestamps in ns.
    Returns:
        ``(24 + 16 n + sum(frame_len),)`` uint8: the file.
    """
    n = len(frame_len)
    frame_len = np.asarray(frame_len, np.int64)
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    ghdr = np.frombuffer(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 262144, linktype), np.uint8)
    rec = np.zeros(n, dtype=[("s", "<u4"), ("f", "<u4"), ("c", "<u4"), ("w", "<u4")])
    ts_ns = np.asarray(ts_ns, np.int64)
    rec["s"] = ts_ns // 1_000_000_000
    rec["f"] = ts_ns % 1_000_000_000 if nanosecond else (ts_ns % 1_000_000_000) // 1000
    rec["c"] = frame_len
    rec["w"] = wire_len
    total = 24 + 16 * n + int(frame_len.sum())
    out = np.zeros(total, np.uint8)
    out[:24] = ghdr
    starts = 24 + 16 * np.arange(n, dtype=np.int64) + np.concatenate([[0], np.cumsum(frame_len[:-1])]).astype(np.int64)
    recb = rec.view(np.uint8).reshape(n, 16)
    out[(starts[:, None] + np.arange(16)).ravel()] = recb.ravel()
    msk = np.arange(heads.shape[1])[None, :] < np.asarray(head_len)[:, None]
    out[(starts[:, None] + 16 + np.arange(heads.shape[1]))[msk]] = heads[msk]
    return out


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(l)`` for every ``l`` in ``lengths``."""
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lengths)
    idx = np.arange(total, dtype=np.int64)
    return idx - np.repeat(ends - lengths, lengths)

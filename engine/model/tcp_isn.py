"""Each direction of a sampled TCP flow starts its sequence space at a uniform 32-bit value.

A host picks its initial sequence number at random (RFC 6528), and so does a capture that
starts mid-connection see an arbitrary one. The repair continues each direction from its first
segment's number (:mod:`engine.repair.rules_stream`), which was the denoiser's: its bits, like
other bits that are noise in the training data, leaned to 0 (synthetic zoom segments: the
sequence number's top bits 1 in 5-11 % of them, the real ones' in 31-36 %; http's second bit
19 % against 49 %), and a per-packet classifier read the class from them
(bench/quality_1024.md, nineteenth session). The numbers are drawn from each flow's seed, so a
flow stays the same whatever else is drawn around it.
"""

from __future__ import annotations

import numpy as np

from engine.codec.layout import COL_DIR, LAYOUT, uint_to_bits
from engine.model import streams
from engine.model.tcp_options import tcp_rows

SEQ = LAYOUT.cols("tcp_seq")


def initial_numbers(seeds: list[int]) -> np.ndarray:
    """``(B, 2)`` uint64: per flow, the initial sequence number of the responder (0) and the
    initiator (1), each from the flow's 64-bit seed."""
    return np.stack([streams.of(s, streams.ISN).integers(0, 1 << 32, 2, np.uint64)
                     for s in seeds]) if len(seeds) else np.zeros((0, 2), np.uint64)


def write_initial_numbers(x: np.ndarray, seeds: list[int]) -> np.ndarray:
    """Write each direction's drawn initial number into the sequence field of its TCP rows of
    ``x`` ``(B, L, width)`` (floats, after the field decoder); the repair then advances it by the
    bytes each segment carries. Returns ``x``."""
    B, L, _ = x.shape
    tcp = tcp_rows(x)
    if not tcp.any():
        return x
    isn = initial_numbers(seeds)
    b, l = np.nonzero(tcp)
    fwd = (x[b, l, COL_DIR] > 0.5).astype(np.int64)
    x[b, l, SEQ] = uint_to_bits(isn[b, fwd], SEQ.stop - SEQ.start)
    return x

"""Flow-shape prior: how many packets, and which transport, a sampled flow of each class gets.

The denoiser decides presence row by row, and left alone it makes flows far
too short: a row that looks like padding at any step tends to stay padding,
so long flows (which hold most of a class's packets: a video call is a few
flows of 128 packets) almost never come out (bench/quality.md: 3,431
synthetic packets for 7,950 real ones over the same 281 flows).

So the length and the transport are drawn first, jointly, from the class's
empirical distribution on the training split (a categorical fitted by
counting, stored in the checkpoint's ``config.json`` under ``lengths`` as
``[length, protocol, flows]``; drawn jointly because a class's long flows
are often of another transport than its short ones: zoom's media flows are
UDP, its signalling TCP), and the sampler then holds every predicted clean
flow to that shape (:func:`impose`, built once per batch as :func:`hold_bounds` inside :func:`engine.model.diffusion.sample`):
rows below the length are packets with that transport's header, the rest
padding. With the checkpoint's port table each flow's port pair is drawn with the
shape and held the same way (:mod:`engine.model.ports`). The model still chooses
direction, flags, sizes, gaps and every other header bit.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.codec.matrix import COL_ICMP, COL_TCP, COL_UDP, TRANSPORT_COLS, row_proto
from engine.codec.layout import COL_DIR, LAYOUT
from engine.model import streams
from engine.model.ports import impose_ports


# Flows are sampled, and trained, over the rows of their length bucket, not the model's whole
# max_packets: a 1024-row model sees a 40-packet flow over 128 rows (8x fewer, and attention 64x
# less). A flow's bucket follows from its own length, and a batch holds one bucket, so a sampled
# flow's result still depends on its index and the options only. A 128-row model has one bucket.
BUCKET_MIN = 128


def length_bucket(n: int, max_packets: int) -> int:
    """Rows a flow of ``n`` packets is sampled and trained over: the next power of two from
    :data:`BUCKET_MIN`, at most ``max_packets``."""
    b = BUCKET_MIN
    while b < n:
        b *= 2
    return min(b, max_packets)

#: columns every packet row has present (the IPv4 header without addresses and
#: options, direction, inter-arrival time); padding rows have them absent
ALWAYS_PRESENT = np.r_[np.arange(LAYOUT.cols("ipv4_ver").start, LAYOUT.cols("ipv4_cksum").stop),
                       np.arange(COL_DIR, LAYOUT.cols("meta_iat").stop)]
#: per transport: the columns every row of it has present (the fixed header)
FIXED_HEADER = {6: slice(COL_TCP.start, LAYOUT.cols("tcp_opt").start), 17: COL_UDP, 1: COL_ICMP}
PROTO_BITS = LAYOUT.cols("ipv4_proto")


def length_prior(rows: np.ndarray, offsets: np.ndarray, labels: np.ndarray, classes: list[str],
                 max_packets: int) -> dict:
    """Per class, ``[[length, protocol, flows], ...]``: lengths ``1..max_packets`` (longer flows
    count as ``max_packets``, the most the model holds) by the first packet's transport
    (6, 17, 1; 0 for none). Input as in :class:`engine.model.data.FlowTable`."""
    lens = np.minimum(np.diff(offsets), max_packets)
    proto = row_proto(rows[offsets[:-1]])
    out = {}
    for ci, c in enumerate(classes):
        sel = labels == ci
        key, n = np.unique(np.stack([lens[sel], proto[sel]], 1), axis=0, return_counts=True)
        out[c] = [[int(a), int(b), int(k)] for (a, b), k in zip(key, n)]
    return out


def draw_shape(prior: list[list[int]] | None, seed: int, lo: int, hi: int, proto: int | None = None) -> tuple[int, int]:
    """``(length, protocol)`` with the length in ``[lo, hi]`` from a class's prior, decided by
    ``seed`` alone (protocol 0: left to the model).

    The prior is cut to ``[lo, hi]`` (a request's packets_min/max) and to ``proto`` when
    given; where it has no mass there (or there is no prior) the length is uniform over the range.
    Entries of two numbers (``[length, flows]``) carry no protocol.
    """
    rng = streams.of(seed, streams.LENGTH)
    lo, hi = max(1, int(lo)), max(1, int(hi))
    if prior:
        v = np.array([e[0] for e in prior])
        pr = np.array([e[1] if len(e) == 3 else 0 for e in prior])
        n = np.array([e[-1] for e in prior], np.float64)
        keep = (v >= lo) & (v <= hi)
        if proto:
            keep &= pr == proto
        if n[keep].sum() > 0:
            p = n[keep] / n[keep].sum()
            i = rng.choice(len(p), p=p)
            return int(v[keep][i]), int(pr[keep][i])
    return int(rng.integers(lo, hi + 1)), int(proto or 0)


def presence_mask(lengths: list[int], max_packets: int) -> torch.Tensor:
    """``(B, max_packets)`` bool: ``True`` for rows that are packets."""
    return torch.arange(max_packets)[None, :] < torch.as_tensor(lengths)[:, None]


def hold_bounds(rows: torch.Tensor, protos: torch.Tensor | None, width: int,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The shape a predicted clean flow is held to (:func:`impose`, ports aside) as per-value
    bounds ``(lo, hi)``, each ``(B, L, width)``: ``x0.clamp(lo, hi)`` clips to [-1, 1] and holds in
    one pass. The shape is the same at every step, so a sampler builds the bounds once per batch
    (bench/model.md: a step-by-step hold cost a dozen passes over the flow)."""
    b, n = rows.shape
    dev = rows.device
    lo = torch.full((b, n, width), -1.0, dtype=dtype, device=dev)
    hi = torch.ones((b, n, width), dtype=dtype, device=dev)
    cols = torch.as_tensor(ALWAYS_PRESENT, device=dev)
    lo[:, :, cols] = torch.where(rows[..., None], 0.0, -1.0).to(dtype)
    if protos is not None:
        for p in TRANSPORT_COLS:
            f = ((protos.to(dev) == p)[:, None] & rows)[..., None]        # (B, L, 1) rows of this transport
            if not f.any():
                continue
            for q, other in TRANSPORT_COLS.items():
                if q != p:
                    lo[..., other] = torch.where(f, -1.0, lo[..., other])
                    hi[..., other] = torch.where(f, -1.0, hi[..., other])
            fixed = FIXED_HEADER[p]
            lo[..., fixed] = torch.where(f, lo[..., fixed].clamp(min=0.0), lo[..., fixed])
            bits = torch.tensor([(p >> k) & 1 for k in range(7, -1, -1)], dtype=dtype, device=dev)
            lo[..., PROTO_BITS] = torch.where(f, bits, lo[..., PROTO_BITS])
            hi[..., PROTO_BITS] = torch.where(f, bits, hi[..., PROTO_BITS])
    pad = ~rows
    lo[pad] = -1.0
    hi[pad] = -1.0
    return lo, hi


def impose(x0: torch.Tensor, rows: torch.Tensor, protos: torch.Tensor | None = None,
           ports: torch.Tensor | None = None) -> torch.Tensor:
    """Hold predicted clean flows ``x0`` ``(B, L, width)``, clipped to [-1, 1], to a shape: padding
    rows (``rows`` ``(B, L)`` False) become all-absent (-1); packet rows get their always-present
    columns lifted to at least 0 (present, bit value left to the model). Flows with a protocol in
    ``protos`` ``(B,)`` (6, 17, 1; 0 = free) get that transport's fixed header present, the
    other transports' blocks absent, and the IPv4 protocol number; with ``ports`` ``(B, 2)``
    (initiator, responder; -1 = free) their TCP/UDP rows get those ports
    (:func:`engine.model.ports.impose_ports`). The hold is :func:`hold_bounds`, as the sampler's
    (which builds the bounds once per batch), so training's self-conditioning sees what sampling does."""
    rows = rows.to(x0.device)
    out = x0.clamp(*hold_bounds(rows, protos, x0.shape[-1], x0.dtype))
    if protos is not None and ports is not None:
        impose_ports(out, rows, protos, ports)
    return out
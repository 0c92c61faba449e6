"""Flow-length prior: how many packets a sampled flow of each class gets.

The denoiser decides presence row by row, and left alone it makes flows far
too short: a row that looks like padding at any step tends to stay padding,
so long flows (which hold most of a class's packets: a video call is a few
flows of 128 packets) almost never come out (bench/quality.md: 3,431
synthetic packets for 7,950 real ones over the same 281 flows).

So the length is drawn first, from the class's empirical length distribution
on the training split (a categorical fitted by counting, stored in the
checkpoint's ``config.json`` under ``lengths``), and the sampler then holds
the presence pattern fixed while it denoises everything else
(:func:`presence_mask` + :func:`engine.model.diffusion.sample`): rows below
the length are packets, the rest padding. The model still chooses the
transport, the direction, sizes and gaps of every packet.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.layout import LAYOUT

#: columns every packet row has present (the IPv4 header without addresses and
#: options, direction, inter-arrival time); padding rows have them absent
ALWAYS_PRESENT = np.r_[np.arange(LAYOUT.cols("ipv4_ver").start, LAYOUT.cols("ipv4_cksum").stop),
                       np.arange(LAYOUT.cols("meta_direction").start, LAYOUT.cols("meta_iat").stop)]


def length_prior(offsets: np.ndarray, labels: np.ndarray, classes: list[str], max_packets: int) -> dict:
    """Per class, ``[[length, flows], ...]`` over lengths ``1..max_packets`` (longer flows count
    as ``max_packets``, the most the model holds). Input as in :class:`FlowTable`."""
    lens = np.minimum(np.diff(offsets), max_packets)
    out = {}
    for ci, c in enumerate(classes):
        v, n = np.unique(lens[labels == ci], return_counts=True)
        out[c] = [[int(a), int(b)] for a, b in zip(v, n)]
    return out


def draw_length(prior: list[list[int]] | None, seed: int, lo: int, hi: int) -> int:
    """One length in ``[lo, hi]`` from a class's prior, decided by ``seed`` alone.

    The prior is cut to ``[lo, hi]`` (a request's packets_min/max); where it
    has no mass there (or there is no prior) the length is uniform over the range.
    """
    rng = np.random.default_rng([int(seed) & 0xFFFF_FFFF, int(seed) >> 32, 0x1E])
    lo, hi = max(1, int(lo)), max(1, int(hi))
    if prior:
        v = np.array([p[0] for p in prior])
        n = np.array([p[1] for p in prior], np.float64)
        keep = (v >= lo) & (v <= hi)
        if n[keep].sum() > 0:
            p = n[keep] / n[keep].sum()
            return int(v[keep][rng.choice(len(p), p=p)])
    return int(rng.integers(lo, hi + 1))


def presence_mask(lengths: list[int], max_packets: int) -> torch.Tensor:
    """``(B, max_packets)`` bool: ``True`` for rows that are packets."""
    return torch.arange(max_packets)[None, :] < torch.as_tensor(lengths)[:, None]


def impose(x0: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Hold a predicted clean flow ``x0`` ``(B, L, width)`` to the presence pattern ``rows``:
    padding rows become all-absent (-1); packet rows get their always-present columns
    lifted to at least 0 (present, bit value left to the model)."""
    x0 = x0.clone()
    pad = ~rows.to(x0.device)
    x0[pad] = -1.0
    cols = torch.as_tensor(ALWAYS_PRESENT, device=x0.device)
    sub = x0[:, :, cols]
    x0[:, :, cols] = torch.where(pad[..., None], sub, sub.clamp(min=0.0))
    return x0

"""Who sends how many of a flow's packets: the initiator's count, drawn with the flow's shape and
held while sampling.

Left to the model row by row, a flow's direction bits drifted to one side: on the evaluation set
(bench/quality_1024.md) 14-24 % of the synthetic flows of tls_https, zoom, Teams and Meet had 90 %
or more of their first 128 packets from the initiator, against 1-7 % of the real ones, whose
flows mostly split 50-60 %. The share a flow's packets take is a property of the kind of
exchange (a request/response protocol, a download's acknowledgments, a call's two media
streams), like its length.

So ``netdiff train`` counts, per class, the training flows by (length cut at ``max_packets``,
first packet's transport, initiator's packets) (``config.json`` key ``directions``). A sampled
flow, its length and transport drawn (:mod:`engine.model.lengths`), draws its initiator's packet
count from the flows of that length and transport (or, where none has the length, the share of
one of the same transport and length bucket, scaled to its length; seeded by the flow's seed),
and every predicted x0 is held to it: the first packet is the initiator's, and of the others the
``k - 1`` with the highest ``logit(p) + g`` are, where ``p`` is the model's direction estimate
and ``g`` a Gumbel variable fixed per flow and row (the Gumbel-top-k draw: rows in proportion to
the model's odds, without replacement). The model decides *which* packets go which way, as the
exchange unfolds over the steps; the count is the class's.

The first packets are the exception (``config.json`` key ``heads``): a TCP flow opens SYN from the
initiator, SYN-ACK back, ACK and the first request from the initiator, and the model's direction
estimates there were too weak against the Gumbel keys: the first four directions of synthetic
amazon, http, Teams and tls_https flows were "initiator, responder, initiator, initiator" in 20-24 %
of the flows, in 56-89 % of the real ones (ninth session). So the training flows are also counted
by (transport, packets among the first :data:`~engine.model.profiles.HEAD`, their directions), a
sampled flow draws its head's directions among those consistent with its initiator count
(:func:`draw_head`, its own seed stream), and those rows are held to them; the other ``k`` rows go
by the Gumbel-top-k as before.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.codec.layout import COL_DIR
from engine.codec.matrix import row_proto
from engine.errors import InputError
from engine.model import streams
from engine.model.profiles import HEAD, length_bucket


def fit_directions(rows: np.ndarray, offsets: np.ndarray, labels: np.ndarray, classes: list[str],
                   max_packets: int) -> dict:
    """Per class, ``[[length, protocol, initiator packets, flows], ...]`` over the training flows
    cut to ``max_packets`` (input as in :class:`engine.model.data.FlowTable`)."""
    offsets = np.asarray(offsets, np.int64)
    lens = np.minimum(np.diff(offsets), max_packets)
    proto = row_proto(rows[offsets[:-1]])
    fwd = np.concatenate([[0], np.cumsum(rows[:, COL_DIR] == 1)])
    init = fwd[offsets[:-1] + lens] - fwd[offsets[:-1]]
    return _count_per_class(labels, classes, lens, proto, init)


def _count_per_class(labels: np.ndarray, classes: list[str], *keys: np.ndarray) -> dict:
    """Per class, ``[[*key, flows], ...]``: its flows counted by the per-flow ``keys`` columns."""
    out = {}
    for ci, c in enumerate(classes):
        sel = labels == ci
        key, n = np.unique(np.stack([k[sel] for k in keys], 1), axis=0, return_counts=True)
        out[c] = [[*map(int, k), int(m)] for k, m in zip(key, n)]
    return out


def _table(table) -> np.ndarray | None:
    """A table read from config.json as ``(E, 4)`` int64 with at least one entry, else None."""
    try:
        a = np.asarray(table, np.int64)
    except (TypeError, ValueError, OverflowError):
        return None
    return a if a.ndim == 2 and a.shape[1] == 4 and len(a) else None


def check_directions(table, label: str) -> np.ndarray:
    """A class's table as read from config.json, range-checked: ``(E, 4)`` int64."""
    a = _table(table)
    if a is None or (a[:, 0] < 1).any() \
            or (a[:, 2] < 0).any() or (a[:, 2] > a[:, 0]).any() or (a[:, 3] < 1).any() \
            or not np.isin(a[:, 1], (0, 1, 6, 17)).all():
        raise InputError(None, f"config.json: directions of class {label!r}: want [length, protocol, "
                               "initiator packets (0..length), flows (>= 1)] entries")
    return a


def draw_initiators(table: np.ndarray, seed: int, length: int, proto: int) -> int | None:
    """The initiator's packets of a flow of ``length`` packets of transport ``proto``, decided by
    ``seed`` alone: from the flows of that length and transport, else the share of one of the same
    transport and length bucket (the profiles' powers of two, :func:`engine.model.profiles.length_bucket`);
    ``None`` where the class has neither."""
    rng = streams.of(seed, streams.INITIATORS)
    same = table[table[:, 1] == proto]
    exact = same[same[:, 0] == length]
    if len(exact):
        return int(exact[rng.choice(len(exact), p=exact[:, 3] / exact[:, 3].sum()), 2])
    near = same[length_bucket(same[:, 0]) == length_bucket(np.asarray(length))]
    if not len(near):
        return None
    e = near[rng.choice(len(near), p=near[:, 3] / near[:, 3].sum())]
    return int(np.clip(round(e[2] / e[0] * length), 1, length))


def gumbel_keys(seeds: list[int], rows: int) -> torch.Tensor:
    """``(B, rows)`` Gumbel variables, one per flow (by its seed) and row."""
    u = np.stack([streams.of(s, streams.DIRECTION_KEYS).random(rows) for s in seeds])
    return torch.from_numpy(-np.log(-np.log(np.clip(u, 1e-12, 1 - 1e-12)))).float()


def hold_directions(x0: torch.Tensor, rows: torch.Tensor, counts: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Hold each flow's direction column of ``x0`` ``(B, L, width)`` (in place) to ``counts``
    ``(B,)`` initiator packets (-1: the model's) among its packet rows ``rows`` ``(B, L)``: row 0
    and the ``k - 1`` rows of highest ``logit(x0 direction) + keys`` are the initiator's (1),
    the other packet rows the responder's (0)."""
    held = counts >= 0
    if not bool(held.any()):
        return x0
    B, L = rows.shape
    p = x0[:, :L, COL_DIR].float().clamp(1e-4, 1 - 1e-4)
    score = torch.log(p) - torch.log1p(-p) + keys[:, :L].to(p.device)
    score = torch.where(rows, score, torch.tensor(-torch.inf, device=p.device))
    score[:, 0] = torch.inf
    rank = torch.empty_like(score, dtype=torch.long)
    rank.scatter_(1, score.argsort(1, descending=True), torch.arange(L, device=p.device).expand(B, L))
    side = (rank < counts.clamp(min=1)[:, None].to(p.device)).to(x0.dtype)
    new = torch.where(rows, side, torch.tensor(-1.0, dtype=x0.dtype, device=x0.device))
    x0[:, :L, COL_DIR] = torch.where(held[:, None].to(x0.device), new, x0[:, :L, COL_DIR])
    return x0


def fit_heads(rows: np.ndarray, offsets: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Per class, ``[[protocol, head packets, directions, flows], ...]``: the training flows by
    transport, packets among the first :data:`HEAD` (``min(length, HEAD)``) and their directions
    (bit ``i`` = packet ``i`` is the initiator's)."""
    offsets = np.asarray(offsets, np.int64)
    h = np.minimum(np.diff(offsets), HEAD)
    proto = row_proto(rows[offsets[:-1]])
    pos = np.arange(HEAD)
    idx = np.minimum(offsets[:-1, None] + pos[None, :], len(rows) - 1)
    bits = (rows[idx, COL_DIR] == 1) & (pos[None, :] < h[:, None])
    pattern = (bits.astype(np.int64) << pos[None, :]).sum(1)
    return _count_per_class(labels, classes, proto, h, pattern)


def check_heads(table, label: str) -> np.ndarray:
    """A class's head table as read from config.json, range-checked: ``(E, 4)`` int64."""
    a = _table(table)
    if a is None or (a[:, 1] < 1).any() \
            or (a[:, 1] > HEAD).any() or (a[:, 2] < 0).any() or (a[:, 2] >= (1 << a[:, 1])).any() \
            or (a[:, 3] < 1).any() or not np.isin(a[:, 0], (0, 1, 6, 17)).all():
        raise InputError(None, f"config.json: heads of class {label!r}: want [protocol, head packets "
                               f"(1..{HEAD}), directions (bits below 2^packets), flows (>= 1)] entries")
    return a


def draw_head(table: np.ndarray, seed: int, length: int, proto: int, initiators: int) -> list[int] | None:
    """The directions of a flow's first ``min(length, head)`` packets (1 = the initiator's; ``head``
    the table's largest, at most :data:`~engine.model.profiles.HEAD`; a table fitted with four
    still draws four), decided
    by ``seed`` alone, among the class's heads of that transport and size that leave room for
    ``initiators`` of its ``length`` packets on the initiator's side; ``None`` where none does."""
    h = min(int(length), int(table[:, 1].max()))
    e = table[(table[:, 0] == proto) & (table[:, 1] == h)]
    ones = np.array([bin(int(p)).count("1") for p in e[:, 2]], np.int64)
    e = e[(ones <= initiators) & (h - ones <= length - initiators)]
    if not len(e):
        return None
    rng = streams.of(seed, streams.OPENING)
    p = int(e[rng.choice(len(e), p=e[:, 3] / e[:, 3].sum()), 2])
    return [(p >> i) & 1 for i in range(h)]


def head_keys(keys: torch.Tensor, heads: list) -> torch.Tensor:
    """The Gumbel ``keys`` ``(B, rows)`` with each flow's drawn head (a list of directions, or
    ``None``) written over its first rows: +inf for the initiator's, -inf for the responder's, so
    :func:`hold_directions` keeps them and ranks the other rows as before."""
    keys = keys.clone()
    for b, d in enumerate(heads):
        if d:
            n = min(len(d), keys.shape[1])
            keys[b, :n] = torch.where(torch.tensor(d[:n]) == 1, torch.tensor(torch.inf), torch.tensor(-torch.inf))
    return keys

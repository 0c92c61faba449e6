"""Sampling flows from the native model: seeds, batches, resampling, process slices.

Flow ``i`` of a request draws its initial noise from ``flow_seed(seed, i,
attempt)``; a flow that comes out too short (or, with a forced transport,
of the wrong protocol) is drawn again with the next attempt number. The
result for a given request therefore does not depend on timing, and each
process of an ``accelerate launch`` run can take a disjoint slice of the
flow indices (``i % world == rank``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from engine.codec.matrix import TRANSPORT_COLS, row_proto
from engine.errors import InputError
from engine.progress import CancelToken, OnEvent, TaskProgress, TaskStarted

from engine.model.guide import assign_guides
from engine.model.diffusion import cut_at_padding, sample, snap
from engine.model.lengths import draw_shape, presence_mask
from engine.model.vocab import SPANS
from engine.model.vocab import decode as decode_vocab
from engine.model.vocab import palette

PROTO_NUM = {"tcp": 6, "udp": 17, "icmp": 1}


def flow_seed(seed: int, index: int, attempt: int) -> int:
    h = hashlib.sha256(f"netdiff/{seed}/{index}/{attempt}".encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def flow_proto(m: np.ndarray) -> int:
    """A flow's transport as the repair step and the decoder see it: its first packet's
    (:func:`engine.codec.matrix.row_proto`): 6, 17, 1, or 0."""
    return int(row_proto(m[:1])[0]) if len(m) else 0


@dataclass
class SampleStats:
    drawn: int = 0          # flows sampled in total (with redraws)
    redrawn_short: int = 0
    redrawn_transport: int = 0
    gave_up: int = 0        # flows kept after max attempts without meeting the constraints


def sample_flows(model, model_cfg: dict, label: str, indices: list[int], seed: int, steps: int,
                 guidance: float, packets_min: int, packets_max: int, transport: str = "any",
                 batch_size: int = 64, max_attempts: int = 8, solver: str | None = None,
                 on_event: OnEvent | None = None, cancel: CancelToken | None = None,
                 stats: SampleStats | None = None, length_prior: bool = True,
                 field_vocab: bool = True, vocab_draw: bool = True,
                 guides: list[np.ndarray] | None = None, strength: float = 0.5,
                 palette_weight: float = 0.0) -> dict[int, np.ndarray]:
    """Sample the flows ``indices`` of a request; returns ``{index: (packets, width) int8}``.

    Flows are snapped to {-1, 0, 1}, stripped of padding rows (wherever they are), cut at
    ``packets_max`` rows; flows shorter than ``packets_min`` (or not of
    ``transport``) are drawn again, up to ``max_attempts`` times.

    For a ``presence_input`` model each flow's length and transport are drawn
    first (:mod:`engine.model.lengths`): from the class's training flows cut to
    ``[packets_min, packets_max]`` and ``transport`` (with ``length_prior`` and a
    checkpoint that has them), else the length uniformly over that range; the
    sampler holds the flow to that shape.
    With ``field_vocab`` (and a checkpoint with a ``vocab``), header fields are
    decoded onto the values the class uses (:mod:`engine.model.vocab`).
    With ``guides`` (real flows of the class, :func:`usable_guides`), flow ``i`` starts from
    guide ``assign_guides(len(guides), seed, ...)[i]`` noised to ``strength``
    (:mod:`engine.model.guide`) and keeps that flow's length and transport.
    """
    classes = model_cfg["classes"]
    if label not in classes:
        raise InputError(None, f"label {label!r} is not one of the model's classes: {', '.join(classes)}")
    cls = classes.index(label)
    L = int(model.config.max_packets)
    # a presence_input model is told each flow's length. Imposing lengths on a model trained
    # without them measured worse than leaving them to it (mean JSD 0.185 vs 0.117), so
    # older checkpoints keep deciding presence themselves.
    use_rows = bool(getattr(model.config, "presence_input", False))
    prior = (model_cfg.get("lengths") or {}).get(label) if length_prior else None
    vocab = (model_cfg.get("vocab") or {}).get(label) if field_vocab else None
    want = PROTO_NUM.get(transport)
    solver = solver or model_cfg.get("sampling", {}).get("solver", "dpm")
    stats = stats if stats is not None else SampleStats()
    emit = on_event or (lambda ev: None)
    total = len(indices)
    emit(TaskStarted("sample", total, "flows"))
    done: dict[int, np.ndarray] = {}
    best: dict[int, np.ndarray] = {}
    pending = [(i, 0) for i in indices]
    assigned = assign_guides(len(guides), seed, max(indices) + 1) if (guides and indices) else None
    while pending:
        if cancel is not None:
            cancel.check()
        chunk, pending = pending[:batch_size], pending[batch_size:]
        seeds = [flow_seed(seed, i, a) for i, a in chunk]
        labels = torch.full((len(chunk),), cls, dtype=torch.long)
        rows = protos = init = None
        if guides:
            g = [guides[assigned[i]][:min(packets_max, L)] for i, _ in chunk]
            buf = np.full((len(chunk), L, int(model.config.width)), -1, np.int8)
            for j, m in enumerate(g):
                buf[j, :len(m)] = m
            init = torch.from_numpy(buf).float()
            if use_rows:
                rows = presence_mask([len(m) for m in g], L)
                protos = torch.tensor([want or majority_proto(m) for m in g])
        elif use_rows:
            shapes = [draw_shape(prior, s, packets_min, min(packets_max, L), want) for s in seeds]
            rows = presence_mask([n for n, _ in shapes], L)
            protos = torch.tensor([p for _, p in shapes])
        x = sample(model, model_cfg["scheduler"], labels, seeds, steps, guidance, solver, rows=rows, protos=protos,
                   init=init, strength=strength)
        if vocab:
            # each flow's draws come from its own seed, like its noise
            u = np.stack([np.random.default_rng([s & 0xFFFF_FFFF, s >> 32, 0x70CA]).random((L, len(SPANS)))
                          for s in seeds]) if vocab_draw else None
            pals = [palette(m) for m in g] if (guides and palette_weight > 0) else None
            x = decode_vocab(x.float().cpu().numpy(), vocab, u, pals, palette_weight)
        x = snap(x)
        stats.drawn += len(chunk)
        retry = []
        for (i, a), m in zip(chunk, x):
            m = cut_at_padding(m)[:packets_max]
            short = len(m) < packets_min
            wrong = want is not None and flow_proto(m) != want
            if not (short or wrong):
                # a flow is one 5-tuple, so one transport: odd rows of another (or of none) are rewritten
                done[i] = force_transport(m, want if want is not None else majority_proto(m))
                continue
            if i not in best or _better(m, best[i], packets_min, want):
                best[i] = m
            if a + 1 < max_attempts:
                retry.append((i, a + 1))
                stats.redrawn_short += int(short)
                stats.redrawn_transport += int(wrong and not short)
            else:
                done[i] = force_transport(best[i], want if want is not None else majority_proto(best[i]))
                stats.gave_up += 1
        pending = retry + pending
        emit(TaskProgress("sample", len(done), total, "flows"))
    return done


def usable_guides(guides: list[np.ndarray], packets_min: int, transport: str = "any") -> list[int]:
    """Indices of the guide flows a request can start from: at least ``packets_min``
    packets and, unless ``transport`` is "any", of that transport."""
    want = PROTO_NUM.get(transport)
    return [k for k, m in enumerate(guides)
            if len(m) >= packets_min and (want is None or majority_proto(m) == want)]


def majority_proto(m: np.ndarray) -> int:
    """The transport most rows of a flow have (6, 17 or 1; ties by the first such row),
    0 when no row has one."""
    rp = row_proto(m)
    rp = rp[rp != 0]
    if len(rp) == 0:
        return 0
    vals, first, n = np.unique(rp, return_index=True, return_counts=True)
    return int(vals[np.lexsort((first, -n))[0]])


def force_transport(m: np.ndarray, want: int) -> np.ndarray:
    """Rewrite the transport headers of every row that is not protocol ``want`` (6, 17 or 1).

    Used when rejection sampling never drew the wanted transport, and for the
    odd rows of another transport inside an accepted flow: ports carry over
    (from the row, else from the flow's first row of the wanted transport),
    everything else starts neutral and the repair rules make it valid
    (lengths, handshake, sequence numbers, checksums).
    """
    if want not in (1, 6, 17):
        return m
    from engine.codec.layout import ABSENT, LAYOUT, get, put
    rp = row_proto(m)
    bad = rp != want
    cols = TRANSPORT_COLS
    # rows of the wanted transport that also carry another transport's block, or another protocol number
    other = np.zeros(len(m), bool)
    for p, col in cols.items():
        if p != want:
            other |= (m[:, col] != ABSENT).any(axis=1)
    mixed = ~bad & (other | (get(m, "ipv4_proto") != want))
    if len(m) == 0 or not (bad.any() or mixed.any()):
        return m
    m = m.copy()
    if mixed.any():
        for p, col in cols.items():
            if p != want:
                m[np.ix_(np.nonzero(mixed)[0], np.arange(col.start, col.stop))] = ABSENT
        put(m, "ipv4_proto", want, np.nonzero(mixed)[0])
    if not bad.any():
        return m
    tcp, udp = rp == 6, rp == 17
    sport = np.where(tcp, get(m, "tcp_sprt"), np.where(udp, get(m, "udp_sport"), 0))
    dport = np.where(tcp, get(m, "tcp_dprt"), np.where(udp, get(m, "udp_dport"), 0))
    good = np.nonzero(~bad & ((rp == 6) | (rp == 17)))[0]
    if len(good):
        g = good[0]
        fwd = m[g, LAYOUT.cols("meta_direction").start] != 0
        i_port, r_port = (sport[g], dport[g]) if fwd else (dport[g], sport[g])
        dirs = m[:, LAYOUT.cols("meta_direction").start] != 0
        nop = (sport == 0) & (dport == 0)
        sport = np.where(nop, np.where(dirs, i_port, r_port), sport)
        dport = np.where(nop, np.where(dirs, r_port, i_port), dport)
    rows = np.nonzero(bad)[0]
    for blk in ("tcp", "udp", "icmp"):
        m[np.ix_(rows, np.arange(LAYOUT.block(blk).start, LAYOUT.block(blk).stop))] = ABSENT
    put(m, "ipv4_proto", want, rows)
    if want == 17:
        m[np.ix_(rows, np.arange(LAYOUT.block("udp").start, LAYOUT.block("udp").stop))] = 0
        put(m, "udp_sport", sport[rows], rows)
        put(m, "udp_dport", dport[rows], rows)
    elif want == 6:
        blk, opt = LAYOUT.block("tcp"), LAYOUT.cols("tcp_opt")
        m[np.ix_(rows, np.arange(blk.start, opt.start))] = 0
        put(m, "tcp_sprt", sport[rows], rows)
        put(m, "tcp_dprt", dport[rows], rows)
        put(m, "tcp_doff", 5, rows)
        put(m, "tcp_ackf", 1, rows)
        put(m, "tcp_wsize", 65535, rows)
    else:
        m[np.ix_(rows, np.arange(LAYOUT.block("icmp").start, LAYOUT.block("icmp").stop))] = 0
        put(m, "icmp_type", 8, rows)
    return m


def _better(m: np.ndarray, old: np.ndarray, pmin: int, want: int | None) -> bool:
    def score(x):
        return (want is None or flow_proto(x) == want, min(len(x), pmin), len(x))
    return score(m) > score(old)

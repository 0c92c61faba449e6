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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from engine.codec import COL_ICMP, COL_TCP, COL_UDP
from engine.errors import InputError
from engine.progress import CancelToken, OnEvent, TaskProgress, TaskStarted

from .model.diffusion import cut_at_padding, sample, snap

PROTO_NUM = {"tcp": 6, "udp": 17, "icmp": 1}


def flow_seed(seed: int, index: int, attempt: int) -> int:
    h = hashlib.sha256(f"netdiff/{seed}/{index}/{attempt}".encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def flow_proto(m: np.ndarray) -> int:
    """Majority transport of a flow's rows: 6, 17, 1, or 0 when no row has one."""
    if len(m) == 0:
        return 0
    votes = {6: int((m[:, COL_TCP.start] != -1).sum()), 17: int((m[:, COL_UDP.start] != -1).sum()),
             1: int((m[:, COL_ICMP.start] != -1).sum())}
    p, n = max(votes.items(), key=lambda kv: kv[1])
    return p if n > 0 else 0


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
                 stats: SampleStats | None = None) -> dict[int, np.ndarray]:
    """Sample the flows ``indices`` of a request; returns ``{index: (packets, width) int8}``.

    Flows are snapped to {-1, 0, 1}, cut at their first padding row and at
    ``packets_max`` rows; flows shorter than ``packets_min`` (or not of
    ``transport``) are drawn again, up to ``max_attempts`` times.
    """
    classes = model_cfg["classes"]
    if label not in classes:
        raise InputError(None, f"label {label!r} is not one of the model's classes: {', '.join(classes)}")
    cls = classes.index(label)
    want = PROTO_NUM.get(transport)
    solver = solver or model_cfg.get("sampling", {}).get("solver", "dpm")
    stats = stats if stats is not None else SampleStats()
    emit = on_event or (lambda ev: None)
    total = len(indices)
    emit(TaskStarted("sample", total, "flows"))
    done: dict[int, np.ndarray] = {}
    best: dict[int, np.ndarray] = {}
    pending = [(i, 0) for i in indices]
    while pending:
        if cancel is not None:
            cancel.check()
        chunk, pending = pending[:batch_size], pending[batch_size:]
        seeds = [flow_seed(seed, i, a) for i, a in chunk]
        labels = torch.full((len(chunk),), cls, dtype=torch.long)
        x = snap(sample(model, model_cfg["scheduler"], labels, seeds, steps, guidance, solver))
        stats.drawn += len(chunk)
        retry = []
        for (i, a), m in zip(chunk, x):
            m = cut_at_padding(m)[:packets_max]
            short = len(m) < packets_min
            wrong = want is not None and flow_proto(m) != want
            if not (short or wrong):
                done[i] = m
                continue
            if i not in best or _better(m, best[i], packets_min, want):
                best[i] = m
            if a + 1 < max_attempts:
                retry.append((i, a + 1))
                stats.redrawn_short += int(short)
                stats.redrawn_transport += int(wrong and not short)
            else:
                done[i] = force_transport(best[i], want) if want is not None else best[i]
                stats.gave_up += 1
        pending = retry + pending
        emit(TaskProgress("sample", len(done), total, "flows"))
    return done


def force_transport(m: np.ndarray, want: int) -> np.ndarray:
    """Rewrite a flow's transport headers to protocol ``want`` (6, 17 or 1).

    Used when rejection sampling never drew the wanted transport: ports carry
    over, everything else starts neutral and the repair rules make it valid
    (lengths, handshake, sequence numbers, checksums).
    """
    if len(m) == 0 or flow_proto(m) == want:
        return m
    from .layout import ABSENT, LAYOUT, get, put
    m = m.copy()
    tcp = m[:, LAYOUT.cols("tcp_sprt").start] != ABSENT
    udp = ~tcp & (m[:, LAYOUT.cols("udp_sport").start] != ABSENT)
    sport = np.where(tcp, get(m, "tcp_sprt"), np.where(udp, get(m, "udp_sport"), 0))
    dport = np.where(tcp, get(m, "tcp_dprt"), np.where(udp, get(m, "udp_dport"), 0))
    for blk in ("tcp", "udp", "icmp"):
        m[:, LAYOUT.block(blk)] = ABSENT
    put(m, "ipv4_proto", want)
    if want == 17:
        m[:, LAYOUT.block("udp")] = 0
        put(m, "udp_sport", sport)
        put(m, "udp_dport", dport)
    elif want == 6:
        blk = LAYOUT.block("tcp")
        opt = LAYOUT.cols("tcp_opt")
        m[:, blk.start:opt.start] = 0
        put(m, "tcp_sprt", sport)
        put(m, "tcp_dprt", dport)
        put(m, "tcp_doff", 5)
        put(m, "tcp_ackf", 1)
        put(m, "tcp_wsize", 65535)
    else:
        m[:, LAYOUT.block("icmp")] = 0
        put(m, "icmp_type", 8)
    return m


def _better(m: np.ndarray, old: np.ndarray, pmin: int, want: int | None) -> bool:
    def score(x):
        return (want is None or flow_proto(x) == want, min(len(x), pmin), len(x))
    return score(m) > score(old)

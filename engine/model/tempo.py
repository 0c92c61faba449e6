"""A flow's pace: the share of an ordered span's spread that is the flow's, not the packet's.

A profile's packets draw their gaps and sizes from the profile's distribution for their slot,
each with its own uniform. Real flows keep a pace: a flow whose first gaps are long has long later
ones too. Over the evaluation's held-out flows (eighteenth session) the flows' mean log gaps held
43-75 % of the gaps' variance in real zoom, Teams and youtube flows and 13-38 % in synthetic ones.

So a span of :data:`TEMPO_SPANS` draws through a Gaussian copula: a flow draws one normal ``z``
per span; a packet's uniform becomes ``Phi(sqrt(rho) z + sqrt(1 - rho) Phi^-1(u))`` and picks the
value at that quantile of the packet's posterior, values in increasing order. Each packet's value
keeps its own distribution (the uniform stays uniform), and its rank within it is shared with the
flow's other packets by ``rho``, the class's *tempo*: fitted per class and span from its training
flows (:func:`fit_tempo`: the between-flow share of the normal scores of each packet's value's
mid-rank within its profile's slot; ``config.json`` profiles key ``tempo``). A table without it
draws each packet on its own, as before. Measured: bench/quality_1024.md, "Eighteenth session".
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

#: the spans drawn with a flow's tempo, each with its own normal: the gap's top code bits (its size
#: to an eighth of an octave), and the packet's size
TEMPO_SPANS = ("meta_iat_coarse", "ipv4_tl")
#: the largest tempo a table may hold: at 1 every packet would sit at the flow's one quantile
MAX_TEMPO = 0.95
#: the first flow uniform (column of ``flow_u``, engine.model.profiles.FLOW_UNIFORMS) that draws a
#: tempo's ``z``, one column per span of :data:`TEMPO_SPANS`
TEMPO_U = 5


def fit_tempo(counts: np.ndarray, assign: np.ndarray, values: np.ndarray) -> float:
    """The tempo of one class's span: ``counts`` ``(F, S, V)`` its flows' packets per slot and
    vocabulary value (:func:`engine.model.profiles.flow_counts`), ``assign`` ``(F,)`` each flow's
    profile, ``values`` ``(V,)`` the vocabulary's values. Slot 0 (a flow's first packet, whose
    gap is no gap) is left out; flows with fewer than two packets left say nothing of a pace."""
    c = counts[:, 1:, np.argsort(values, kind="stable")].astype(np.float64)
    prof = np.stack([c[assign == k].sum(0) for k in range(int(assign.max()) + 1)])     # (K, S, V)
    p = prof / np.maximum(prof.sum(2, keepdims=True), 1.0)
    mid = np.cumsum(p, 2) - p / 2
    z = ndtri(np.clip(mid, 1e-6, 1 - 1e-6))                       # a value's normal score in its slot
    zf = z[assign]                                                 # (F, S, V)
    n = c.sum((1, 2))
    ok = n >= 2
    if ok.sum() < 2:
        return 0.0
    var = (c * zf ** 2).sum() / n.sum()                           # a packet's score's variance
    m = (c * zf).sum((1, 2))[ok] / n[ok]
    inv = (1.0 / n[ok]).mean()
    # E[m^2] = between + (var - between) / n: the flows' mean scores, less what their packets'
    # own spread puts there
    between = ((m ** 2).mean() - var * inv) / max(1.0 - inv, 1e-9)
    return float(np.clip(between / max(var, 1e-12), 0.0, MAX_TEMPO))


def paced(u: np.ndarray, z: np.ndarray, rho: float) -> np.ndarray:
    """The uniforms ``u`` ``(R,)`` of packets whose flows drew normals ``z`` ``(R,)``, sharing the
    flow's rank by ``rho`` (still uniform, each)."""
    if rho <= 0:
        return u
    e = ndtri(np.clip(u, 1e-12, 1 - 1e-12))
    return np.clip(ndtr(np.sqrt(rho) * z + np.sqrt(1.0 - rho) * e), 0.0, np.nextafter(1.0, 0.0))


def flow_normals(flow_u: np.ndarray) -> dict[str, np.ndarray]:
    """Each flow's tempo normal ``(B,)`` per span of :data:`TEMPO_SPANS`, from its flow uniforms
    ``(B, FLOW_UNIFORMS)``."""
    z = ndtri(np.clip(flow_u[:, TEMPO_U:TEMPO_U + len(TEMPO_SPANS)], 1e-12, 1 - 1e-12))
    return {n: z[:, i] for i, n in enumerate(TEMPO_SPANS)}

"""What a flow's profile decides for the flow as a whole, after its packets' values are drawn: the
pair of TTLs its two hosts send with (:func:`draw_pairs`, for the :data:`~engine.model.profiles.PAIRED`
spans) and each direction's IP IDs (:func:`hold_ip_id`). The profiles themselves, and the choice of
one per flow, are :mod:`engine.model.profiles`'.
"""

from __future__ import annotations

import numpy as np

from engine.codec.layout import COL_DIR, LAYOUT, uint_to_bits
from engine.model.profiles import Profiles
from engine.model.vocab import draw_index


#: weight of a direction's mean evidence (one packet's worth) against the profile's pair weights in
#: the TTL pair draw. The model calls TTL 64 with confidence, and at 1 zoom's flows come out 91 %
#: (64, 64) against 70 % in its real flows; 0 (the pairs' table alone) gives 79 %, 0.25 gives 87 %.
#: Measured over the evaluation set (bench/quality_1024.md, thirteenth session): 0 costs 0.015 of the
#: packet-bits TSTR ratio, 0.25 moved no goal figure beyond its spread, so 1 stayed. Since the
#: eighteenth session a flow's profile is chosen with its responder port
#: (:mod:`engine.model.profile_ports`), and the profile's pairs are the flow's kind's: the model
#: still called the remote servers' TTLs (52-56) for youtube's DNS flows, whose resolver answers
#: with 64. With ports, 1 / 0.5 / 0.25 measured flow-statistics detectability 0.787 / 0.775 /
#: 0.767 and packet-bits TSTR 0.901 / 0.897 / 0.894 (bench/quality_1024.md): 0.5.
PAIR_EVIDENCE = 0.5


def draw_pairs(prof: Profiles, name: str, pick: np.ndarray, ll: np.ndarray, flow: np.ndarray,
               direction: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The values of a :data:`PAIRED` span for both directions of each flow at once.

    Per group (a flow's direction): ``ll`` ``(G, V)`` the summed log-likelihood of each
    vocabulary value over the group's ``rows`` ``(G,)`` present rows, ``flow`` ``(G,)`` its
    flow's position in ``pick`` (the flows' profiles), ``direction`` ``(G,)`` 0 (responder) or
    1 (initiator), ``u`` ``(G,)`` a uniform (a flow draws with its first group's). Returns per
    group the vocabulary index drawn from the flow's profile's pairs of the flow's directions (a
    flow sending one way draws among the class's one-way flows) times both directions' evidence
    (each its rows' mean); ``-1`` for the groups of flows whose directions no pair of the class
    has (the caller keeps their own draw)."""
    a, b, logw = prof.pairs[name]
    B, V = len(pick), ll.shape[1]
    ev = np.zeros((B, 2, V + 1))                     # index V: no packets that way, no evidence
    has = np.zeros((B, 2), bool)
    ev[flow, direction, :V] = PAIR_EVIDENCE * ll / np.maximum(rows, 1.0)[:, None]
    has[flow, direction] = True
    fit = ((a[None, :] < V) == has[:, :1]) & ((b[None, :] < V) == has[:, 1:])       # (B, P)
    ok = fit.any(1) & has.any(1)
    f = np.arange(B)[:, None]
    logp = np.where(fit, logw[pick] + ev[f, 0, a[None, :]] + ev[f, 1, b[None, :]], -np.inf)
    logp[~ok] = 0.0
    w = np.exp(logp - logp.max(1, keepdims=True))
    uf = np.zeros(B)
    first, at = np.unique(flow, return_index=True)
    uf[first] = u[at]                                # each flow's first group's uniform
    got = draw_index(w, uf)
    val = np.where(direction == 0, a[got[flow]], b[got[flow]])
    return np.where(ok[flow], val, -1)


def hold_ip_id(x: np.ndarray, prof: Profiles, pick: np.ndarray, u: np.ndarray) -> None:
    """Write each flow's IP IDs into ``x`` ``(B, L, width)`` (in place), per direction: all 0
    on atomic datagrams (DF set), with the chosen profile's share of such directions, else a
    counter from a uniform start, one per packet.

    The denoiser draws an ID's 16 bits per packet, which no stack does: real directions
    either count (a host's or a socket's counter) or send 0 (RFC 6864; Google's servers).
    ``u`` ``(B, profiles.FLOW_UNIFORMS)``: column 0 chose the profile, 1-2 the directions' modes,
    3-4 their counters' starts."""
    cols = LAYOUT.cols("ipv4_id")
    present = np.rint(np.clip(x[:, :, cols.start], -1, 1)) != -1              # (B, L)
    d = (x[:, :, COL_DIR] > 0.5).astype(np.int64)
    k = np.where(d == 1, np.cumsum(present & (d == 1), 1), np.cumsum(present & (d == 0), 1)) - 1
    zero = u[:, 1:3] < prof.id_zero[pick]                                      # (B, 2)
    base = np.floor(u[:, 3:5] * 65536).astype(np.int64)
    b = np.arange(len(x))[:, None]
    val = np.where(zero[b, d], 0, (base[b, d] + k) % 65536)
    bits = uint_to_bits(val[present], cols.stop - cols.start).astype(np.float32)
    x[present, cols.start:cols.stop] = bits
    df = LAYOUT.cols("ipv4_dfbit").start
    x[:, :, df] = np.where(present & zero[b, d], 1.0, x[:, :, df])

"""TCP timestamp values as a clock: each direction's TSval counts milliseconds from its own
start, and TSecr echoes the last TSval the other side sent (RFC 7323).

The option lists leave the eight value bytes to the model (:mod:`engine.model.tcp_options`), and
the repair only keeps them from going backwards. Where the model had put no options on a row the
list gave timestamps to, those bytes came out zero: 37 % of the stamped segments of synthetic
tls_https flows carried TSval 0 once lists were drawn per flow (fifteenth session), none of the
real ones. In the real flows every TSecr is an earlier TSval of the peer, and TSval advances
about one per millisecond (median over flows 0.99 for tls_https, Teams, YouTube; some http hosts
tick slower). So a flow's values are written from its own times: each direction's clock starts at a base, then
counts the elapsed milliseconds; TSecr is the peer's last TSval before the segment, 0 on a SYN that
has none (as a SYN sends), else the peer's clock extrapolated. A clock's top bits (its epoch) are
a host's, and a class's hosts cluster (real http TSvals: top nibble 1 in 50 %, 3 in 28 %; the
model's bits spread them): the base's top :data:`CLOCK_BITS` bits are drawn from the class's first
TSvals per flow direction (``clock`` in the option table: ``{"bits": 16, "counts": [[direction,
top bits, count], ...]}``; a plain list is a table of top bytes, as fitted before the nineteenth
session), the rest uniform. Sixteen bits (65-second epochs), not eight (4.7 hours): a class's
hosts are few, so 33 epochs of 16 bits held the first TSvals of 235 http flow directions, and
85 % of the held-out ones fell in one of them; with eight bits, a per-packet classifier still
told synthetic http segments by the second TSval byte's top bit (real: 1 in 3 %, synthetic 50 %).
A table without ``clock`` starts at the model's TSval where it wrote one, else uniform.
"""

from __future__ import annotations

import numpy as np

from engine.codec.layout import bits_to_uint, uint_to_bits
from engine.codec.matrix import COL_DIR, COL_IAT, iat_to_gaps
from engine.errors import InputError
from engine.model.tcp_options import ACK, DOFF, SYN, walk_options
from engine.model.vocab import draw_index
from engine.repair import options as op

MOD = 1 << 32
#: soft value bits above this count as written by the model (absent is -1)
WRITTEN = -0.5
#: the top bits of a clock's base drawn from the class's (the rest uniform)
CLOCK_BITS = 16


def fit_clocks(rows: np.ndarray, offsets: np.ndarray, labels: np.ndarray, classes: list[str],
               bits: int = CLOCK_BITS) -> dict:
    """Per class, ``{"bits": bits, "counts": [[direction, top bits, count], ...]}``: the top ``bits``
    bits of the first TSval of each flow direction (1 the initiator's) that carries timestamps."""
    tcp = np.nonzero(rows[:, DOFF.start] != -1)[0]
    raw, _, t = walk_options(rows[tcp])
    sel = (t.kind == op.TS) & (t.pos + 5 < raw.shape[1])
    at = tcp[t.row[sel]]
    val = np.zeros(int(sel.sum()), np.int64)
    for k in range(4):
        val = (val << 8) | raw[t.row[sel], t.pos[sel] + 2 + k].astype(np.int64)
    top = val >> (32 - bits)
    flow = np.searchsorted(offsets, at, side="right") - 1
    fwd = (rows[at, COL_DIR] == 1).astype(np.int64)
    order = np.lexsort((at, flow * 2 + fwd))
    key = (flow * 2 + fwd)[order]
    first = order[np.r_[True, key[1:] != key[:-1]]] if len(key) else order
    out = {}
    for ci, c in enumerate(classes):
        own = first[labels[flow[first]] == ci]
        pairs, n = np.unique(np.stack([fwd[own], top[own]], 1), axis=0, return_counts=True)
        if len(pairs):
            out[c] = {"bits": bits, "counts": [[int(d), int(b), int(k)] for (d, b), k in zip(pairs, n)]}
    return out


def check_clock(clock, label: str) -> np.ndarray | None:
    """A table's ``clock`` as ``(2, 2 ** bits)`` counts (``None`` if absent or empty); one line if
    hostile. A plain list is the form fitted before the nineteenth session: top bytes."""
    if clock is None:
        return None
    bits = 8
    if isinstance(clock, dict) and set(clock) == {"bits", "counts"} and clock["bits"] in (8, 16) \
            and not isinstance(clock["bits"], bool):
        bits, clock = clock["bits"], clock["counts"]
    if not isinstance(clock, list) or len(clock) > 2 ** 17 or not all(
            isinstance(e, list) and len(e) == 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in e)
            and e[0] in (0, 1) and 0 <= e[1] < 2 ** bits and 1 <= e[2] < 2 ** 53 for e in clock):
        raise InputError(None, f"config.json: tcp_options of class {label!r}: want clock {{\"bits\": 8 or 16, "
                               f"\"counts\": [[direction 0/1, top bits, count >= 1], ...]}}")
    n = np.zeros((2, 2 ** bits), np.float64)
    for d, b, k in clock:
        n[d, b] += k
    return n if n.sum() else None


def _uint(bits: np.ndarray) -> np.ndarray:
    return bits_to_uint((np.clip(bits, 0, 1) > 0.5).astype(np.int8)).astype(np.int64)


def clock_timestamps(x: np.ndarray, start: np.ndarray, u: np.ndarray | None,
                     clock: np.ndarray | None = None) -> np.ndarray:
    """Write TSval and TSecr of the stamped rows of ``x`` ``(B, L, width)`` (floats, in place).

    ``start`` ``(B, L)``: the column where a row's TSval bits begin, -1 where the row carries no
    timestamps; ``u`` ``(B, L)`` the option lists' uniforms in [0, 1), whose trailing bits draw a
    direction's base where the model wrote none (without them the model's bits, zeros where
    absent, are the base); ``clock`` ``(2, 2 ** bits)`` the class's counts of a base's top bits per
    direction (:func:`check_clock`), which then draw every base. Returns ``x``.
    """
    B, L, _ = x.shape
    ts = start >= 0
    if not ts.any():
        return x
    fwd = x[..., COL_DIR] > 0.5
    gaps = iat_to_gaps(_uint(x[..., COL_IAT].reshape(B * L, -1))).reshape(B, L)
    gaps[:, 0] = 0
    t_ms = np.floor(np.cumsum(gaps, axis=1) / 1e6).astype(np.int64)
    b, l = np.nonzero(ts)
    cols = start[b, l][:, None] + np.arange(64)[None, :]
    soft = x[b[:, None], l[:, None], cols]
    model_val = _uint(soft[:, :32])
    written = (soft[:, :32] > WRITTEN).mean(1) >= 0.9
    # the row's uniform also drew its list (its leading bits): the base takes its trailing 32 bits
    drawn = model_val if u is None else np.floor(np.modf(np.asarray(u, np.float64)[b, l] * 2 ** 21)[0] * MOD
                                                 ).astype(np.int64)
    val0 = np.where(written, model_val, drawn)
    if clock is not None and u is not None:
        # bits 11-40 of the uniform pick the epoch, bits 29-53 the rest (its first bits drew the list)
        uu = np.asarray(u, np.float64)[b, l]
        low = 32 - int(np.log2(clock.shape[1]))
        w = clock + np.where(clock.sum(1, keepdims=True) > 0, 0.0, 1.0)        # a direction never seen: uniform
        top = draw_index(w, np.modf(uu * 2 ** 11)[0], fwd[b, l].astype(np.int64))
        val0 = (top << low) | np.floor(np.modf(uu * 2 ** 29)[0] * (1 << low)).astype(np.int64)
    idx = np.arange(L)
    tsval = np.zeros((B, L), np.int64)
    last = np.full((2, B, L), -1, np.int64)          # per direction: the last stamped row at or before l
    base = np.zeros((2, B), np.int64)
    first = np.full((2, B), -1, np.int64)
    v0 = np.zeros((B, L), np.int64)
    v0[b, l] = val0
    for d in (0, 1):
        own = ts & (fwd == bool(d))
        has = own.any(1)
        f = np.where(has, own.argmax(1), -1)
        first[d], base[d] = f, np.where(has, v0[np.arange(B), np.maximum(f, 0)], 0)
        origin = t_ms[np.arange(B), np.maximum(f, 0)]
        vals = (base[d][:, None] + (t_ms - origin[:, None])) % MOD
        tsval = np.where(own, vals, tsval)
        last[d] = np.maximum.accumulate(np.where(own, idx[None, :], -1), axis=1)
    peer = 1 - fwd[b, l].astype(np.int64)
    prev = np.where(l > 0, last[peer, b, np.maximum(l - 1, 0)], -1)
    syn_only = (x[b, l, SYN] > 0.5) & ~(x[b, l, ACK] > 0.5)
    pf = first[peer, b]
    extrapolated = (base[peer, b] + (t_ms[b, l] - t_ms[b, np.maximum(pf, 0)])) % MOD
    tsecr = np.where(prev >= 0, tsval[b, np.maximum(prev, 0)],
                     np.where(syn_only, 0, np.where(pf >= 0, extrapolated, _uint(soft[:, 32:]))))
    x[b[:, None], l[:, None], cols] = np.concatenate(
        [uint_to_bits(tsval[b, l].astype(np.uint64), 32), uint_to_bits(tsecr.astype(np.uint64), 32)], 1)
    return x

"""Field vocabularies: decoding a sampled field onto the values its class uses.

The denoiser predicts every bit of a header field separately. Where it is
unsure (a 16-bit packet size, an 8-bit TTL), the bits are decided one by one
and the value comes out as a blend: 40 becomes 41 or 42, TTL 64 becomes 63
or 66, a window of 62780 becomes 1. Such values are valid protocol-wise but
unlike the class, and they mislead a classifier trained on synthetic data.

Each checkpoint therefore carries, per class and per field span, the values
its training flows used most (``config.json`` key ``vocab``), and a sampled
field is decoded to the vocabulary value nearest to the model's soft bits
(least squares over the span's bits, i.e. the most likely value under
independent per-bit Gaussian errors). This is constrained decoding, not
copying: spans are decoded one at a time, so a packet is a new combination.
"""

from __future__ import annotations

import numpy as np

from engine.codec.layout import COL_DIR, LAYOUT, bits_to_uint, uint_to_bits
from engine.codec.matrix import row_proto
from engine.model.profile_ports import responder_keys
from engine.model.tempo import flow_normals, paced

#: the spans decoded onto vocabularies: single fields, plus the TCP flag bits as one span
#: (flags come in combinations: SYN, SYN-ACK, ACK, PSH-ACK, FIN-ACK, RST)
SPANS: dict[str, slice] = {
    "ipv4_tos": LAYOUT.cols("ipv4_tos"),
    "ipv4_tl": LAYOUT.cols("ipv4_tl"),
    "ipv4_ttl": LAYOUT.cols("ipv4_ttl"),
    "tcp_doff": LAYOUT.cols("tcp_doff"),
    "tcp_flags": slice(LAYOUT.cols("tcp_res").start, LAYOUT.cols("tcp_fin").stop),
    "tcp_wsize": LAYOUT.cols("tcp_wsize"),
    "icmp_type": LAYOUT.cols("icmp_type"),
    "icmp_code": LAYOUT.cols("icmp_code"),
    # the gap's top 8 code bits: its size to an eighth of an octave (engine.codec.layout, IAT_SCALE);
    # the low bits stay the model's
    "meta_iat_coarse": slice(LAYOUT.cols("meta_iat").start, LAYOUT.cols("meta_iat").start + 8),
}


def palette(m: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The field values of some rows (a flow's packets, or a class's): per span,
    ``(values, counts)`` over the rows of ``m`` ``(rows, width)`` in {-1, 0, 1} where the
    span is present; spans that are never present are left out."""
    out = {}
    for name, sl in SPANS.items():
        sub = m[:, sl]
        sub = sub[(sub != -1).all(axis=1)]
        if len(sub):
            out[name] = np.unique(bits_to_uint(sub), return_counts=True)
    return out


#: spans whose vocabulary keeps more values, every value seen (``(top, min_count)``): packet sizes
#: spread over many values each rare (zoom: 1,268 sizes; its 256 most frequent covered 86 % of its
#: packets, and the sizes of 400-1,000 bytes, 5 % of its packets, never came out); 1,024 cover
#: 99 % or more of every class's packets
WIDE = {"ipv4_tl": (1024, 1)}


def fit_vocab(rows: np.ndarray, row_labels: np.ndarray, classes: list[str], top: int = 256,
              min_count: int = 2, keep: int = 8, wide: dict | None = None) -> dict:
    """Per class and span, ``[[value, count], ...]`` for the ``top`` most frequent values of the
    training rows where the span is present (values seen once are dropped beyond the ``keep``
    most frequent); spans of ``wide`` (default :data:`WIDE`) take their own ``(top, min_count)``.

    ``rows``: ``(R, width)`` int8 in {-1, 0, 1}; ``row_labels``: ``(R,)`` class index.
    """
    wide = WIDE if wide is None else wide
    out: dict[str, dict[str, list[list[int]]]] = {}
    for ci, c in enumerate(classes):
        spans = {}
        for name, (v, n) in palette(rows[row_labels == ci]).items():
            t, mc = wide.get(name, (top, min_count))
            order = np.argsort(-n, kind="stable")
            spans[name] = [[int(v[i]), int(n[i])] for j, i in enumerate(order[:t]) if j < keep or n[i] >= mc]
        out[c] = spans
    return out


#: rows decoded at a time (a span's draw holds a few (rows, values) float64 arrays)
DECODE_ROWS = 4096

#: spans decoded given another span of the same row, from the pairs the class's packets have
#: (``config.json`` key ``joint``): the ICMP code given the type. Decoded alone, type and code
#: combined freely (smtp_imap: destination unreachable with code 0 where the class only ever
#: has code 4; tls_https: half its ICMP packets on a pair the class never has).
JOINT = {"icmp_code": "icmp_type"}


def fit_joint(rows: np.ndarray, row_labels: np.ndarray, classes: list[str]) -> dict:
    """Per class and span of :data:`JOINT`: ``[[given value, value, count], ...]`` over the rows
    where both spans are present."""
    out: dict[str, dict[str, list[list[int]]]] = {}
    for ci, c in enumerate(classes):
        sub = rows[row_labels == ci]
        spans = {}
        for name, given in JOINT.items():
            a, b = sub[:, SPANS[given]], sub[:, SPANS[name]]
            keep = (a != -1).all(axis=1) & (b != -1).all(axis=1)
            if keep.any():
                pairs, n = np.unique(np.stack([bits_to_uint(a[keep]), bits_to_uint(b[keep])], 1), axis=0,
                                     return_counts=True)
                spans[name] = [[int(g), int(v), int(k)] for (g, v), k in zip(pairs, n)]
        out[c] = spans
    return out


def _joint_mask(flat: np.ndarray, rows: np.ndarray, name: str, v: np.ndarray, joint: dict | None) -> np.ndarray | None:
    """``(R, V)``: which of the vocabulary values ``v`` of span ``name`` the rows may take given their
    (already decoded) :data:`JOINT` span; a row whose given value has no pair is left free."""
    pairs = (joint or {}).get(name)
    if not pairs:
        return None
    given = bits_to_uint(np.clip(np.rint(flat[rows][:, SPANS[JOINT[name]]]), 0, 1).astype(np.int8))
    t = np.array(pairs, np.uint64).reshape(-1, 3)
    shift = np.uint64(1 << (SPANS[name].stop - SPANS[name].start))
    mask = np.isin(given[:, None] * shift + v.astype(np.uint64)[None, :], t[:, 0] * shift + t[:, 1])
    mask[~np.isin(given, t[:, 0])] = True
    mask[~mask.any(axis=1)] = True
    return mask


def _entries(vals) -> tuple[np.ndarray, np.ndarray]:
    """Vocabulary entries -> values, counts (a bare value counts once)."""
    v = np.array([e[0] if isinstance(e, (list, tuple)) else e for e in vals], np.uint64)
    n = np.array([e[1] if isinstance(e, (list, tuple)) else 1 for e in vals], np.float64)
    return v, n


#: spans one side of a flow keeps for all its packets: a host's TTL is its initial TTL less the
#: hops, the same for every packet it sends. Drawn per packet, a flow mixed the class's TTL
#: families (64 and 128), and the repair's per-direction bitwise majority then made values no
#: host uses (facebook: 45 % of packets on a TTL the class never has); drawn once per flow and
#: direction from the evidence of all its packets, each side stays on one of the class's values.
PER_DIRECTION = ("ipv4_ttl",)

#: a bit the model calls certain still leaves this much doubt in the posterior (its
#: probabilities are not calibrated; without a floor one bit would veto a common value)
BIT_FLOOR = 0.05


def _palette_prior(v: np.ndarray, n: np.ndarray, name: str, palettes: list, weight: float) -> np.ndarray:
    """``(B, V)`` log prior per flow: the class's frequencies, plus ``weight`` times the flow's
    own palette (both normalised), over the class vocabulary ``v``."""
    base = n / n.sum()
    out = np.tile(base, (len(palettes), 1))
    order = np.argsort(v)
    for b, pal in enumerate(palettes):
        if not pal or name not in pal:
            continue
        pv, pn = pal[name]
        k = np.searchsorted(v[order], pv.astype(v.dtype))
        ok = k < len(v)
        ok[ok] = v[order][k[ok]] == pv[ok].astype(v.dtype)
        if ok.any():
            extra = np.zeros(len(v))
            np.add.at(extra, order[k[ok]], pn[ok])
            out[b] += weight * extra / extra.sum()
    return np.log(out)


def count_below(cdf: np.ndarray, t: np.ndarray, of: np.ndarray | None = None) -> np.ndarray:
    """For each threshold ``t[r]``: how many entries of row ``of[r]`` (or ``r``) of ``cdf`` ``(R, V)``
    (rows non-decreasing: cumulative sums of weights >= 0) are below it, i.e.
    ``(cdf[of] < t[:, None]).sum(1)``, by a binary search over all rows at once: ``log2(V)`` passes
    over ``(R,)`` instead of an ``(R, V)`` comparison (and, with ``of``, an ``(R, V)`` copy)."""
    r = np.arange(len(t)) if of is None else of
    lo, hi = np.zeros(len(t), np.int64), np.full(len(t), cdf.shape[1], np.int64)
    while True:
        open_ = lo < hi
        if not open_.any():
            return lo
        mid = (lo + hi) // 2
        below = cdf[r, np.minimum(mid, cdf.shape[1] - 1)] < t
        lo = np.where(open_ & below, mid + 1, lo)
        hi = np.where(open_ & ~below, mid, hi)


def draw_index(w: np.ndarray, u: np.ndarray, of: np.ndarray | None = None) -> np.ndarray:
    """For each uniform ``u[r]`` in [0, 1): the index drawn from the weights (>= 0) of row ``of[r]``
    (or ``r``) of ``w`` ``(R, V)``: the first whose cumulative weight is not below ``u[r]`` times
    the row's total (the last, should rounding leave none). Every draw of the decoder and of
    the flow profiles goes through it."""
    cdf = np.cumsum(w, 1)
    total = cdf[:, -1] if of is None else cdf[of, -1]
    return np.minimum(count_below(cdf, u * total, of), w.shape[1] - 1)


def _per_direction(ll: np.ndarray, rows: np.ndarray, fwd: np.ndarray,
                   L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group the flat rows ``rows`` (of flows of ``L`` rows) by flow and direction: returns each
    group's summed log-likelihood ``(G, V)`` (from the rows' ``ll`` ``(R, V)``), the position of
    each group's first row in ``rows`` (whose uniform decides the group's draw), every row's
    group, and each group's key ``flow * 2 + direction`` (1 = the initiator's)."""
    key = (rows // L) * 2 + fwd[rows]
    groups, first, members = np.unique(key, return_index=True, return_inverse=True)
    total = np.zeros((len(first), ll.shape[1]))
    np.add.at(total, members.ravel(), ll)
    return total, first, members.ravel(), groups


def _evidence(flat: np.ndarray, sl: slice, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows where span ``sl`` snaps to present, and there the log-likelihood ``(R, V)`` of each
    vocabulary value (bits ``V`` ``(V, bits)``) under the soft bits as independent evidence."""
    sub = flat[:, sl]
    rows = np.nonzero((np.rint(np.clip(sub, -1, 1)) != -1).all(axis=1))[0]
    q = np.clip(sub[rows].astype(np.float64), BIT_FLOOR, 1.0 - BIT_FLOOR)
    return rows, np.log(q) @ V.T + np.log1p(-q) @ (1.0 - V).T


def _flow_lengths(flat: np.ndarray, L: int) -> np.ndarray:
    """Packets per flow of the flat rows ``flat`` (flows of ``L`` rows): the rows whose size snaps
    present (a flow's packets are its rows 0..n-1)."""
    return (np.rint(np.clip(flat[:, SPANS["ipv4_tl"]], -1, 1)) != -1).all(axis=1).reshape(-1, L).sum(1)


def _choose_profiles(flat: np.ndarray, L: int, vocab: dict, profiles, flow_u: np.ndarray,
                     lengths: np.ndarray, rows: float | None = None, same: np.ndarray | None = None) -> np.ndarray:
    """Each flow's profile (:mod:`engine.model.profiles`), from the evidence of its packets (as
    ``rows`` of them, :func:`engine.model.profiles.choose`) and its length ``lengths`` ``(B,)``;
    flows that share a sample (``same``, :func:`decode`) weigh its evidence once."""
    from .profiles import choose
    of = None
    if same is not None:
        firsts, of = np.unique(same, return_inverse=True)
        flat, lengths = flat.reshape(-1, L, flat.shape[-1])[firsts].reshape(-1, flat.shape[-1]), lengths[firsts]
    fwd = (flat[:, COL_DIR] > 0.5).astype(np.int64)

    def evidence():          # DECODE_ROWS rows at a time: memory is a chunk's (rows, values)
        for name in profiles.dist:
            v, _ = _entries(vocab[name])
            V = uint_to_bits(v, SPANS[name].stop - SPANS[name].start).astype(np.float64)
            for a in range(0, len(flat), DECODE_ROWS):
                rows, ll = _evidence(flat[a:a + DECODE_ROWS], SPANS[name], V)
                rows = rows + a
                yield name, ll, rows // L, profiles.slot(rows % L, fwd[rows], lengths[rows // L])
    first = np.rint(np.clip(flat.reshape(-1, L, flat.shape[-1])[:, 0], -1, 1)).astype(np.int8)
    return choose(profiles, evidence(), lengths, row_proto(first), flow_u, rows=rows, of=of,
                  ports=responder_keys(first))


def decode(x: np.ndarray, vocab: dict, u: np.ndarray | None = None, palettes: list | None = None,
           palette_weight: float = 0.0, joint: dict | None = None, profiles=None,
           flow_u: np.ndarray | None = None, calibration: dict | None = None,
           same: np.ndarray | None = None) -> np.ndarray:
    """Decode sampled flows ``x`` ``(B, L, width)`` (floats, before snapping) onto a class's
    vocabulary; every span that snaps to present in a row is replaced by a vocabulary value.

    With ``u`` ``(B, L, len(SPANS))`` uniforms in [0, 1), the value is *drawn* from the
    posterior ``count(v) * prod_k p_k^v_k (1 - p_k)^(1 - v_k)`` (the class's frequency as the
    prior, the model's soft bits ``p`` as independent evidence): where the model is sure the
    draw is its value, where it is not the draw follows the class's distribution instead of
    rounding every doubtful bit the same way (which made gaps systematically short).
    Without ``u``: the value nearest to the soft bits (least squares). Returns a new array.

    ``palettes`` (one :func:`palette` or ``None`` per flow) with ``palette_weight`` w add a
    flow's own values to its prior: ``count(v) / total + w * own(v) / own_total`` (guided
    sampling: a flow draws mostly from the values of the real flow it started from).

    ``joint`` (the class's :func:`fit_joint` table) limits a :data:`JOINT` span to the values
    the class pairs with the row's decoded given span.

    ``profiles`` (the class's :class:`engine.model.profiles.Profiles`) with ``flow_u`` ``(B,)``
    uniforms: unguided draws first pick each flow's profile and take their prior from it
    (per direction) instead of from the class's frequencies, for the spans it holds (the
    model's evidence on a span in the profile's first packets weighs its table's
    ``head_evidence``, :data:`engine.model.profiles.HEAD_EVIDENCE`). With
    ``flow_u`` ``(B, profiles.FLOW_UNIFORMS)`` the profile also decides each direction's IP IDs
    (:func:`engine.model.profile_draws.hold_ip_id`).

    ``calibration`` (span -> ``(V,)`` log-weights, :mod:`engine.model.calibrate`) is added to
    the prior of unguided draws.

    ``same`` ``(B,)``: for each flow the first flow whose soft bits are the same as its own
    (candidates decoded from one sample, ``generate --decodes``): the model's evidence is then
    computed once per sample; each flow still draws with its own uniforms.
    """
    x = np.array(x, np.float32, copy=True)
    flat = x.reshape(-1, x.shape[-1])
    uf = None if u is None else np.asarray(u, np.float64).reshape(-1, len(SPANS))
    chosen = None
    if uf is not None and profiles is not None and flow_u is not None and not (palettes and palette_weight > 0):
        fu = np.asarray(flow_u, np.float64)
        flow_len = _flow_lengths(flat, x.shape[1])     # a profile may keep a flow's closing apart
        chosen = _choose_profiles(flat, x.shape[1], vocab, profiles, fu if fu.ndim == 1 else fu[:, 0], flow_len,
                                  same=same)
    # a chosen profile's paired spans (engine.model.profiles.PAIRED: TTL, since the fifteenth
    # session ToS) are drawn once per flow direction as well; a table without a span's pairs
    # draws it per packet, as before
    per_dir = set(PER_DIRECTION) | (set(profiles.pairs) if chosen is not None else set())
    # a flow's pace (engine.model.tempo): its rank in the ordered spans' draws, one normal per flow
    zf = flow_normals(fu) if chosen is not None and fu.ndim == 2 and profiles.tempo else None
    fwd = (flat[:, COL_DIR] > 0.5).astype(np.int64)
    for si, (name, sl) in enumerate(SPANS.items()):
        vals = vocab.get(name)
        if not vals:
            continue
        sub = flat[:, sl]
        present = (np.rint(np.clip(sub, -1, 1)) != -1).all(axis=1)
        if not present.any():
            continue
        p = np.clip(sub[present], 0.0, 1.0)
        v, n = _entries(vals)
        V = uint_to_bits(v, sl.stop - sl.start).astype(np.float32)
        allowed = _joint_mask(flat, np.nonzero(present)[0], name, v, joint) if name in JOINT else None
        if uf is None:
            d = (V * V).sum(1)[None, :] - 2.0 * p @ V.T          # |p - v|^2 up to a per-row constant
            if allowed is not None:
                d = np.where(allowed, d, np.inf)
            pick = d.argmin(1)
        else:
            every = np.nonzero(present)[0]
            # a span drawn once per flow and direction takes all its rows at once; the others go
            # DECODE_ROWS rows at a time, so memory is (rows, values) of a chunk, not of the batch
            step = len(every) if name in per_dir else DECODE_ROWS
            pick = np.empty(len(every), np.int64)
            guided = palettes is not None and palette_weight > 0
            flow_prior = _palette_prior(v, n, name, palettes, palette_weight) if guided else None   # (B, V)
            profiled = chosen is not None and name in profiles.dist and not guided
            # decoded candidates of one sample (``same``): a row's evidence is the sample's, computed
            # once; where nothing else differs (the row's profile aside), so are its weights
            whole = same is not None and name not in per_dir and allowed is None
            # a paced span draws a quantile of its values in increasing order (engine.model.tempo)
            paced_draw = profiled and zf is not None and name in profiles.tempo
            ascending = np.argsort(v, kind="stable") if paced_draw else None
            L = x.shape[1]
            for a in range(0, len(every), step):
                c = slice(a, a + step)
                rows = every[c]
                f = rows // L
                rep = back = None
                if same is not None:
                    key = same[f] * L + rows % L
                    if whole and profiled:
                        key = key * len(profiles) + chosen[f]
                    _, rep, back = np.unique(key, return_index=True, return_inverse=True)
                    back = back.ravel()
                q = np.clip((p[c] if rep is None else p[c][rep]).astype(np.float64), BIT_FLOOR, 1.0 - BIT_FLOOR)
                ll = np.log(q) @ V.T + np.log1p(-q) @ (1.0 - V).T
                wr = rows
                if rep is not None and whole:
                    wr = rows[rep]                      # the weights of these rows, drawn by every row
                elif back is not None:
                    ll = ll[back]
                if guided:
                    prior = flow_prior[wr // L]
                elif profiled:
                    from .profiles import row_prior
                    prior = row_prior(profiles, name, chosen, wr // L, profiles.slot(wr % L, fwd[wr], flow_len[wr // L]))
                else:
                    prior = np.log(n)[None, :]
                if calibration and name in calibration and not guided:
                    prior = prior + calibration[name][None, :]
                ur = uf[rows, si]
                if paced_draw:
                    ur = paced(ur, zf[name][rows // L], profiles.tempo[name])
                if name in per_dir:
                    ll, first, members, groups = _per_direction(ll, rows, fwd, L)
                    ur = ur[first]
                    prior = prior[first] if len(prior) > 1 else prior
                if profiled and name in profiles.head_evidence:
                    # the profile's per-position slots decide more of the first packets' values
                    ll = ll * np.where(wr % L < profiles.bands[0], profiles.head_evidence[name], 1.0)[:, None]
                logp = prior + ll
                if allowed is not None:
                    logp = np.where(allowed[c], logp, -np.inf)
                w = np.exp(logp - logp.max(1, keepdims=True))
                if paced_draw:
                    got = ascending[draw_index(w[:, ascending], ur, back if (rep is not None and whole) else None)]
                else:
                    got = draw_index(w, ur, back if (rep is not None and whole) else None)
                if name in per_dir and chosen is not None and not guided and name in profiles.pairs:
                    from .profile_draws import draw_pairs
                    paired = draw_pairs(profiles, name, chosen, ll, groups // 2, groups % 2,
                                        np.bincount(members, minlength=len(first)), ur)
                    got = np.where(paired >= 0, paired, got)
                pick[c] = got[members] if name in per_dir else got
        flat[np.nonzero(present)[0][:, None], np.arange(sl.start, sl.stop)[None, :]] = V[pick]
    if chosen is not None and fu.ndim == 2:
        from .profile_draws import hold_ip_id
        hold_ip_id(x, profiles, chosen, fu)
    return x

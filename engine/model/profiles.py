"""Flow profiles: a flow-level latent for the values a flow's packets take.

The vocabulary decoder (:mod:`engine.model.vocab`) drew each packet's size,
gap, TTL, flags, window and type of service from the class's frequencies given
the model's bits, packet by packet. Every flow of a class then drew from the
same mixture, and the flow-level pattern was lost: a bulk download's run of
full-size packets, an interactive session's small packets at a steady pace,
a call's fixed media size. Flow statistics told synthetic from real flows by
exactly these (smallest packet, gap mean and median, first and mean sizes;
bench/quality.md).

So each class's training flows are clustered by what they use (per span and
:func:`slot`, the share of each vocabulary value; plus the flow's length on a
log scale and its transport, weighted so that a cluster is of one transport),
and every cluster, a *profile*, keeps the summed value counts of its flows per
slot, its flows' lengths, its transport, and how many of its directions send
IP ID 0 throughout, and the pairs of TTLs its flows' two hosts send with
(:data:`PAIRED`; ``config.json`` key ``profiles``). A sampled flow first
picks a profile of its transport, with probability ``flows(k) * P(length | k)
* P(model's bits | k)``, the last being the model's evidence over the flow's
packets, weighed as :data:`EVIDENCE_ROWS` of them. Its packets are then decoded with
that profile's distribution for their slot (mixed with :data:`SMOOTH` of the
class's) as their prior instead of the class's, and its IP IDs follow the
profile (:func:`engine.model.profile_draws.hold_ip_id`). A profile pools many flows (at least
:data:`MIN_FLOWS` per profile on average), so it is a kind of flow, not one
training flow.

A packet's slot is its position for the first :data:`HEAD` packets (the
handshake, the first request and its response), its distance from the end for a
closing (:data:`TAIL`), else its direction and its position band (:data:`BANDS`):
a flow's packets 8-15 are not its packets 128-1023 (a call's first packets are
signalling, its later ones media; bench/quality_1024.md measured the first 128
packets' sizes of zoom and Teams as far from the whole flows' as a wrong class
would be). In the first packets the model's evidence weighs less
(:data:`HEAD_EVIDENCE`): there the position says more than the model's bits.
"""

from __future__ import annotations

import numpy as np

from engine.codec.layout import COL_DIR, LAYOUT, bits_to_uint, get
from engine.codec.matrix import row_proto
from engine.errors import InputError
from engine.model.profile_ports import fit_profile_ports, port_columns, read_profile_ports, responder_keys
from engine.model.tempo import MAX_TEMPO, TEMPO_SPANS, TEMPO_U, fit_tempo
from engine.model.vocab import PER_DIRECTION, draw_index

#: the spans a profile holds (ICMP type and code have their own rule, vocab.JOINT)
PROFILED = ("ipv4_tos", "ipv4_tl", "ipv4_ttl", "tcp_doff", "tcp_flags", "tcp_wsize", "meta_iat_coarse")
#: a flow's first HEAD packets: their directions are drawn whole from its class's flows
#: (engine.model.directions: with four, the Gumbel keys put packets 4-7 on the initiator's side in
#: 22-26 % of synthetic amazon and http flows against 3-7 % of real ones, where a response starts),
#: and a profile keeps its flows' first HEAD packets' values apart, one slot per position (the
#: handshake, the first request and its response: a SYN's size is not a data packet's, the
#: server's acknowledgment of a request not its response), the later packets' by position band
#: and direction: slot ``p`` for position ``p < HEAD``, else ``HEAD + 2 * band + direction``, band
#: ``b`` holding positions ``BANDS[b]`` to ``BANDS[b+1] - 1``. A table's head is its first band's
#: start (tables fitted before the fourteenth session: 4, whose band 4-7 pooled the request's
#: acknowledgment with the response: http's packet 4, a bare ACK in 95 % of real flows, came out
#: a 1,400-byte segment in 64 % of synthetic ones)
HEAD = 8
BANDS = (8, 16, 32, 64, 128)
#: the bands of a table that names none (written before the bands): every packet after the first
#: four by direction
NO_BANDS = (4,)
#: a profile keeps its flows' last TAIL packets apart too, one slot per distance from the end (a
#: flow's closing: FIN, FIN-ACK, the last ACK), in flows that end (shorter than the model's rows;
#: a longer flow was cut there). Slot ``HEAD + left`` for a packet with ``left < TAIL`` packets
#: after it (not for the first HEAD packets), the bands' slots after them. Without them the
#: closings fell to the class's frequencies: 44 of 273 synthetic youtube TCP flows had a FIN,
#: 201 of 295 real ones, at 2-5 packets from the end. Measured with CLOSING slots (ninth session,
#: bench/quality_1024.md): FINs where the class has them, detectability a little lower, but the
#: classifier trained on synthetic flow statistics lost 0.015-0.02 (below the 0.8x it reached),
#: so tables were fitted without them until the fourteenth session: with eight head slots, a
#: lighter head evidence and the closings, a FIN share gave flows away least of the statistics
#: it gave them away most by (bench/quality_1024.md), flow-statistics TSTR holding
CLOSING = 4
TAIL = CLOSING
#: a band's own counts weigh against this many packets of its profile's direction pooled over
#: every band (a Dirichlet prior): a thin band leans on its direction, a full one keeps its own
BAND_PRIOR = 4.0
#: transports a profile can be of (its flows' first packet's; 0 = none)
PROTOS = (0, 1, 6, 17)
#: flow lengths are bucketed by log2: 1, 2-3, 4-7, ..., 1024+
LENGTH_BUCKETS = 11
#: spans whose two directions a profile keeps as pairs: a flow's TTLs are its two hosts' (an
#: initial TTL less the hops), and which server a client talks to is one choice, not two. Drawn
#: per direction, each from its own profile slot and the sum of every packet's evidence, youtube's
#: (64, 64) flows (15 % of its training flows) came out 0.8 %, and TTL with size told its
#: synthetic flows apart (a forest on ttl_mean and size_rev_mean alone: ROC AUC 0.88)
#: A direction's evidence for its paired value (in the pair's draw and in the choice of profile)
#: is its rows' mean log-likelihood, one packet's worth: its rows say one thing (the model's
#: guess for the flow), and their sum, counting it once per packet, drowned the tables.
#: ToS (fifteenth session): a host marks a connection's packets alike (71 % of real tls_https
#: flows carry one ToS per direction; drawn per packet, 41 % of synthetic ones did; its flow mean
#: alone told tls_https flows apart with ROC AUC 0.67, paired 0.45). bench/quality_1024.md
PAIRED = ("ipv4_ttl", "ipv4_tos")
#: at most this many profiles per class, and at least this many training flows per profile
MAX_PROFILES = 16
MIN_FLOWS = 8
#: the class's distribution mixed into a profile's (a value the profile never saw stays possible)
SMOOTH = 0.02
#: the weight of the model's evidence in the choice of profile (1 = the plain posterior)
EVIDENCE = 1.0
#: ... and it weighs, per span, as much as this many of the flow's packets (``np.inf``: every
#: packet counts, as up to the ninth session). A flow's rows are one sample of a model that leans to its
#: class's common kinds of flow, not independent looks at the flow: counted once per packet they
#: chose the common profiles for many flows (youtube's profile 4 for 22 % of 200 synthetic flows,
#: 7 % of its training flows; picked against training shares JSD 0.18 in youtube and http, 0.01
#: without evidence), so a classifier trained on synthetic flow statistics saw too few of the
#: others (bench/quality_1024.md, tenth session: 0.25 packets measured against 8, 1 and none)
EVIDENCE_ROWS = 0.25
#: the weight of the model's evidence on a span's value in a profile's first HEAD packets, where
#: the profile keeps each position's values apart (1 = the plain posterior). The model's bits for
#: the first packets' sizes are confident and often a packet off: http's request (packet 3,
#: 300-700 bytes in most real flows) came out a bare acknowledgment with PSH set in most synthetic
#: ones, and packet 4 (the server's bare ACK in 82 % of real flows) a 1,400-byte segment; at 0.3
#: the position's slot decides them (fourteenth session, bench/quality_1024.md). Written into each
#: table (``head_evidence``): a table without it weighs the evidence fully, as before.
HEAD_EVIDENCE = {"ipv4_tl": 0.3}


def length_bucket(n: np.ndarray) -> np.ndarray:
    return np.minimum(np.floor(np.log2(np.maximum(n, 1))).astype(np.int64), LENGTH_BUCKETS - 1)


def _value_index(vals: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Position of each of ``vals`` in the vocabulary values ``v`` (-1 where absent)."""
    order = np.argsort(v)
    k = np.searchsorted(v[order], vals)
    k = np.minimum(k, len(v) - 1)
    hit = v[order][k] == vals
    return np.where(hit, order[k], -1)


def _flow_rows(offsets: np.ndarray, flows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of ``flows`` back to back: their indices, their flow's position in ``flows``, and
    their position in their flow."""
    lens = offsets[flows + 1] - offsets[flows]
    owner = np.repeat(np.arange(len(flows)), lens)
    pos = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    return np.repeat(offsets[flows], lens) + pos, owner, pos


def n_slots(bands=BANDS, tail: int = TAIL) -> int:
    return bands[0] + tail + 2 * len(bands)


def slot(position: np.ndarray, direction: np.ndarray, bands=BANDS, tail: int = TAIL,
         left: np.ndarray | None = None) -> np.ndarray:
    """A packet's slot in a profile (:data:`HEAD`, :data:`TAIL`, :data:`BANDS`) from its position
    in its flow, its direction (0 = the responder's, 1 = the initiator's) and ``left``, the
    packets after it in its flow (-1, or ``None`` for all: a flow that was cut, not ended)."""
    head = bands[0]
    band = np.searchsorted(np.asarray(bands), position, side="right") - 1
    later = head + tail + 2 * np.maximum(band, 0) + direction
    if tail and left is not None:
        later = np.where((left >= 0) & (left < tail), head + left, later)
    return np.where(position < head, position, later)


def by_direction(counts: np.ndarray, tail: int = TAIL, head: int = HEAD) -> np.ndarray:
    """``(..., head + 2, V)``: counts per slot ``(..., n_slots, V)`` with the bands of each
    direction added up, the tail slots left out (the slots of a table without bands)."""
    first, rest = counts[..., :head, :], counts[..., head + tail:, :]
    pooled = rest.reshape(*rest.shape[:-2], -1, 2, rest.shape[-1]).sum(-3)
    return np.concatenate([first, pooled], -2)


def _span_values(rows: np.ndarray, offsets: np.ndarray, flows: np.ndarray, name: str,
                 v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows of ``flows`` whose span ``name`` is present with a vocabulary value (of ``v``):
    their flow (position in ``flows``), position in it, direction (1 = the initiator's) and
    vocabulary index."""
    from .vocab import SPANS
    idx, owner, pos = _flow_rows(offsets, flows)
    sub = rows[idx][:, SPANS[name]]
    present = (sub != -1).all(axis=1)
    vi = _value_index(bits_to_uint(sub[present]), v.astype(np.uint64))
    d = (rows[idx][present, COL_DIR] == 1).astype(np.int64)
    keep = vi >= 0
    return owner[present][keep], pos[present][keep], d[keep], vi[keep]


def flow_counts(rows: np.ndarray, offsets: np.ndarray, flows: np.ndarray, name: str,
                v: np.ndarray, ends: np.ndarray | None = None, tail: int = TAIL) -> np.ndarray:
    """``(len(flows), n_slots(tail=tail), V)``: per flow, :func:`slot` and vocabulary value ``v``
    of span ``name``, how many of its packets have it; ``ends`` ``(len(flows),)``: the flow ended
    (its last rows are a closing), default none did."""
    owner, pos, d, vi = _span_values(rows, offsets, flows, name, v)
    n = (offsets[flows + 1] - offsets[flows])[owner]
    ended = np.zeros(len(flows), bool) if ends is None else np.asarray(ends, bool)
    left = np.where(ended[owner], n - 1 - pos, -1)
    out = np.zeros((len(flows), n_slots(tail=tail), len(v)), np.int64)
    np.add.at(out, (owner, slot(pos, d, tail=tail, left=left), vi), 1)
    return out


def direction_values(rows: np.ndarray, offsets: np.ndarray, flows: np.ndarray, name: str,
                     v: np.ndarray) -> np.ndarray:
    """``(len(flows), 2)``: per flow and direction (0 = the responder's, 1 = the initiator's) the
    vocabulary index (in ``v``) of the value of span ``name`` its packets carry most, ``len(v)``
    where the direction has no packet with a vocabulary value there."""
    owner, _, d, vi = _span_values(rows, offsets, flows, name, v)
    n = np.zeros((len(flows), 2, len(v)), np.int64)
    np.add.at(n, (owner, d, vi), 1)
    return np.where(n.sum(2) > 0, n.argmax(2), len(v))


def zero_id_groups(rows: np.ndarray, offsets: np.ndarray, flows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(len(flows), 2)`` twice: per flow and direction, whether it has packets, and whether all of
    them are atomic datagrams (DF set) of IP ID 0."""
    idx, owner, _ = _flow_rows(offsets, flows)
    r = rows[idx]
    ip = r[:, LAYOUT.cols("ipv4_id").start] != -1
    d = (r[:, COL_DIR] == 1).astype(np.int64)
    zero = ip & (get(r, "ipv4_id") == 0) & (get(r, "ipv4_dfbit") == 1)
    has = np.zeros((len(flows), 2), np.int64)
    nz = np.zeros((len(flows), 2), np.int64)
    np.add.at(has, (owner[ip], d[ip]), 1)
    np.add.at(nz, (owner[ip & ~zero], d[ip & ~zero]), 1)
    return has > 0, (has > 0) & (nz == 0)


def _sparse(a: np.ndarray) -> list[int]:
    i = np.flatnonzero(a)
    return np.stack([i, a.ravel()[i]], 1).ravel().tolist()


def fit_profiles(rows: np.ndarray, offsets: np.ndarray, labels: np.ndarray, classes: list[str],
                 vocab: dict, max_packets: int, seed: int = 0, tail: int = TAIL) -> dict:
    """Per class: ``{"flows": [K], "proto": [K], "length": [K][LENGTH_BUCKETS],
    "bands": BANDS, "spans": {name: [i, count, i, count, ...]}, "pairs": {name: [i, count, ...]},
    "id": [K][2][2]}``
    (and ``"tail": [tail, max_packets]`` with closing slots, ``tail`` > 0), the profiles
    of its training flows (k-means on the flows' value shares per :func:`by_direction` slot: the
    bands would split a flow's evidence too thin to cluster on). A span's counts form a
    ``(K, n_slots(), V)`` array, ``V`` the class's vocabulary of the span in
    :func:`engine.model.vocab.fit_vocab`'s order, stored sparse (mostly zeros: a profile uses
    few values) as its nonzero entries' flat indices (C order) and counts; a :data:`PAIRED`
    span's pairs a ``(K, V + 1, V + 1)`` array, the flows per (responder's, initiator's) value
    (:func:`direction_values`; index ``V``: no packets that way), sparse the same way; ``id`` holds per
    direction the flows that send in it and those whose IP IDs there are all 0.

    Input as in :class:`engine.model.data.FlowTable`; flows are cut to ``max_packets``."""
    from sklearn.cluster import KMeans
    offsets = np.asarray(offsets, np.int64)
    ends = np.diff(offsets) < max_packets            # the others were cut: their last rows are no closing
    lens = np.minimum(np.diff(offsets), max_packets)
    cut = np.concatenate([np.arange(a, a + n) for a, n in zip(offsets[:-1], lens)])
    rows = rows[cut]
    offsets = np.concatenate([[0], np.cumsum(lens)])
    out = {}
    for ci, c in enumerate(classes):
        flows = np.nonzero(labels == ci)[0]
        spans = {n: np.array([e[0] for e in vocab.get(c, {}).get(n, [])], np.uint64) for n in PROFILED}
        spans = {n: v for n, v in spans.items() if len(v)}
        if len(flows) < 2 * MIN_FLOWS or not spans:
            continue
        counts = {n: flow_counts(rows, offsets, flows, n, v, ends[flows], tail) for n, v in spans.items()}
        sends, zero = zero_id_groups(rows, offsets, flows)
        pairs = {}
        for n in PAIRED:
            if n in spans:
                dv = direction_values(rows, offsets, flows, n, spans[n])
                pairs[n] = dv[:, 0] * (len(spans[n]) + 1) + dv[:, 1]      # flat (V + 1, V + 1) index
        bucket = length_bucket(lens[flows])
        proto = row_proto(rows[offsets[flows]])
        # far apart by transport (10 against at most ~5 within one): a profile is of one transport,
        # so a UDP flow never draws the sizes of its class's TCP acknowledgments
        feats = [np.eye(LENGTH_BUCKETS)[bucket], 10.0 * (proto[:, None] == np.array(PROTOS)[None, :])]
        for cn in counts.values():
            cd = by_direction(cn, tail)
            tot = cd.sum(2, keepdims=True)
            feats.append(np.sqrt(cd / np.maximum(tot, 1)).reshape(len(flows), -1))   # Hellinger geometry
        X = np.concatenate(feats, 1)
        k = int(min(MAX_PROFILES, len(flows) // MIN_FLOWS, len(np.unique(X, axis=0))))
        assign = KMeans(k, n_init=4, random_state=seed).fit_predict(X) if k > 1 else np.zeros(len(X), int)
        used = np.unique(assign)
        k_of = np.searchsorted(used, assign)
        out[c] = {
            "flows": [int((assign == j).sum()) for j in used],
            "proto": [int(np.bincount(proto[assign == j]).argmax()) for j in used],
            "length": [np.bincount(bucket[assign == j], minlength=LENGTH_BUCKETS).tolist() for j in used],
            "bands": list(BANDS),
            **({"tail": [tail, int(max_packets)]} if tail else {}),
            "head_evidence": dict(HEAD_EVIDENCE),
            "spans": {n: _sparse(np.stack([cn[assign == j].sum(0) for j in used])) for n, cn in counts.items()},
            "pairs": {n: _sparse(np.stack([np.bincount(pv[assign == j], minlength=(len(spans[n]) + 1) ** 2)
                                           for j in used]))
                      for n, pv in pairs.items()},
            "id": [np.stack([sends[assign == j].sum(0), zero[assign == j].sum(0)], 1).tolist() for j in used],
            "tempo": {n: round(fit_tempo(counts[n], k_of, spans[n]), 4) for n in TEMPO_SPANS if n in counts},
            "ports": fit_profile_ports(responder_keys(rows[offsets[flows]]), k_of, len(used)),
        }
    return out


class Profiles:
    """A class's profiles as read from config.json, range-checked against its vocabulary."""

    def __init__(self, table, vocab: dict, label: str):
        def bad(what):
            return InputError(None, f"config.json: profiles of class {label!r}: {what}")
        if not isinstance(table, dict):
            raise bad("not a table")
        try:
            flows = np.asarray(table["flows"], np.float64)
            length = np.asarray(table["length"], np.float64)
            spans = {n: np.asarray(c, np.int64) for n, c in dict(table["spans"]).items()}
            pairs = {n: np.asarray(c, np.int64) for n, c in dict(table.get("pairs", {})).items()}
            ids = np.asarray(table["id"], np.float64)
            protos = np.asarray(table["proto"], np.int64)
            bands = np.asarray(table.get("bands", NO_BANDS), np.int64)
            tail = np.asarray(table.get("tail", (0, 1)), np.int64)
            head_ev = {n: float(w) for n, w in dict(table.get("head_evidence", {})).items()}
            tempo = {n: float(r) for n, r in dict(table.get("tempo", {})).items()}
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise bad(f"malformed ({e})") from None
        K = len(flows)
        if flows.ndim != 1 or K == 0 or length.shape != (K, LENGTH_BUCKETS):
            raise bad(f"want {LENGTH_BUCKETS} length buckets for each of its profiles")
        if bands.ndim != 1 or not 1 <= len(bands) <= 16 or not 1 <= bands[0] <= 16 or (np.diff(bands) <= 0).any() \
                or bands[-1] > 1 << 20:
            raise bad("bands must rise from a head of 1-16 packets, at most 16 of them")
        self.bands = tuple(int(b) for b in bands)
        if tail.shape != (2,) or not 0 <= tail[0] <= 16 or not 1 <= tail[1] <= 1 << 20:
            raise bad("tail must be [slots (0-16), the rows of a flow that was cut]")
        if any(n not in PROFILED or n in PER_DIRECTION or n in PAIRED or not 0.0 <= w <= 1.0 for n, w in head_ev.items()):
            raise bad("head_evidence: want {span: weight in [0, 1]} of spans decoded per packet")
        self.head_evidence = head_ev
        if any(n not in TEMPO_SPANS or not 0.0 <= r <= MAX_TEMPO for n, r in tempo.items()):
            raise bad(f"tempo: want {{span: share in [0, {MAX_TEMPO}]}} of spans of {TEMPO_SPANS}")
        # a table without "tempo" (written before it) draws each packet's rank on its own, as does
        # a span without slots (drawn from the class's frequencies)
        self.tempo = {n: r for n, r in tempo.items() if r > 0 and n in spans}
        # a table without "tail" (written before it) has no tail slots
        self.tail, self.cut = int(tail[0]), int(tail[1])
        S = n_slots(self.bands, self.tail)
        for n, c in spans.items():
            if n not in PROFILED:
                raise bad(f"unknown span {n!r}")
            shape = (K, S, len(vocab.get(n, [])))
            if c.ndim != 1 or len(c) % 2 or (len(c) and (c[0::2].min() < 0 or c[0::2].max() >= np.prod(shape))):
                raise bad(f"span {n!r}: want (index, count) pairs with indices below {int(np.prod(shape))}, "
                          f"its vocabulary's {shape}")
            dense = np.zeros(int(np.prod(shape)), np.float64)
            np.add.at(dense, c[0::2], c[1::2].astype(np.float64))
            spans[n] = dense.reshape(shape)
        # a table without "pairs" (written before them) draws each direction on its own
        self.pairs = {}
        for n, c in pairs.items():
            if n not in PAIRED or not vocab.get(n):
                raise bad(f"pairs of {n!r}: not a paired span of the class's vocabulary")
            W = len(vocab[n]) + 1
            if c.ndim != 1 or len(c) % 2 or (len(c) and (c[0::2].min() < 0 or c[0::2].max() >= K * W * W)
                                             or (c[1::2] < 0).any()):
                raise bad(f"pairs of {n!r}: want (index, count) pairs, counts >= 0, indices below "
                          f"{K * W * W}, its vocabulary's {(K, W, W)}")
            dense = np.zeros(K * W * W, np.float64)
            np.add.at(dense, c[0::2], c[1::2].astype(np.float64))
            dense = dense.reshape(K, W * W)
            support = np.flatnonzero(dense.sum(0))       # the pairs the class's flows have
            if len(support):
                cnt = dense[:, support]
                cls = cnt.sum(0) / cnt.sum()
                own = cnt / np.maximum(cnt.sum(1, keepdims=True), 1e-12)
                w = np.where(cnt.sum(1, keepdims=True) > 0, (1.0 - SMOOTH) * own + SMOOTH * cls, cls)
                self.pairs[n] = (support // W, support % W, np.log(np.maximum(w, 1e-300)))
        if protos.shape != (K,) or not np.isin(protos, PROTOS).all():
            raise bad(f"want a transport of {PROTOS} for each of its profiles")
        self.proto = protos
        # a table without "ports" (written before them) chooses a profile without the flow's port
        self.ports = read_profile_ports(table.get("ports"), K, bad)
        if ids.shape != (K, 2, 2):
            raise bad(f"id has shape {ids.shape}, want {(K, 2, 2)}")
        arrays = [flows, length, ids, *spans.values()]
        if not all(np.isfinite(a).all() and (a >= 0).all() for a in arrays) or flows.sum() <= 0:
            raise bad("counts must be finite and >= 0")
        if (ids[..., 1] > ids[..., 0]).any():
            raise bad("more zero-ID directions than directions")
        # share of a profile's directions that send IP ID 0 throughout (a profile without
        # flows in a direction takes the class's share)
        sends, zero = ids[..., 0], ids[..., 1]
        cls = zero.sum() / max(sends.sum(), 1.0)
        self.id_zero = np.where(sends > 0, zero / np.maximum(sends, 1.0), cls)      # (K, 2)
        self.log_flows = np.log(np.maximum(flows, 1e-12) / flows.sum())
        lp = (length + 0.5) / (length + 0.5).sum(1, keepdims=True)
        self.log_length = np.log(lp)                                       # (K, LENGTH_BUCKETS)
        self.dist = {}
        for n in list(spans):
            c = spans.pop(n)           # turned into the distribution in place: one (K, S, V) each
            base = np.asarray([e[1] if isinstance(e, (list, tuple)) else 1 for e in vocab[n]], np.float64)
            base = base / base.sum()
            if len(self.bands) > 1:
                # a band's counts with BAND_PRIOR packets of its direction's over all bands
                # (a table of one band is its direction already)
                h = self.bands[0]
                pooled = by_direction(c, self.tail, h)[:, h:, :]          # (K, 2, V)
                pdist = pooled / np.maximum(pooled.sum(2, keepdims=True), 1e-12)
                c[:, h + self.tail:, :].reshape(K, len(self.bands), 2, -1)[...] += BAND_PRIOR * pdist[:, None]
            tot = c.sum(2, keepdims=True)
            np.divide(c, np.maximum(tot, 1e-12), out=c)
            c[tot[..., 0] <= 0] = base
            c *= 1.0 - SMOOTH
            c += SMOOTH * base
            self.dist[n] = c                                              # (K, n_slots, V)
        self.log_dist = {n: np.log(c) for n, c in self.dist.items()}      # every decoded row reads it

    def __len__(self) -> int:
        return len(self.log_flows)

    def slot(self, position: np.ndarray, direction: np.ndarray, length: np.ndarray | None = None) -> np.ndarray:
        """:func:`slot` with this table's bands and tail, for packets of flows of ``length``
        packets (a flow of the table's ``cut`` rows or more has no closing; ``None``: none has)."""
        left = None
        if length is not None and self.tail:
            length = np.asarray(length)
            left = np.where(length < self.cut, length - 1 - position, -1)
        return slot(position, direction, self.bands, self.tail, left)


def choose(prof: Profiles, evidence, lengths: np.ndarray, protos: np.ndarray, u: np.ndarray,
           weight: float = EVIDENCE, rows: float | None = None, of: np.ndarray | None = None,
           ports: np.ndarray | None = None) -> np.ndarray:
    """Each flow's profile ``(B,)``, drawn with uniforms ``u`` ``(B,)`` from
    ``flows(k) * P(length bucket | k) * P(evidence | k) ** weight`` among the profiles of the
    flow's transport ``protos`` ``(B,)`` (all of them when the class has none of it), each span's
    evidence over a flow's packets weighing as ``rows`` of them (``None``: :data:`EVIDENCE_ROWS`;
    a :data:`PAIRED` span's as one packet, then that).

    ``evidence``: ``(name, ll, flow, slot)`` entries (any number per span: rows in chunks), per
    present row of the span the model's log-likelihood of each vocabulary value ``(R, V)``, the
    row's flow ``(R,)`` and
    :meth:`Profiles.slot` ``(R,)``; ``lengths`` ``(B,)`` the flows' packets.

    ``of`` ``(N,)``: draw for ``N`` flows, flow ``n`` with ``u[n]`` from the weights of flow ``of[n]``
    of the ``B`` (decoded candidates of one sample share their evidence, ``generate --decodes``).

    ``ports`` ``(B,)``: the flows' :func:`engine.model.profile_ports.responder_keys`, weighed in
    as ``P(port | k)`` where the table has its profiles' ports."""
    B = len(lengths)
    logp = np.tile(prof.log_flows, (B, 1)) + prof.log_length[:, length_bucket(lengths)].T
    if ports is not None and prof.ports is not None:
        keys, log_port = prof.ports
        logp += log_port[:, port_columns(keys, np.asarray(ports))].T
    same = prof.proto[None, :] == np.asarray(protos)[:, None]
    logp = np.where(same | ~same.any(1, keepdims=True), logp, -np.inf)
    lengths = np.asarray(lengths)
    rows = EVIDENCE_ROWS if rows is None else rows
    for name, ll, flow, d in evidence:
        if name not in prof.dist or not len(ll):
            continue
        m = ll.max(1, keepdims=True)
        e = np.exp(ll - m)                                                # (R, V)
        dist = prof.dist[name]
        mix = np.empty((len(e), len(prof)))
        for k in np.unique(d):
            mix[d == k] = e[d == k] @ dist[:, k, :].T                     # (R, K)
        term = np.log(np.maximum(mix, 1e-300)) + m
        if name in prof.pairs:              # one packet's worth (PAIRED)
            term = term / np.maximum(lengths[flow], 1)[:, None]
        term = term * np.minimum(1.0, rows / np.maximum(lengths[flow], 1))[:, None]
        np.add.at(logp, flow, weight * term)
    if of is not None:
        logp, B = logp[of], len(of)
    w = np.exp(logp - logp.max(1, keepdims=True))
    pick = draw_index(w, u)
    return np.where(w[np.arange(B), pick] > 0, pick, w.argmax(1))      # never a masked profile


def row_prior(prof: Profiles, name: str, pick: np.ndarray, flow: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``(R, V)`` log prior of the present rows of span ``name``: their flow's profile, their
    :meth:`Profiles.slot`."""
    return prof.log_dist[name][pick[flow], d]


#: uniforms a flow's profile draws take (:func:`choose`, then :func:`engine.model.profile_draws.hold_ip_id`,
#: then the tempos' normals, :data:`engine.model.tempo.TEMPO_U`)
FLOW_UNIFORMS = TEMPO_U + len(TEMPO_SPANS)

"""Flow profiles (engine.model.profiles): a flow draws its packets' values from one kind of flow."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.codec.layout import COL_DIR, LAYOUT, get, put
from engine.errors import InputError
from engine.model.profiles import LENGTH_BUCKETS, Profiles, fit_profiles, n_slots
from engine.model.vocab import SPANS, decode, fit_vocab

from conftest import ROOT

PKTS = 8


def two_kinds(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """``n`` flows of PKTS packets: the first half bulk (every packet 1500 bytes), the other
    half small (every packet 100 bytes); directions alternate."""
    rows = np.full((n * PKTS, LAYOUT.width), -1, np.int8)
    rows[:, :96] = 0
    rows[:, COL_DIR] = np.arange(n * PKTS) % 2
    put(rows, "ipv4_tl", np.repeat(np.where(np.arange(n) < n // 2, 1500, 100), PKTS))
    return rows, np.arange(0, n * PKTS + 1, PKTS)


def test_a_flow_keeps_to_one_kind():
    rows, offsets = two_kinds()
    labels = np.zeros(len(offsets) - 1, np.int64)
    vocab = fit_vocab(rows, np.repeat(labels, PKTS), ["a"])
    table = fit_profiles(rows, offsets, labels, ["a"], vocab, PKTS)["a"]
    # the model's evidence at full weight on every packet (these flows are all head: a lighter
    # head_evidence lets the slots outvote sure bits, test_the_first_packets_lean_on_their_positions_slots)
    prof = Profiles({**json.loads(json.dumps(table)), "head_evidence": {}}, vocab["a"], "a")
    tl = [e[0] for e in vocab["a"]["ipv4_tl"]]
    # every profile holds one kind of flow
    sparse = np.array(table["spans"]["ipv4_tl"])
    dense = np.zeros((len(table["flows"]), n_slots(table["bands"]), len(tl)))
    np.add.at(dense.reshape(-1), sparse[0::2], sparse[1::2])
    assert dense.sum() == len(rows)
    for counts in dense:
        assert counts.sum(0).max() == counts.sum()
    assert sum(table["flows"]) == 40 and len(table["length"][0]) == LENGTH_BUCKETS

    B = 400
    x = np.tile(rows[:PKTS].astype(np.float32), (B, 1, 1))
    x[:, :, LAYOUT.cols("ipv4_tl")] = 0.5                   # the model has no idea of the size
    rng = np.random.default_rng(0)
    u, fu = rng.random((B, PKTS, len(SPANS))), rng.random(B)

    def sizes(y):
        return get(np.rint(y).astype(np.int8).reshape(-1, LAYOUT.width), "ipv4_tl").reshape(B, PKTS)
    plain = sizes(decode(x, vocab["a"], u))
    held = sizes(decode(x, vocab["a"], u, profiles=prof, flow_u=fu))
    one_kind = lambda s: (s == s[:, :1]).all(1).mean()
    assert set(np.unique(held)) <= set(tl) and set(np.unique(plain)) <= set(tl)
    assert one_kind(plain) < 0.05                           # packet by packet: every flow mixes
    assert one_kind(held) > 0.8                             # by profile: a flow is bulk or small
    assert 0.35 < (held[:, 0] == 1500).mean() < 0.65        # and the kinds keep their shares

    # the model's evidence chooses the profile: sure bits of 100 make a small flow
    x[:, :, LAYOUT.cols("ipv4_tl")] = rows[PKTS * 30:PKTS * 31, LAYOUT.cols("ipv4_tl")]
    assert (sizes(decode(x, vocab["a"], u, profiles=prof, flow_u=fu)) == 100).mean() > 0.99


def test_later_packets_keep_their_position_band():
    """A flow's packets 4-15 are not its packets 16+: every flow opens with small packets and
    goes on with full-size ones, and decoded flows do the same by position (the first HEAD) and
    band; a table of one band after four packets (written before the bands) mixes them, as it did."""
    from engine.model.profiles import BANDS, HEAD, by_direction
    n, pk = 40, 40
    rows = np.full((n * pk, LAYOUT.width), -1, np.int8)
    rows[:, :96] = 0
    rows[:, COL_DIR] = np.arange(n * pk) % 2
    put(rows, "ipv4_tl", np.tile(np.where(np.arange(pk) < 16, 100, 1500), n))
    offsets = np.arange(0, n * pk + 1, pk)
    labels = np.zeros(n, np.int64)
    vocab = fit_vocab(rows, np.repeat(labels, pk), ["a"])
    table = json.loads(json.dumps(fit_profiles(rows, offsets, labels, ["a"], vocab, pk)["a"]))
    assert table["bands"] == list(BANDS)
    # the same counts as one band per direction: the table an older netdiff wrote
    K, tl = len(table["flows"]), [e[0] for e in vocab["a"]["ipv4_tl"]]
    sp = np.array(table["spans"]["ipv4_tl"])
    dense = np.zeros(K * n_slots() * len(tl))
    np.add.at(dense, sp[0::2], sp[1::2])
    pooled = by_direction(dense.reshape(K, n_slots(), len(tl)))            # (K, HEAD + 2, V)
    # and the first four packets by position (NO_BANDS): packets 4-7 join their direction's
    # slot (a packet's direction here is its position's parity)
    old = np.concatenate([pooled[:, :4], pooled[:, HEAD:] + pooled[:, 4:HEAD].reshape(K, -1, 2, len(tl)).sum(1)],
                         1).ravel()
    flat = np.flatnonzero(old)
    legacy = {**{k: v for k, v in table.items() if k not in ("bands", "tail")},
              "spans": {"ipv4_tl": np.stack([flat, old[flat]], 1).ravel().astype(int).tolist()}}

    B = 200
    x = np.tile(rows[:pk].astype(np.float32), (B, 1, 1))
    x[:, :, LAYOUT.cols("ipv4_tl")] = 0.5
    rng = np.random.default_rng(3)
    u, fu = rng.random((B, pk, len(SPANS))), rng.random(B)

    def sizes(t):
        y = decode(x, vocab["a"], u, profiles=Profiles(t, vocab["a"], "a"), flow_u=fu)
        return get(np.rint(y).astype(np.int8).reshape(-1, LAYOUT.width), "ipv4_tl").reshape(B, pk)
    banded, mixed = sizes(table), sizes(legacy)
    assert (banded[:, 4:16] == 100).mean() > 0.95 and (banded[:, 16:] == 1500).mean() > 0.95
    assert 0.55 < (mixed[:, 4:16] == 1500).mean() < 0.8     # one band: 24 of 36 later packets are big
    assert (banded[:, :4] == 100).mean() > 0.95 and (mixed[:, :4] == 100).mean() > 0.95


def test_a_flow_closes_as_the_class_closes():
    """The last packets of a flow that ends are their own slots: every training flow (of 10-30
    packets) ends with two small packets, and decoded flows of any length do, where the model
    has no idea of the size; a flow as long as the model's rows was cut, not closed, and a table
    without tail slots (written before them) scatters the closing sizes over the flow."""
    from engine.model.profiles import CLOSING
    rng = np.random.default_rng(5)
    lens = rng.integers(10, 31, 60)
    rows = np.full((lens.sum(), LAYOUT.width), -1, np.int8)
    rows[:, :96] = 0
    offsets = np.concatenate([[0], np.cumsum(lens)])
    pos = np.arange(lens.sum()) - np.repeat(offsets[:-1], lens)
    left = np.repeat(lens, lens) - 1 - pos
    rows[:, COL_DIR] = pos % 2
    put(rows, "ipv4_tl", np.where(left < 2, 60, 1500))
    labels = np.zeros(len(lens), np.int64)
    vocab = fit_vocab(rows, np.repeat(labels, lens), ["a"])
    table = json.loads(json.dumps(fit_profiles(rows, offsets, labels, ["a"], vocab, 64, tail=CLOSING)["a"]))
    assert table["tail"] == [CLOSING, 64]
    assert "tail" not in fit_profiles(rows, offsets, labels, ["a"], vocab, 64, tail=0)["a"]
    assert fit_profiles(rows, offsets, labels, ["a"], vocab, 64)["a"]["tail"] == [CLOSING, 64]     # the default
    legacy = {k: v for k, v in table.items() if k != "tail"}
    legacy["spans"] = {}            # no slots to carry: the class's frequencies

    B, L = 120, 64
    n = rng.integers(8, 40, B)
    n[:20] = L                      # as long as the model's rows: cut, not closed
    x = np.full((B, L, LAYOUT.width), -1, np.float32)
    present = np.arange(L)[None, :] < n[:, None]
    x[present, :96] = 0
    x[present, COL_DIR] = (np.nonzero(present)[1] % 2)
    x[present, LAYOUT.cols("ipv4_tl").start:LAYOUT.cols("ipv4_tl").stop] = 0.5
    u, fu = rng.random((B, L, len(SPANS))), rng.random(B)

    def sizes(t):
        y = decode(x, vocab["a"], u, profiles=Profiles(t, vocab["a"], "a"), flow_u=fu)
        return get(np.rint(y).astype(np.int8).reshape(-1, LAYOUT.width), "ipv4_tl").reshape(B, L)
    got = sizes(table)
    # flows of the training flows' lengths (a closing within the first HEAD packets is a head slot's)
    fit = [i for i in range(20, B) if n[i] >= lens.min()]
    ended = [got[i, n[i] - 2:n[i]] for i in fit]
    body = [got[i, 4:n[i] - 2] for i in fit]
    assert np.mean(np.concatenate(ended) == 60) > 0.95 and np.mean(np.concatenate(body) == 1500) > 0.95
    assert np.mean(got[:20, L - 2:] == 1500) > 0.9          # cut flows: no closing at the cut
    plain = sizes(legacy)
    assert np.mean(np.concatenate([plain[i, n[i] - 2:n[i]] for i in range(20, B)]) == 60) < 0.5


def test_the_first_packets_lean_on_their_positions_slots():
    """Within a profile's first HEAD packets the model's evidence on a size weighs
    ``head_evidence``: every training flow sends 400 bytes at packets 3 and 9 and 100 elsewhere,
    the model is sure of 100 everywhere; at weight 0 packet 3 takes its slot's 400, packet 9 (a
    band's) stays the model's; a table without the key (written before it) keeps the model's."""
    from engine.model.profiles import HEAD, HEAD_EVIDENCE
    n, pk = 40, 12
    rows = np.full((n * pk, LAYOUT.width), -1, np.int8)
    rows[:, :96] = 0
    rows[:, COL_DIR] = np.arange(n * pk) % 2
    put(rows, "ipv4_tl", np.tile(np.where(np.isin(np.arange(pk), (3, 9)), 400, 100), n))
    offsets = np.arange(0, n * pk + 1, pk)
    labels = np.zeros(n, np.int64)
    vocab = fit_vocab(rows, np.repeat(labels, pk), ["a"])
    table = json.loads(json.dumps(fit_profiles(rows, offsets, labels, ["a"], vocab, pk)["a"]))
    assert HEAD == 8 and table["head_evidence"] == HEAD_EVIDENCE
    B = 100
    x = np.tile(rows[:pk].astype(np.float32), (B, 1, 1))
    x[:, :, LAYOUT.cols("ipv4_tl")] = rows[0, LAYOUT.cols("ipv4_tl")]          # sure bits of 100
    rng = np.random.default_rng(4)
    u, fu = rng.random((B, pk, len(SPANS))), rng.random(B)

    def sizes(t):
        y = decode(x, vocab["a"], u, profiles=Profiles(t, vocab["a"], "a"), flow_u=fu)
        return get(np.rint(y).astype(np.int8).reshape(-1, LAYOUT.width), "ipv4_tl").reshape(B, pk)
    light = sizes({**table, "head_evidence": {"ipv4_tl": 0.0}})
    full = sizes({k: v for k, v in table.items() if k != "head_evidence"})
    assert (light[:, 3] == 400).mean() > 0.95 and (light[:, 9] == 100).all()
    assert (full[:, 3] == 100).all() and (full[:, 9] == 100).all()
    assert (light[:, [0, 1, 2, 4]] == 100).mean() > 0.95


def test_ip_ids_count_or_stay_zero():
    """A profile decides each direction's IP IDs: all 0 with DF set (as many directions as its
    training flows had), else a counter from a random start."""
    from engine.model.profiles import FLOW_UNIFORMS
    rows, offsets = two_kinds()
    small = rows[:, LAYOUT.cols("ipv4_tl")] == np.array([int(c) for c in f"{100:016b}"])
    put(rows, "ipv4_id", np.arange(len(rows)) + 1000)
    put(rows, "ipv4_dfbit", 1)
    zero = small.all(1) & (rows[:, COL_DIR] == 1)               # small flows: one side sends ID 0
    rows[zero, LAYOUT.cols("ipv4_id")] = 0
    labels = np.zeros(len(offsets) - 1, np.int64)
    vocab = fit_vocab(rows, np.repeat(labels, PKTS), ["a"])
    prof = Profiles(fit_profiles(rows, offsets, labels, ["a"], vocab, PKTS)["a"], vocab["a"], "a")
    B = 200
    x = np.tile(rows[:PKTS].astype(np.float32), (B, 1, 1))
    x[:, :, LAYOUT.cols("ipv4_tl")] = 0.5
    x[:, :, LAYOUT.cols("ipv4_id")] = 0.5
    x[:, :, LAYOUT.cols("ipv4_dfbit")] = 0.3
    rng = np.random.default_rng(2)
    y = np.rint(decode(x, vocab["a"], rng.random((B, PKTS, len(SPANS))), profiles=prof,
                       flow_u=rng.random((B, FLOW_UNIFORMS)))).astype(np.int8)
    n_zero = 0
    for f in y:
        size, ids, d = get(f, "ipv4_tl"), get(f, "ipv4_id").astype(np.int64), f[:, COL_DIR]
        for side in (0, 1):
            v = ids[d == side]
            if (v == 0).all():
                n_zero += 1
                assert side == 1 and (size == 100).mean() > 0.5 and (get(f, "ipv4_dfbit")[d == side] == 1).all()
            else:
                assert ((np.diff(v) % 65536) == 1).all()
    assert 0.3 * B < n_zero < 0.7 * B                            # the small flows' share, about half


def test_a_flow_draws_its_two_hosts_ttls_as_one_pair(monkeypatch):
    """A flow's TTLs are its two hosts': which pair is one choice. The class here has two kinds of
    two-way flows, (initiator 64, responder 64) and (128, 55), and one-way flows of TTL 1, all in
    one profile. Drawn per direction, flows mix the kinds ((64, 55), (128, 64))
    and one-way flows take two-way TTLs; drawn as pairs, every flow has a pair of its class, of
    its directions, each kind by its share, and the model's sure bits pick the pair."""
    import engine.model.profiles as profiles
    monkeypatch.setattr(profiles, "MAX_PROFILES", 1)
    n, pk = 18, 6
    kind = np.arange(n) % 3                        # 0: (64, 64), 1: (128, 55), 2: one-way TTL 1
    rows = np.full((n * pk, LAYOUT.width), -1, np.int8)
    rows[:, :96] = 0
    init = np.repeat(kind == 2, pk) | (np.arange(n * pk) % 2 == 0)
    rows[:, COL_DIR] = init
    ttl = np.where(init, np.array([64, 128, 1])[np.repeat(kind, pk)], np.array([64, 55, 0])[np.repeat(kind, pk)])
    put(rows, "ipv4_ttl", ttl)
    put(rows, "ipv4_tl", np.full(n * pk, 100))
    offsets = np.arange(0, n * pk + 1, pk)
    labels = np.zeros(n, np.int64)
    vocab = fit_vocab(rows, np.repeat(labels, pk), ["a"])
    table = json.loads(json.dumps(fit_profiles(rows, offsets, labels, ["a"], vocab, pk)["a"]))
    assert len(table["flows"]) == 1 and "ipv4_ttl" in table["pairs"]
    per_direction = Profiles({k: v for k, v in table.items() if k != "pairs"}, vocab["a"], "a")
    paired = Profiles(table, vocab["a"], "a")

    B = 600
    rng = np.random.default_rng(0)
    x = np.tile(rows[:pk].astype(np.float32), (B, 1, 1))              # two-way flows ...
    x[B // 2:] = rows[2 * pk:3 * pk]                                    # ... and one-way ones
    x[:, :, LAYOUT.cols("ipv4_ttl")] = 0.5                              # the model has no idea
    u, fu = rng.random((B, pk, len(SPANS))), rng.random(B)

    def pairs(y):
        y = np.rint(y).astype(np.int8)
        t = get(y.reshape(-1, LAYOUT.width), "ipv4_ttl").reshape(B, pk)
        d = y[:, :, COL_DIR] == 1
        assert ((t == t[:, :1]) | ~d).all() and ((t == t[:, 1:2]) | d).all()     # one TTL per side
        return [(int(t[b][d[b]][0]), int(t[b][~d[b]][0]) if (~d[b]).any() else None) for b in range(B)]
    got = pairs(decode(x, vocab["a"], u, profiles=paired, flow_u=fu))
    assert set(got[:B // 2]) == {(64, 64), (128, 55)} and set(got[B // 2:]) == {(1, None)}
    assert 0.35 < np.mean([p == (64, 64) for p in got[:B // 2]]) < 0.65
    mixed = pairs(decode(x, vocab["a"], u, profiles=per_direction, flow_u=fu))
    assert np.mean([p in ((64, 55), (128, 64)) for p in mixed[:B // 2]]) > 0.2
    assert np.mean([p[0] != 1 for p in mixed[B // 2:]]) > 0.3

    # the model's sure bits of a responder TTL 55 decide the pair: (128, 55)
    x[:B // 2, 1::2, LAYOUT.cols("ipv4_ttl")] = rows[pk + 1, LAYOUT.cols("ipv4_ttl")]
    got = pairs(decode(x, vocab["a"], u, profiles=paired, flow_u=fu))
    assert np.mean([p == (128, 55) for p in got[:B // 2]]) > 0.99


def test_a_flow_keeps_one_tos_per_direction_where_its_table_pairs_tos(monkeypatch):
    """A host marks a connection's packets alike: half the class's flows answer with ToS 32, half
    with 0, the initiators send 0. With ToS pairs in the table every flow keeps one ToS per
    direction, each kind by its share; a table fitted before ToS was paired draws per packet."""
    import engine.model.profiles as profiles
    monkeypatch.setattr(profiles, "MAX_PROFILES", 1)
    n, pk = 20, 6
    rows = np.full((n * pk, LAYOUT.width), -1, np.int8)
    rows[:, :96] = 0
    init = np.arange(n * pk) % 2 == 0
    rows[:, COL_DIR] = init
    marked = np.repeat(np.arange(n) % 2 == 1, pk) & ~init
    put(rows, "ipv4_tos", np.where(marked, 32, 0))
    put(rows, "ipv4_ttl", np.full(n * pk, 64))
    put(rows, "ipv4_tl", np.full(n * pk, 100))
    offsets = np.arange(0, n * pk + 1, pk)
    labels = np.zeros(n, np.int64)
    vocab = fit_vocab(rows, np.repeat(labels, pk), ["a"])
    table = json.loads(json.dumps(fit_profiles(rows, offsets, labels, ["a"], vocab, pk)["a"]))
    assert set(table["pairs"]) == {"ipv4_ttl", "ipv4_tos"}
    before = {**table, "pairs": {"ipv4_ttl": table["pairs"]["ipv4_ttl"]}}

    B = 400
    rng = np.random.default_rng(1)
    x = np.tile(rows[:pk].astype(np.float32), (B, 1, 1))
    x[:, :, LAYOUT.cols("ipv4_tos")] = 0.5                             # the model has no idea
    u, fu = rng.random((B, pk, len(SPANS))), rng.random(B)

    def tos(t):
        y = np.rint(decode(x, vocab["a"], u, profiles=Profiles(t, vocab["a"], "a"), flow_u=fu)).astype(np.int8)
        return get(y.reshape(-1, LAYOUT.width), "ipv4_tos").reshape(B, pk)
    got = tos(table)
    assert (got[:, 0::2] == 0).all()                                    # the initiators' only value
    resp = got[:, 1::2]
    assert (resp == resp[:, :1]).all() and 0.35 < (resp[:, 0] == 32).mean() < 0.65
    mixed = tos(before)[:, 1::2]
    assert (mixed != mixed[:, :1]).any(1).mean() > 0.5


def test_the_models_evidence_weighs_as_a_few_packets_in_the_choice_of_profile():
    """Half the class's flows are bulk, half small; the model leans a little to bulk on every
    packet (soft bits 0.6 of the way). Counted once per packet that lean picks bulk for nearly
    every flow; weighed as a quarter of a packet (the shipped EVIDENCE_ROWS) it tilts the
    shares, and sure bits move it further."""
    from engine.model.profiles import EVIDENCE_ROWS
    from engine.model.vocab import _choose_profiles
    rows, offsets = two_kinds()
    labels = np.zeros(len(offsets) - 1, np.int64)
    vocab = fit_vocab(rows, np.repeat(labels, PKTS), ["a"])
    prof = Profiles(json.loads(json.dumps(fit_profiles(rows, offsets, labels, ["a"], vocab, PKTS)["a"])),
                    vocab["a"], "a")
    B = 400
    x = np.tile(rows[:PKTS].astype(np.float32), (B, 1, 1))
    x[:, :, LAYOUT.cols("ipv4_tl")] = 0.4 + 0.2 * rows[:PKTS, LAYOUT.cols("ipv4_tl")]   # bits of 1500, unsure
    fu = np.random.default_rng(1).random(B)
    lengths = np.full(B, PKTS)
    flat = x.reshape(-1, LAYOUT.width)
    tl = LAYOUT.cols("ipv4_tl")

    def bulk(rows_, sure=False):
        y = flat.copy()
        if sure:
            y[:, tl] = np.tile(rows[:PKTS, tl], (B, 1))
        pick = _choose_profiles(y, PKTS, vocab["a"], prof, fu, lengths, rows=rows_)
        big = np.array([prof.dist["ipv4_tl"][k].sum(0).argmax() for k in range(len(prof))])
        return (np.array([e[0] for e in vocab["a"]["ipv4_tl"]])[big[pick]] == 1500).mean()
    assert EVIDENCE_ROWS is not None and EVIDENCE_ROWS < 1
    every = bulk(np.inf)
    tilted = bulk(EVIDENCE_ROWS)
    assert every > 0.95
    assert 0.5 < tilted < 0.8
    assert bulk(EVIDENCE_ROWS, sure=True) > tilted + 0.05


def test_a_flow_takes_a_profile_of_its_transport():
    """Profiles are of one transport; a UDP flow never draws from its class's TCP profiles."""
    from engine.model.profiles import choose
    table = {"flows": [90, 10], "proto": [6, 17], "length": [[1] * LENGTH_BUCKETS] * 2,
             "spans": {}, "id": [[[1, 0], [1, 0]]] * 2}
    prof = Profiles(table, {}, "a")
    u = np.random.default_rng(0).random(400)
    protos = np.repeat([6, 17, 1], [200, 100, 100])
    pick = choose(prof, [], np.full(400, 8), protos, u)
    assert (pick[:200] == 0).all() and (pick[200:300] == 1).all()
    assert 0.8 < (pick[300:] == 0).mean() < 0.98              # no ICMP profile: any, by its share


def test_profiles_of_the_shipped_checkpoint_load():
    cfg = json.loads((ROOT / "engine" / "default_model" / "config.json").read_text())
    assert {"youtube", "zoom", "tls_https", "netflix"} <= set(cfg["profiles"])
    for c, table in cfg["profiles"].items():
        assert len(Profiles(table, cfg["vocab"][c], c)) >= 2


OK_ID = [[[2, 1], [2, 0]]]


@pytest.mark.parametrize("table, why", [
    ([1, 2], "not a table"),
    ({"flows": [1]}, "malformed"),
    ({"flows": [1], "proto": [5], "length": [[0] * LENGTH_BUCKETS], "spans": {}, "id": OK_ID}, "transport"),
    ({"flows": [1], "proto": [6], "length": [[0] * 3], "spans": {}, "id": OK_ID}, "length buckets"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {"ipv4_tl": [[[1], [1]]]}, "id": OK_ID}, "pairs"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {"ipv4_tl": [12, 1]}, "id": OK_ID},
     "indices below 12"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {"ipv4_tl": [0, -1, 3, 2]}, "id": OK_ID},
     "finite and >= 0"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {"icmp_type": [0, 1]}, "id": OK_ID},
     "unknown span"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {}, "id": [[1, 0]]}, "id has shape"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {}, "id": [[[1, 2], [1, 0]]]}, "more zero-ID"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {}, "id": [[[1, 0], [float("nan"), 0]]]}, "finite"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "bands": [0, 8], "spans": {}, "id": OK_ID}, "bands must"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "bands": [4, 8, 8], "spans": {}, "id": OK_ID}, "bands must"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "bands": list(range(4, 40)), "spans": {}, "id": OK_ID},
     "bands must"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "bands": "4", "spans": {}, "id": OK_ID}, "bands must"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "tail": [17, 64], "spans": {}, "id": OK_ID},
     "tail must"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "tail": [4, 0], "spans": {}, "id": OK_ID},
     "tail must"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "tail": [4], "spans": {}, "id": OK_ID},
     "tail must"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "tail": "4", "spans": {}, "id": OK_ID},
     "tail must"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "bands": [4, 2 ** 70], "spans": {}, "id": OK_ID},
     "malformed"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "bands": [4, 8], "spans": {"ipv4_tl": [16, 1]},
      "id": OK_ID}, "indices below 16"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {"ipv4_ttl": []},
      "pairs": {"ipv4_ttl": [9, 1]}, "id": OK_ID}, "indices below 9"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {"ipv4_ttl": []},
      "pairs": {"ipv4_ttl": [0, -2]}, "id": OK_ID}, "counts >= 0"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {"ipv4_ttl": []},
      "pairs": {"ipv4_tl": [0, 1]}, "id": OK_ID}, "not a paired span"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {}, "pairs": [1], "id": OK_ID},
     "malformed"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {}, "id": OK_ID,
      "head_evidence": {"ipv4_ttl": 0.5}}, "head_evidence"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {}, "id": OK_ID,
      "head_evidence": {"ipv4_tl": 2}}, "head_evidence"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {}, "id": OK_ID,
      "head_evidence": {"ipv4_tl": "x"}}, "malformed"),
    ({"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "spans": {}, "id": OK_ID,
      "head_evidence": [1]}, "malformed"),
])
def test_hostile_profiles_get_one_line(table, why):
    with pytest.raises(InputError, match=why) as e:
        Profiles(table, {"ipv4_tl": [[100, 3], [1500, 2]], "ipv4_ttl": [[64, 3], [55, 1]]}, "a")
    assert "\n" not in str(e.value) and "profiles of class 'a'" in str(e.value)


def test_a_refit_changes_what_a_resume_must_match():
    """generate's resume fingerprint covers the sampling tables, not only the weights: a refit
    (new profiles, new calibration) changes the bytes, so a run begun before it is not resumed."""
    from engine.datasets.partial import fingerprint
    from engine.datasets.request import GenerationRequest
    from engine.model.checkpoint import tables_hash
    cfg = json.loads((ROOT / "engine" / "default_model" / "config.json").read_text())
    other = {**cfg, "profiles": {**cfg["profiles"], "zoom": {**cfg["profiles"]["zoom"], "flows": [1] * 16}}}
    assert tables_hash(cfg) == tables_hash(json.loads(json.dumps(cfg)))
    assert tables_hash(cfg) != tables_hash(other)
    req = GenerationRequest(label="zoom", count=3)
    fp = lambda c: fingerprint(req, "w", 20, 1.0, None, 64, "fp32", tables_hash(c))   # noqa: E731
    assert fp(cfg) != fp(other) and fp(cfg) == fp(cfg)


def test_count_below_is_the_comparison_it_replaces():
    """The decoder's draw (how many cumulative weights lie below a threshold) by binary search
    counts what the (rows, values) comparison counts: ties, flat runs of zero weights, a masked
    row (NaN), thresholds at a row's total, rows read through an index."""
    from engine.model.vocab import count_below
    rng = np.random.default_rng(3)
    for V in (1, 2, 3, 7, 1024):
        w = rng.random((300, V)) * (rng.random((300, V)) > 0.4)
        w[0], w[1] = 0.0, np.nan
        cdf = np.cumsum(w, 1)
        of = rng.integers(0, 300, 900)
        t = rng.random(900) * np.nan_to_num(cdf[of, -1], nan=1.0) * 1.1
        t[:9] = cdf[of[:9], rng.integers(0, V, 9)]
        assert np.array_equal(count_below(cdf, t, of), (cdf[of] < t[:, None]).sum(1))
        assert np.array_equal(count_below(cdf, t[:300]), (cdf < t[:300, None]).sum(1))

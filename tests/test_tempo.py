"""A flow's tempo (engine.model.tempo): the packets of a flow share their gaps' rank."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import ndtr

from engine.codec.layout import LAYOUT, put
from engine.errors import InputError
from engine.model.profiles import FLOW_UNIFORMS, LENGTH_BUCKETS, Profiles, fit_profiles
from engine.model.tempo import MAX_TEMPO, TEMPO_SPANS, TEMPO_U, fit_tempo, paced
from engine.model.vocab import SPANS, decode, fit_vocab

GAP = SPANS["meta_iat_coarse"]
LEVELS = np.arange(10, 40, dtype=np.int64)          # gap codes' top 8 bits: 30 sizes of gap


def copula_counts(rho: float, flows: int, rng, slots: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per flow, slot and value the packets of flows whose ranks share a normal by ``rho``, each
    slot its own distribution over ``LEVELS`` (listed most frequent first, as a vocabulary is)."""
    V = len(LEVELS)
    p = rng.dirichlet(np.full(V, 0.5), size=slots)                     # (S, V) over increasing values
    n = rng.integers(2, 80, flows)
    owner = np.repeat(np.arange(flows), n)
    s = rng.integers(0, slots, len(owner))
    u = ndtr(np.sqrt(rho) * rng.normal(size=flows)[owner] + np.sqrt(1 - rho) * rng.normal(size=len(owner)))
    k = np.minimum((np.cumsum(p, 1)[s] < u[:, None]).sum(1), V - 1)     # index in increasing order
    vocab_order = rng.permutation(V)                                   # the vocabulary's own order
    counts = np.zeros((flows, slots, V))
    np.add.at(counts, (owner, s, np.argsort(vocab_order)[k]), 1)
    return counts, LEVELS[vocab_order], p


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.7])
def test_the_fit_finds_the_share_the_flows_were_drawn_with(rho):
    counts, values, _ = copula_counts(rho, 400, np.random.default_rng(1))
    assert abs(fit_tempo(counts, np.zeros(400, np.int64), values) - rho) < 0.07


def test_each_profile_ranks_within_its_own_distribution():
    """Two profiles, one of short gaps and one of long, each drawn without a pace: as two
    profiles their flows keep none; pooled as one, being in one or the other looks like a pace."""
    rng = np.random.default_rng(2)
    a, values, _ = copula_counts(0.0, 300, rng)
    b, _, _ = copula_counts(0.0, 300, rng)
    V = len(values)
    both = np.zeros((600, a.shape[1], 2 * V))
    both[:300, :, :V], both[300:, :, V:] = a, b
    both_values = np.concatenate([values, values + 100])
    assert fit_tempo(both, np.repeat([0, 1], 300), both_values) < 0.05
    assert fit_tempo(both, np.zeros(600, np.int64), both_values) > 0.5


def test_paced_uniforms_stay_uniform_and_share_a_rank():
    rng = np.random.default_rng(3)
    z = np.repeat(rng.normal(size=2000), 10)
    u = rng.random(len(z))
    for rho in (0.0, 0.5):
        got = paced(u, z, rho)
        assert ((got >= 0) & (got < 1)).all()
        assert abs(np.mean(got) - 0.5) < 0.01 and abs(np.var(got) - 1 / 12) < 0.003
        per_flow = got.reshape(-1, 10).mean(1)
        # uniform packets: a flow mean's variance is 1/120; shared ranks make it larger
        assert (per_flow.var() > 0.03) == (rho > 0)


def paced_flows(n: int = 60, pkts: int = 24, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``n`` flows of ``pkts`` packets whose gaps share each flow's rank (tempo 0.8)."""
    rng = np.random.default_rng(seed)
    rows = np.full((n * pkts, LAYOUT.width), -1, np.int8)
    rows[:, :96] = 0
    rows[:, LAYOUT.cols("meta_iat")] = 0
    owner = np.repeat(np.arange(n), pkts)
    u = ndtr(np.sqrt(0.8) * rng.normal(size=n)[owner] + np.sqrt(0.2) * rng.normal(size=len(owner)))
    put(rows, "meta_iat", LEVELS[np.minimum((u * len(LEVELS)).astype(int), len(LEVELS) - 1)] << 8)
    rows[:, LAYOUT.cols("meta_iat").start + 8:LAYOUT.cols("meta_iat").stop] = 0
    return rows, np.arange(0, n * pkts + 1, pkts)


def test_a_fitted_table_paces_its_flows_and_keeps_the_values_shares():
    rows, offsets = paced_flows()
    labels = np.zeros(len(offsets) - 1, np.int64)
    pkts = int(offsets[1])
    vocab = fit_vocab(rows, np.repeat(labels, pkts), ["a"])
    table = json.loads(json.dumps(fit_profiles(rows, offsets, labels, ["a"], vocab, pkts)["a"]))
    # the profiles (clusters of the flows by their values) hold part of the pace, the tempo the rest
    assert table["tempo"]["meta_iat_coarse"] > 0.15
    B = 600
    rng = np.random.default_rng(5)
    x = np.tile(rows[:pkts].astype(np.float32), (B, 1, 1))
    x[:, :, GAP] = 0.5                                         # the model has no idea of the gap
    u, fu = rng.random((B, pkts, len(SPANS))), rng.random((B, FLOW_UNIFORMS))

    def gaps(tempo):
        prof = Profiles({**table, "tempo": tempo}, vocab["a"], "a")
        y = np.rint(decode(x, vocab["a"], u, profiles=prof, flow_u=fu)).astype(np.int64)[:, 1:, GAP]
        return (y * (1 << np.arange(7, -1, -1))).sum(-1)        # (B, pkts - 1) top code bits
    alone, together = gaps({}), gaps(table["tempo"])
    share = lambda g: g.mean(1).var() / g.var()                 # noqa: E731
    real = (rows[:, GAP].astype(np.int64) * (1 << np.arange(7, -1, -1))).sum(-1).reshape(-1, pkts)[:, 1:]
    # the flows' share of the gaps' spread: the profiles alone keep part of the training flows'
    # (0.64 against 0.78), with the tempo it comes at least half the rest of the way
    assert share(alone) < share(together)
    assert abs(share(together) - share(real)) < 0.5 * abs(share(alone) - share(real))
    # every packet still draws from its slot's distribution: the values' shares stay
    for level in (LEVELS[3], LEVELS[15], LEVELS[27]):
        assert abs((alone == level).mean() - (together == level).mean()) < 0.015
    # the flow's uniform decides its pace: a flow of a high uniform has long gaps
    hi, lo = fu[:, TEMPO_U + TEMPO_SPANS.index("meta_iat_coarse")] > 0.8, fu[:, TEMPO_U + TEMPO_SPANS.index("meta_iat_coarse")] < 0.2
    assert together[hi].mean() > together[lo].mean() + 4


BASE = {"flows": [1], "proto": [6], "length": [[0] * LENGTH_BUCKETS], "id": [[[2, 1], [2, 0]]]}


@pytest.mark.parametrize("extra, why", [
    ({"spans": {}, "tempo": {"ipv4_ttl": 0.5}}, "tempo"),
    ({"spans": {"meta_iat_coarse": [0, 1]}, "tempo": {"meta_iat_coarse": MAX_TEMPO + 0.01}}, "tempo"),
    ({"spans": {"meta_iat_coarse": [0, 1]}, "tempo": {"meta_iat_coarse": float("nan")}}, "tempo"),
    ({"spans": {"meta_iat_coarse": [0, 1]}, "tempo": {"meta_iat_coarse": "x"}}, "malformed"),
])
def test_hostile_tempo_gets_one_line(extra, why):
    vocab = {"ipv4_tl": [[100, 3]], "ipv4_ttl": [[64, 3]], "meta_iat_coarse": [[12, 3], [20, 1]]}
    with pytest.raises(InputError, match=why) as e:
        Profiles({**BASE, **extra}, vocab, "a")
    assert "\n" not in str(e.value)


def test_a_table_without_tempo_draws_each_packet_on_its_own():
    vocab = {"meta_iat_coarse": [[12, 3], [20, 1]]}
    assert Profiles({**BASE, "spans": {"meta_iat_coarse": [0, 1]}}, vocab, "a").tempo == {}


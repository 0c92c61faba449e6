"""A flow's responder port weighs in the choice of its profile (engine.model.profile_ports)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.codec.layout import COL_DIR, LAYOUT, put
from engine.codec.matrix import TRANSPORT_COLS
from engine.errors import InputError
from engine.model.profile_ports import (PORT_PRIOR, fit_profile_ports, port_columns, read_profile_ports,
                                        responder_keys)
from engine.model.profiles import FLOW_UNIFORMS, LENGTH_BUCKETS, Profiles, fit_profiles
from engine.model.vocab import SPANS, decode, fit_vocab


def first_row(proto: int, sport: int, dport: int, initiator: bool) -> np.ndarray:
    r = np.full((1, LAYOUT.width), -1, np.int8)
    r[:, :96] = 0                                       # an IPv4 header
    r[:, TRANSPORT_COLS[proto]] = 0
    names = ("tcp_sprt", "tcp_dprt") if proto == 6 else ("udp_sport", "udp_dport")
    put(r, names[0], sport)
    put(r, names[1], dport)
    r[:, COL_DIR] = int(initiator)
    return r


def test_the_responders_port_is_the_first_packets_destination_when_the_initiator_sent_it():
    rows = np.concatenate([first_row(6, 50000, 443, True), first_row(17, 53, 61000, False),
                           np.full((1, LAYOUT.width), -1, np.int8)])
    assert responder_keys(rows).tolist() == [6 * 65536 + 443, 17 * 65536 + 53, -1]
    # the rows-at-once form of the one-flow reading the port tables use
    from engine.model.ports import flow_ports
    for r, key in zip(rows[:2], responder_keys(rows[:2])):
        p, _, responder = flow_ports(r[None])
        assert key == p * 65536 + responder


def test_port_columns_round_trip_and_others():
    keys = np.array([17 * 65536 + 53, 6 * 65536 + 443])
    flows = np.array([6 * 65536 + 443, 17 * 65536 + 53, 6 * 65536 + 80, -1])
    assert port_columns(keys, flows).tolist() == [1, 0, 2, 2]
    assert port_columns(keys[:0], flows).tolist() == [0, 0, 0, 0]


def test_the_fit_keeps_ports_of_several_flows_most_used_first():
    keys = np.array([6 * 65536 + 443] * 5 + [17 * 65536 + 53] * 3 + [6 * 65536 + 8080] + [-1])
    assign = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    t = json.loads(json.dumps(fit_profile_ports(keys, assign, 2)))
    assert t["keys"] == [[6, 443], [17, 53]]
    got, log_share = read_profile_ports(t, 2, lambda w: InputError(None, w))
    share = np.exp(log_share)
    assert np.allclose(share.sum(1), 1.0)
    # profile 0: 4 flows to 443 and one "other"; profile 1: one 443, three 53, one other
    assert share[0, 0] > 0.6 and share[1, 1] > 0.4 and share[0, 1] < 0.15
    assert share[0, 1] > 0                                   # leaning on the class: never impossible
    assert abs(share[0, 1] - PORT_PRIOR * 3 / 10 / (5 + PORT_PRIOR)) < 0.01


def two_services(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """``n`` UDP flows of 2 packets: half to port 53 whose answers come back with TTL 64, half to
    port 443 whose answers come with TTL 55 (each half its own profile)."""
    rows = np.concatenate([np.concatenate([first_row(17, 40000 + i, 53 if i < n // 2 else 443, True),
                                           first_row(17, 53 if i < n // 2 else 443, 40000 + i, False)])
                           for i in range(n)])
    put(rows, "ipv4_ttl", np.where(np.repeat(np.arange(n) < n // 2, 2) & (np.arange(2 * n) % 2 == 1), 64,
                                   np.where(np.arange(2 * n) % 2 == 1, 55, 64)))
    put(rows, "ipv4_tl", np.where(np.arange(2 * n) % 2 == 0, 60, 90))
    return rows, np.arange(0, 2 * n + 1, 2)


@pytest.mark.parametrize("with_ports", [True, False])
def test_a_dns_flow_takes_a_dns_profile(with_ports):
    """The model has no idea of the TTL: with the profiles' ports, a flow held to port 53 draws
    the resolver's TTL; without, half of them draw the remote server's."""
    rows, offsets = two_services()
    labels = np.zeros(len(offsets) - 1, np.int64)
    vocab = fit_vocab(rows, np.repeat(labels, 2), ["a"])
    table = json.loads(json.dumps(fit_profiles(rows, offsets, labels, ["a"], vocab, 64)["a"]))
    assert len(table["flows"]) >= 2
    if not with_ports:
        del table["ports"]
    prof = Profiles(table, vocab["a"], "a")
    B = 200
    x = np.tile(rows[:2].astype(np.float32), (B, 1, 1))           # every flow held to port 53
    x[:, :, LAYOUT.cols("ipv4_ttl")] = 0.5
    rng = np.random.default_rng(7)
    y = decode(x, vocab["a"], rng.random((B, 2, len(SPANS))), profiles=prof, flow_u=rng.random((B, FLOW_UNIFORMS)))
    ttl = (np.rint(y[:, 1, LAYOUT.cols("ipv4_ttl")]).astype(np.int64) * (1 << np.arange(7, -1, -1))).sum(-1)
    resolver = (ttl == 64).mean()
    assert resolver > 0.9 if with_ports else resolver < 0.8


BASE = {"flows": [1, 1], "proto": [17, 17], "length": [[0] * LENGTH_BUCKETS] * 2, "spans": {},
        "id": [[[2, 1], [2, 0]]] * 2}


@pytest.mark.parametrize("ports, why", [
    ({"keys": [[6, 443]]}, "malformed"),
    ({"keys": [[6, 443]], "counts": [0, 1, 4, 1]}, "indices below 4"),
    ({"keys": [[6, 443]], "counts": [0, -1]}, "counts >= 0"),
    ({"keys": [[1, 443]], "counts": []}, "keys"),
    ({"keys": [[6, 70000]], "counts": []}, "keys"),
    ({"keys": "x", "counts": []}, "malformed"),
])
def test_hostile_port_tables_get_one_line(ports, why):
    with pytest.raises(InputError, match=why) as e:
        Profiles({**BASE, "ports": ports}, {}, "a")
    assert "\n" not in str(e.value) and "profiles of class 'a'" in str(e.value)


def test_the_shipped_youtube_dns_flows_take_the_resolvers_profile():
    """In the shipped tables a youtube flow held to UDP port 53 is chosen into a profile whose
    responders answer with TTL 64 (the host's resolver), not a remote server's 52-56."""
    from conftest import ROOT
    cfg = json.loads((ROOT / "engine" / "default_model" / "config.json").read_text())
    vocab = cfg["vocab"]["youtube"]
    prof = Profiles(cfg["profiles"]["youtube"], vocab, "youtube")
    keys, log_port = prof.ports
    dns = port_columns(keys, np.array([17 * 65536 + 53]))[0]
    assert dns < len(keys)
    k = int(np.argmax(log_port[:, dns] + prof.log_flows))
    responder, _, logw = prof.pairs["ipv4_ttl"]
    ttl = [e[0] for e in vocab["ipv4_ttl"]]
    assert ttl[responder[np.argmax(logw[k])]] == 64

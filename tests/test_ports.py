"""Ports are values, not bits: the port prior (engine.model.ports) and evaluate's port group."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from engine.codec.layout import LAYOUT, get, put
from engine.codec.matrix import FlowMeta
from engine.evaluate.data import FlowSet
from engine.evaluate.ports import port_fidelity
from engine.model.ports import (draw_ports, fit_port_table, flow_ports, pattern, port_counts, server_port,
                                write_ports)

COL_DIR = LAYOUT.cols("meta_direction").start


def _flow(proto: int, sport: int, dport: int, n: int = 4, first_fwd: bool = True) -> np.ndarray:
    """A flow of ``n`` packets alternating direction, its first packet ``sport -> dport``."""
    m = np.full((n, LAYOUT.width), -1, np.int8)
    blk = LAYOUT.block("tcp" if proto == 6 else "udp")
    m[:, blk.start:blk.stop] = 0
    m[:, LAYOUT.cols("ipv4_proto")] = 0
    put(m, "ipv4_proto", proto, np.arange(n))
    fwd = np.arange(n) % 2 == (0 if first_fwd else 1)
    m[:, COL_DIR] = fwd
    a, b = ("tcp_sprt", "tcp_dprt") if proto == 6 else ("udp_sport", "udp_dport")
    ini, res = (sport, dport) if first_fwd else (dport, sport)
    put(m, a, np.where(fwd, ini, res), np.arange(n))
    put(m, b, np.where(fwd, res, ini), np.arange(n))
    return m


def test_server_side_and_client_pattern():
    flows = [(17, 50000 + i, 53) for i in range(5)] + [(17, 123, 123), (6, 443, 61160), (6, 61160, 443)]
    flows += [(6, 40000, 443)] * 3
    c = port_counts(flows)
    assert server_port(17, 50001, 53, c) == 53
    assert server_port(6, 443, 61160, c) == 443                       # a capture that starts mid-flow
    assert pattern(17, 50001, 53, c) == (0, 53)                       # the client's port is ephemeral
    assert pattern(6, 443, 61160, c) == (443, 0)                      # the server's side is kept
    assert pattern(17, 123, 123, c) == (123, 123)                     # fixed client ports stay
    assert pattern(17, 68, 67, port_counts([(17, 68, 67)])) == (68, 67)
    assert server_port(6, 7000, 9000, Counter()) == 7000              # unknown: the lower port
    assert server_port(1, 0, 0, c) == 0


def test_fit_and_draw_follow_the_training_flows():
    mats = [_flow(17, 50000 + i, 53, n=2) for i in range(6)] + [_flow(6, 443, 60000 + i, n=5, first_fwd=True)
                                                                for i in range(2)]
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in mats])])
    t = fit_port_table(np.concatenate(mats), offsets, np.zeros(len(mats), np.int64), ["dns"], 128)
    assert t == {"dns": [[2, 17, 0, 53, 6], [5, 6, 443, 0, 2]]}
    for s in range(50):
        ini, res = draw_ports(t["dns"], s, 2, 17, (49152, 65535))
        assert res == 53 and 49152 <= ini <= 65535
        assert draw_ports(t["dns"], s, 2, 17, (49152, 65535)) == (ini, res)      # the seed decides
        assert draw_ports(t["dns"], s, 9, 6, (1000, 1000)) == (443, 1000)        # no entry of that length
    assert draw_ports(t["dns"], 1, 2, 1, (49152, 65535)) is None                 # ICMP has no ports
    assert draw_ports([[2, 17, 0, 53, 1]], 1, 2, 6, (49152, 65535)) is None      # no TCP entry: the model's


def test_write_ports_is_direction_aware():
    m = _flow(6, 1, 2, n=5)
    write_ports(m, 6, 51000, 443)
    assert flow_ports(m) == (6, 51000, 443)
    back = m[:, COL_DIR] == 0
    assert (get(m[back], "tcp_sprt") == 443).all() and (get(m[back], "tcp_dprt") == 51000).all()


@pytest.fixture(scope="module")
def default_model():
    from engine.model.checkpoint import load_model
    return load_model(None)


_SAMPLED: dict = {}


def _sample(default_model, label, n=12):
    """``n`` flows of a class from the default model (2 steps: the ports are held whatever the
    step count), sampled once per module."""
    from engine.model.sample import SampleOptions, sample_flows
    model, cfg, _ = default_model
    if label not in _SAMPLED:
        opts = SampleOptions(seed=7, steps=2, packets_min=2, packets_max=8)
        _SAMPLED[label] = sample_flows(model, cfg, label, list(range(n)), opts)
    return cfg, _SAMPLED[label]


def _seen(cfg, label):
    """(transport, port) of the fixed sides of the class's training flows, from the shipped table
    (0 = an ephemeral client port, not a service)."""
    return {(p, port) for _, p, a, b, _ in cfg["ports"][label] if p in (6, 17) for port in (a, b) if port}


@pytest.mark.parametrize("label,service,least", [("ntp", (17, 123), 11), ("ssh", (6, 22), 9),
                                                 ("twitch", (6, 443), 11)])
def test_default_model_puts_flows_on_the_class_service(default_model, label, service, least):
    """Classes whose real training flows sit on one service (ntp 98 %, ssh 93 %, twitch 99 %)."""
    cfg, flows = _sample(default_model, label)
    ports = [flow_ports(m) for m in flows.values()]
    on = sum((p, a) == service or (p, b) == service for p, a, b in ports)
    assert on >= least, Counter(ports)


def test_default_model_seen_pairs_and_dns(default_model):
    """dns: the real class is half UDP 53 (the rest TCP 80 and 853, from the same captures);
    every sampled pair is one of the class's, and 53's share is near the real one."""
    model, cfg, _ = default_model
    total = seen = 0
    for label in ("dns", "zoom", "tls_https"):
        _, flows = _sample(default_model, label)
        ok = _seen(cfg, label)
        ports = [flow_ports(m) for m in flows.values()]
        tcpudp = [(p, a, b) for p, a, b in ports if p in (6, 17)]
        total += len(tcpudp)
        seen += sum((p, a) in ok or (p, b) in ok for p, a, b in tcpudp)
        if label == "dns":
            share53 = sum(53 in (a, b) for _, a, b in tcpudp) / len(tcpudp)
            real = sum(e[4] for e in cfg["ports"]["dns"] if 53 in e[2:4]) / sum(e[4] for e in cfg["ports"]["dns"])
            assert abs(share53 - real) < 0.3, (share53, real)
    assert seen / total >= 0.99


def test_class_without_table_falls_back(default_model):
    """Old checkpoints (no ports table) and --raw-fields keep the model's ports: same flows as before."""
    from engine.model.sample import SampleOptions, sample_flows
    model, cfg, _ = default_model
    old = {k: v for k, v in cfg.items() if k != "ports"}
    opts = SampleOptions(seed=3, steps=2, packets_min=2, packets_max=8)
    a = sample_flows(model, old, "dns", [0, 1, 2], opts)
    b = sample_flows(model, {**cfg, "ports": {}}, "dns", [0, 1, 2], opts)
    assert all(np.array_equal(a[i], b[i]) for i in a)
    held = sample_flows(model, cfg, "dns", [0, 1, 2], opts)
    assert any(not np.array_equal(a[i], held[i]) for i in a)
    from dataclasses import replace
    raw_old = sample_flows(model, old, "dns", [0, 1, 2], replace(opts, field_vocab=False))
    raw = sample_flows(model, cfg, "dns", [0, 1, 2], replace(opts, field_vocab=False))
    assert all(np.array_equal(raw_old[i], raw[i]) for i in raw)


def test_generate_keeps_held_ports_and_recipes_override(default_model, tmp_path):
    import csv
    from engine.datasets.generate import generate
    from engine.datasets.request import GenerationRequest
    generate(GenerationRequest(label="ntp", count=4, seed=2, steps=2, packets_max=8), tmp_path / "a")
    rows = list(csv.DictReader(open(tmp_path / "a" / "manifest.csv")))
    assert [(r["proto"], r["resp_port"]) for r in rows].count(("17", "123")) >= 3
    generate(GenerationRequest(label="ntp", count=4, seed=2, steps=2, packets_max=8, server_ports=(4242,),
                               client_port_range=(40000, 40010)), tmp_path / "b")
    rows = list(csv.DictReader(open(tmp_path / "b" / "manifest.csv")))
    assert {r["resp_port"] for r in rows} == {"4242"}
    assert all(40000 <= int(r["init_port"]) <= 40010 for r in rows)


def _fs(label, triples):
    return FlowSet([np.zeros((1, 1), np.int8)] * len(triples),
                   [FlowMeta(f"f{i}", label, p, 1, 2, a, b, 0, 1) for i, (p, a, b) in enumerate(triples)])


def test_evaluate_port_group_on_a_hand_made_example():
    train = _fs("dns", [(17, 50000, 53)] * 3 + [(6, 40000, 80)])
    test = _fs("dns", [(17, 50001, 53), (17, 50002, 53)])
    synth = _fs("dns", [(17, 60000, 53), (17, 60001, 53), (17, 60002, 52), (1, 0, 0)])
    r = port_fidelity(train, test, {"synthetic": synth}, ["dns"])
    s = r["classes"]["dns"]["synthetic"]
    assert s["flows"] == 3 and s["seen"] == pytest.approx(2 / 3)
    # synthetic (53: 2/3, 52: 1/3) vs test (53: 1): m = (5/6, 1/6)
    h = lambda *p: -sum(x * np.log2(x) for x in p if x > 0)          # noqa: E731
    assert s["jsd_test"] == pytest.approx(h(5 / 6, 1 / 6) - h(2 / 3, 1 / 3) / 2)
    assert r["classes"]["dns"]["real_test"]["seen"] == 1.0
    assert r["overall"]["synthetic"]["seen"] == pytest.approx(2 / 3)
    assert r["classes"]["dns"]["real_train"]["jsd_train"] == 0.0
    json.dumps(r)


def test_ttl_is_one_class_value_per_flow_direction():
    """TTL families: each side of a flow keeps one of the class's TTLs (the repair's per-direction
    majority then has nothing to blend), while different flows still draw different families."""
    from engine.model.diffusion import snap
    from engine.model.vocab import SPANS, decode
    rng = np.random.default_rng(0)
    x = rng.random((8, 6, LAYOUT.width)).astype(np.float32)        # the model unsure of every bit
    x[..., COL_DIR] = np.array([1, 0, 1, 0, 1, 1])
    vocab = {"ipv4_ttl": [[64, 10], [128, 10], [63, 3]]}
    y = snap(decode(x, vocab, rng.random((8, 6, len(SPANS)))))
    seen = set()
    for f in y:
        for d in (0, 1):
            ttl = set(get(f[f[:, COL_DIR] == d], "ipv4_ttl").tolist())
            assert len(ttl) == 1 and ttl <= {64, 128, 63}
            seen |= ttl
    assert {64, 128} <= seen


def test_enum_fidelity_counts_seen_values():
    from engine.evaluate.ports import enum_fidelity

    def flow(ttl, opts=b""):
        m = _flow(6, 50000, 443, n=2)
        put(m, "ipv4_ttl", ttl, np.arange(2))
        c = LAYOUT.cols("tcp_opt")
        area = np.frombuffer(opts.ljust(40, b"\0"), np.uint8)
        m[:, c] = np.unpackbits(area)[None, :]
        put(m, "tcp_doff", 5 + len(opts) // 4, np.arange(2))
        return m

    mss_ws = bytes([2, 4, 5, 180, 1, 3, 3, 7])
    train = FlowSet([flow(64, mss_ws), flow(64)], [FlowMeta("a", "c", 6, 1, 2, 5, 443, 0, 2)] * 2)
    synth = FlowSet([flow(64, bytes([2, 4, 5, 100, 1, 3, 3, 2])), flow(65, bytes([3, 3, 7, 1]))],
                    [FlowMeta("s", "c", 6, 1, 2, 5, 443, 0, 2)] * 2)
    r = enum_fidelity(train, {"synthetic": synth}, ["c"])
    assert r["ipv4_ttl"]["classes"]["c"]["synthetic"]["seen"] == 0.5
    o = r["tcp_option_kinds"]["classes"]["c"]["synthetic"]
    assert o["packets"] == 4 and o["seen"] == 0.5             # MSS, WS in any values: seen; WS alone: not


def test_guided_flows_keep_their_guides_server_port():
    from engine.model.ports import guide_ports
    table = [[2, 17, 0, 53, 5], [4, 6, 443, 0, 2]]
    p, ini, res = guide_ports(_flow(17, 50123, 53), table, 3, (40000, 40000))
    assert (p, ini, res) == (17, 40000, 53)                          # a new ephemeral client port
    assert guide_ports(_flow(6, 443, 61000), table, 3, (40000, 40000)) == (6, 443, 40000)
    assert guide_ports(_flow(17, 123, 123), table, 3, (40000, 40000)) == (17, 123, 123)
    icmp = _flow(17, 1, 2)
    put(icmp, "ipv4_proto", 1, np.arange(len(icmp)))
    icmp[:, LAYOUT.block("udp").start:LAYOUT.block("udp").stop] = -1
    icmp[:, LAYOUT.block("icmp").start:LAYOUT.block("icmp").stop] = 0
    assert guide_ports(icmp, table, 3, (40000, 40000)) is None


def test_training_priors_carry_the_port_table():
    """netdiff train and scripts/refit_priors.py write what FlowTable.priors returns."""
    from engine.model.checkpoint import dump_config
    from engine.model.data import FlowTable
    mats = [_flow(17, 50000, 53, n=2), _flow(6, 40000, 22, n=3), _flow(6, 40001, 22, n=3)]
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in mats])]).astype(np.int64)
    t = FlowTable(np.concatenate(mats), offsets, np.array([0, 1, 1]), ["dns", "ssh"], ["a", "b", "c"])
    pri = t.priors(16)
    assert pri["ports"] == {"dns": [[2, 17, 0, 53, 1]], "ssh": [[3, 6, 0, 22, 2]]}
    lines = dump_config({"format": "x", **pri}).splitlines()
    i = lines.index('  "ports": {')
    assert lines[i + 1].startswith('    "dns": [[') and lines[i + 2].startswith('    "ssh": [[')


def test_icmp_code_is_decoded_given_the_type():
    """ICMP type and code come in pairs: the code is drawn among those the class pairs with the
    row's decoded type (a type the class never has keeps the code's own vocabulary)."""
    from engine.model.diffusion import snap
    from engine.model.vocab import SPANS, decode, fit_joint
    rows = np.full((4, LAYOUT.width), -1, np.int8)
    rows[:, LAYOUT.block("icmp").start:LAYOUT.block("icmp").stop] = 0
    put(rows, "icmp_type", np.array([3, 3, 8, 8]), np.arange(4))
    put(rows, "icmp_code", np.array([4, 4, 0, 0]), np.arange(4))
    joint = fit_joint(rows, np.zeros(4, int), ["c"])["c"]
    assert joint == {"icmp_code": [[3, 4, 2], [8, 0, 2]]}
    vocab = {"icmp_type": [[3, 2], [8, 2]], "icmp_code": [[0, 2], [4, 2]]}
    rng = np.random.default_rng(0)
    x = np.full((300, 1, LAYOUT.width), -1, np.float32)
    x[:, 0, LAYOUT.block("icmp").start:LAYOUT.block("icmp").stop] = rng.random((300, 64))   # unsure bits
    u = rng.random((300, 1, len(SPANS)))
    free = snap(decode(x, vocab, u))[:, 0]
    held = snap(decode(x, vocab, u, joint=joint))[:, 0]
    pairs = lambda m: set(zip(get(m, "icmp_type").tolist(), get(m, "icmp_code").tolist()))   # noqa: E731
    assert pairs(free) == {(3, 0), (3, 4), (8, 0), (8, 4)}
    assert pairs(held) == {(3, 4), (8, 0)}

"""netdiff evaluate: metric properties, splits, and end-to-end reports."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.codec.matrix import write_pcap
from engine.evaluate import EvalOptions, evaluate
from engine.evaluate.baselines import marginal_flows, random_flows
from engine.evaluate.data import load_labeled, read_split_file, split_by_flow, split_from_file
from engine.evaluate.features import SPECS, _kinds, packet_values
from engine.evaluate.metrics import ABSENT_CODE, bin_pair, compare, hellinger, jsd, tvd
from engine.codec.layout import LAYOUT

from conftest import FIXTURES, data_dir

METRICS = (jsd, tvd, hellinger)
counts = st.lists(st.integers(0, 50), min_size=1, max_size=12).filter(lambda v: sum(v) > 0)


# -- metrics -----------------------------------------------------------------------------

@pytest.mark.parametrize("f", METRICS)
def test_identical_is_zero(f):
    assert f([1, 2, 3, 0], [1, 2, 3, 0]) == pytest.approx(0, abs=1e-12)
    assert f([1, 2, 3], [10, 20, 30]) == pytest.approx(0, abs=1e-12)      # counts are normalized


@pytest.mark.parametrize("f", METRICS)
def test_disjoint_is_one(f):
    assert f([1, 1, 0, 0], [0, 0, 3, 5]) == pytest.approx(1)


def test_known_values():
    # p = (1, 0), q = (1/2, 1/2): JSD = H(3/4,1/4) - (0 + 1)/2, TVD = 1/2, H = sqrt(1 - sqrt(1/2))
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert jsd([1, 0], [1, 1]) == pytest.approx(h - 0.5)
    assert tvd([1, 0], [1, 1]) == pytest.approx(0.5)
    assert hellinger([1, 0], [1, 1]) == pytest.approx(math.sqrt(1 - math.sqrt(0.5)))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_symmetric_and_bounded(data):
    p = data.draw(counts)
    q = data.draw(st.lists(st.integers(0, 50), min_size=len(p), max_size=len(p)).filter(lambda v: sum(v) > 0))
    for f in METRICS:
        a, b = f(p, q), f(q, p)
        assert a == pytest.approx(b, abs=1e-12)
        assert 0.0 <= a <= 1.0
    # ordering between the three: TVD bounds Hellinger^2 from above
    assert hellinger(p, q) ** 2 <= tvd(p, q) + 1e-12


def test_empty_distribution_rejected():
    with pytest.raises(ValueError):
        jsd([0, 0], [1, 0])


def test_binning_absent_bin_and_symmetry():
    a = np.array([ABSENT_CODE, 1, 2, 3])
    b = np.array([1, 2, 3, 3])
    ca, cb, labels = bin_pair(a, b)
    assert labels[0] == "absent" and ca[0] == 1 and cb[0] == 0
    assert ca.sum() == 4 and cb.sum() == 4
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 65536, 500), rng.integers(0, 30000, 700)
    d1, d2 = compare(x, y), compare(y, x)
    for k in ("jsd", "tvd", "hellinger"):
        assert d1[k] == pytest.approx(d2[k])
    assert d1["bins"] <= 34                              # pooled quantile bins, not exact values
    assert compare(x, x)["jsd"] == 0.0
    assert compare([], y) is None
    # fixed edges: values above the last edge go to the last bin
    ca, cb, _ = bin_pair([0, 5, 99], [1, 1000], edges=np.array([0, 10, 100]))
    assert list(ca) == [0, 2, 1, 0] and list(cb) == [0, 1, 0, 1]


def test_tcp_option_kinds():
    assert _kinds(bytes([2, 4, 5, 180, 4, 2, 8, 10] + [0] * 8 + [1, 3, 3, 7])) == "2,4,8,1,3"
    assert _kinds(bytes([1, 1, 0, 0])) == "1,1,0"


# -- data and split ----------------------------------------------------------------------

def _same_source_flows(rng: np.random.Generator, n: int, label: str = "a"):
    """Flows of one distribution, each with its own constant bits (as a sequence base or an IP ID
    counter): a packet-level classifier can memorise a flow by them, but not tell two samples apart."""
    from engine.codec.matrix import FlowMeta
    from engine.evaluate.data import FlowSet
    mats, metas = [], []
    for i in range(n):
        m = np.zeros((20, LAYOUT.width), np.int8)
        m[:, 300:340] = rng.integers(0, 2, (20, 40))    # per packet
        m[:, 200:260] = rng.integers(0, 2, 60)          # this flow's constants
        mats.append(m)
        metas.append(FlowMeta(f"{label}{i}", label, 6, 1, 2, 1000, 443, 0, len(m)))
    return FlowSet(mats, metas)


def test_detectability_holds_out_whole_flows():
    from engine.evaluate.detect import detectability
    rng = np.random.default_rng(3)
    test, other = _same_source_flows(rng, 100), _same_source_flows(rng, 100)
    by_flow = detectability(test, other, ["a"], packet_cap=1000, seed=0, n_estimators=30)
    by_row = detectability(test, other, ["a"], packet_cap=1000, seed=0, n_estimators=30, grouped=False)
    # two samples of one distribution: chance, once a flow's packets cannot sit on both sides
    assert abs(by_flow["packet_bits_noports"]["auc"] - 0.5) < 0.1
    assert by_flow["packet_bits_noports"]["folds"] == "flows"
    # packet-level folds score the flows the forest memorised (the pre-ninth-session figure)
    assert by_row["packet_bits_noports"]["auc"] > 0.85
    # a flow statistics row is a flow: the same figure either way
    assert by_flow["flow_stats_noports"]["auc"] == by_row["flow_stats_noports"]["auc"]


def _labeled_fixture_dir(tmp: Path) -> Path:
    """Two 'classes' of loopback fixtures (6 flows per capture)."""
    root = tmp / "real"
    for cls, files in (("web", ["eth.pcap", "eth_nsec.pcap", "sll.pcap", "sll2.pcap"]),
                       ("misc", ["null.pcap", "raw101.pcap", "raw228.pcap", "multi_if.pcapng"])):
        (root / cls).mkdir(parents=True)
        for f in files:
            (root / cls / f).write_bytes((FIXTURES / f).read_bytes())
    (root / "web" / "eth.pcapng").write_bytes((FIXTURES / "eth.pcap").read_bytes())   # same capture twice
    (root / "_labels").mkdir()
    (root / "_labels" / "x.pcap").write_bytes((FIXTURES / "eth.pcap").read_bytes())
    return root


def test_load_and_split(tmp_path):
    root = _labeled_fixture_dir(tmp_path)
    fs = load_labeled(root)
    c = fs.counts()
    assert set(c) == {"web", "misc"}
    # eth.pcapng (same stem as eth.pcap) is read once; _labels/ is skipped
    from engine.codec.pipeline import encode_capture
    expect = sum(len(b) for f in ("eth.pcap", "eth_nsec.pcap", "sll.pcap", "sll2.pcap")
                 for b in encode_capture(FIXTURES / f))
    assert c["web"] == expect
    sp = split_by_flow(fs, seed=3, test_frac=0.25)
    assert len(sp.train) + len(sp.test) == len(fs)
    ids_tr = {(m.label, m.flow_id) for m in sp.train.metas}
    ids_te = {(m.label, m.flow_id) for m in sp.test.metas}
    assert not ids_tr & ids_te and sp.test.counts()["web"] == round(expect * 0.25)
    assert ids_te == {(m.label, m.flow_id) for m in split_by_flow(fs, seed=3, test_frac=0.25).test.metas}
    assert ids_te != {(m.label, m.flow_id) for m in split_by_flow(fs, seed=4, test_frac=0.25).test.metas}
    # a training run's split.json (dataset files label/flow_id.npz)
    test_files = [f"{lab}/{fid}.npz" for lab, fid in sorted(ids_te)]
    train_files = [f"{lab}/{fid}.npz" for lab, fid in sorted(ids_tr)]
    p = tmp_path / "split.json"
    p.write_text(json.dumps({"seed": 1, "key": "file", "train": train_files, "test": test_files}))
    te, tr, rest = read_split_file(p)
    assert rest["seed"] == 1
    sp2 = split_from_file(fs, p)
    assert {(m.label, m.flow_id) for m in sp2.test.metas} == ids_te
    assert len(sp2.train) == len(sp.train)


def test_closeness_flags_copies(tmp_path):
    """A candidate that hands back the train flows is at distance 0 and all exact copies (ports
    don't hide it); the test split is the reference (ratio 1); random flows are farther."""
    from engine.evaluate.closeness import closeness
    from engine.codec.layout import put
    sp = split_by_flow(load_labeled(_labeled_fixture_dir(tmp_path)), seed=0)
    moved = [m.copy() for m in sp.train.mats]
    for m in moved:
        if (m[:, LAYOUT.cols("tcp_sprt")] != -1).all():
            put(m, "tcp_sprt", 4242)
    copied = type(sp.train)(moved, list(sp.train.metas))
    from engine.evaluate.baselines import make_baseline
    from engine.codec.flows import FlowConfig
    rnd, _ = make_baseline("random", sp.train, dict(sp.test.counts()), 1, FlowConfig(), 64)
    c = closeness(sp.train, {"real_test": sp.test, "copy": copied, "random": rnd}, ["misc", "web"])
    assert c["copy"]["median_dcr"] == 0.0 and c["copy"]["exact_copies"] == 1.0 and c["copy"]["median_dcr_ratio"] == 0
    assert c["real_test"]["median_dcr_ratio"] == 1.0 and c["real_test"]["flows"] == len(sp.test)
    assert c["random"]["median_dcr"] > c["real_test"]["median_dcr"] and c["random"]["exact_copies"] == 0.0


def test_flow_length_over_whole_flows(tmp_path):
    """Flow length is compared before the max_packets cut: the train flows themselves score 0 against
    train; the same flows stretched to 300 packets score far off, though their first 64 packets would
    look alike."""
    from engine.evaluate.lengths import flow_length_fidelity
    sp = split_by_flow(load_labeled(_labeled_fixture_dir(tmp_path)), seed=0)
    same = flow_length_fidelity(sp.train, sp.test, sp.train, ["misc", "web"])
    assert same["overall"]["synthetic_vs_train"] == 0.0
    assert same["classes"]["web"]["jsd"]["synthetic_vs_test"] == same["classes"]["web"]["jsd"]["real_train_vs_test"]
    long = type(sp.train)([np.tile(m, (300 // len(m) + 1, 1))[:300] for m in sp.train.mats], list(sp.train.metas))
    far = flow_length_fidelity(sp.train, sp.test, long, ["misc", "web"])
    assert far["classes"]["web"]["max_packets"]["synthetic"] == 300
    assert far["classes"]["web"]["mean_packets"]["synthetic"] == 300.0
    assert far["overall"]["synthetic_vs_train"] > 0.5 and far["overall"]["synthetic_vs_test"] > 0.5


def test_baseline_generators_shapes(tmp_path):
    fs = load_labeled(_labeled_fixture_dir(tmp_path)).of("web")
    for gen in (random_flows, marginal_flows):
        mats, metas = gen(fs, 5, "web", seed=1, max_packets=16)
        assert len(mats) == len(metas) == 5
        assert all(m.shape[1] == LAYOUT.width and 1 <= len(m) <= 16 for m in mats)
        assert all(set(np.unique(m)) <= {-1, 0, 1} for m in mats)
        assert len({x.flow_id for x in metas}) == 5
        again, _ = gen(fs, 5, "web", seed=1, max_packets=16)
        assert all((a == b).all() for a, b in zip(mats, again))


def test_packet_values_cover_specs(tmp_path):
    fs = load_labeled(_labeled_fixture_dir(tmp_path))
    v = packet_values(fs.mats)
    assert set(v) == {s.name for s in SPECS}
    assert not any(s.name.startswith("ipv6") for s in SPECS)
    n = fs.packets
    assert len(v["ipv4_ttl"]) == n and len(v["flow_packets"]) == len(fs)
    assert (v["ipv4_ver"] == 4).all()
    assert len(v["iat_us"]) == n - len(fs)


# -- end to end --------------------------------------------------------------------------

def _write_generated_like(out: Path, train, counts: dict[str, int], seed: int = 5) -> Path:
    """A `netdiff generate`-shaped directory (<label>/*.pcap + manifest.csv) from the marginals baseline."""
    rows = []
    for lab, n in counts.items():
        mats, metas = marginal_flows(train.of(lab), n, lab, seed, 64)
        (out / lab).mkdir(parents=True, exist_ok=True)
        write_pcap(out / lab / "synthetic-0000.pcap", mats, metas)
        rows.append({"file": f"{lab}/synthetic-0000.pcap", "label": lab, "flows": n})
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["file", "label", "flows"])
        w.writeheader()
        w.writerows(rows)
    return out


def _check_report(out: Path, classes: list[str], candidates: list[str]):
    r = json.loads((out / "report.json").read_text())
    assert (out / "report.md").read_text().startswith("# NetDiffusion evaluation report")
    for p in ["mean_jsd_per_class.png", "cdf_packet_size.png", "cdf_iat.png"] + [f"divergence_{c}.png" for c in classes]:
        assert (out / p).read_bytes()[:4] == b"\x89PNG", p
    assert r["classes"] == classes
    assert list(r["fidelity"]) == candidates
    for cand in candidates:
        f = r["fidelity"][cand]
        for m in ("jsd", "tvd", "hellinger"):
            assert 0.0 <= f["overall"][m] <= 1.0
        for c in classes:
            for name, d in f["classes"][c]["fields"].items():
                if d is not None:
                    assert all(0.0 <= d[m] <= 1.0 for m in ("jsd", "tvd", "hellinger")), (cand, c, name)
    if r["detectability"]:
        # the reference row, real train flows vs the real test flows, is always there
        assert set(r["detectability"]) == {*candidates, "real_train"}
        assert "| real_train |" in (out / "report.md").read_text()
    ref = r["reference"]["real_train"]
    assert 0.0 <= ref["overall"]["jsd"] <= 1.0 and set(ref["overall_by_group"]) >= {"header", "packet", "flow"}
    assert "| real_train (reference) |" in (out / "report.md").read_text()
    for cand, d in (r["detectability"] or {}).items():
        for feat, v in d.items():
            if v is not None:
                assert 0.0 <= v["auc"] <= 1.0 and 0.0 <= v["accuracy"] <= 1.0
    for cand, u in (r["utility"] or {}).items():
        for feat, res in u.items():
            for sc, v in res.items():
                if v is not None:
                    assert 0.0 <= v["accuracy"] <= 1.0 and 0.0 <= v["macro_f1"] <= 1.0
    return r


def test_evaluate_fixtures_cli(tmp_path):
    """Always runs: fixture captures as 'real', a marginals sample as 'synthetic', through the CLI."""
    from netdiff_tui.cli import main
    real = _labeled_fixture_dir(tmp_path)
    sp = split_by_flow(load_labeled(real), seed=0)
    synth = _write_generated_like(tmp_path / "synth", sp.train, sp.test.counts())
    out = tmp_path / "report"
    res = CliRunner().invoke(main, ["evaluate", "--real", str(real), "--synthetic", str(synth), "-o", str(out),
                                    "--max-packets", "64", "--trees", "5", "--packet-cap", "200", "-q", "--split", "seed"])
    assert res.exit_code == 0, res.output
    r = _check_report(out, ["misc", "web"], ["synthetic", "random", "marginals"])
    assert r["summary"]["mean_jsd"]["synthetic"] is not None
    assert set(r["closeness"]) == {"real_test", "synthetic", "random", "marginals"}
    assert r["closeness"]["real_test"]["median_dcr_ratio"] == pytest.approx(1.0)
    assert "## Closeness to the real train split" in (out / "report.md").read_text()
    # flow length over whole flows, in the summary and the report, though flows were cut at 64 packets
    assert set(r["summary"]["flow_length_jsd"]) == {"synthetic_vs_test", "synthetic_vs_train", "real_train_vs_test"}
    assert "## Flow length (whole flows)" in (out / "report.md").read_text()
    plan = CliRunner().invoke(main, ["evaluate", "--real", str(real), "--plan", "--split", "seed"])
    n_web = sp.test.counts()["web"]
    assert plan.exit_code == 0 and f"netdiff generate --label web -n {n_web} -o synthetic/web" in plan.output
    bad = CliRunner().invoke(main, ["evaluate", "--real", str(tmp_path / "nope"), "--synthetic", str(synth)])
    assert bad.exit_code == 2 and "not a directory" in bad.output


def test_evaluate_real_slice(tmp_path):
    """A small slice of the real captures; the encoded-dataset input path; baselines as 'synthetic'."""
    real_root = data_dir() / "real"
    if not real_root.is_dir():
        pytest.skip(f"real captures not found at {real_root} (set NETDIFF_DATA)")
    classes = ["twitch", "ntp", "dns"]
    if not all((real_root / c).is_dir() for c in classes):
        pytest.skip("real data lacks the classes this test uses")
    real = tmp_path / "real"
    for c in classes:
        (real / c).mkdir(parents=True)
        for f in sorted((real_root / c).iterdir()):
            if f.suffix in (".pcap", ".pcapng"):
                os.symlink(f, real / c / f.name)
    sp = split_by_flow(load_labeled(real), seed=0)
    # the synthetic side as an encoded dataset directory (netdiff encode output)
    from engine.datasets.encode import encode_files
    gen = _write_generated_like(tmp_path / "gen", sp.train, sp.test.counts())
    enc = tmp_path / "enc"
    encode_files(sorted(gen.glob("*/*.pcap")), enc, label_from_dir=True)
    out = tmp_path / "report"
    r = evaluate(real, enc, out, EvalOptions(split_file="seed", max_packets=64, n_estimators=10, packet_cap=300,
                                                   n_jobs=1))
    _check_report(out, sorted(classes), ["synthetic", "random", "marginals"])
    assert r["flows"]["twitch"]["real_test"] == sp.test.counts()["twitch"]
    # the marginals sample is closer to the real data than random bits
    s = r["summary"]["mean_jsd"]
    assert s["synthetic"] < s["random"]
    f1 = r["utility"]["synthetic"]["flow_stats"]["real"]["macro_f1"]
    assert f1 > 0.5                                    # real-on-real separates these classes

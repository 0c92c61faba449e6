"""The critic (engine.model.critic): picking one of a few candidates of a flow by how real it looks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.datasets.request import GenerationRequest
from engine.errors import InputError
from engine.model.critic import FILE, MIN_REAL, Critic, feature_names, fit_critic, load_critic, save_critic

from test_model import tiny_data, tiny_run  # noqa: F401  (fixtures)

F = len(feature_names())


def leaning_critic(classes: list[str], feature: str = "size_mean", weight: float = 1.0, center: float = 0.0,
                   scale: float = 100.0) -> Critic:
    """A one-layer critic whose logit is ``weight * (x - center) / scale`` for one flow statistic ``x``."""
    w = np.zeros((1, F + len(classes)), np.float32)
    j = feature_names().index(feature)
    w[0, j] = weight
    mean = np.zeros(F, np.float32)
    mean[j] = center
    return Critic(list(classes), mean, np.full(F, scale, np.float32), [(w, np.zeros(1, np.float32))],
                  {"flows": {c: [MIN_REAL, 100] for c in classes}})


@pytest.fixture(scope="module")
def model_dir(tiny_run, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("critic") / "model"
    shutil.copytree(tiny_run / "model", d)
    return d


def flows_of(sizes: list[int], n: int = 6) -> list[np.ndarray]:
    from engine.codec.layout import COL_DIR, LAYOUT, put
    out = []
    for s in sizes:
        m = np.full((n, LAYOUT.width), -1, np.int8)
        m[:, :96] = 0
        m[:, COL_DIR] = np.arange(n) % 2
        put(m, "ipv4_tl", np.full(n, s))
        out.append(m)
    return out


def test_fit_tells_the_sides_apart_and_survives_a_save(tmp_path):
    rng = np.random.default_rng(0)
    real = {"a": flows_of(list(rng.integers(1000, 1500, 120))), "b": flows_of(list(rng.integers(60, 200, 120)))}
    fake = {"a": flows_of(list(rng.integers(200, 700, 120))), "b": flows_of(list(rng.integers(60, 200, 120)))}
    c = fit_critic(real, fake, epochs=40, info={"weights": "w"})
    assert c.classes == ["a", "b"] and c.info["weights"] == "w" and c.info["flows"]["a"] == [120, 120]
    # class a's sides differ in size; b's are one distribution, so held-out AUC is between
    assert 0.6 < c.info["holdout_auc"] < 1.0
    za, zf = c.logits("a", real["a"][:20]), c.logits("a", fake["a"][:20])
    assert za.mean() > zf.mean() + 1.0
    save_critic(tmp_path, c)
    assert not list(tmp_path.glob("*.tmp"))
    back = load_critic(tmp_path)
    assert back.classes == c.classes and back.info == c.info
    np.testing.assert_allclose(back.logits("a", fake["a"]), zf[:20].tolist() + list(c.logits("a", fake["a"][20:])),
                               rtol=1e-5, atol=1e-5)


def test_choose_follows_the_weights():
    c = leaning_critic(["a"], weight=1.0)
    flows = flows_of([100, 600])            # logits 1 and 6 (std 100): the second ~ e^5 times likelier
    rng = np.random.default_rng(1)
    picks = [c.choose("a", flows, rng) for _ in range(400)]
    assert 0.95 < np.mean(picks) < 1.0      # the first still drawn now and then: a weight, not a max


def test_a_checkpoint_without_a_critic_has_none(tmp_path):
    assert load_critic(tmp_path) is None


def _write(d: Path, tensors: dict, meta: dict) -> None:
    save_file({k: torch.as_tensor(v, dtype=torch.float32) for k, v in tensors.items()}, d / FILE, metadata=meta)


def _good() -> tuple[dict, dict]:
    import json
    c = leaning_critic(["a", "b"])
    t = {"mean": c.mean, "std": c.std, "w0": c.layers[0][0], "b0": c.layers[0][1]}
    m = {"format": "netdiff-critic-1", "classes": json.dumps(c.classes), "features": json.dumps(feature_names()),
         "info": "{}"}
    return t, m


@pytest.mark.parametrize("change, why", [
    (lambda t, m: m.update(format="pickle"), "format"),
    (lambda t, m: m.update(classes='["a", "a"]'), "classes"),
    (lambda t, m: m.update(classes="nope"), "JSON"),
    (lambda t, m: m.update(features='["size_mean"]'), "other flow statistics"),
    (lambda t, m: t.update(w0=np.zeros((1, 3))), "layer 0"),
    (lambda t, m: t.update(std=np.zeros(F)), "std > 0"),
    (lambda t, m: t.update(b0=np.array([np.nan])), "non-finite"),
    (lambda t, m: t.pop("mean"), "want tensors"),
])
def test_a_hostile_critic_gets_one_line(tmp_path, change, why):
    t, m = _good()
    _write(tmp_path, t, m)
    assert load_critic(tmp_path) is not None
    change(t, m)
    _write(tmp_path, t, m)
    with pytest.raises(InputError, match=why) as e:
        load_critic(tmp_path)
    assert FILE in str(e.value) and "\n" not in str(e.value)
    (tmp_path / FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(InputError, match="not a critic"):
        load_critic(tmp_path)


def test_candidate_indices_are_distinct_and_keep_the_plain_flow():
    from engine.model.candidates import candidate_index, flow_of
    for k in (2, 4, 7):
        got = [candidate_index(i, c, k) for i in range(50) for c in range(k)]
        assert len(set(got)) == len(got)
        assert [candidate_index(i, 0, k) for i in range(50)] == list(range(50))
        assert all(candidate_index(i, c, k) < 0 for i in range(50) for c in range(1, k))
        assert all(flow_of(candidate_index(i, c, k), k) == i for i in range(50) for c in range(k))


def test_candidates_keep_their_flows_shape(model_dir):
    """A flow's candidates share its length and transport (the critic picks packets, not shapes),
    and candidate 0 is the flow itself."""
    from engine.model.checkpoint import load_model
    from engine.model.candidates import candidate_index
    from engine.model.sample import SampleOptions, flow_proto, sample_flows
    model, cfg, _ = load_model(model_dir)
    plain = sample_flows(model, cfg, "zoom", list(range(12)), SampleOptions(seed=4, steps=2, packets_max=16))
    k = 3
    opts = SampleOptions(seed=4, steps=2, packets_max=16, candidates=k)
    cands = sample_flows(model, cfg, "zoom", [candidate_index(i, c, k) for i in range(12) for c in range(k)], opts)
    assert len({len(m) for m in plain.values()}) > 1          # the shapes do differ between flows
    for i in range(12):
        assert np.array_equal(cands[i], plain[i])
        for c in range(1, k):
            m = cands[candidate_index(i, c, k)]
            assert len(m) == len(plain[i]) and flow_proto(m) == flow_proto(plain[i])
            assert not np.array_equal(m, plain[i])


def test_decoded_candidates_share_their_sample(monkeypatch):
    """--decodes D: the candidates of a group of D share the sample (taken once), the length and the
    directions, and differ in what the field decoder draws; D = 1 is the plain candidates. (The
    shipped model: its classes have flow profiles, whose choice the decoder shares too.)"""
    import engine.model.sample as S
    from engine.codec.layout import COL_DIR
    from engine.model.candidates import candidate_index, flow_of, noise_index
    from engine.model.checkpoint import DEFAULT_MODEL_DIR, load_model
    model, cfg, _ = load_model(DEFAULT_MODEL_DIR)
    k, d, n = 4, 2, 6
    idx = [candidate_index(i, c, k) for i in range(n) for c in range(k)]
    assert [noise_index(j, k, 1) for j in idx] == idx
    assert len({noise_index(j, k, d) for j in idx}) == n * k // d
    assert all(noise_index(j, k, k) == flow_of(j, k) for j in idx)
    plain = S.sample_flows(model, cfg, "zoom", idx, S.SampleOptions(seed=4, steps=2, packets_max=24, candidates=k))
    sampled = []
    real_sample = S.sample
    monkeypatch.setattr(S, "sample", lambda *a, **kw: sampled.append(len(a[3])) or real_sample(*a, **kw))
    opts = S.SampleOptions(seed=4, steps=2, packets_max=24, candidates=k, decodes=d)
    got = S.sample_flows(model, cfg, "zoom", idx, opts)
    assert sum(sampled) == n * k // d                      # one sample per group
    differ = 0
    for i in range(n):
        assert np.array_equal(got[i], plain[i])            # candidate 0 is the flow itself
        for c in range(k):
            m, first = got[candidate_index(i, c, k)], got[candidate_index(i, c - c % d, k)]
            assert len(m) == len(first) and np.array_equal(m[:, COL_DIR], first[:, COL_DIR])
            differ += not np.array_equal(m, first)
        assert np.array_equal(got[candidate_index(i, 2, k)], plain[candidate_index(i, 2, k)])
    assert differ >= n                                      # the decoder's draws do differ
    # the decoder weighs a shared sample's evidence once: the same draws as decoding each on its own
    real_decode, shared = S.decode_vocab, []
    monkeypatch.setattr(S, "decode_vocab", lambda *a: shared.append(a[-1] is not None) or real_decode(*a[:-1], None))
    alone = S.sample_flows(model, cfg, "zoom", idx, opts)
    assert any(shared) and cfg["profiles"]["zoom"]          # the tiny model decodes with profiles
    assert all(np.array_equal(alone[j], got[j]) for j in idx)


def _written(out: Path) -> list[np.ndarray]:
    from engine.evaluate.data import load_labeled
    fs = load_labeled(out)
    return [m for _, m in sorted(zip([x.flow_id for x in fs.metas], fs.mats), key=lambda t: t[0])]


def test_generate_with_candidates(model_dir, tmp_path):
    """--candidates K: each flow is one of its K draws, picked by the critic on the flow as
    written; the bytes do not depend on the processes; without a critic, one draw and a warning."""
    from engine.datasets.generate import generate
    from engine.datasets.partial import fingerprint
    from engine.model.critic import flow_features
    events = []
    req = GenerationRequest(label="zoom", count=24, model=str(model_dir), seed=2, steps=2, candidates=4)
    s = generate(req, tmp_path / "none", on_event=events.append, processes=1)
    assert s["flows"] == 24
    assert any("each flow is drawn once (the model has no critic" in getattr(e, "text", "") for e in events)
    plain = _written(tmp_path / "none")      # no critic: the plain request's flows
    j = feature_names().index("size_mean")
    center = float(np.median(flow_features(plain)[:, j]))
    critic = leaning_critic(["dns", "zoom"], "size_mean", 1.0, center, 2.0)      # a logit per 2 bytes
    save_critic(model_dir, critic)
    try:
        one = generate(req, tmp_path / "one", processes=1, window=10)
        two = generate(req, tmp_path / "two", processes=2, window=10)
        assert one["flows"] == two["flows"] == 24
        a = {p.name: p.read_bytes() for p in (tmp_path / "one").rglob("*.pcap")}
        b = {p.name: p.read_bytes() for p in (tmp_path / "two").rglob("*.pcap")}
        assert len(a) == 24 and a == b
        picked = _written(tmp_path / "one")
        assert critic.logits("zoom", picked).mean() > critic.logits("zoom", plain).mean() + 1.0
        # decoded candidates: the same, with the sample taken once per flow
        dreq = GenerationRequest(label="zoom", count=24, model=str(model_dir), seed=2, steps=2, decodes=4)
        d1 = generate(dreq, tmp_path / "d1", processes=1, window=10)
        d2 = generate(dreq, tmp_path / "d2", processes=2, window=10)
        assert d1["flows"] == d2["flows"] == 24
        a = {p.name: p.read_bytes() for p in (tmp_path / "d1").rglob("*.pcap")}
        assert a == {p.name: p.read_bytes() for p in (tmp_path / "d2").rglob("*.pcap")}
        assert critic.logits("zoom", _written(tmp_path / "d1")).mean() > critic.logits("zoom", plain).mean()
        # one candidate keeps the fingerprint runs had before candidates existed; the critic is in it otherwise
        base = GenerationRequest(label="zoom", count=6)
        fp = lambda r, c=None: fingerprint(r, "w", 20, 1.0, None, 64, "fp32", "t", c)   # noqa: E731
        assert fp(base) == fp(base, "c1")
        k3 = GenerationRequest(label="zoom", count=6, candidates=3)
        d3 = GenerationRequest(label="zoom", count=6, decodes=3)
        assert len({fp(base), fp(k3, "c1"), fp(k3, "c2"), fp(d3, "c1"), fp(d3, "c2")}) == 5
    finally:
        (model_dir / FILE).unlink()


def test_picks_judge_every_candidate_in_one_repair(model_dir):
    """pick_candidates repairs all K candidates of a window in one call (a flow's candidates share
    its 5-tuple there, so the port-moving flow_unique rule is off for it): the critic's picks are
    those of repairing each candidate group on its own, as the flows are written."""
    from types import SimpleNamespace
    from engine.datasets.generate import _repair, make_metas, pick_candidates
    from engine.model.checkpoint import load_model
    from engine.model.critic import draw, flow_features
    from engine.model.candidates import candidate_index
    from engine.model.sample import SampleOptions, sample_flows
    from engine.model.streams import flow_seed
    model, cfg, _ = load_model(model_dir)
    k, n = 3, 8
    req = GenerationRequest(label="zoom", count=n, seed=3, server_ports=(8801, 443))
    flows = sample_flows(model, cfg, "zoom", [candidate_index(i, c, k) for i in range(n) for c in range(k)],
                         SampleOptions(seed=3, steps=2, packets_max=24, candidates=k))
    plan = SimpleNamespace(next_start=req.start_ns, width=2)
    repaired = []                       # each candidate group on its own, as it is written
    for c in range(k):
        mats = [flows[candidate_index(i, c, k)].copy() for i in range(n)]
        metas, sports, _ = make_metas(req, mats, 0, plan.next_start, plan.width, False)
        repaired.append(_repair(req, mats, metas, lambda ev: None, sports)[0])
    j = feature_names().index("size_mean")
    center = float(np.median(flow_features(sum(repaired, []))[:, j]))
    critic = leaning_critic(["dns", "zoom"], "size_mean", 1.0, center, 2.0)
    z = np.stack([critic.logits("zoom", r) for r in repaired], axis=1)
    assert (np.ptp(np.clip(z, -5, 5), axis=1) > 2).sum() >= n // 2     # the critic tells the candidates apart
    want = [draw(z[i], np.random.default_rng(flow_seed(req.seed, i, -1))) for i in range(n)]
    got = pick_candidates(req, critic, flows, 0, n, k, plan, False)
    assert all(g is flows[candidate_index(i, c, k)] for i, (g, c) in enumerate(zip(got, want)))


def test_the_shipped_critic_is_the_shipped_models():
    """The default checkpoint's critic knows every class and was fitted for its weights and tables:
    a refit of either without a refit of the critic fails here (scripts/fit_critic.py)."""
    import json
    from engine.model.checkpoint import DEFAULT_MODEL_DIR, tables_hash, weights_hash
    c = load_critic(DEFAULT_MODEL_DIR)
    cfg = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert c is not None and c.classes == sorted(cfg["classes"])
    assert c.info["weights"] == weights_hash(DEFAULT_MODEL_DIR) and c.info["tables"] == tables_hash(cfg)
    assert 0.5 < c.info["holdout_auc"] < 1.0
    # it picks for the evaluated classes, not for those with a handful of real flows
    assert all(c.knows(x) for x in ("youtube", "zoom", "http", "netflix")) and not c.knows("tor")


def test_few_real_flows_no_picking():
    c = leaning_critic(["a", "b"])
    c.info["flows"]["b"] = [MIN_REAL - 1, 100]
    assert c.knows("a") and not c.knows("b") and not c.knows("zz")
    c.info["flows"]["a"] = "junk"
    assert not c.knows("a")


def test_fit_critic_script_on_a_run(tiny_run, tiny_data, tmp_path):
    """scripts/fit_critic.py end to end: generates flows per class, fits, writes a critic that
    loads and names the weights and tables it was fitted for."""
    import json
    import subprocess
    import sys
    from conftest import ROOT
    from engine.model.checkpoint import tables_hash, weights_hash
    d = tmp_path / "model"
    shutil.copytree(tiny_run / "model", d)
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "fit_critic.py"), "--model", str(d), "--data",
                        str(tiny_data), "--split", str(tiny_run / "split.json"), "--flows", "8", "--epochs", "5"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    c = load_critic(d)
    cfg = json.loads((d / "config.json").read_text())
    assert c.classes and set(c.classes) <= set(cfg["classes"])
    assert c.info["weights"] == weights_hash(d) and c.info["tables"] == tables_hash(cfg)
    assert all(n[1] == 8 for n in c.info["flows"].values())


def test_a_call_holds_whole_groups_of_decoded_candidates():
    """A sampler call takes whole groups of a sample's decoded candidates (else a sample would be
    taken twice), up to CALL_CANDIDATES, and at least one group however many decodes."""
    from engine.model.batches import CALL_CANDIDATES, batch_candidates
    for batch in (1, 3, 16, 64):
        for d in range(1, 33):
            n = batch_candidates(batch, d)
            assert n % d == 0 and d <= n <= max(CALL_CANDIDATES, d) and n // d <= batch
    assert batch_candidates(16, 1) == 16 and batch_candidates(16, 8) == 64 and batch_candidates(64, 1) == 64

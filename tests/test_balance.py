"""netdiff balance: counts, plan, recipe choice, generation for thin classes, export of the mix."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.datasets import balance as bl
from engine.datasets import export as ex
from engine.errors import InputError
from engine.codec.pipeline import encode_capture

CLASSES = ("dns", "facebook", "ssh", "twitch")


@pytest.fixture
def small_real(real_dir, tmp_path) -> Path:
    d = tmp_path / "real"
    d.mkdir()
    for c in CLASSES:
        (d / c).symlink_to(real_dir / c)
    return d


@pytest.fixture(autouse=True)
def user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


class FakeGenerate:
    """Stands in for engine.datasets.generate.generate: writes the generator's dataset format from real flows."""

    def __init__(self, real_dir: Path):
        self.real_dir = real_dir
        self.calls = []

    def __call__(self, req, out_dir, on_event=None, cancel=None):
        import json
        from engine.codec.matrix import write_pcap
        self.calls.append(req)
        if req.like_split:
            self.guide_split = json.loads(Path(req.like_split).read_text())
        out = Path(out_dir)
        (out / req.label).mkdir(parents=True)
        src = sorted((self.real_dir / "ssh").glob("*.pcap"))[0]
        flows = [(b.flow(i), m) for b in encode_capture(src) for i, m in enumerate(b.metas)]
        rows = []
        for i in range(req.count):
            m, meta = flows[i % len(flows)]
            meta = replace(meta, label=req.label, flow_id=f"{req.label}-{i:05d}", start_ns=meta.start_ns + i)
            rel = f"{req.label}/{req.label}-{i:05d}.pcap"
            k = write_pcap(out / rel, [m], [meta])
            rows.append({"file": rel, "label": req.label, "packets": k, "seed": req.seed, "model_hash": "f" * 64,
                         "synthetic": 1, "flow_id": meta.flow_id, "proto": meta.proto})
        with open(out / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        (out / "generate.json").write_text(json.dumps({"request": {"label": req.label, "extra": req.extra},
                                                       "summary": {"model_hash": "f" * 64}}, default=list))
        return {"flows": req.count}


def test_count_and_plan(small_real):
    counts = bl.count_flows(small_real)
    assert set(counts) == set(CLASSES) and all(n > 0 for n in counts.values())
    assert counts == {c: sum(1 for s in ex.scan_inputs([small_real]) if s.cls == c
                             for b in encode_capture(s.path) for _ in b.metas) for c in CLASSES}
    t, have, need = bl.plan(counts, "max")
    assert t == max(counts.values()) and all(have[c] + need.get(c, 0) == t for c in counts)
    t, have, need = bl.plan({"a": 10, "b": 3}, 8, split=0.2)
    assert (t, have, need) == (8, {"a": 8, "b": 2}, {"b": 6})
    with pytest.raises(InputError, match="--target must be"):
        bl.parse_target("lots")
    with pytest.raises(InputError, match=">= 1"):
        bl.parse_target("0")


def test_recipe_choice(tmp_path):
    req, where = bl.request_for("twitch", 7)
    assert (req.label, req.count, req.server_ports) == ("twitch", 7, (443,)) and "preset recipe 'twitch'" in where
    req, where = bl.request_for("tls_https", 3)
    assert "https_web" in where and req.transport == "tcp"          # preset found by label, not name
    req, where = bl.request_for("bittorrent", 3)
    assert where == bl.MODEL_CLASS and req.label == "bittorrent" and req.count == 3
    req, where = bl.request_for("twitch", 7, recipes=False, seed=4)     # the class as the model learned it
    assert where == bl.MODEL_CLASS and req.server_ports == () and req.seed == 4
    d = tmp_path / "mine"
    d.mkdir()
    (d / "x.toml").write_text('label = "twitch"\ncount = 1\n[traffic]\nservice_ports = [8443]\n')
    req, where = bl.request_for("twitch", 5, d)
    assert req.server_ports == (8443,) and req.count == 5 and "dir recipe 'x'" in where


def test_balance_with_recipes_uses_them(small_real, tmp_path):
    gen = FakeGenerate(small_real)
    s = bl.balance(small_real, 12, tmp_path / "bal", classes=["facebook"], recipes=True, generate_fn=gen)
    assert [q.server_ports for q in gen.calls] == [(443,)] and "preset recipe 'facebook'" in s["recipes"]["facebook"]
    d = tmp_path / "mine"
    d.mkdir()
    (d / "x.toml").write_text('label = "facebook"\ncount = 1\n[traffic]\nservice_ports = [8443]\n')
    gen = FakeGenerate(small_real)
    bl.balance(small_real, 12, tmp_path / "bal2", classes=["facebook"], recipes_dir=d, generate_fn=gen)
    assert [q.server_ports for q in gen.calls] == [(8443,)]          # a recipes folder implies --recipes


def test_balance_tops_up_thin_classes_and_flags_origin(small_real, tmp_path):
    gen = FakeGenerate(small_real)
    out = tmp_path / "bal"
    s = bl.balance(small_real, 20, out, split=0.2, seed=1, generate_fn=gen)
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    train = [r for r in rows if r["split"] == "train"]
    for c in CLASSES:
        n = sum(1 for r in train if r["class"] == c)
        assert n == max(20, s["counted"][c]), (c, n)
    assert {q.label for q in gen.calls} == {c for c in CLASSES if s["counted"][c] < 20}
    # drawn as the model learned each class, not narrowed by the presets (twitch's sets TCP 443)
    assert all(q.server_ports == () and q.extra["recipe"] == "(model)" for q in gen.calls)
    assert all(s["recipes"][c].startswith(bl.MODEL_CLASS) for c in s["generated"])
    if _default_model_present():            # the per-class line says how much of the class the model saw
        from engine.artifacts.models import read_checkpoint
        from engine.model.checkpoint import resolve
        n = read_checkpoint(resolve(None)).class_flows
        assert all(s["recipes"][c].endswith(f"learned from {n[c]} flows") for c in s["generated"])
    assert all(r["origin"] == "real" for r in rows if r["split"] == "test")
    syn = [r for r in rows if r["origin"] == "synthetic"]
    assert len(syn) == sum(s["generated"].values()) > 0
    assert all(r["recipe"] for r in syn)
    assert "Balanced with `netdiff balance`" in (out / "README.md").read_text()
    assert not bl.work_dir_for(out).exists()
    sc = bl.classifier_scores(out, n_estimators=20)
    assert set(sc["classes"]) == set(CLASSES)
    for k in ("imbalanced", "balanced"):
        assert 0 <= sc[k]["macro_f1"] <= 1 and set(sc[k]["f1"]) == set(CLASSES)
    assert sum(sc["balanced"]["train_counts"].values()) > sum(sc["imbalanced"]["train_counts"].values())
    from netdiff_tui.cmd_recipes import score_table
    t = score_table(out, 1)
    assert "| **macro-F1** |" in t and all(f"| {c} |" in t for c in CLASSES)


def test_balance_like_never_guides_by_test_flows(small_real, tmp_path):
    """--like --split: generation is guided by the real flows, and the export's test flows are
    excluded from the guides before the export exists (the same flows, computed up front)."""
    from engine.model.guide import load_guides
    gen = FakeGenerate(small_real)
    out = tmp_path / "bal"
    bl.balance(small_real, 20, out, split=0.2, seed=1, generate_fn=gen, like=True, strength=0.4)
    assert gen.calls and all(q.like == str(small_real) and q.strength == 0.4 and q.like_split for q in gen.calls)
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    test = {}
    for r in rows:
        if r["split"] == "test":
            test.setdefault(r["class"], []).append(r["flow_id"])
    assert gen.guide_split["test"] == {c: sorted(v) for c, v in sorted(test.items())}
    split = tmp_path / "s.json"
    split.write_text(__import__("json").dumps(gen.guide_split))
    c = gen.calls[0].label
    _, ids = load_guides(small_real, c, split)
    assert ids and not set(ids) & set(test[c])
    r = CliRunner().invoke(__import__("netdiff_tui.cli", fromlist=["main"]).main,
                           ["balance", "--real", str(small_real), "--target", "5", "-o", str(tmp_path / "x"),
                            "--strength", "0.5"])
    assert r.exit_code == 2 and "--strength needs --like" in r.output
    # balance's own --seed (the split's) is not the request's: typed, it once ended in a traceback
    r = CliRunner().invoke(__import__("netdiff_tui.cli", fromlist=["main"]).main,
                           ["balance", "--real", str(small_real), "--target", "5", "-o", str(tmp_path / "y"),
                            "--split", "0.2", "--seed", "1", "--strength", "0.5"])
    assert r.exit_code == 2 and "--strength needs --like" in r.output and "Traceback" not in r.output


def test_balance_candidates_and_decodes_reach_every_request(small_real, tmp_path, monkeypatch):
    gen = FakeGenerate(small_real)
    bl.balance(small_real, 20, tmp_path / "bal", generate_fn=gen, sampling={"candidates": 3, "decodes": 2})
    assert gen.calls and all((q.candidates, q.decodes) == (3, 2) for q in gen.calls)
    gen = FakeGenerate(small_real)
    bl.balance(small_real, 20, tmp_path / "bal2", generate_fn=gen)
    assert gen.calls and all((q.candidates, q.decodes) == (1, 1) for q in gen.calls)
    main = __import__("netdiff_tui.cli", fromlist=["main"]).main
    gen = FakeGenerate(small_real)
    real_balance = bl.balance
    monkeypatch.setattr(bl, "balance", lambda *a, **k: real_balance(*a, **{**k, "generate_fn": gen}))
    r = CliRunner().invoke(main, ["balance", "--real", str(small_real), "--target", "20", "-o",
                                  str(tmp_path / "cli"), "--decodes", "4", "-q"])
    assert r.exit_code == 0, r.output
    assert gen.calls and all((q.candidates, q.decodes) == (1, 4) for q in gen.calls)
    for opt, bad in (("--candidates", "99"), ("--decodes", "0")):
        r = CliRunner().invoke(main, ["balance", "--real", str(small_real), "--target", "5", "-o",
                                      str(tmp_path / "x"), opt, bad])
        assert r.exit_code != 0 and opt[2:] in r.output and "Traceback" not in r.output


def test_balance_resumes_generated_classes(small_real, tmp_path):
    gen = FakeGenerate(small_real)
    out = tmp_path / "bal"

    class Boom(Exception):
        pass

    def failing_export(*a, **k):
        raise Boom
    import engine.datasets.balance as mod
    orig = mod.export
    mod.export = failing_export
    try:
        with pytest.raises(Boom):
            bl.balance(small_real, 10, out, generate_fn=gen)
    finally:
        mod.export = orig
    first = len(gen.calls)
    assert first > 0 and not out.exists()
    bl.balance(small_real, 10, out, generate_fn=gen)
    assert len(gen.calls) == first          # generated classes were kept, not regenerated


def test_balance_cli_refuses_generated_input(tmp_path, small_real):
    from netdiff_tui.cli import main
    gen = FakeGenerate(small_real)
    gen(replace(bl.request_for("dns", 2)[0]), tmp_path / "g")
    r = CliRunner().invoke(main, ["balance", "--real", str(tmp_path / "g"), "--target", "5", "-o",
                                  str(tmp_path / "o")])
    assert r.exit_code == 2 and "--real takes <class>/*.pcap" in r.output


def _default_model_present() -> bool:
    import engine
    d = Path(engine.__file__).parent / "default_model"
    return d.is_dir() and any(d.glob("*.safetensors"))


@pytest.mark.slow
@pytest.mark.skipif(not _default_model_present(), reason="default checkpoint engine/default_model absent")
def test_balance_with_the_real_generator(small_real, tmp_path):
    out = tmp_path / "bal"
    s = bl.balance(small_real, 12, out, classes=["facebook"])
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    syn = [r for r in rows if r["origin"] == "synthetic"]
    assert len(syn) == 12 - s["counted"]["facebook"] and all(r["class"] == "facebook" for r in syn)
    # drawn as the model learned facebook: its (transport, server port) pairs are the real flows'
    seen = {(r["proto"], r["server_port"]) for r in rows if r["origin"] == "real" and r["class"] == "facebook"}
    assert {(r["proto"], r["server_port"]) for r in syn} <= seen, seen


def test_balance_filter_keeps_flows_that_look_like_their_class(small_real, tmp_path):
    """--filter: the stand-in generator writes ssh flows for every class; a forest trained on the
    real train flows takes them for ssh, so ssh keeps its top-up and the other classes lose theirs.
    The filter learns from the train side only, and a resumed balance does not filter twice."""
    from engine.datasets import consistency as cs
    gen = FakeGenerate(small_real)
    out = tmp_path / "bal"
    seen = []
    real_filter = cs.Filter

    class Spy(real_filter):
        def __init__(self, x, labels, seed=0, n_jobs=1):
            seen.append(len(labels))
            super().__init__(x, labels, seed, n_jobs)
    cs.Filter = Spy
    try:
        events = []
        s = bl.balance(small_real, "max", out, split=0.2, seed=1, generate_fn=gen, min_prob=0.5,
                       on_event=events.append)
    finally:
        cs.Filter = real_filter
    counts = s["real_counts"]
    # a class topped up from fewer than FILTER_MIN_REAL real train flows is named in one warning
    warned = [e.text for e in events if getattr(e, "level", "") == "warning"]
    few = sorted(c for c in s["generated"] if counts[c] - ex.n_test(counts[c], 0.2) < bl.FILTER_MIN_REAL)
    assert few and len(warned) == 1 and all(f"{c} has" in warned[0] for c in few), (few, warned)
    assert seen == [sum(counts.values()) - sum(ex.n_test(n, 0.2) for n in counts.values())]   # train flows only
    v = s["vetted"]
    assert v and set(v) == set(s["generated"])
    assert all(v[c]["drawn"] == gen.calls[i].count for i, c in enumerate(sorted(v)))
    assert v["ssh"]["kept"] >= 0.8 * v["ssh"]["drawn"]
    others = [c for c in v if c != "ssh"]
    assert others and all(v[c]["kept"] <= 0.2 * v[c]["drawn"] for c in others), v
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    for c in v:
        assert sum(r["origin"] == "synthetic" and r["class"] == c for r in rows) == v[c]["kept"] == s["generated"][c]
    assert "kept" in (out / "README.md").read_text()
    # a class folder filtered before is not filtered again, and its whole draw stays aside
    d = tmp_path / "g"
    gen(replace(bl.request_for("dns", 6)[0]), d)
    filt = cs.Filter(*cs.real_train_features(bl.real_sources(small_real), {})[:2])
    first = cs.vet(d, "dns", filt, 6, 0.5)
    assert first["drawn"] == 6 and (d / cs.ALL).is_file() and (d / cs.VETTED).is_file()
    assert cs.vet(d, "dns", filt, 6, 0.0) == first
    (d / cs.VETTED).unlink()            # interrupted between the writes: starts again from the whole draw
    assert cs.vet(d, "dns", filt, 6, 0.0)["drawn"] == 6
    (d / cs.VETTED).write_text('{"drawn": -3, "kept": 9}')      # a record that makes no sense: filtered again
    again = cs.vet(d, "dns", filt, 4, 0.0)
    assert again["drawn"] == 6 and again["kept"] == 4 and len(list(csv.DictReader(open(d / "manifest.csv")))) == 4


def test_balance_filter_options(small_real, tmp_path):
    from netdiff_tui.cli import main
    for args, msg in ((["--oversample", "2"], "--oversample needs --filter"),
                      (["--filter", "1.5"], "--filter"), (["--filter", "0.4", "--oversample", "0"], "--oversample")):
        r = CliRunner().invoke(main, ["balance", "--real", str(small_real), "--target", "5", "-o",
                                      str(tmp_path / "x"), *args])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output

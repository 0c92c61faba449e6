"""engine.artifacts: typed, range-checked readers of what the engine writes, and discovery on disk."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import FIXTURES
from engine import artifacts as af
from engine.errors import InputError


@pytest.fixture(scope="module")
def compliance_json(tmp_path_factory) -> Path:
    """A real check report: engine.repair.check_flows over the flows of eth.pcap."""
    from engine.codec.flows import FlowConfig
    from engine.codec.pipeline import encode_capture
    from engine.repair import check_flows
    mats, metas = [], []
    for b in encode_capture(FIXTURES / "eth.pcap", FlowConfig(min_packets=1)):
        mats += [b.flow(i) for i in range(len(b))]
        metas += b.metas
    d = tmp_path_factory.mktemp("check")
    check_flows(mats, metas, source="eth.pcap").write(d)
    return d / "compliance.json"


def one_line(e: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and all(w in msg for w in words), msg


def test_shipped_checkpoint():
    c = af.read_checkpoint(af.DEFAULT_MODEL_DIR)
    assert c.format.startswith("netdiff-") and len(c.classes) == 20 and "zoom" in c.classes
    assert c.steps and c.steps > 0 and c.weights_size > 1_000_000 and c.model["d_model"] > 0
    [default] = [m for m in af.find_models("/nonexistent", []) if m.kind == "default"]
    assert default.ready and default.classes == c.classes


@pytest.mark.parametrize("cfg, words", [
    ({"classes": "dns"}, ("classes", "list")),
    ({"classes": ["dns", 3]}, ("classes",)),
    ({"steps": -1}, ("steps", "integer")),
    ({"steps": True}, ("steps",)),
    ({"model": [1]}, ("model", "object")),
    ({"layout": {"x": 1}}, ("layout", "text")),
])
def test_hostile_checkpoint_config(tmp_path, cfg, words):
    d = tmp_path / "models" / "bad"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "model.safetensors").write_bytes(b"\0" * 8)
    with pytest.raises(InputError) as e:
        af.read_checkpoint(d)
    one_line(e, d / "config.json", *words)
    [m] = [m for m in af.find_models(tmp_path / "models", []) if m.name == "bad"]
    assert not m.ready and words[0] in m.status        # a listing shows the problem, never raises


def test_runs_are_found_with_their_latest_step(tmp_path):
    run = tmp_path / "runs" / "r1"
    (run / "checkpoints" / "step-200").mkdir(parents=True)
    (run / "checkpoints" / "step-1000").mkdir()
    (run / "checkpoints" / "step-x").mkdir()
    (run / "train_config.json").write_text(json.dumps({"classes": ["dns"]}))
    assert af.find_runs(tmp_path / "runs") == [run]
    [m] = [m for m in af.find_models(tmp_path / "none", [tmp_path / "runs"]) if m.kind == "run"]
    assert (m.name, m.steps, m.classes, m.ready) == ("r1", 1000, ("dns",), False)


def test_compliance_report(compliance_json):
    r = af.read_compliance(compliance_json)
    raw = json.loads(compliance_json.read_text())
    assert (r.mode, r.source, r.packets, r.flows, r.clean) == ("check", "eth.pcap", raw["packets"], raw["flows"],
                                                                 raw["clean"])
    assert [x.name for x in r.rules] == [x["name"] for x in raw["rules"]]
    assert r.before.packets == raw["totals"]["before"]["packets"]
    assert af.read_report(compliance_json.parent) == r
    assert af.compliance_line(raw) in ("clean", f"{r.after.packets} packets in {r.after.flows} flows still violate")


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(rules={"a": 1}), ("rules", "list")),
    (lambda d: d["totals"].update(before={"packets": "many"}), ("totals.before.packets", "integer")),
    (lambda d: d["rules"][0].update(enabled="yes"), ("rules[0].enabled", "true or false")),
    (lambda d: d.update(packets=-3), ("packets",)),
])
def test_hostile_compliance_report(compliance_json, tmp_path, edit, words):
    d = json.loads(compliance_json.read_text())
    edit(d)
    p = tmp_path / "compliance.json"
    p.write_text(json.dumps(d))
    with pytest.raises(InputError) as e:
        af.read_report(p)
    one_line(e, p, *words)


def test_evaluation_summary_and_non_reports(tmp_path):
    r = {"classes": ["dns"], "inputs": {"real": "r", "synthetic": "s"},
         "summary": {"mean_jsd": {"synthetic": 0.2}, "tstr_ratio_packet_bits_noports": 0.8,
                     "closeness": {"synthetic": {"median_dcr_ratio": 7.0, "exact_copies": 0.0}}},
         "fidelity": {"synthetic": {"classes": {"dns": {"mean": {"jsd": 0.2, "tvd": 0.1}}},
                                    "overall": {"jsd": 0.2, "tvd": 0.1}}}}
    (tmp_path / "report.json").write_text(json.dumps(r))
    s = af.read_report(tmp_path)
    assert isinstance(s, af.EvaluationSummary)
    assert s.per_class["synthetic"]["dns"] == {"jsd": 0.2, "tvd": 0.1} and s.tstr_ratios == {"packet_bits_noports": 0.8}
    assert s.dcr_ratio == 7.0 and s.exact_copies == 0.0 and s.flow_length_jsd == {}
    r["summary"]["flow_length_jsd"] = {"synthetic_vs_test": 0.12, "synthetic_vs_train": 0.02, "real_train_vs_test": 0.11}
    (tmp_path / "report.json").write_text(json.dumps(r))
    assert af.read_report(tmp_path).flow_length_jsd["synthetic_vs_train"] == 0.02
    r["summary"]["flow_length_jsd"]["synthetic_vs_test"] = 7      # a JSD lies in [0, 1]
    (tmp_path / "report.json").write_text(json.dumps(r))
    with pytest.raises(InputError, match=r"flow_length_jsd.synthetic_vs_test"):
        af.read_report(tmp_path)
    del r["summary"]["flow_length_jsd"]
    r["fidelity"]["synthetic"]["overall"]["jsd"] = "low"
    (tmp_path / "report.json").write_text(json.dumps(r))
    with pytest.raises(InputError, match=r"fidelity.synthetic.overall.jsd: expected a number"):
        af.read_report(tmp_path)
    for text, words in (("[1]", ("not a report",)), ("{}", ("not a report",)), ("\xff", ("not UTF-8",)), ("{1", ("not JSON",))):
        (tmp_path / "x.json").write_text(text, encoding="latin-1")
        with pytest.raises(InputError) as e:
            af.read_report(tmp_path / "x.json")
        one_line(e, tmp_path / "x.json", *words)
    with pytest.raises(InputError, match="no compliance.json or report.json in this directory"):
        af.read_report(tmp_path.parent)


def test_generation_record_and_export_manifest(tmp_path):
    from engine.datasets.export import export
    from engine.codec.matrix import write_pcap
    from engine.codec.pipeline import encode_capture
    gen = tmp_path / "gen"
    (gen / "dns").mkdir(parents=True)
    rows = []
    for i, b in enumerate(encode_capture(FIXTURES / "eth.pcap")):
        m, meta = b.flow(0), b.metas[0]
        meta.label, meta.flow_id = "dns", f"dns-{i:05d}"
        write_pcap(gen / "dns" / f"dns-{i:05d}.pcap", [m], [meta])
        rows.append({"file": f"dns/dns-{i:05d}.pcap", "label": "dns", "flow_id": meta.flow_id})
    with open(gen / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (gen / "generate.json").write_text(json.dumps({"request": {"label": "dns", "count": len(rows), "model": None,
                                                               "extra": {}},
                                                   "summary": {"model_hash": "ab12", "flows": len(rows)}}))
    g = af.read_generate(gen)
    assert (g.label, g.model, g.model_hash, g.flows) == ("dns", "", "ab12", len(rows))
    assert g.recipe_sha256 == af.request_hash(g.request) and len(g.recipe_sha256) == 64
    export([gen], tmp_path / "out")
    m = af.read_export_manifest(tmp_path / "out")
    assert m.flows == len(rows) and m.classes["dns"]["synthetic"] == len(rows) and m.inputs == (str(gen),)
    assert [r["flow_id"] for r in af.read_manifest_rows(tmp_path / "out" / "manifest.csv")] == \
        [r["flow_id"] for r in rows]
    # a hostile generate.json stops the export with one line, not a traceback
    (gen / "generate.json").write_text(json.dumps({"request": {"extra": {"recipe": 5}}}))
    with pytest.raises(InputError) as e:
        export([gen], tmp_path / "out2")
    one_line(e, gen / "generate.json", "request.extra.recipe")


@pytest.mark.parametrize("text, words", [
    ("file,label\n../../etc/passwd,x\n", ("outside the dataset",)),
    ("file,label\n/abs.pcap,x\n", ("outside the dataset",)),
    ("file,label\na.pcap,x,extra\n", ("line 2", "more cells")),
    ("label\nx\n", ("'file' column",)),
])
def test_hostile_manifest_rows(tmp_path, text, words):
    p = tmp_path / "manifest.csv"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        af.read_manifest_rows(p)
    one_line(e, p, *words)


def test_class_flows_reads_the_length_table():
    from engine.artifacts.models import class_flows, classes_text
    cfg = {"lengths": {"a": [[2, 6, 3], [9, 17, 4]], "b": [[2, 6, -1], "x", [3, 6, 2.5], [4, 6, 5]], "c": "junk"}}
    assert class_flows(cfg) == {"a": 7, "b": 5}
    assert class_flows({}) == {} and class_flows({"lengths": [1]}) == {}
    assert classes_text(["a", "b"], class_flows(cfg)) == "classes (2; training flows): a 7, b 5"
    assert classes_text(["a", "z"], class_flows(cfg)) == "classes (2): a, z"      # no count for z: none shown

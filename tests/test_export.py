"""netdiff export: layout, real bytes kept, synthetic provenance, split, pcapng comments, atomic + resumable."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT
from engine.datasets import export as ex
from engine.errors import InputError
from engine.codec.pipeline import encode_capture

SMALL = ("dns", "facebook", "ssh", "twitch")


@pytest.fixture
def small_real(real_dir, tmp_path) -> Path:
    """A few thin classes of the real data (symlinked, read-only)."""
    d = tmp_path / "real"
    d.mkdir()
    for c in SMALL:
        (d / c).symlink_to(real_dir / c)
    return d


def tree(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def manifest(d: Path) -> list[dict]:
    with open(d / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def fake_generated(src_capture: Path, out: Path, label: str, n: int = 4) -> Path:
    """A dataset directory in the generator's format (manifest.csv + <label>/*.pcap, one flow each)."""
    from engine.codec.matrix import write_pcap
    out.mkdir(parents=True)
    (out / label).mkdir()
    rows = []
    flows = [(b.flow(i), m) for b in encode_capture(src_capture) for i, m in enumerate(b.metas)][:n]
    for i, (m, meta) in enumerate(flows):
        meta.label, meta.flow_id = label, f"{label}-{i:05d}"
        rel = f"{label}/{label}-{i:05d}.pcap"
        k = write_pcap(out / rel, [m], [meta])
        rows.append({"file": rel, "label": label, "packets": k, "seed": 7, "model_hash": "ab" * 32,
                     "synthetic": 1, "flow_id": meta.flow_id, "proto": meta.proto, "init_ip": "10.0.0.1",
                     "init_port": meta.init_port, "resp_ip": "198.51.100.1", "resp_port": meta.resp_port,
                     "start_ns": meta.start_ns})
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "compliance.json").write_text(json.dumps({"clean": True, "flows": n}))
    (out / "generate.json").write_text(json.dumps({"request": {"label": label, "count": n, "seed": 7, "model": None,
                                                               "extra": {"recipe": "zoom", "recipe_sha256": "cd" * 32}},
                                                   "summary": {"model_hash": "ab" * 32}}))
    return out


def test_real_export_keeps_original_bytes_and_labels(small_real, tmp_path, real_dir):
    out = tmp_path / "out"
    s = ex.export([small_real], out, ex.ExportOptions(pcapng=True))
    rows = manifest(out)
    assert s["flows"] == len(rows) > 0
    assert {r["class"] for r in rows} == set(SMALL) and {r["origin"] for r in rows} == {"real"}
    # same flows as `netdiff encode` would cut (ids and packet counts)
    f = real_dir / "ssh" / "zeek__ssh_single_conn.pcap"
    want = {m.flow_id: m.packets for b in encode_capture(f) for m in b.metas}
    got = {r["flow_id"]: int(r["packets"]) for r in rows if r["source"] == f"ssh/{f.name}"}
    assert got == want
    # original bytes: every record of a flow file is a record of the source capture
    src = {(r.ts_ns, r.data) for r in ex.iter_records(f)}
    for r in rows:
        if r["source"] == f"ssh/{f.name}":
            recs = list(ex.iter_records(out / r["file"]))
            assert len(recs) == int(r["packets"]) and all((x.ts_ns, x.data) in src for x in recs)
            assert int(r["bytes"]) == sum(x.wirelen for x in recs)
    # pcap/pcapng copies of one capture are read once
    assert not any(r["source"].endswith(".pcapng") and r["source"][:-2] in {x["source"] for x in rows} for r in rows)
    # merged pcapng: every packet carries its label and flow id
    if shutil.which("tshark"):
        t = subprocess.run(["tshark", "-r", str(out / "ssh.pcapng"), "-T", "fields", "-e", "frame.comment"],
                           capture_output=True, text=True, timeout=60)
        comments = [c for c in t.stdout.splitlines() if c]
        assert len(comments) == sum(int(r["packets"]) for r in rows if r["class"] == "ssh")
        assert all(c.startswith("label=ssh flow=") and "origin=real" in c for c in comments)
    j = json.loads((out / "manifest.json").read_text())
    assert j["dataset"]["flows"] == len(rows) and len(j["flows"]) == len(rows)
    readme = (out / "README.md").read_text()
    assert "| ssh |" in readme and "real" in readme
    assert not ex.work_dir_for(out).exists()


def test_mix_with_synthetic_split_and_provenance(small_real, tmp_path, real_dir):
    gen = fake_generated(real_dir / "twitch" / "netssm__twitch_syn_synack_only.pcap", tmp_path / "gen", "twitch", 5)
    out = tmp_path / "out"
    r = CliRunner().invoke(__import__("netdiff_tui.cli", fromlist=["main"]).main,
                           ["export", str(small_real), str(gen), "-o", str(out), "--split", "0.25", "--seed", "3",
                            "--pcapng", "-q"])
    assert r.exit_code == 0, r.output
    rows = manifest(out)
    syn = [x for x in rows if x["origin"] == "synthetic"]
    assert len(syn) == 5 and all(x["class"] == "twitch" and x["split"] == "train" for x in syn)
    assert all(x["recipe"] == "zoom" and x["recipe_sha256"] == "cd" * 32 and x["model_hash"] == "ab" * 32
               and x["seed"] == "7" and x["compliance"] == "clean" for x in syn)
    for x in syn:       # copied byte for byte
        assert (out / x["file"]).read_bytes() == (gen / "twitch" / Path(x["file"]).name).read_bytes()
    test = [x for x in rows if x["split"] == "test"]
    assert test and all(x["origin"] == "real" for x in test)
    for c in SMALL:     # stratified: every class has test flows, about 25 %
        n = sum(1 for x in rows if x["class"] == c and x["origin"] == "real")
        assert sum(1 for x in test if x["class"] == c) == ex.n_test(n, 0.25)
    assert all(x["file"].startswith(f"{x['split']}/{x['class']}/") for x in rows)
    assert (out / "train" / "twitch.pcapng").exists() and (out / "test" / "ssh.pcapng").exists()
    # same seed -> same split; another seed -> another
    out2 = tmp_path / "out2"
    ex.export([small_real, gen], out2, ex.ExportOptions(split=0.25, seed=3))
    assert [(x["file"], x["split"]) for x in manifest(out2)] == [(x["file"], x["split"]) for x in rows]


def test_refuses_bad_inputs_and_existing_output(tmp_path, small_real):
    with pytest.raises(InputError, match="no such directory"):
        ex.export([tmp_path / "nope"], tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no manifest.csv and no <class>"):
        ex.export([tmp_path / "empty"], tmp_path / "o")
    with pytest.raises(InputError, match="--split must be between 0 and 1"):
        ex.export([small_real], tmp_path / "o", ex.ExportOptions(split=1.5))
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(InputError, match="use --force"):
        ex.export([small_real], out)
    ex.export([small_real], out, force=True)
    assert not (out / "keep").exists() and (out / "manifest.csv").exists()


def test_sigkill_midway_leaves_nothing_complete_and_rerun_finishes_identically(small_real, tmp_path):
    out, ref = tmp_path / "out", tmp_path / "ref"
    cmd = [sys.executable, "-m", "netdiff_tui", "export", str(small_real), "-o", str(out), "--split", "0.2",
           "--pcapng"]
    # the killed run is export() itself, slowed per flow through its on_flow hook so the kill lands
    # midway; the rerun is the CLI command
    slow = ("import sys, time; from engine.datasets.export import ExportOptions, export; "
            "export([sys.argv[1]], sys.argv[2], ExportOptions(pcapng=True, split=0.2), "
            "on_flow=lambda row: time.sleep(0.01))")
    p = subprocess.Popen([sys.executable, "-c", slow, str(small_real), str(out)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = ex.work_dir_for(out) / "journal.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if journal.exists() and journal.read_text().count('"t": "flow"') >= 25:
            break
        assert p.poll() is None, p.stderr.read().decode()
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    # nothing that looks complete
    assert not out.exists()
    assert not any(q.name == "manifest.csv" for q in tmp_path.glob("*/manifest.csv"))
    done_before = journal.read_text().count('"t": "flow"')
    total = sum(1 for _ in ex.scan_inputs([small_real]))
    assert 25 <= done_before
    staged = {q.name: q.stat().st_ino for q in (ex.work_dir_for(out) / "data").rglob("*.pcap")}
    assert len(staged) >= 25
    # rerun: continues, does not redo finished flows
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"resumed {done_before} finished flows" in r.stdout or "resumed" in r.stdout, r.stdout
    assert not ex.work_dir_for(out).exists()
    after = {q.name: q.stat().st_ino for q in out.rglob("*.pcap")}
    kept = sum(after.get(n) == ino for n, ino in staged.items())
    assert kept >= done_before - 1, (kept, done_before)      # finished flows were not rewritten
    # same bytes as an uninterrupted run
    ex.export([small_real], ref, ex.ExportOptions(pcapng=True, split=0.2))
    assert tree(out) == tree(ref)
    assert total > 0


def test_changed_arguments_start_over(small_real, tmp_path):
    out = tmp_path / "out"
    work = ex.work_dir_for(out)
    work.mkdir()
    (work / "args.json").write_text('{"other": 1}')
    (work / "journal.jsonl").write_text('{"t": "flow", "src": "0:x", "row": {"file": "x/y.pcap"}}\n')
    msgs = []
    ex.export([small_real], out, on_event=lambda e: msgs.append(getattr(e, "text", "")))
    assert any("starting over" in m for m in msgs)
    assert "x/y.pcap" not in {r["file"] for r in manifest(out)}


def test_resume_after_kill_during_finalize(small_real, tmp_path, monkeypatch):
    """A crash after every flow is written (while writing manifests) also resumes cleanly."""
    out, ref = tmp_path / "out", tmp_path / "ref"
    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ex.card, "data_card", boom)
    with pytest.raises(KeyboardInterrupt):
        ex.export([small_real], out, ex.ExportOptions(split=0.3, pcapng=True))
    assert not out.exists()
    monkeypatch.undo()
    ex.export([small_real], out, ex.ExportOptions(split=0.3, pcapng=True))
    ex.export([small_real], ref, ex.ExportOptions(split=0.3, pcapng=True))
    assert tree(out) == tree(ref)


def test_n_test_rule():
    assert [ex.n_test(n, 0.2) for n in (0, 1, 2, 5, 10, 11)] == [0, 0, 1, 1, 2, 2]
    assert ex.n_test(3, 0.9) == 2


def test_classes_and_max_per_class(small_real, tmp_path, real_dir):
    """--class picks classes, --max-per-class caps each one (the first flows in input order); both are
    recorded in manifest.json; an absent class is one line naming those the inputs hold."""
    full = tmp_path / "full"
    ex.export([small_real], full)
    every = manifest(full)
    out = tmp_path / "out"
    r = CliRunner().invoke(__import__("netdiff_tui.cli", fromlist=["main"]).main,
                           ["export", str(small_real), "-o", str(out), "--class", "ssh", "--class", "dns",
                            "--max-per-class", "3", "-q"])
    assert r.exit_code == 0, r.output
    rows = manifest(out)
    for c in ("ssh", "dns"):
        want = [x["flow_id"] for x in every if x["class"] == c][:3]
        assert [x["flow_id"] for x in rows if x["class"] == c] == want and want
    assert {x["class"] for x in rows} == {"ssh", "dns"}
    opts = json.loads((out / "manifest.json").read_text())["dataset"]["options"]
    assert opts["classes"] == ["dns", "ssh"] and opts["max_per_class"] == 3
    assert "classes" not in json.loads((full / "manifest.json").read_text())["dataset"]["options"]
    with pytest.raises(InputError, match=r"no flows of class zoom in the inputs \(they hold: dns, facebook"):
        ex.export([small_real], tmp_path / "o2", ex.ExportOptions(classes=("zoom",)))
    with pytest.raises(InputError, match="--max-per-class must be >= 1"):
        ex.export([small_real], tmp_path / "o3", ex.ExportOptions(max_per_class=0))

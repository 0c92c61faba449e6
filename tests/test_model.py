"""Native diffusion model: training, resume, sampling, generation, multi-process, shipped checkpoint.

Core tests build a tiny dataset from tests/fixtures captures; none needs the real data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.errors import Cancelled, InputError
from engine.progress import CancelToken, TrainStep
from engine.datasets.request import GenerationRequest

from conftest import FIXTURES, ROOT

# presence_input + self_condition, as the shipped config; TINY_PLAIN is the older model kind
TINY = {"model": {"d_model": 32, "layers": 1, "heads": 2, "max_packets": 16, "presence_input": True,
                  "self_condition": True}, "batch_size": 4,
        "checkpoint_every": 2, "warmup_steps": 2, "log_every": 1, "test_fraction": 0.2,
        "calibrate_flows": 8, "calibrate_rounds": 1}
TINY_PLAIN = {**TINY, "model": {"d_model": 32, "layers": 1, "heads": 2, "max_packets": 16}}
DEFAULT_CKPT = ROOT / "engine" / "default_model" / "model.safetensors"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Two labeled classes made from the loopback fixture captures."""
    from engine.datasets.encode import encode_files
    d = tmp_path_factory.mktemp("tinydata")
    for label, name in (("zoom", "eth.pcap"), ("dns", "sll.pcap")):
        (d / "in" / label).mkdir(parents=True)
        shutil.copy(FIXTURES / name, d / "in" / label / name)
    encode_files(sorted((d / "in").rglob("*.pcap")), d / "ds", label_from_dir=True)
    return d / "ds"


def tiny_cfg(**kw):
    from engine.model.train import TrainConfig
    return TrainConfig.from_dict({**TINY, **kw})


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    from engine.model.train import train
    run = tmp_path_factory.mktemp("run") / "run"
    s = train(tiny_data, run, tiny_cfg(steps=2))
    assert s["steps"] == 2
    return run


def test_model_shapes():
    from engine.model import PacketDenoiser
    m = PacketDenoiser(num_classes=3, d_model=32, layers=1, heads=2, max_packets=8)
    x = torch.randn(2, 8, 1105)
    out = m(x, torch.tensor([3, 500]), torch.tensor([0, 3]))
    assert out.shape == x.shape
    assert m(x, 10, torch.tensor([1, 2])).shape == x.shape


def test_train_two_steps_and_sample(tiny_run, tmp_path):
    from engine.datasets.generate import generate
    from engine.model.checkpoint import load_model
    model, cfg, d = load_model(tiny_run)            # a run directory resolves to its model/
    assert d == tiny_run / "model"
    assert cfg["classes"] == ["dns", "zoom"] and cfg["steps"] == 2 and cfg["layout"] == "nd-1"
    assert len(cfg["data_manifest_sha256"]) == 64
    split = json.loads((tiny_run / "split.json").read_text())
    assert split["test"] and not set(split["test"]) & set(split["train"])
    events = [json.loads(x) for x in (tiny_run / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "TrainStep" for e in events)
    out = tmp_path / "gen"
    s = generate(GenerationRequest(label="zoom", count=3, model=str(tiny_run), seed=1, steps=2), out)
    assert s["flows"] == 3
    rows = (out / "manifest.csv").read_text().splitlines()
    assert rows[0].startswith("file,label,packets,seed,model_hash,synthetic,flow_id,proto")
    assert len(rows) == 4 and all(",1,zoom-" in r for r in rows[1:])
    for i in range(3):
        assert (out / "zoom" / f"zoom-{i:05d}.pcap").stat().st_size > 24
    assert json.loads((out / "compliance.json").read_text())
    assert not list(tmp_path.glob(".gen.*"))        # no temp dirs left behind


def test_resume_matches_uninterrupted(tiny_data, tmp_path):
    from engine.model.train import train
    straight = tmp_path / "straight"
    train(tiny_data, straight, tiny_cfg(steps=4))
    parted = tmp_path / "parted"
    tok = CancelToken()

    def stop_at_2(ev):
        if isinstance(ev, TrainStep) and ev.step == 2:
            tok.cancel()
    with pytest.raises(Cancelled):
        train(tiny_data, parted, tiny_cfg(steps=4), on_event=stop_at_2, cancel=tok)
    assert (parted / "checkpoints" / "step-0000002" / "model.safetensors").exists()
    with pytest.raises(InputError):                   # a second fresh start refuses to clobber
        train(tiny_data, parted, tiny_cfg(steps=4))
    train(tiny_data, parted, tiny_cfg(steps=4), resume=True)
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(straight / "checkpoints" / "step-0000004" / name)
        b = load_file(parted / "checkpoints" / "step-0000004" / name)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    ck = parted / "checkpoints" / "step-0000004"
    for name in ("optimizer.safetensors", "rng.safetensors"):   # optimizer moments and RNG resume too
        a, b = load_file(straight / "checkpoints" / "step-0000004" / name), load_file(ck / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # a checkpoint is safetensors and JSON only: nothing to unpickle
    assert sorted(p.name for p in ck.iterdir()) == ["ema.safetensors", "model.safetensors", "optimizer.json",
                                                    "optimizer.safetensors", "rng.safetensors", "state.json"]
    assert not [p for p in parted.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".bin", ".ckpt")]


def test_pickled_state_of_an_older_run_is_refused(tiny_data, tmp_path):
    """An older netdiff wrote optimizer.pt (a pickle): --resume refuses it in one line and says how to go
    on; starting a new run from that checkpoint's weights (init_from) works."""
    from engine.model.train import train
    run = tmp_path / "old"
    train(tiny_data, run, tiny_cfg(steps=2))
    ck = run / "checkpoints" / "step-0000002"
    for name in ("optimizer.safetensors", "optimizer.json", "rng.safetensors"):
        (ck / name).unlink()
    (ck / "optimizer.pt").write_bytes(b"\x80\x04crunpy\n_run_code\n.")        # must never be unpickled
    with pytest.raises(InputError) as ei:
        train(tiny_data, run, tiny_cfg(steps=4), resume=True)
    msg = str(ei.value)
    assert msg.startswith(f"{ck / 'optimizer.pt'}: ") and "pickle" in msg and "\n" not in msg
    assert "restart the run" in msg and f'"init_from": "{ck}"' in msg
    s = train(tiny_data, tmp_path / "new", tiny_cfg(steps=1, init_from=str(ck)))
    assert s["steps"] == 1
    with pytest.raises(InputError, match="classes differ"):
        train(tiny_data, tmp_path / "other", tiny_cfg(steps=1, init_from=str(ck), classes=["zoom"]))


def test_sigterm_saves_checkpoint_and_resumes(tiny_data, tmp_path):
    import signal
    import time
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({**TINY, "checkpoint_every": 10**6}))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "netdiff_tui", "train", "--data", str(tiny_data), "--out", str(run),
           "--config", str(cfg), "--steps", "100000", "-q"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ev = run / "events.jsonl"
    t0 = time.time()
    while not (ev.exists() and '"TrainStep"' in ev.read_text()):
        assert p.poll() is None and time.time() - t0 < 60, p.communicate()
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    # the message gives the exact command that resumes (issue #11: it said "run the same command again")
    assert f"Resume with: netdiff train --data {tiny_data} --out {run} --config {cfg} --steps 100000 --resume" \
        in err, err
    cks = sorted((run / "checkpoints").glob("step-*"))
    assert len(cks) == 1
    step = int(cks[0].name.split("-")[1])
    assert step >= 1 and "stopped at step" in ev.read_text()
    from engine.model.train import train
    s = train(tiny_data, run, resume=True, steps=step + 1)
    assert s["steps"] == step + 1 and (run / "model" / "model.safetensors").exists()


def test_time_limit_exports_the_leg_and_resume_continues(tiny_data, tmp_path, monkeypatch):
    """--time-limit: at the first step past the limit the run saves a checkpoint and exports its model
    (a lease or a batch allocation that ends does not lose the leg); --resume goes on to --steps. The
    clock is a counter (one second a look), so the stop step is exact."""
    from click.testing import CliRunner
    from engine.model.stopping import StopPoll
    from netdiff_tui.cli import main
    ticks = iter(range(10**6))
    monkeypatch.setattr(StopPoll, "clock", staticmethod(lambda: float(next(ticks))))
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({**TINY, "checkpoint_every": 10**6, "calibrate_flows": 0}))
    run = tmp_path / "run"
    args = ["train", "--data", str(tiny_data), "--out", str(run), "--config", str(cfg), "--steps", "50"]
    r = CliRunner().invoke(main, [*args, "--time-limit", "3.5s"])
    assert r.exit_code == 0, r.output
    # clock 0 at the start; looks before steps 1, 2, 3 read 1, 2, 3; the fourth reads 4 >= 3.5
    assert "3 steps on" in r.output and "time limit: stopped at step 3 of 50" in r.output, r.output
    assert f"continue with: netdiff train {' '.join(args[1:])} --time-limit 3.5 --resume" in r.output, r.output
    assert [c.name for c in sorted((run / "checkpoints").glob("step-*"))] == ["step-0000003"]
    assert json.loads((run / "model" / "config.json").read_text())["steps"] == 3
    assert "time limit reached at step 3 of 50" in (run / "events.jsonl").read_text()
    r = CliRunner().invoke(main, [*args, "--resume", "--time-limit", "1h"])
    assert r.exit_code == 0 and "50 steps on" in r.output and "time limit" not in r.output, r.output
    for bad, why in (("0", "more than 0"), ("-5m", "not a duration"), ("1x", "not a duration"),
                     ("h", "not a duration"), ("1h30", "not a duration")):
        r = CliRunner().invoke(main, [*args, "--time-limit", bad])
        assert r.exit_code == 2 and why in r.output, (bad, r.output)


def test_duration_values():
    from netdiff_tui.cli import Duration
    d = Duration()
    assert [d.convert(v, None, None) for v in ("5400", "90m", "1h30m", "1.5h", "2d", " 45S ", 30)] == \
        [5400, 5400, 5400, 5400, 172800, 45, 30]


def test_generate_same_seed_same_bytes(tiny_run, tmp_path):
    from engine.datasets.generate import generate

    def run(out, seed):
        generate(GenerationRequest(label="dns", count=4, model=str(tiny_run), seed=seed, steps=3), out)
        return [p.read_bytes() for p in sorted((out / "dns").glob("*.pcap"))]
    a, b, c = run(tmp_path / "a", 7), run(tmp_path / "b", 7), run(tmp_path / "c", 8)
    assert a == b
    assert a != c
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (tmp_path / "b" / "manifest.csv").read_bytes()


def test_generate_bad_requests(tiny_run, tmp_path):
    from engine.datasets.generate import generate
    with pytest.raises(InputError, match="not one of the model's classes"):
        generate(GenerationRequest(label="nope", count=1, model=str(tiny_run)), tmp_path / "x")
    with pytest.raises(InputError, match="revision 'main' is not a 40-hex commit"):     # a request pins Hub models
        generate(GenerationRequest(label="dns", count=1, model="hf://org/name@main"), tmp_path / "x")
    with pytest.raises(InputError, match="not a model checkpoint"):
        generate(GenerationRequest(label="dns", count=1, model=str(tmp_path)), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_generate_constraints(tiny_run, tmp_path):
    from engine.datasets.generate import generate
    from engine.model.sample import flow_proto
    from engine.datasets.encoded import load_flow  # noqa: F401  (pcaps are checked through the manifest)
    s = generate(GenerationRequest(label="zoom", count=3, model=str(tiny_run), seed=3, steps=2,
                                   packets_min=2, packets_max=5, server_ports=(443,),
                                   client_cidrs=("10.9.0.0/24",), server_cidrs=("192.0.2.7/32",)), tmp_path / "g")
    import csv
    rows = list(csv.DictReader(open(tmp_path / "g" / "manifest.csv")))
    assert len(rows) == 3
    for r in rows:
        assert int(r["packets"]) <= 5
        assert r["resp_ip"] == "192.0.2.7" and r["init_ip"].startswith("10.9.0.")
        if r["proto"] in ("6", "17"):
            assert r["resp_port"] == "443"
    assert flow_proto(np.full((2, 1105), -1, np.int8)) == 0
    assert s["sampling"]["drawn"] >= 3


def _launch(args: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # accelerate's --cpu runs a single process; --multi_gpu goes through torchrun, and the engine
    # picks gloo on a machine without CUDA
    import socket
    with socket.socket() as s:      # a free rendezvous port: the default 29500 may be taken or in TIME_WAIT
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port),
           "-m", "netdiff_tui", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_processes_train_and_generate(tiny_data, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    r = _launch(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--config", str(cfg),
                 "--steps", "2", "-q"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    r = _launch(["generate", "--label", "zoom", "-n", "5", "-o", str(tmp_path / "gen"), "--model",
                 str(tmp_path / "run"), "--steps", "2", "--seed", "4", "-q"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = (tmp_path / "gen" / "manifest.csv").read_text().splitlines()[1:]
    assert sorted(x.split(",")[0] for x in rows) == [f"zoom/zoom-{i:05d}.pcap" for i in range(5)]
    g = json.loads((tmp_path / "gen" / "generate.json").read_text())
    assert g["summary"]["processes"] == 2


@pytest.mark.skipif(not DEFAULT_CKPT.exists(), reason="shipped checkpoint engine/default_model not built yet")
def test_cli_generate_zoom_default_model_tshark(tmp_path):
    from click.testing import CliRunner
    from netdiff_tui.cli import main
    out = tmp_path / "zoom"
    r = CliRunner().invoke(main, ["generate", "--label", "zoom", "-n", "4", "-o", str(out), "--seed", "1", "-q"])
    assert r.exit_code == 0, r.output
    pcaps = sorted((out / "zoom").glob("*.pcap"))
    assert len(pcaps) == 4
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    for p in pcaps:
        t = subprocess.run(["tshark", "-r", str(p)], capture_output=True, text=True, timeout=60)
        assert t.returncode == 0, (p, t.stderr)


def test_cli_generate_errors(tiny_run, tmp_path):
    from click.testing import CliRunner
    from netdiff_tui.cli import main
    r = CliRunner().invoke(main, ["generate", "--label", "nope", "-n", "1", "-o", str(tmp_path / "o"),
                                  "--model", str(tiny_run)])
    assert r.exit_code == 2 and "not one of the model's classes" in r.output
    r = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "manifest.csv" in r.output


def test_length_prior_in_checkpoint_and_sampling(tiny_run, tiny_data):
    from engine.model.checkpoint import load_model
    from engine.model.data import load_table
    from engine.model.lengths import draw_shape
    from engine.model.sample import SampleOptions, flow_proto, sample_flows
    model, cfg, _ = load_model(tiny_run)
    split = json.loads((tiny_run / "split.json").read_text())
    table = load_table(tiny_data, 16, files=split["train"], classes=cfg["classes"])
    for ci, c in enumerate(cfg["classes"]):    # counts of the training flows' (length cut at 16, transport)
        idx = np.nonzero(table.labels == ci)[0]
        want = {}
        for i in idx:
            m = table.rows[table.offsets[i]:table.offsets[i + 1]]
            k = (min(len(m), 16), flow_proto(m))
            want[k] = want.get(k, 0) + 1
        assert {(n, p): k for n, p, k in cfg["lengths"][c]} == want, c
    # draws stay in range, depend on the seed only, and follow the prior
    prior = [[3, 17, 1], [10, 6, 3]]
    d = [draw_shape(prior, s, 1, 16) for s in range(400)]
    assert set(d) == {(3, 17), (10, 6)} and 0.65 < d.count((10, 6)) / 400 < 0.85
    assert d == [draw_shape(prior, s, 1, 16) for s in range(400)]
    assert {draw_shape(prior, s, 4, 9)[0] for s in range(50)} <= set(range(4, 10))   # no mass: uniform
    assert {draw_shape(prior, s, 1, 16, proto=17) for s in range(20)} == {(3, 17)}
    assert draw_shape([[5, 2]], 1, 1, 16) == (5, 0)                                  # older [length, flows]
    # the sampled flows have exactly the drawn length and transport (the shape is imposed)
    for p in (6, 17, 1):
        c2 = {**cfg, "lengths": {"zoom": [[7, p, 1]]}}
        flows = sample_flows(model, c2, "zoom", [0, 1, 2], SampleOptions(seed=5, steps=2, packets_max=16))
        assert [len(m) for m in flows.values()] == [7, 7, 7]
        assert {flow_proto(m) for m in flows.values()} == {p}


def test_init_from_keeps_the_old_model(tiny_data, tmp_path):
    """A presence/self-conditioning model started from a plain checkpoint computes what it did."""
    from engine.model.checkpoint import load_model
    from engine.model.denoiser import PacketDenoiser
    from engine.model.train import _init_weights, train
    train(tiny_data, tmp_path / "plain", tiny_cfg(steps=2, **{"model": TINY_PLAIN["model"]}))
    old, cfg, _ = load_model(tmp_path / "plain")
    new = PacketDenoiser(num_classes=2, d_model=32, layers=1, heads=2, max_packets=16,
                         presence_input=True, self_condition=True)
    _init_weights(new, str(tmp_path / "plain"), cfg["classes"])
    x, t, y = torch.randn(2, 16, 1105), torch.tensor([10, 900]), torch.tensor([0, 1])
    rows = torch.arange(16)[None] < torch.tensor([[4], [16]])
    with torch.no_grad():
        torch.testing.assert_close(new(x, t, y, rows, None), old(x, t, y))
    s = train(tiny_data, tmp_path / "ft", tiny_cfg(steps=2, init_from=str(tmp_path / "plain")))
    assert s["steps"] == 2
    with pytest.raises(InputError, match="classes differ"):
        bad = PacketDenoiser(num_classes=2, d_model=32, layers=1, heads=2, max_packets=16)
        _init_weights(bad, str(tmp_path / "plain"), ["a", "b"])


def test_flows_keep_one_transport():
    from engine.codec.matrix import COL_ICMP, COL_TCP, COL_UDP
    from engine.codec.layout import get, put
    from engine.model.sample import force_transport, majority_proto, row_proto
    m = np.full((4, 1105), -1, np.int8)
    m[:, :96] = 0
    m[:, 1088:] = 0
    m[:3, COL_UDP] = 0
    put(m, "ipv4_proto", 17, np.arange(3))
    m[1, COL_ICMP] = 0                 # a UDP row that also carries an ICMP block
    put(m, "ipv4_proto", 1, np.array([1]))
    m[3, COL_TCP] = 0                  # a TCP row in a UDP flow
    assert majority_proto(m) == 17
    f = force_transport(m, majority_proto(m))
    assert row_proto(f).tolist() == [17] * 4
    assert (f[:, COL_ICMP] == -1).all() and (f[:, COL_TCP] == -1).all()
    assert (get(f, "ipv4_proto") == 17).all()
    assert majority_proto(np.full((2, 1105), -1, np.int8)) == 0


def test_field_vocabulary_decoding(tiny_run):
    from engine.codec.layout import LAYOUT, get
    from engine.model.checkpoint import load_model
    from engine.model.vocab import SPANS, decode, fit_vocab
    rows = np.full((6, LAYOUT.width), -1, np.int8)
    rows[:, :96] = 0
    from engine.codec.layout import put
    put(rows, "ipv4_ttl", np.array([64, 64, 64, 128, 128, 7]))
    v = fit_vocab(rows, np.zeros(6, int), ["a"], keep=2)
    assert v["a"]["ipv4_ttl"] == [[64, 3], [128, 2]]      # 7 was seen once, beyond the kept two
    put(rows, "ipv4_tl", np.array([40, 40, 1500, 611, 873, 952]))
    assert fit_vocab(rows, np.zeros(6, int), ["a"], keep=2)["a"]["ipv4_tl"] == \
        [[40, 2], [611, 1], [873, 1], [952, 1], [1500, 1]]   # sizes keep every value seen (vocab.WIDE)
    put(rows, "ipv4_tl", 40)
    x = rows.astype(np.float32)[None].copy()
    ttl = LAYOUT.cols("ipv4_ttl")
    x[0, :, ttl] = np.where(x[0, :, ttl] > 0, 0.8, 0.2)   # soft bits of the same values
    x[0, 0, ttl.start + 7] = 0.9                      # 64 with its lowest bit leaning to 1: 65
    out = np.clip(np.rint(decode(x, v["a"])), -1, 1).astype(np.int8)[0]
    assert get(out, "ipv4_ttl").tolist() == [64, 64, 64, 128, 128, 64]
    assert (out[:, LAYOUT.cols("tcp_sprt")] == -1).all()     # absent spans stay absent
    # drawn from the posterior: sure bits keep their value, doubtful bits follow the counts
    # (each row a flow of its own: a TTL is drawn once per flow and direction, vocab.PER_DIRECTION)
    u = np.random.default_rng(0).random((6, 1, len(SPANS)))
    out = np.clip(np.rint(decode(x.reshape(6, 1, -1), v["a"], u)), -1, 1).astype(np.int8)[:, 0]
    assert get(out, "ipv4_ttl").tolist()[:5] == [64, 64, 64, 128, 128]
    flat = np.tile(rows.astype(np.float32)[:1], (4000, 1))[:, None]
    flat[:, 0, ttl] = 0.5                                     # the model has no idea
    u = np.random.default_rng(1).random((4000, 1, len(SPANS)))
    got = get(np.clip(np.rint(decode(flat, v["a"], u)), -1, 1).astype(np.int8)[:, 0], "ipv4_ttl")
    assert set(got.tolist()) == {64, 128} and 0.55 < (got == 64).mean() < 0.65   # counts 3 : 2
    _, cfg, _ = load_model(tiny_run)
    assert set(cfg["vocab"]) == {"dns", "zoom"} and set(cfg["vocab"]["dns"]) <= set(SPANS)


def test_sampled_fields_come_from_the_vocabulary(tiny_run, tmp_path):
    from click.testing import CliRunner
    from engine.codec.layout import get
    from engine.model.checkpoint import load_model
    from dataclasses import replace
    from engine.model.sample import SampleOptions, sample_flows
    from netdiff_tui.cli import main
    model, cfg, _ = load_model(tiny_run)
    voc = {k: [e[0] for e in v] for k, v in cfg["vocab"]["zoom"].items()}
    opts = SampleOptions(seed=2, steps=3, packets_max=16)
    flows = sample_flows(model, cfg, "zoom", list(range(6)), opts)
    for m in flows.values():
        assert set(get(m, "ipv4_tl").tolist()) <= set(voc["ipv4_tl"])
        assert set(get(m, "ipv4_ttl").tolist()) <= set(voc["ipv4_ttl"])
    raw = sample_flows(model, cfg, "zoom", list(range(6)), replace(opts, field_vocab=False))
    assert any(not set(get(m, "ipv4_tl").tolist()) <= set(voc["ipv4_tl"]) for m in raw.values())
    r = CliRunner().invoke(main, ["generate", "--label", "zoom", "-n", "2", "-o", str(tmp_path / "raw"),
                                  "--model", str(tiny_run), "--steps", "2", "--raw-fields", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "raw" / "generate.json").read_text())["request"]["field_vocab"] is False


def test_config_tables_one_line_per_class(tiny_run):
    from engine.model.checkpoint import dump_config
    text = (tiny_run / "model" / "config.json").read_text()
    cfg = json.loads(text)
    assert dump_config(cfg) == text
    lines = text.splitlines()
    for key in ("lengths", "vocab"):
        i = lines.index(f'  "{key}": {{')
        assert [ln.split(":")[0].strip() for ln in lines[i + 1:i + 3]] == ['"dns"', '"zoom"']
    assert json.loads(dump_config({"a": 1})) == {"a": 1}


def test_guided_flows_keep_the_guides_shape(tiny_run, tmp_path):
    """--like: each flow starts from a real flow (SDEdit) and keeps its packet count and transport;
    the split file keeps test flows out; same seed, same bytes; provenance in the manifest."""
    import csv
    from engine.codec.matrix import present_rows
    from engine.datasets.generate import generate
    from engine.model.guide import guide_order, load_guides
    from engine.model.checkpoint import load_model
    from engine.model.sample import SampleOptions, majority_proto, sample_flows, usable_guides
    cap = FIXTURES / "sll.pcap"
    guides, ids = load_guides(cap, "dns")
    assert len(guides) == len(ids) >= 2 and all(len(g) == present_rows(g).sum() for g in guides)
    order = guide_order(len(guides), 5)
    assert sorted(order.tolist()) == list(range(len(guides)))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"test": [ids[0]], "train": ids[1:]}))
    kept, kept_ids = load_guides(cap, "dns", split)
    assert kept_ids == ids[1:]
    split.write_text(json.dumps({"test": ids}))
    with pytest.raises(InputError, match="no flow of class 'dns'"):
        load_guides(cap, "dns", split)
    with pytest.raises(InputError, match="no captures"):
        load_guides(tmp_path, "dns")

    model, cfg, _ = load_model(tiny_run)
    use = [guides[k] for k in usable_guides(guides, 1)]
    flows = sample_flows(model, cfg, "dns", list(range(4)), SampleOptions(seed=1, steps=4, packets_max=16, strength=0.3),
                         guides=use)
    o = guide_order(len(use), 1)
    for i, m in flows.items():
        g = use[o[i % len(use)]][:16]
        assert len(m) == len(g) and majority_proto(m) == majority_proto(g)
    with pytest.raises(ValueError, match="strength"):
        sample_flows(model, cfg, "dns", [0], SampleOptions(seed=1, steps=4, packets_max=16, strength=1.5), guides=use)

    def run(out):
        generate(GenerationRequest(label="dns", count=3, model=str(tiny_run), seed=4, steps=3, like=str(cap),
                                   strength=0.4), out)
        return [p.read_bytes() for p in sorted((out / "dns").glob("*.pcap"))]
    assert run(tmp_path / "a") == run(tmp_path / "b")
    rows = list(csv.DictReader(open(tmp_path / "a" / "manifest.csv")))
    assert {r["guide"] for r in rows} <= set(ids) and all(r["guide"] for r in rows)
    s = json.loads((tmp_path / "a" / "generate.json").read_text())["summary"]
    assert s["guides"]["flows"] == len(guides) and s["guides"]["strength"] == 0.4
    with pytest.raises(InputError, match="has >= 16 packets"):
        generate(GenerationRequest(label="dns", count=1, model=str(tiny_run), like=str(cap), packets_min=100,
                                   packets_max=128), tmp_path / "c")


def test_cli_generate_like(tiny_run, tmp_path):
    from click.testing import CliRunner
    from netdiff_tui.cli import main
    d = tmp_path / "caps"
    d.mkdir()
    shutil.copy(FIXTURES / "sll.pcap", d / "a.pcap")
    r = CliRunner().invoke(main, ["generate", "--label", "dns", "-n", "2", "-o", str(tmp_path / "o"), "--model",
                                  str(tiny_run), "--steps", "2", "--like", str(d), "--strength", "0.7", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o" / "generate.json").read_text())["request"]["strength"] == 0.7
    r = CliRunner().invoke(main, ["generate", "--label", "dns", "-n", "2", "-o", str(tmp_path / "p"), "--model",
                                  str(tiny_run), "--like", str(d), "--strength", "0", "-q"])
    assert r.exit_code == 2 and "--strength: must be > 0 and <= 1, got 0" in r.output and "Traceback" not in r.output


def test_palette_prior_pulls_towards_the_guides_values():
    """decode(): a flow's own values (palette) weigh in the prior; weight 0 is the class prior."""
    from engine.codec.layout import LAYOUT, get
    from engine.model.vocab import SPANS, decode, palette
    vocab = {"ipv4_ttl": [[64, 1000], [128, 10]]}
    x = np.full((2, 3, LAYOUT.width), -1.0, np.float32)
    x[:, :, LAYOUT.cols("ipv4_ttl")] = 0.5                 # present, the model has no idea
    guide = np.full((1, LAYOUT.width), -1, np.int8)
    ttl = LAYOUT.cols("ipv4_ttl")
    guide[0, ttl] = [int(b) for b in f"{128:08b}"]
    pal = palette(guide)
    assert pal["ipv4_ttl"][0].tolist() == [128] and "ipv4_tl" not in pal
    u = np.full((2, 3, len(SPANS)), 0.5)
    plain = decode(x, vocab, u)
    pulled = decode(x, vocab, u, [pal, None], palette_weight=50.0)
    ttl_of = (lambda y: get(np.rint(y).astype(np.int8).reshape(-1, LAYOUT.width), "ipv4_ttl").reshape(2, 3))
    assert (ttl_of(plain) == 64).all()
    assert (ttl_of(pulled)[0] == 128).all() and (ttl_of(pulled)[1] == 64).all()
    assert np.array_equal(decode(x, vocab, u, [pal, None], palette_weight=0.0), plain)


def test_field_weights(tiny_data, tmp_path):
    from engine.codec.layout import LAYOUT
    from engine.model.train import column_weights, train
    w = column_weights({"meta_iat": 8.0, "tcp": 2.0})
    assert w[LAYOUT.cols("meta_iat")].eq(8.0).all() and w[LAYOUT.block("tcp")].eq(2.0).all()
    assert float(w.sum()) == LAYOUT.width + 7 * 16 + (LAYOUT.block("tcp").stop - LAYOUT.block("tcp").start)
    for bad, msg in (({"nope": 1.0}, "no field or block"), ({"meta_iat": 0}, "must be > 0")):
        with pytest.raises(InputError, match=msg):
            column_weights(bad)
    s = train(tiny_data, tmp_path / "fw", tiny_cfg(steps=2, field_weights={"meta_iat": 8.0}))
    assert s["steps"] == 2


def test_calibration_brings_drawn_values_to_the_class_shares(tiny_run):
    """engine.model.calibrate: the weights it fits move the decoder's drawn values, in aggregate,
    towards the class's training shares (checked on flows of other seeds than it fitted on);
    netdiff train writes them; hostile weights get one line."""
    from dataclasses import replace
    from engine.model.calibrate import CALIBRATED, calibrate, check_calibration, drawn_counts
    from engine.model.checkpoint import load_model
    from engine.model.sample import SampleOptions, sample_flows
    from engine.model.vocab import _entries
    model, cfg, _ = load_model(tiny_run)
    assert set(cfg["calibration"]) == {"dns", "zoom"}           # written by netdiff train
    cfg = {k: v for k, v in cfg.items() if k != "calibration"}
    opts = SampleOptions(steps=3, packets_max=16)
    cal = calibrate(model, cfg, ["zoom"], flows=32, rounds=3, opts=opts)
    v, n = _entries(cfg["vocab"]["zoom"]["ipv4_tl"])

    def tvd(c):
        flows = list(sample_flows(model, c, "zoom", list(range(48)), replace(opts, seed=100)).values())
        have = drawn_counts(flows, "ipv4_tl", v)
        return 0.5 * np.abs(have / have.sum() - n / n.sum()).sum()
    assert set(cal["zoom"]) <= set(CALIBRATED) and "ipv4_tl" in cal["zoom"]
    assert tvd({**cfg, "calibration": cal}) < 0.7 * tvd(cfg)
    with pytest.raises(InputError, match="calibration of class 'zoom', span 'ipv4_tl'"):
        check_calibration({"ipv4_tl": [0.0]}, cfg["vocab"]["zoom"], "zoom")
    with pytest.raises(InputError, match="within"):
        check_calibration({"ipv4_tl": [99.0] * len(v)}, cfg["vocab"]["zoom"], "zoom")

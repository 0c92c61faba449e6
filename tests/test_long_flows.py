"""Flows of 1024 packets, the paper's image height (engine.constants.MAX_FLOW_PACKETS): a model of that
length generates them, repair makes them valid, pcap -> matrix -> pcap keeps them whole, and training and
sampling see each flow over its length bucket. A tiny 1024-packet model is trained here (CPU, seconds)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from engine.constants import MAX_FLOW_PACKETS
from netdiff_tui.cli import main

import tshark_judge
from conftest import FIXTURES

L = MAX_FLOW_PACKETS
TINY_1024 = {"model": {"d_model": 16, "layers": 1, "heads": 2, "max_packets": L, "presence_input": True,
                       "self_condition": True}, "batch_size": 2, "warmup_steps": 1, "log_every": 1,
             "test_fraction": 0.2}


@pytest.fixture(scope="module")
def long_model(tmp_path_factory) -> Path:
    from engine.datasets.encode import encode_files
    from engine.model.train import TrainConfig, train
    d = tmp_path_factory.mktemp("long")
    for label, name in (("zoom", "eth.pcap"), ("dns", "sll.pcap")):
        (d / "in" / label).mkdir(parents=True)
        shutil.copy(FIXTURES / name, d / "in" / label / name)
    encode_files(sorted((d / "in").rglob("*.pcap")), d / "ds", label_from_dir=True)
    train(d / "ds", d / "run", TrainConfig.from_dict({**TINY_1024, "steps": 1}))
    return d / "run"


@pytest.fixture(scope="module")
def long_flows(long_model, tmp_path_factory) -> Path:
    """Two generated TCP flows of exactly 1024 packets each (repaired)."""
    out = tmp_path_factory.mktemp("gen") / "out"
    r = CliRunner().invoke(main, ["generate", "--model", str(long_model), "--label", "zoom", "-n", "2",
                                  "--seed", "3", "--steps", "2", "--transport", "tcp",
                                  "--packets-min", str(L), "--packets-max", str(L), "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    return out


def _read(path):
    from engine.codec import capture as cap
    from engine.codec import packets as pk
    from engine.codec.packets import Packets
    sk = Counter()
    return Packets.concat([pk.parse(b, 0, sk) for b in cap.CaptureReader(path)])


def test_model_of_1024_packets(long_model):
    from engine.model.checkpoint import load_model
    model, cfg, _ = load_model(long_model)
    assert model.config.max_packets == L and model.pos.shape[1] == L


def test_generated_flows_have_1024_packets_and_are_valid(long_flows):
    pcaps = sorted((long_flows / "zoom").glob("*.pcap"))
    assert len(pcaps) == 2
    for p in pcaps:
        assert len(_read(p)) == L, p
    rows = (long_flows / "manifest.csv").read_text().splitlines()[1:]
    assert [r.split(",")[2] for r in rows] == [str(L), str(L)]
    r = CliRunner().invoke(main, ["check", *map(str, pcaps)])
    assert r.exit_code == 0, r.output
    if tshark_judge.available():
        for p in pcaps:
            v = tshark_judge.judge(p)
            assert v.frames == L and v.ok, (p, v.summary())


def test_1024_packet_flow_round_trips(long_flows, tmp_path):
    """pcap -> one 1024-row matrix -> pcap: headers byte for byte, and a second trip changes nothing."""
    from engine.codec.flows import FlowConfig
    from engine.codec.matrix import write_pcap
    from engine.codec.pipeline import encode_capture
    src = sorted((long_flows / "zoom").glob("*.pcap"))[0]
    # an untrained model's gaps can exceed the idle timeout; the flow is one flow whatever its gaps
    cfg = FlowConfig(idle_timeout=1e9)
    mats, metas = [], []
    for b in encode_capture(src, cfg):
        mats += [b.flow(i) for i in range(len(b))]
        metas += b.metas
    assert [m.shape for m in mats] == [(L, 1105)]
    once = tmp_path / "once.pcap"
    write_pcap(once, mats, metas)
    a, b = _read(src), _read(once)
    assert len(a) == len(b) == L
    assert np.array_equal(a.ip, b.ip) and np.array_equal(a.l4, b.l4)
    mats2, metas2 = [], []
    for bt in encode_capture(once, cfg):
        mats2 += [bt.flow(i) for i in range(len(bt))]
        metas2 += bt.metas
    assert len(mats2) == 1 and np.array_equal(mats2[0], mats[0])
    twice = tmp_path / "twice.pcap"
    write_pcap(twice, mats2, metas2)
    assert twice.read_bytes() == once.read_bytes()


def test_encode_cuts_at_1024_and_decodes(long_flows, tmp_path):
    """`netdiff encode` of a 1024-packet flow writes one 1024-row flow file that `netdiff decode` reads back."""
    from engine.datasets.encoded import load_flow, read_manifest
    src = sorted((long_flows / "zoom").glob("*.pcap"))[0]
    r = CliRunner().invoke(main, ["encode", str(src), "-o", str(tmp_path / "ds"), "--label", "zoom",
                                  "--idle-timeout", "1000000000", "-q"])
    assert r.exit_code == 0, r.output
    rows = read_manifest(tmp_path / "ds")
    assert len(rows) == 1
    m, _ = load_flow(tmp_path / "ds" / rows[0]["file"])
    assert m.shape == (L, 1105)
    r = CliRunner().invoke(main, ["decode", str(tmp_path / "ds"), "-o", str(tmp_path / "back.pcap")])
    assert r.exit_code == 0, r.output
    a, b = _read(src), _read(tmp_path / "back.pcap")
    assert len(b) == L and np.array_equal(a.ip, b.ip) and np.array_equal(a.l4, b.l4)


@pytest.mark.parametrize("n", [L + 1, 5000])
def test_encode_refuses_flows_longer_than_1024(tmp_path, n):
    r = CliRunner().invoke(main, ["encode", str(FIXTURES / "eth.pcap"), "-o", str(tmp_path / "ds"),
                                  "--max-packets", str(n)])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert "\n" not in line and f"--max-packets {n}" in line and str(L) in line, line
    assert not (tmp_path / "ds").exists()


def test_a_request_cannot_ask_for_more_than_1024_packets(long_model, tmp_path):
    r = CliRunner().invoke(main, ["generate", "--model", str(long_model), "--label", "zoom", "-n", "1",
                                  "--packets-max", str(L + 1), "-o", str(tmp_path / "g")])
    assert r.exit_code == 2, r.output
    assert str(L) in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_flows_are_sampled_over_their_length_bucket(long_model, monkeypatch):
    """A 1024-row model samples a short flow over 128 rows, a 300-packet one over 512 (one bucket per
    batch), and a flow's bytes do not depend on the batch it was drawn in."""
    from engine.model.checkpoint import load_model
    from engine.model.lengths import length_bucket
    from engine.model.sample import SampleOptions, sample_flows
    assert [length_bucket(n, L) for n in (1, 128, 129, 300, 1000)] == [128, 128, 256, 512, 1024]
    assert length_bucket(100, 128) == 128 and length_bucket(100, 64) == 64
    model, cfg, _ = load_model(long_model)
    seen = []
    forward = type(model).forward

    def spy(self, sample, *a, **k):
        seen.append(sample.shape[1])
        return forward(self, sample, *a, **k)
    monkeypatch.setattr(type(model), "forward", spy)
    runs = []
    for bs in (2, 3):
        seen.clear()
        runs.append(sample_flows(model, cfg, "zoom", list(range(4)), SampleOptions(
            batch_size=bs, seed=5, steps=2, packets_min=100, packets_max=300, transport="tcp")))
        assert set(seen) <= {128, 256, 512} and seen
    lens = [len(m) for m in runs[0].values()]
    assert all(100 <= n <= 300 for n in lens)
    assert all(np.array_equal(runs[0][i], runs[1][i]) for i in range(4))


@pytest.mark.parametrize("rows", [128, 256, 512, 3])
def test_a_bucket_starts_from_the_first_rows_of_a_flows_noise(rows, monkeypatch):
    """Sampling over a length bucket draws only its rows of noise, and they are the first rows of
    the flow's noise over all 1024 (what a flow's bytes rest on: torch's randn filling in order);
    a row count whose noise would not line up (3 rows) draws all rows and cuts."""
    import torch
    from engine.model import diffusion
    W, L = 1105, MAX_FLOW_PACKETS
    seeds = [0, 7, 2**62 + 11]
    full = diffusion.initial_noise(seeds, (L, W))
    drawn = []
    real = diffusion.initial_noise
    monkeypatch.setattr(diffusion, "initial_noise", lambda s, shape: drawn.append(shape) or real(s, shape))

    class Stop(Exception):
        pass

    class Model(torch.nn.Module):
        config = type("C", (), {"max_packets": L, "width": W, "num_classes": 1})()

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, *a):
            assert torch.equal(x, got[0])
            raise Stop
    got = [full[:, :rows] * 1.0]
    cfg = {"prediction_type": "sample", "num_train_timesteps": 1000}
    with pytest.raises(Stop):
        diffusion.sample(Model(), cfg, torch.zeros(3, dtype=torch.long), seeds, steps=2,
                         rows=torch.ones(3, rows, dtype=torch.bool), precision="fp32")
    assert drawn == [(rows if rows % 16 == 0 else L, W)]


def _mixed_lengths(long_flows: Path, root: Path) -> Path:
    """A dataset of short flows (dns, 7-13 packets) and 1024-packet ones (zoom)."""
    from engine.datasets.encode import encode_files
    for label, files in (("dns", [FIXTURES / "sll.pcap"]), ("zoom", sorted((long_flows / "zoom").glob("*.pcap")))):
        (root / "in" / label).mkdir(parents=True)
        for f in files:
            shutil.copy(f, root / "in" / label / f.name)
    encode_files(sorted((root / "in").rglob("*.pcap")), root / "ds", label_from_dir=True)
    return root / "ds"


@pytest.mark.parametrize("buckets", [True, False])
def test_training_sees_each_flow_over_its_length_bucket(long_flows, tmp_path, monkeypatch, buckets):
    """A 1024-row model trains short flows over 128 rows and 1024-packet ones over 1024, one bucket per
    forward pass within the same step (its sampling context, and 8x fewer rows for short flows); with
    ``length_buckets`` off every flow is 1024 rows. Either way the step trains and the run exports."""
    from engine.model.denoiser import PacketDenoiser
    from engine.model.train import TrainConfig, train
    ds = _mixed_lengths(long_flows, tmp_path)
    seen = []
    forward = PacketDenoiser.forward

    def spy(self, sample, *a, **k):
        seen.append((sample.shape[0], sample.shape[1]))
        return forward(self, sample, *a, **k)
    monkeypatch.setattr(PacketDenoiser, "forward", spy)
    cfg = {**TINY_1024, "batch_size": 8, "class_balance": 0.0, "length_buckets": buckets,
           "self_condition_rate": 0.0, "test_fraction": 0.0}
    s = train(ds, tmp_path / "run", TrainConfig.from_dict({**cfg, "steps": 2}))
    assert s["steps"] == 2 and (tmp_path / "run" / "model" / "model.safetensors").exists()
    if buckets:
        assert {n for _, n in seen} == {128, L}
        assert sum(b for b, _ in seen) == 2 * 8        # every flow of the 2 steps, once
    else:
        assert seen == [(8, L), (8, L)]


def test_two_processes_train_over_length_buckets(long_flows, tmp_path):
    """Under DDP each rank runs its slice's buckets one after the other, gradients synced on the last
    pass only (``no_sync`` before it): the run trains and exports, and every rank saw several buckets."""
    from test_model import _launch
    ds = _mixed_lengths(long_flows, tmp_path)
    cfg = tmp_path / "long.json"
    cfg.write_text(json.dumps({**TINY_1024, "batch_size": 8, "class_balance": 0.0, "test_fraction": 0.0,
                               "self_condition_rate": 1.0}))
    r = _launch(["train", "--data", str(ds), "--out", str(tmp_path / "run"), "--config", str(cfg), "--steps", "2",
                 "-q"], tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    # the draws the run made (engine.model.train._Run._batch): each rank's slice held both buckets
    import numpy as np
    from engine.model.data import load_split, load_table
    from engine.model.train_config import TrainConfig, step_seed
    c = TrainConfig.load(tmp_path / "run" / "train_config.json")
    table = load_table(ds, L, files=load_split(tmp_path / "run" / "split.json")["train"], classes=c.classes)
    lengths = np.diff(table.offsets)
    for step in range(2):
        idx = np.random.default_rng(step_seed(c.seed, step, 0, "batch")).choice(
            len(table), size=16, replace=True, p=table.sample_weights(c.class_balance))
        for rank in range(2):
            n = lengths[idx[rank * 8:(rank + 1) * 8]]
            assert n.min() <= 128 and n.max() == L, (step, rank, n)


def test_pending_flows_batch_by_bucket_in_order_with_redraws_first():
    """The sampler's queue: a batch is up to ``size`` flows of the first waiting flow's bucket,
    in request order; redrawn flows wait before every other (as a list scanned per batch did)."""
    from engine.model.batches import Pending
    bucket = {(i, a): (128, 1024, 256)[i % 3] for i in range(20) for a in range(3)}.__getitem__
    q = Pending([(i, 0) for i in range(20)], bucket)
    assert q.take(4) == ([(0, 0), (3, 0), (6, 0), (9, 0)], 128)
    q.redraw([(3, 1), (1, 1)])
    assert q.take(4) == ([(3, 1), (12, 0), (15, 0), (18, 0)], 128)
    assert q.take(4) == ([(1, 1), (1, 0), (4, 0), (7, 0)], 1024)
    rest = []
    while q:
        rest += q.take(16)[0]
    assert sorted(rest) == sorted({(i, 0) for i in range(20)} - {(0, 0), (3, 0), (6, 0), (9, 0), (12, 0), (15, 0),
                                                              (18, 0), (1, 0), (4, 0), (7, 0)})

"""Sampling on every core (engine.model.pool) and the one-pass hold / fused solver step that make a
sampling step cheap: the bytes must not change with the number of processes, a cancelled pooled run
leaves no process behind and resumes to the same bytes, and the fast paths compute what the plain
ones do."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch

from engine.datasets.request import GenerationRequest
from engine.errors import Cancelled
from engine.progress import CancelToken, TaskProgress

from test_model import tiny_data, tiny_run  # noqa: F401  (fixtures)


def _bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and (p.suffix == ".pcap" or p.name == "manifest.csv")}


def test_two_processes_write_the_bytes_of_one(tiny_run, tmp_path):
    from engine.datasets.generate import generate
    req = GenerationRequest(label="zoom", count=40, model=str(tiny_run), seed=5, steps=3)
    one = generate(req, tmp_path / "one", processes=1, window=24)
    two = generate(req, tmp_path / "two", processes=2, window=24)
    assert one["processes"] == 1 and two["processes"] == 2
    a, b = _bytes(tmp_path / "one"), _bytes(tmp_path / "two")
    assert len(a) == 41 and a == b


def test_pool_with_guides(tiny_run, tiny_data, tmp_path):
    from engine.datasets.generate import generate
    like = tiny_data.parent / "in"          # <class>/*.pcap
    req = GenerationRequest(label="zoom", count=20, model=str(tiny_run), seed=2, steps=4, like=str(like),
                            strength=0.5)
    generate(req, tmp_path / "one", processes=1)
    generate(req, tmp_path / "two", processes=2)
    a = _bytes(tmp_path / "one")
    assert len(a) == 21 and a == _bytes(tmp_path / "two")


def test_cancelled_pool_leaves_no_process_and_resumes(tiny_run, tmp_path):
    from engine.datasets.generate import generate
    req = GenerationRequest(label="dns", count=96, model=str(tiny_run), seed=9, steps=3)
    tok = CancelToken()

    def on(ev):
        # after the first window is on disk: the workers are busy with the second
        if isinstance(ev, TaskProgress) and ev.unit == "flows" and ev.detail != "sampling" and ev.done >= 32:
            tok.cancel()
    with pytest.raises(Cancelled):
        generate(req, tmp_path / "cut", on_event=on, cancel=tok, processes=2, window=32)
    assert multiprocessing.active_children() == []
    generate(req, tmp_path / "cut", processes=2, window=32, resume=True)
    generate(req, tmp_path / "whole", processes=1, window=32)
    a = _bytes(tmp_path / "whole")
    assert len(a) == 97 and _bytes(tmp_path / "cut") == a


def test_auto_processes(monkeypatch):
    from engine.model import pool
    monkeypatch.setattr(pool, "usable_cores", lambda: 8)
    monkeypatch.setattr(pool, "_available_memory", lambda: 64e9)
    assert pool.auto_processes(5) == 1                  # start-up would cost more than it saves
    assert pool.auto_processes(100) == 3                # 48 flows a process at least
    assert pool.auto_processes(100_000) == 8            # one per core
    monkeypatch.setattr(pool, "_available_memory", lambda: 3.2e9)
    assert pool.auto_processes(100_000) == 2            # what memory holds
    monkeypatch.setattr(pool, "_available_memory", lambda: 0.5e9)
    assert pool.auto_processes(100_000) == 1


def _hold_step_by_step(x0, rows, protos):
    """The shape hold written out rule by rule (the sampler's first version), as the reference."""
    from engine.codec.matrix import TRANSPORT_COLS
    from engine.model.lengths import ALWAYS_PRESENT, FIXED_HEADER, PROTO_BITS
    x0 = x0.clone()
    pad = ~rows
    x0[pad] = -1.0
    cols = torch.as_tensor(ALWAYS_PRESENT)
    sub = x0[:, :, cols]
    x0[:, :, cols] = torch.where(pad[..., None], sub, sub.clamp(min=0.0))
    if protos is not None:
        for p in TRANSPORT_COLS:
            f = (protos == p)[:, None] & rows
            if not f.any():
                continue
            for q, other in TRANSPORT_COLS.items():
                if q != p:
                    x0[..., other] = torch.where(f[..., None], torch.full_like(x0[..., other], -1.0), x0[..., other])
            fixed = FIXED_HEADER[p]
            x0[..., fixed] = torch.where(f[..., None], x0[..., fixed].clamp(min=0.0), x0[..., fixed])
            bits = torch.tensor([(p >> k) & 1 for k in range(7, -1, -1)], dtype=x0.dtype)
            x0[..., PROTO_BITS] = torch.where(f[..., None], bits.expand_as(x0[..., PROTO_BITS]), x0[..., PROTO_BITS])
    return x0


def test_hold_bounds_is_impose():
    from engine.model.lengths import hold_bounds, impose, presence_mask
    g = torch.Generator().manual_seed(0)
    rows = presence_mask([1, 5, 16, 3, 9, 2, 16, 7], 16)
    protos = torch.tensor([6, 17, 1, 0, 6, 17, 1, 6])
    lo, hi = hold_bounds(rows, protos, 1105)
    for _ in range(3):
        x = torch.randn(8, 16, 1105, generator=g) * 2
        assert torch.equal(x.clamp(lo, hi), _hold_step_by_step(x.clamp(-1, 1), rows, protos))
        assert torch.equal(impose(x, rows, protos), _hold_step_by_step(x.clamp(-1, 1), rows, protos))
    lo, hi = hold_bounds(rows, None, 1105)
    x = torch.randn(8, 16, 1105, generator=g) * 2
    assert torch.equal(x.clamp(lo, hi), _hold_step_by_step(x.clamp(-1, 1), rows, None))


@pytest.mark.parametrize("steps", [3, 10, 20])
def test_fused_solver_step_is_diffusers(steps):
    from diffusers import DPMSolverMultistepScheduler
    from engine.model.diffusion import FusedDPMSolver, sample_scheduler, train_scheduler
    tc = dict(train_scheduler("sample").config)
    ours = sample_scheduler(tc)
    assert isinstance(ours, FusedDPMSolver)
    ref = DPMSolverMultistepScheduler.from_config(dict(ours.config))
    ours.set_timesteps(steps)
    ref.set_timesteps(steps)
    g = torch.Generator().manual_seed(steps)
    x = torch.randn(3, 8, 40, generator=g)
    y = x.clone()
    for t in ours.timesteps:
        out = torch.randn(3, 8, 40, generator=g).clamp(-1, 1)
        x = ours.step(out, t, x).prev_sample
        y = ref.step(out.clone(), t, y).prev_sample
    assert torch.allclose(x, y, atol=1e-5, rtol=1e-5)


def test_sampling_precision(monkeypatch):
    from engine.errors import InputError
    from engine.model.diffusion import sampling_precision
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.delenv("NETDIFF_PRECISION", raising=False)
    assert sampling_precision("cpu") == "bf16"          # native bf16: the fast path by default
    assert sampling_precision("cuda") == "fp32"         # not measured on a GPU yet
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert sampling_precision("cpu") == "fp32"          # emulated bf16 would be slower
    monkeypatch.setenv("NETDIFF_PRECISION", "bf16")
    assert sampling_precision("cpu") == "bf16"
    monkeypatch.setenv("NETDIFF_PRECISION", "FP32")
    assert sampling_precision("cpu") == "fp32"
    monkeypatch.setenv("NETDIFF_PRECISION", "fp8")
    with pytest.raises(InputError, match="NETDIFF_PRECISION='fp8': use auto, fp32 or bf16"):
        sampling_precision("cpu")


def test_bf16_is_close_to_fp32_and_recorded(tiny_run, tmp_path, monkeypatch):
    from engine.datasets.generate import generate
    from engine.errors import InputError
    from engine.model.checkpoint import load_model
    from engine.model.diffusion import sample
    from engine.model.lengths import presence_mask
    model, cfg, _ = load_model(str(tiny_run))
    kw = dict(steps=4, rows=presence_mask([16, 5], 16), protos=torch.tensor([6, 17]))
    a = sample(model, cfg["scheduler"], torch.tensor([0, 1]), [1, 2], precision="fp32", **kw)
    b = sample(model, cfg["scheduler"], torch.tensor([0, 1]), [1, 2], precision="bf16", **kw)
    assert a.dtype == b.dtype == torch.float32
    assert not torch.equal(a, b) and (a - b).abs().max() < 0.25
    req = GenerationRequest(label="dns", count=6, model=str(tiny_run), seed=1, steps=3)
    monkeypatch.setenv("NETDIFF_PRECISION", "bf16")
    assert generate(req, tmp_path / "g")["precision"] == "bf16"
    # a run kept in one precision does not continue in another: its bytes would change mid-run
    tok = CancelToken()

    def on(ev):
        if isinstance(ev, TaskProgress) and ev.unit == "flows" and ev.detail != "sampling" and ev.done >= 2:
            tok.cancel()
    with pytest.raises(Cancelled):
        generate(req, tmp_path / "h", on_event=on, cancel=tok, window=2)
    monkeypatch.setenv("NETDIFF_PRECISION", "fp32")
    with pytest.raises(InputError, match="differ|different|not the same|changed"):
        generate(req, tmp_path / "h", resume=True, window=2)
    monkeypatch.setenv("NETDIFF_PRECISION", "bf16")
    assert generate(req, tmp_path / "h", resume=True, window=2)["resumed"] is True


def test_cli_says_how_it_sampled(tiny_run, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from netdiff_tui.cli import main
    monkeypatch.setenv("NETDIFF_PRECISION", "fp32")
    r = CliRunner().invoke(main, ["generate", "--label", "dns", "-n", "20", "--steps", "2", "--model", str(tiny_run),
                                  "--processes", "2", "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "s (2 sampling processes); compliance:" in r.output
    monkeypatch.setenv("NETDIFF_PRECISION", "bf16")
    r = CliRunner().invoke(main, ["generate", "--label", "dns", "-n", "2", "--steps", "2", "--model", str(tiny_run),
                                  "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "s (bf16); compliance:" in r.output

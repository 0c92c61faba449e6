"""The headless half of ``netdiff selftest``: does this installation (a Python install or the
frozen bundle) work, offline and without a terminal?

Each check exercises one user path end to end on shipped data only (the embedded loopback
capture, the shipped checkpoint and presets) and returns a one-line detail; :class:`Skip`
says a check cannot apply to this installation (the SD libraries are an optional extra).
The console's check lives in :mod:`netdiff_tui.cmd_selftest` because the engine never imports
Textual; :func:`run_checks` runs both kinds alike.

The detached-job check is started before the others and collected last: the child process's
start (a Python, or the frozen binary, importing torch) overlaps the in-process checks.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "selftest_data" / "loopback.pcap"
DETACHED_DEADLINE_S = 120.0     # a cold child on a loaded 2-core machine: import torch, sample, repair


class Skip(Exception):
    """The check does not apply to this installation; the message says why."""


class CheckFailed(Exception):
    """The check ran and found the product wrong; the message says what."""


@dataclass
class Result:
    name: str
    status: str             # "pass", "fail" or "skip"
    seconds: float
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<14} {self.seconds:6.2f} s  {self.detail}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    if isinstance(e, (CheckFailed, Skip)):
        return text[0] if text else type(e).__name__
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def run_checks(checks: Iterable[tuple[str, Callable[[Path], str]]], workdir: Path,
               on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Run each ``(name, fn)``; ``fn(dir)`` gets its own empty directory under ``workdir`` and
    returns its detail line. Any exception is that check's failure, never the run's end."""
    results = []
    for name, fn in checks:
        d = workdir / "".join(c if c.isalnum() else "_" for c in name)
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        try:
            detail, status = fn(d), "pass"
        except Skip as e:
            detail, status = f"skipped: {_one_line(e)}", "skip"
        except Exception as e:      # noqa: BLE001 -- a check's crash is exactly what it reports
            detail, status = _one_line(e), "fail"
        r = Result(name, status, time.perf_counter() - t0, detail)
        results.append(r)
        if on_result is not None:
            on_result(r)
    return results


def _flows_of(path: Path, payload_sums: bool = False):
    from engine.codec.flows import FlowConfig
    from engine.codec.pipeline import encode_capture
    mats, metas, psums = [], [], []
    for b in encode_capture(path, FlowConfig(min_packets=1), payload_sums=payload_sums):
        mats += [b.flow(i) for i in range(len(b))]
        metas += b.metas
        if payload_sums:
            psums += [b.psum[b.offsets[i]:b.offsets[i + 1]] for i in range(len(b))]
    return mats, metas, psums


def _packets(path: Path):
    """Every IPv4 TCP/UDP/ICMP packet of a capture, in a canonical order (decoding merges flows by time)."""
    from collections import Counter

    import numpy as np

    from engine.codec import capture as cap
    from engine.codec import packets as pk
    parts = [pk.parse(b, 0, Counter()) for b in cap.CaptureReader(path)]
    p = pk.Packets.concat(parts) if parts else pk.Packets.empty()
    order = np.lexsort((p.ts_ns, p.l4[:, 4:8].copy().view(">u4").ravel(), p.ip[:, 4], p.ip[:, 5],
                        p.dport, p.sport, p.dst, p.src))
    return p.take(order)


def check_codec(d: Path, capture: Path | None = None) -> str:
    """pcap -> bit matrices -> pcap gives the same IP and transport header bytes."""
    capture = capture or SAMPLE
    import numpy as np

    from engine.codec.matrix import write_pcap
    mats, metas, _ = _flows_of(capture)
    if not mats:
        raise CheckFailed(f"{capture}: no flows encoded")
    out = d / "roundtrip.pcap"
    write_pcap(out, mats, metas)
    a, b = _packets(capture), _packets(out)
    if len(a) != len(b):
        raise CheckFailed(f"{len(a)} packets in, {len(b)} out")
    for what, x, y in (("IP", a.ip, b.ip), ("transport", a.l4, b.l4)):
        if not np.array_equal(x, y):
            bad = int(np.flatnonzero((x != y).any(axis=1))[0])
            raise CheckFailed(f"{what} header of packet {bad} differs after the round trip")
    return f"{len(a)} packets in {len(mats)} flows: IP and transport headers byte for byte"


def check_repair(d: Path, capture: Path | None = None) -> str:
    """Broken checksums are found by check, fixed by repair, and the written capture checks clean."""
    capture = capture or SAMPLE
    from engine.codec.layout import put
    from engine.codec.matrix import write_pcap
    from engine.repair import check_flows, repair_flows
    mats, metas, _ = _flows_of(capture)
    broken = [m.copy() for m in mats]
    for m in broken:
        put(m, "ipv4_cksum", 0)          # a wrong header checksum on every packet
    before = check_flows(broken, metas)
    if before.clean:
        raise CheckFailed("check found nothing wrong with zeroed IPv4 checksums")
    fixed, fmetas, rep = repair_flows(broken, metas)
    if not rep.clean:
        raise CheckFailed(f"repair left {rep.total_after} packets violating a rule")
    out = d / "repaired.pcap"
    write_pcap(out, fixed, fmetas)
    m2, x2, ps = _flows_of(out, payload_sums=True)
    after = check_flows(m2, x2, payload_sums=ps)
    if not after.clean:
        bad = [r.name for r in after.rules if getattr(r, "after_packets", 0) or getattr(r, "before_packets", 0)]
        raise CheckFailed(f"the repaired capture fails check: {', '.join(bad) or after.total_after}")
    return f"check found {before.total_before} bad packets, repair fixed them, the written capture checks clean"


def check_recipes(d: Path) -> str:
    """Every shipped preset loads and validates as a generation request."""
    from engine.datasets import recipes as rp
    from engine.datasets.request import Problem, validate
    names = rp.preset_names()
    if not names:
        raise CheckFailed(f"no presets found in {rp.presets_dir()}")
    for n in names:
        rc = rp.load_preset(n)
        try:
            validate(rc.request)
        except Problem as e:
            raise CheckFailed(f"preset {n}: {e}") from None
    return f"{len(names)} presets load and validate ({', '.join(names[:3])}, ...)"


def small_request(label: str = "zoom", count: int = 3, steps: int = 4):
    """The zoom preset cut down to a few short flows and sampling steps (seconds on a CPU)."""
    from engine.datasets import recipes as rp
    from engine.datasets.request import build
    return build({"count": count, "steps": steps, "packets_max": 24}, base=rp.load_preset(label).request)


def check_generate(d: Path) -> str:
    """The shipped checkpoint generates a small labeled dataset whose compliance report is clean."""
    from engine.datasets.generate import generate
    req = small_request()
    out = d / "out"
    s = generate(req, out)
    pcaps = sorted((out / req.label).glob("*.pcap"))
    if s.get("flows") != req.count or len(pcaps) != req.count:
        raise CheckFailed(f"asked for {req.count} flows, got {s.get('flows')} ({len(pcaps)} pcaps)")
    if not s.get("compliance_clean"):
        raise CheckFailed(f"{out}/compliance.json: generated flows are not clean")
    from engine.repair import check_flows
    mats, metas, psums = [], [], []
    for p in pcaps:
        m, x, ps = _flows_of(p, payload_sums=True)
        mats += m
        metas += x
        psums += ps
    rep = check_flows(mats, metas, payload_sums=psums)
    if not rep.clean:
        raise CheckFailed(f"{out}: check finds {rep.total_after} bad packets in the written pcaps")
    return f"{s['flows']} {req.label} flows, {s['packets']} packets, model {s['model_hash']}; check clean"


class DetachedJob:
    """Start a tiny detached ``netdiff generate`` now; :meth:`check` waits for its job.json to say done."""

    def __init__(self, d: Path):
        self.d = d
        self.t0 = time.perf_counter()
        self.error: str | None = None
        self.job = None
        try:
            from engine.jobs import start_detached
        except ImportError:
            self.error = "skip"
            return
        out = d / "out"
        argv = ["generate", "--preset", "zoom", "-n", "2", "--steps", "2", "--packets-max", "16", "-o", str(out), "-q"]
        env = dict(os.environ, NETDIFF_JOBS_DIR=str(d / "jobs"))
        try:
            self.job = start_detached(d / "jobs", "generate", argv, out=out, label="zoom", env=env)
        except Exception as e:      # noqa: BLE001 -- reported by check()
            self.error = _one_line(e)

    def check(self, _d: Path) -> str:
        if self.error == "skip":
            raise Skip("detached jobs not available in this build (engine.jobs.start_detached)")
        if self.error:
            raise CheckFailed(f"could not start: {self.error}")
        from engine.artifacts.jobs import effective_status, job_alive, log_tail, read_job
        deadline = self.t0 + DETACHED_DEADLINE_S
        while True:
            rec = read_job(self.job.path)
            if rec.status != "running":
                break
            if job_alive(rec) is False:     # died, perhaps before it could record how it ended
                rec = read_job(self.job.path)   # or it recorded its end and exited between the two looks
                rec.status, rec.reason = effective_status(rec)
                break
            if time.perf_counter() > deadline:
                raise CheckFailed(f"{self.job.path}: still running after {DETACHED_DEADLINE_S:.0f} s")
            time.sleep(0.1)
        if rec.status != "done":
            # the log's last line says why a child that died at start-up died (its bootloader's lines aside)
            tail = [x.strip() for x in log_tail(self.job.path, 5) if x.strip() and not x.startswith("[PYI-")]
            last = tail[-1] if tail else ""
            why = "; ".join(x for x in (rec.reason, last) if x and not (x == last and last in rec.reason))
            raise CheckFailed(f"{self.job.path}: {rec.status}: {why or 'no log'}")
        flows = rec.result.get("flows")
        if flows != 2 or not (Path(rec.out) / "manifest.csv").is_file():
            raise CheckFailed(f"{self.job.path}: done, but result says {flows} flows in {rec.out}")
        return (f"job {self.job.name} (pid {rec.pid}) done in {time.perf_counter() - self.t0:.1f} s "
                f"from start: {flows} flows")


def sd_libraries() -> str | None:
    """None when the SD route's libraries import, else what is missing."""
    missing = []
    for mod in ("diffusers", "transformers", "peft"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    return ", ".join(missing) or None


@contextmanager
def _quiet_sd_libraries():
    """Without the libraries' progress bars and advice on stderr: the check's one line is the report."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog
    levels = dlog.get_verbosity(), tlog.get_verbosity()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        dlog.set_verbosity(levels[0])
        tlog.set_verbosity(levels[1])
        dlog.enable_progress_bar()
        tlog.enable_progress_bar()


def check_sd(d: Path) -> str:
    """A tiny SD 1.5-layout pipeline built from configs takes a LoRA adapter and samples one flow image."""
    missing = sd_libraries()
    if missing and getattr(sys, "frozen", False):
        raise Skip(f"this bundle was built without the SD route (no {missing}); the native model works without it")
    if missing:
        raise Skip(f"SD libraries not installed ({missing}); the native model works without them")
    import numpy as np
    import torch
    from peft import LoraConfig

    from engine.codec.layout import LAYOUT
    from engine.model.sd.build import build_pipeline
    from engine.model.sd.grid import Geometry, pixels_to_flows
    from engine.model.sd.pipeline import LORA_TARGETS, family_of, load_pipeline, pixel_multiple
    from engine.model.sd.tiny import TINY_SD
    with _quiet_sd_libraries():
        base = build_pipeline(d / "base", TINY_SD, "sd")
        pipe = load_pipeline(base, family_of(base))
        pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=list(LORA_TARGETS)))
        geom = Geometry(rows=16, multiple=pixel_multiple(pipe))
        with torch.no_grad():
            img = pipe(prompt=["pixelated network data, type-zoom"], height=geom.height, width=geom.width,
                       num_inference_steps=2, generator=[torch.Generator().manual_seed(0)], output_type="np").images
    (m,) = pixels_to_flows(img, geom)
    if m.shape != (geom.rows, LAYOUT.width) or not np.isin(m, (-1, 0, 1)).all():
        raise CheckFailed(f"sampled flow has shape {m.shape}, values {np.unique(m)[:5]}")
    return f"built, LoRA attached, one {geom.height} x {geom.width} image sampled -> a {m.shape[0]}-row flow"


ENGINE_CHECKS = (("codec", check_codec), ("generate", check_generate), ("repair+check", check_repair),
                 ("recipes", check_recipes), ("sd pipeline", check_sd))

"""Streaming generation (#11 defects 3 and 5): bounded memory, a maximum count, stops on
SIGTERM/SIGHUP that say how to resume, and resuming after SIGKILL with the same bytes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.datasets.generate import generate
from engine.datasets.request import MAX_COUNT, GenerationRequest
from engine.errors import Cancelled, InputError
from engine.outdir import lock_path
from engine.progress import CancelToken, Message, TaskProgress

ROOT = Path(__file__).resolve().parent.parent
REQ = GenerationRequest(label="zoom", count=40, steps=1, packets_max=8, seed=3)
WINDOW = 4


def _wait_for(pred, what: str, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _state(out: Path) -> dict | None:
    try:
        return json.loads((out.parent / f".{out.name}.partial" / ".state.json").read_text())
    except (OSError, ValueError):
        return None


def _files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# generates REQ with windows of 4 flows; once the second window is on disk it says so and
# blocks (on its stdin), so that the kill lands at a known point whatever the machine's speed
_RUN = """
import sys
from engine.datasets.generate import generate
from engine.datasets.request import GenerationRequest as R
from engine.progress import TaskProgress

def hold(ev):
    if isinstance(ev, TaskProgress) and ev.task == "generate" and not ev.detail and ev.done >= 8:
        print("two windows", flush=True)
        sys.stdin.read()

generate(R(label="zoom", count=40, steps=1, packets_max=8, seed=3), sys.argv[1], window=4, on_event=hold)
"""


def test_sigkill_then_resume_writes_the_bytes_of_an_uninterrupted_run(tmp_path):
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-c", _RUN, str(out)], cwd=ROOT, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "two windows"
        p.send_signal(signal.SIGKILL)
    finally:
        p.kill()
        p.wait(60)
    st = _state(out)
    assert p.returncode == -signal.SIGKILL and st is not None and st["next"] == 8, (p.returncode, st)
    assert lock_path(out).exists() and not out.exists()

    # without --resume the dead run's flows are neither reused nor silently thrown away
    msgs = []
    with pytest.raises(InputError, match=r"left \d+ of 40 flows in .*add --resume to continue it, or --force"):
        generate(REQ, out, window=WINDOW, on_event=lambda ev: msgs.append(ev.text) if isinstance(ev, Message) else None)
    assert any(f"pid {p.pid}" in m and "is gone" in m for m in msgs)        # its stale lock, taken over
    with pytest.raises(InputError, match="generated another request"):
        generate(GenerationRequest(**{**REQ.__dict__, "seed": 4}), out, resume=True, window=WINDOW)

    msgs = []
    s = generate(REQ, out, resume=True, window=WINDOW,
                 on_event=lambda ev: msgs.append(ev.text) if isinstance(ev, Message) else None)
    assert s["flows"] == 40 and s["resumed"]
    assert any(f"resuming: {st['next']} of 40 flows" in m for m in msgs)
    assert not lock_path(out).exists() and not (tmp_path / ".out.partial").exists()

    ref = tmp_path / "ref"
    generate(REQ, ref, window=WINDOW)
    got, want = _files(out), _files(ref)
    assert sorted(got) == sorted(want) and len([k for k in got if k.endswith(".pcap")]) == 40
    for k in want:
        if k not in ("generate.json", "compliance.json"):      # those two hold paths and timings
            assert got[k] == want[k], k


def test_force_discards_an_interrupted_run(tmp_path):
    out = tmp_path / "out"
    tok = CancelToken()

    def stop_after_first_window(ev):
        if isinstance(ev, TaskProgress) and ev.task == "generate" and not ev.detail and ev.done >= WINDOW:
            tok.cancel()
    with pytest.raises(Cancelled, match=rf"{out}: stopped; {WINDOW} of 12 flows are kept in .*--resume"):
        generate(GenerationRequest(**{**REQ.__dict__, "count": 12}), out, window=WINDOW, cancel=tok,
                 on_event=stop_after_first_window)
    msgs = []
    s = generate(GenerationRequest(**{**REQ.__dict__, "count": 12}), out, window=WINDOW, force=True,
                 on_event=lambda ev: msgs.append(ev.text) if isinstance(ev, Message) else None)
    assert s["flows"] == 12 and not s["resumed"]
    assert any(f"discarded {WINDOW} flows of an interrupted run" in m for m in msgs)


def test_memory_is_bounded_by_a_window_not_by_the_count(tmp_path):
    out = tmp_path / "out"
    tok = CancelToken()
    seen = []

    def stop(ev):
        if isinstance(ev, TaskProgress) and ev.task == "generate" and not ev.detail:
            seen.append(ev.done)
            if ev.done >= 2 * WINDOW:
                tok.cancel()
    # the first run in a process imports and caches what sampling and writing use (tens of MB
    # when this test runs alone, none after other tests): not what a window holds
    generate(GenerationRequest(**{**REQ.__dict__, "count": 2}), tmp_path / "warm", window=WINDOW, processes=1)

    def traced(run) -> int:
        tracemalloc.start()
        try:
            run()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # the same two windows of a request of 2 windows: loading the model and its sampling tables
    # (config.json's tables: ~5 MB of Python objects) is paid by any request; one process both
    # times (a request that small samples in the command's own process)
    small = traced(lambda: generate(GenerationRequest(**{**REQ.__dict__, "count": 2 * WINDOW}),
                                    tmp_path / "small", window=WINDOW, processes=1))

    def big():
        with pytest.raises(Cancelled):
            generate(GenerationRequest(**{**REQ.__dict__, "count": MAX_COUNT}), out, window=WINDOW, cancel=tok,
                     on_event=stop, processes=1)
    peak = traced(big)
    assert seen == [WINDOW, 2 * WINDOW]                 # written as it goes
    assert _state(out)["next"] == 2 * WINDOW
    # a per-flow list of a million entries alone is > 8 MB; model weights are torch's, not traced
    assert peak < small + 4e6, (peak, small)


def test_count_above_the_maximum_is_one_clear_line(tmp_path):
    from netdiff_tui.cli import main
    r = CliRunner().invoke(main, ["generate", "--label", "zoom", "-n", str(MAX_COUNT + 1), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert re.search(r"\b1,?000,?000\b", r.output) and r.output.count("\n") == 1 and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_sigterm_and_sighup_stop_like_ctrl_c(tmp_path):
    # both at once: each run pays the interpreter and model start-up
    runs = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        out = tmp_path / signal.Signals(sig).name
        runs[sig] = out, subprocess.Popen(
            [sys.executable, "-m", "netdiff_tui", "generate", "--label", "zoom", "--steps", "1", "--packets-max", "8",
             "-n", "5000", "-o", str(out), "-q"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for sig, (out, p) in runs.items():
            # the run has its lock (and its handlers) once the lock file names it
            _wait_for(lambda: p.poll() is not None or (lock_path(out).exists() and
                                                       f'"pid": {p.pid}' in lock_path(out).read_text()),
                      "the run's lock")
            p.send_signal(sig)
        for sig, (out, p) in runs.items():
            _, err = p.communicate(timeout=120)
            assert p.returncode == 128 + sig, err
            line = err.strip()
            assert "Traceback" not in err and line.count("\n") == 0, err
            assert line.startswith(f"netdiff: error: {out}: stopped")
            assert not lock_path(out).exists()
            # where the signal lands depends on the machine's speed: before the first window is
            # written nothing is kept; after it, the kept flows stay in the partial directory
            partial = tmp_path / f".{out.name}.partial"
            if "stopped before any flow was written" in line:
                assert not partial.exists()
            else:
                assert "stopped;" in line and "--resume" in line and str(partial) in line and partial.is_dir()
    finally:
        for _, p in runs.values():
            if p.poll() is None:
                p.kill()
                p.wait()

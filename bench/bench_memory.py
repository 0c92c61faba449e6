"""Peak RSS of a streaming ``netdiff generate -n 1000000`` after a fixed number of flows,
then a stop (SIGTERM) and ``--resume``: the figures of bench/memory.md.

    python3 bench/bench_memory.py OUT_PARENT [--steps 5] [--at 256,2048] [--resume-windows 2]

The run's progress is read from ``.OUT.partial/.state.json`` (written after every window of
256 flows), its memory from ``/proc/PID/status`` (VmHWM: peak resident set, VmRSS: now).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path


def proc_mem(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                k, v, _ = line.split()
                out[k[:-1]] = int(v) // 1024          # MiB
    return out


def state(out: Path) -> dict:
    try:
        return json.loads((out.parent / f".{out.name}.partial" / ".state.json").read_text())
    except (OSError, ValueError):
        return {}


def run_until(cmd: list[str], out: Path, marks: list[int]) -> tuple[list[dict], str, int]:
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    t0, rows = time.time(), []
    try:
        for mark in marks:
            while state(out).get("next", 0) < mark:
                if p.poll() is not None:
                    raise SystemExit(f"generate ended early: {p.stderr.read()}")
                time.sleep(0.2)
            m = proc_mem(p.pid)
            rows.append({"flows": state(out)["next"], "seconds": round(time.time() - t0, 1), **m})
            print(rows[-1], flush=True)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    return rows, err.strip(), p.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("parent", type=Path)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--at", default="256,2048", help="flows after which to read the memory")
    ap.add_argument("--resume-windows", type=int, default=2)
    a = ap.parse_args()
    out = a.parent / "million"
    cmd = [sys.executable, "-m", "netdiff_tui", "generate", "--label", "zoom", "-n", "1000000",
           "--steps", str(a.steps), "-o", str(out), "-q"]
    marks = [int(x) for x in a.at.split(",")]
    rows, err, rc = run_until(cmd, out, marks)
    print(f"stopped: exit {rc}: {err}")
    kept = state(out).get("next", 0)
    more = [kept + 256 * k for k in range(1, a.resume_windows + 1)]
    rows2, err2, rc2 = run_until(cmd + ["--resume"], out, more)
    print(f"resumed from {kept}; stopped again: exit {rc2}: {err2}")
    print(json.dumps({"command": " ".join(cmd[1:]), "first": rows, "stop": [rc, err], "resumed": rows2,
                      "stop2": [rc2, err2]}, indent=1))


if __name__ == "__main__":
    main()

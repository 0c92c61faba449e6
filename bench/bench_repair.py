"""Repair pipeline speed: ms per 1024-packet flow. Run: python bench/bench_repair.py

Inputs: a real 1024-packet TCP flow (from the real captures, if present),
uniform binary noise, float noise, and an upstream-style output (a real flow
passed through the defects of NetDiffusion's public post-processing). Each is
timed alone (one flow per call) and in batches of 8 flows per call; the
figure is the best of several runs, divided by the number of flows, as wall
time and as this process's CPU time (the machine is shared: CPU time is the
figure that does not grow with other people's load; numpy runs these
operations on one thread, so on an idle machine the two agree).

``repair`` is the full pipeline: snap, drop padding, count every rule on the
input, apply every fix, count every rule again on the output, build the
report and the output matrices. ``check`` counts only. ``decode+write``
(for reference) turns the repaired flows into a pcap.

Prints a markdown table; results are recorded by hand in bench/repair.md.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from engine.codec.matrix import FlowMeta, write_pcap  # noqa: E402
from engine.codec.flows import FlowConfig  # noqa: E402
from engine.codec.layout import LAYOUT  # noqa: E402
from engine.codec.pipeline import encode_capture  # noqa: E402
from engine.repair import check_flows, repair_flows  # noqa: E402

N = 1024


def best(fn, repeat=7, clock=time.perf_counter):
    ts = []
    for _ in range(repeat):
        t = clock()
        fn()
        ts.append(clock() - t)
    return min(ts)


def real_flow():
    data = Path(os.environ.get("NETDIFF_DATA", ROOT.parent / "shared" / "data")) / "real"
    for cap in sorted(data.rglob("*.pcap")):
        for b in encode_capture(cap, FlowConfig(min_packets=N)):
            for i in range(len(b)):
                if len(b.flow(i)) == N and b.metas[i].proto == 6:
                    return b.flow(i).copy(), b.metas[i], cap.name
    return None


def main():
    rng = np.random.default_rng(0)
    W = LAYOUT.width
    inputs = {}
    found = real_flow()
    if found:
        m, meta, name = found
        inputs[f"real TCP flow ({name})"] = (m, meta)
        from test_repair import upstream_style
        inputs["upstream-style output"] = (upstream_style(m, rng, N), meta)
    meta0 = FlowMeta("bench", "", 6, 0x0A000001, 0xC6120001, 0, 0, 0, N)
    inputs["binary noise"] = (rng.integers(0, 2, (N, W)).astype(np.int8), meta0)
    inputs["float noise"] = ((rng.random((N, W)) * 2.6 - 1.3).astype(np.float32), meta0)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; numpy {np.__version__}; Python {platform.python_version()}\n")
    print("| input | flows per call | repair ms/flow (wall) | repair ms/flow (CPU) | check ms/flow (CPU) "
          "| decode+write ms/flow (wall) |")
    print("|---|---|---|---|---|---|")
    tmp = Path(tempfile.mkdtemp())
    for label, (m, meta) in inputs.items():
        for k in (1, 8):
            mats = [m] * k
            metas = [FlowMeta(**{**meta.__dict__, "flow_id": f"{meta.flow_id}-{j}"}) for j in range(k)]
            out, om, rep = repair_flows(mats, metas)
            assert rep.clean, rep.to_table()
            tr = best(lambda: repair_flows(mats, metas)) / k * 1e3
            cr = best(lambda: repair_flows(mats, metas), clock=time.process_time) / k * 1e3
            tc = best(lambda: check_flows(mats, metas), clock=time.process_time) / k * 1e3
            tw = best(lambda: write_pcap(tmp / "b.pcap", out, om), 3) / k * 1e3
            print(f"| {label} | {k} | {tr:.1f} | {cr:.1f} | {tc:.1f} | {tw:.1f} |")


if __name__ == "__main__":
    main()

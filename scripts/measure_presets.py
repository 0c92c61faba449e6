#!/usr/bin/env python3
"""Measure preset defaults (packets per flow, flow arrival rate) from the real captures.

For every preset in ``presets/`` (or the ones named), read the captures of its
label's class with :func:`engine.codec.pipeline.encode_capture` (default flow
settings: 120 s idle timeout, 1024 packets max, 2 packets min), keep the flows
that match the preset's transport and service ports (server side), and print:

- the files that contributed, and the matching share of the class's flows;
- packets per flow (5th, 50th, 95th percentile) -> ``traffic.packets = [p5, p95]``;
- flow arrival rate: matching flows / time between the first and the last
  flow start, summed over files whose timing is usable -> ``traffic.flows_per_s``;
- the largest IPv4 total length seen (for ``traffic.mtu``).

Files are chosen from ``MANIFEST.tsv``: a ``.pcapng`` with a classic ``.pcap``
copy is read once; files whose notes say "duration inflated" (merged captures
taken years apart) or "lab-generated" are left out of the rate; ``FILTERED`` files (SYN/SYN-ACK
only) are left out of the packet counts but kept for the rate (they hold
every connection start). A class with fewer than 5 complete matching flows
takes its packet counts from the https_web preset (said in the output).

Usage::

    python scripts/measure_presets.py [--data DIR] [--json] [--check] [PRESET ...]

``--check`` exits 1 when a preset's ``packets``/``flows_per_s`` differ from
the measurement (packets exactly, rate within 10 %%).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.codec.flows import FlowConfig  # noqa: E402
from engine.codec.pipeline import encode_capture  # noqa: E402
from engine.datasets.recipes import load_recipe, presets_dir  # noqa: E402
from engine.codec.layout import LAYOUT, bits_to_uint  # noqa: E402

PROTO = {"tcp": 6, "udp": 17, "icmp": 1}
# Notes that make a file's timing across flows useless for an arrival rate.
RATE_SKIP = ("duration inflated", "lab-generated")
# With fewer than MIN_FLOWS complete flows, packets per flow come from a related preset.
MIN_FLOWS = 5
FALLBACK = "https_web"
TL = LAYOUT.cols("ipv4_tl")


def default_data() -> Path:
    return Path(os.environ.get("NETDIFF_DATA", ROOT.parent / "shared" / "data")) / "real"


def manifest(real: Path) -> dict[str, str]:
    notes = {}
    with open(real / "MANIFEST.tsv", newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            notes[r["file"]] = r["notes"]
    return notes


def class_files(real: Path, label: str) -> list[Path]:
    d = real / label
    files = sorted(p for p in d.iterdir() if p.suffix in (".pcap", ".pcapng"))
    stems_pcap = {p.stem for p in files if p.suffix == ".pcap"}
    return [p for p in files if p.suffix == ".pcap" or p.stem not in stems_pcap]


def server_port(meta) -> int:
    """Responder port, or the initiator's when the capture began mid-flow (low port = service)."""
    a, b = meta.init_port, meta.resp_port
    if a < 1024 <= b or (a < b and a < 10000 and b >= 32768):
        return a
    return b


def measure(recipe_path: Path, real: Path, notes: dict[str, str]) -> dict:
    rc = load_recipe(recipe_path)
    q = rc.request
    ports = set(q.server_ports)
    proto = PROTO.get(q.transport)
    pk, maxlen = [], 0
    used, rate_flows, rate_span = [], 0, 0.0
    total = match_total = 0
    for f in class_files(real, q.label):
        note = notes.get(f"{q.label}/{f.name}", "")
        starts, sizes = [], []
        for b in encode_capture(f, FlowConfig()):
            for i, m in enumerate(b.metas):
                total += 1
                if proto is not None and m.proto != proto:
                    continue
                if ports and server_port(m) not in ports:
                    continue
                starts.append(m.start_ns)
                sizes.append(m.packets)
                tl = bits_to_uint(b.flow(i)[:, TL])
                maxlen = max(maxlen, int(tl.max()))
        if not starts:
            continue
        match_total += len(starts)
        used.append(f.name)
        if "FILTERED" not in note:
            pk += sizes
        if not any(t in note for t in RATE_SKIP) and len(starts) >= 2:
            rate_flows += len(starts) - 1
            rate_span += (max(starts) - min(starts)) / 1e9
    out = {"preset": recipe_path.stem, "label": q.label, "transport": q.transport,
           "service_ports": sorted(ports)[:3] + (["..."] if len(ports) > 3 else []),
           "files": used, "class_flows": total, "matching_flows": match_total,
           "share": round(match_total / total, 3) if total else 0.0,
           "packet_flows": len(pk), "max_ip_len": maxlen}
    if len(pk) < MIN_FLOWS and recipe_path.stem != FALLBACK:
        fb = measure(recipe_path.with_name(f"{FALLBACK}.toml"), real, notes)
        out["packets_from"] = f"{FALLBACK} (only {len(pk)} complete {q.label} flow(s))"
        out.update({k: fb[k] for k in ("packets_p5", "packets_p50", "packets_p95") if k in fb})
        pk = []
    if pk:
        p5, p50, p95 = (int(round(x)) for x in np.percentile(pk, [5, 50, 95]))
        out.update(packets_p5=max(p5, 2 if q.transport != "tcp" else 3), packets_p50=p50,
                   packets_p95=max(p95, 3 if q.transport == "tcp" else 2))
    out["flows_per_s"] = round(rate_flows / rate_span, 3) if rate_span > 0 else None
    out["preset_packets"] = [q.packets_min, q.packets_max]
    out["preset_flows_per_s"] = q.flows_per_s
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("presets", nargs="*")
    ap.add_argument("--data", type=Path, default=default_data(), help="folder holding <class>/*.pcap and MANIFEST.tsv")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    pdir = presets_dir()
    names = a.presets or sorted(p.stem for p in pdir.glob("*.toml"))
    notes = manifest(a.data)
    rows = [measure(pdir / f"{n}.toml", a.data, notes) for n in names]
    bad = 0
    for r in rows:
        if a.check:
            want_pk = [r.get("packets_p5"), r.get("packets_p95")]
            ok_pk = want_pk == r["preset_packets"]
            fr = r["flows_per_s"]
            ok_rate = fr is None or abs(r["preset_flows_per_s"] - fr) <= 0.1 * fr + 1e-3
            r["check"] = "ok" if ok_pk and ok_rate else f"MISMATCH packets {want_pk} rate {fr}"
            bad += not (ok_pk and ok_rate)
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['preset']:<16} label={r['label']:<16} {r['transport']}/{r['service_ports']}  "
                  f"flows {r['matching_flows']}/{r['class_flows']} ({r['share']:.0%})  "
                  f"packets p5/p50/p95 {r.get('packets_p5')}/{r.get('packets_p50')}/{r.get('packets_p95')} "
                  f"(n={r['packet_flows']}{'; from ' + r['packets_from'] if 'packets_from' in r else ''})  rate {r['flows_per_s']} flows/s  max IP len {r['max_ip_len']}"
                  + (f"  [{r['check']}]" if a.check else ""))
            print(f"{'':<16} files: {', '.join(r['files'])}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

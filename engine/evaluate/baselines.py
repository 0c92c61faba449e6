"""Reference generators the model has to beat, built from the real *training* split.

* ``random``: every bit of every packet uniformly 0/1 (the paper's "random
  generation"), then :func:`engine.repair.repair_flows`.
* ``marginals``: every field of every packet drawn independently from that
  field's empirical distribution over the class's real training packets (the
  whole bit pattern of the field, absent state included), then repair.

Both use, per class, as many flows as the synthetic set has, with flow lengths
drawn from the class's real training flows, and addresses (FlowMeta) copied
from a random real training flow. Like generated data, baseline flows go
through a pcap and are read back with the same flow settings, so all
candidates are measured the same way.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.codec.capture import LINK_ETHERNET, pcap_bytes
from engine.outdir import atomic_write_bytes
from engine.codec.matrix import FlowMeta, decode_matrices, write_pcap
from engine.codec.flows import FlowConfig
from engine.codec.layout import LAYOUT
from engine.codec.pipeline import encode_capture
from .data import FlowSet
from .features import _present

BASELINES = ("random", "marginals")
START_NS = 1_700_000_000_000_000_000
FLOW_SPACING_NS = 1_000 * 10**9      # 1000 s between flow starts: no two flows merge on read-back


def _repair(mats: list[np.ndarray], metas: list[FlowMeta]) -> tuple[list[np.ndarray], list[FlowMeta], str]:
    try:
        from engine.repair import RepairOptions, repair_flows
    except ImportError:
        return mats, metas, "unavailable (engine.repair not importable): raw bits"
    out = repair_flows(mats, metas, RepairOptions())
    return list(out[0]), list(out[1]), "repair_flows(RepairOptions())"


def _templates(train: FlowSet, n: int, rng: np.random.Generator, label: str,
               kind: str, max_packets: int | None) -> tuple[list[int], list[FlowMeta]]:
    idx = rng.integers(0, len(train), n)
    lengths, metas = [], []
    for j, i in enumerate(idx):
        src = train.metas[i]
        L = len(train.mats[i]) if max_packets is None else min(len(train.mats[i]), max_packets)
        lengths.append(max(L, 1))
        metas.append(replace(src, flow_id=f"{kind}-{label}-{j:06d}", label=label, packets=L,
                             start_ns=START_NS + j * FLOW_SPACING_NS, source=f"baseline:{kind}"))
    return lengths, metas


def random_flows(train: FlowSet, n: int, label: str, seed: int, max_packets: int | None = None):
    rng = np.random.default_rng([seed, 1, _h(label)])
    lengths, metas = _templates(train, n, rng, label, "random", max_packets)
    mats = [rng.integers(0, 2, (L, LAYOUT.width), dtype=np.int8) for L in lengths]
    return mats, metas


def marginal_flows(train: FlowSet, n: int, label: str, seed: int, max_packets: int | None = None):
    rng = np.random.default_rng([seed, 2, _h(label)])
    lengths, metas = _templates(train, n, rng, label, "marginals", max_packets)
    pool, _ = _present(train.mats)
    total = int(sum(lengths))
    out = np.empty((total, LAYOUT.width), np.int8)
    for f in LAYOUT.image_fields():
        c = LAYOUT.cols(f.qualname)
        out[:, c] = pool[rng.integers(0, len(pool), total), c]
    cuts = np.cumsum([0] + lengths)
    return [out[cuts[k]:cuts[k + 1]].copy() for k in range(n)], metas


def _h(label: str) -> int:
    return int.from_bytes(label.encode()[:8].ljust(8, b"\0"), "big") & 0x7FFFFFFF


def read_back(mats: list[np.ndarray], metas: list[FlowMeta], label: str, cfg: FlowConfig,
              headers_only: bool = True) -> FlowSet:
    """Write flows as one pcap and read them back (what a generated capture goes through)."""
    fs = FlowSet()
    with tempfile.TemporaryDirectory(prefix="netdiff-eval-") as d:
        p = Path(d) / f"{label}.pcap"
        if headers_only:
            # headers only (captured length = header bytes, wire length kept): random total
            # lengths would otherwise write up to 64 KiB of zero payload per packet
            heads, hl, ln, ts = decode_matrices(mats, metas)
            atomic_write_bytes(p, [memoryview(pcap_bytes(heads, hl, hl, ln, ts, LINK_ETHERNET))])
        else:
            write_pcap(p, mats, metas)
        for b in encode_capture(os.fspath(p), cfg, label=label):
            for j in range(len(b)):
                fs.mats.append(np.ascontiguousarray(b.flow(j)))
                fs.metas.append(b.metas[j])
    return fs


def make_baseline(kind: str, train: FlowSet, counts: dict[str, int], seed: int = 0,
                  cfg: FlowConfig = FlowConfig(), max_packets: int | None = None) -> tuple[FlowSet, str]:
    """One baseline for every class in ``counts`` (flows per class); returns the flows and how they were repaired."""
    gen = {"random": random_flows, "marginals": marginal_flows}[kind]
    out = FlowSet()
    how = ""
    for label, n in sorted(counts.items()):
        tr = train.of(label)
        if n <= 0 or len(tr) == 0:
            continue
        mats, metas = gen(tr, n, label, seed, max_packets)
        mats, metas, how = _repair(mats, metas)
        metas = [replace(m, label=label) for m in metas]
        out = out.add(read_back(mats, metas, label, cfg))
    return out, how

"""Closeness to the training flows: does a candidate copy the real flows it learned from?

A generator can score well on fidelity and utility by handing back its
training data (or, guided by real flows, by barely changing them). Two checks,
per class, against the real **train** split:

* *distance to closest record* (DCR): each flow's statistics (``flow_stats``
  without ports, scaled by the train split's spread per feature) and the
  Euclidean distance to the nearest train flow of its class;
* *exact copies*: the share of flows whose header bits, direction and gaps
  (ports masked) equal those of some train flow, packet for packet.

The reference is the real **test** split measured the same way: traffic the
model never saw. A candidate whose median DCR is far below the test split's
(ratio well under 1), or with more exact copies, is copying.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .data import FlowSet
from .features import flow_matrix, port_columns


def _scaled(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return (x - mu) / sd


def _nearest(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """For every row of ``a``, the Euclidean distance to the nearest row of ``b``."""
    out = np.empty(len(a))
    bb = (b * b).sum(1)
    for i in range(0, len(a), chunk):
        x = a[i:i + chunk]
        d2 = (x * x).sum(1)[:, None] + bb[None, :] - 2.0 * x @ b.T
        out[i:i + chunk] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


_PORTS = port_columns()


def _digest(m: np.ndarray) -> bytes:
    x = m.copy()
    x[:, _PORTS] = 0
    return hashlib.blake2b(x.tobytes(), digest_size=16).digest()


def closeness(train: FlowSet, candidates: dict[str, FlowSet], classes: list[str]) -> dict:
    """``{candidate: {"median_dcr", "p05_dcr", "median_dcr_ratio", "exact_copies", "flows"}}``,
    pooled over classes; ``median_dcr_ratio`` is relative to the ``real_test`` entry
    (which ``candidates`` should hold)."""
    dcr: dict[str, list[np.ndarray]] = {k: [] for k in candidates}
    copies = {k: 0 for k in candidates}
    for c in classes:
        tr = train.of(c)
        if len(tr) == 0:
            continue
        xt = flow_matrix(tr.mats, mask_ports=True)
        mu, sd = xt.mean(0), xt.std(0)
        sd[sd == 0] = 1.0
        xt = _scaled(xt, mu, sd)
        seen = {_digest(m) for m in tr.mats}
        for k, fs in candidates.items():
            sub = fs.of(c)
            if len(sub) == 0:
                continue
            dcr[k].append(_nearest(_scaled(flow_matrix(sub.mats, mask_ports=True), mu, sd), xt))
            copies[k] += sum(_digest(m) in seen for m in sub.mats)
    out: dict = {}
    for k, parts in dcr.items():
        d = np.concatenate(parts) if parts else np.zeros(0)
        out[k] = {"flows": int(len(d)),
                  "median_dcr": float(np.median(d)) if len(d) else None,
                  "p05_dcr": float(np.percentile(d, 5)) if len(d) else None,
                  "exact_copies": float(copies[k] / len(d)) if len(d) else None}
    ref = (out.get("real_test") or {}).get("median_dcr")
    for v in out.values():
        v["median_dcr_ratio"] = (v["median_dcr"] / ref) if (ref and v["median_dcr"] is not None) else None
    return out

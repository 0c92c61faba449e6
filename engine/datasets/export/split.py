"""The train/test split of an export: by flow, stratified by class, test flows real whenever a class has them."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from engine.codec.flows import FlowConfig
from engine.datasets.export.flows import flows_of, free_name
from engine.datasets.export.scan import scan_inputs
from engine.progress import CancelToken


def n_test(n: int, frac: float) -> int:
    """Flows of a class held out for test: round(frac * n), at least 1 and at most n - 1 when n >= 2."""
    if not frac or n < 2:
        return 0
    return min(max(int(round(frac * n)), 1), n - 1)


def assign_split(rows: list[dict], frac: float | None, seed: int) -> None:
    """Set row["split"] per flow, stratified by class.

    Test flows are drawn from a class's real flows; its synthetic flows all go
    to train (so the test split measures performance on real traffic). A
    class with no real flows splits its synthetic flows the same way.
    """
    if frac is None:
        for r in rows:
            r["split"] = ""
        return
    by_cls: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_cls[r["class"]].append(r)
    for cls, rs in sorted(by_cls.items()):
        real = sorted((r for r in rs if r["origin"] == "real"), key=lambda r: r["file"])
        pool = real or sorted(rs, key=lambda r: r["file"])
        for r in rs:
            r["split"] = "train"
        h = int.from_bytes(hashlib.sha256(f"netdiff-split/{seed}/{cls}".encode()).digest()[:8], "little")
        perm = np.random.default_rng(h).permutation(len(pool))
        for j in perm[:n_test(len(pool), frac)]:
            pool[int(j)]["split"] = "test"


def real_test_flows(inputs, frac: float, seed: int, cfg: FlowConfig = FlowConfig(),
                    cancel: CancelToken | None = None) -> dict[str, list[str]]:
    """``{class: [flow ids]}`` of the real flows an export of ``inputs`` with this split puts in
    ``test``, known before exporting (balancing must not guide generation by them).

    Real flows are named and split exactly as :func:`engine.datasets.export.export` does: their
    staged names come from the real inputs alone (they are read first), and synthetic flows never
    go to test.
    """
    rows, owner = [], {}
    for s in scan_inputs(inputs):
        if s.origin != "real":
            continue
        for rel, _body, row in flows_of(s, cfg, cancel):
            staged = free_name(rel, s.key, owner)
            owner[staged] = s.key
            row["file"] = staged
            rows.append(row)
    assign_split(rows, frac, seed)
    out: dict[str, list[str]] = {}
    for r in rows:
        if r["split"] == "test":
            out.setdefault(r["class"], []).append(r["flow_id"])
    return {c: sorted(v) for c, v in sorted(out.items())}

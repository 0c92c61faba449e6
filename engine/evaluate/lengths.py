"""Flow length over whole flows: the one quantity that ``max_packets`` cuts.

The fidelity tables compare each flow's first ``max_packets`` packets (the model's length of
old); a 1024-packet model is also judged on how long its flows are. Here the packet counts of
whole flows (up to the capture reader's cut, 1024) are binned as ``flow_packets`` is
(:data:`engine.evaluate.features.SPECS`) and compared per class: the synthetic flows against the
real test split and against the train split the model's length prior was fitted on, and the real
train split against the test split (the floor a held-out split of that size gives). The random
and marginals baselines take their lengths from the train split cut at ``max_packets`` and are
left out.
"""

from __future__ import annotations

import numpy as np

from engine.artifacts.reports import FLOW_LENGTH_JSD

from .data import FlowSet
from .features import SPECS
from .metrics import compare, mean_of

SPEC = next(s for s in SPECS if s.name == "flow_packets")


def _jsd(a: list[int], b: list[int]) -> float | None:
    r = compare(np.asarray(a, np.float64), np.asarray(b, np.float64), **SPEC.bin_kwargs())
    return None if r is None else r["jsd"]


def flow_length_fidelity(train: FlowSet, test: FlowSet, synthetic: FlowSet, classes: list[str]) -> dict:
    """``{"classes": {c: {"mean_packets": {real_train, real_test, synthetic}, "max_packets": {...},
    "jsd": {"synthetic_vs_test", "synthetic_vs_train", "real_train_vs_test"}}}, "overall": {same keys: mean}}``
    over whole flows (none of them cut at ``max_packets``)."""
    out: dict = {"classes": {}}
    for c in classes:
        n = {k: [len(m) for m in fs.of(c).mats] for k, fs in
             (("real_train", train), ("real_test", test), ("synthetic", synthetic))}
        out["classes"][c] = {
            "flows": {k: len(v) for k, v in n.items()},
            "mean_packets": {k: float(np.mean(v)) if v else None for k, v in n.items()},
            "max_packets": {k: int(max(v)) if v else None for k, v in n.items()},
            "jsd": {"synthetic_vs_test": _jsd(n["real_test"], n["synthetic"]),
                    "synthetic_vs_train": _jsd(n["real_train"], n["synthetic"]),
                    "real_train_vs_test": _jsd(n["real_test"], n["real_train"])}}
    out["overall"] = {k: mean_of(out["classes"][c]["jsd"][k] for c in classes) for k in FLOW_LENGTH_JSD}
    return out

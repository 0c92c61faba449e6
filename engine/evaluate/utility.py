"""ML utility: does a classifier trained on synthetic traffic recognise real traffic?

Scenarios (the paper's): ``real`` = train on the real training split,
``synthetic`` = train on the synthetic flows only, ``mix`` = real training
split + synthetic; every one is tested on the real *test* split. Extra:
``real_matched`` = real training flows subsampled (seeded) to as many flows per
class as the synthetic set has, the fair reference for ``synthetic`` when
the synthetic set is smaller than the training split.

Feature sets:

* ``packet_bits``: the paper's per-packet input, the 1088 header bit columns
  with -1 kept; one sample per packet, at most ``packet_cap`` packets per class
  and side (sampled with a fixed seed).
* ``flow_stats``: one sample per flow (:data:`engine.evaluate.features.FLOW_FEATURES`).

Each runs twice: with every feature, and with the port fields removed (ports
come from recipes at generation time, so they would make the task trivial
and say nothing about the model). Classifier: scikit-learn's
RandomForestClassifier (``n_estimators`` trees, fixed ``random_state``).
Accuracy and macro-F1 over the evaluated classes (a class never seen in
training scores F1 0).
"""

from __future__ import annotations

import numpy as np

from .data import FlowSet
from .features import flow_matrix, packet_bits

SCENARIOS = ("real", "synthetic", "mix", "real_matched")
FEATURE_SETS = ("packet_bits", "packet_bits_noports", "flow_stats", "flow_stats_noports")


def _xy(fs: FlowSet, classes: list[str], feat: str, cap: int | None, seed: int):
    xs, ys = [], []
    mask = feat.endswith("_noports")
    for k, c in enumerate(classes):
        sub = fs.of(c)
        if len(sub) == 0:
            continue
        if feat.startswith("packet_bits"):
            rng = np.random.default_rng([seed, k])
            x = packet_bits(sub.mats, cap, rng, mask_ports=mask)
        else:
            x = flow_matrix(sub.mats, mask_ports=mask)
        xs.append(x)
        ys.append(np.full(len(x), k))
    if not xs:
        return None, None
    return np.concatenate(xs), np.concatenate(ys)


def _matched(train_real: FlowSet, synthetic: FlowSet, classes: list[str], seed: int) -> FlowSet:
    out = FlowSet()
    for k, c in enumerate(classes):
        tr, n = train_real.of(c), len(synthetic.of(c))
        rng = np.random.default_rng([seed, 7, k])
        idx = np.sort(rng.choice(len(tr), min(n, len(tr)), replace=False)) if len(tr) else []
        out = out.add(tr.take(idx))
    return out


def _fit_score(xtr, ytr, xte, yte, n_classes: int, seed: int, n_estimators: int, n_jobs: int) -> dict:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score
    clf = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs,
                                 min_samples_leaf=1, max_features="sqrt")
    clf.fit(xtr, ytr)
    pred = clf.predict(xte)
    return {"accuracy": float(accuracy_score(yte, pred)),
            "macro_f1": float(f1_score(yte, pred, labels=list(range(n_classes)), average="macro", zero_division=0)),
            "train_samples": int(len(ytr)), "test_samples": int(len(yte))}


def ml_utility(train_real: FlowSet, test_real: FlowSet, synthetic: FlowSet, classes: list[str],
               packet_cap: int = 2000, seed: int = 0, n_estimators: int = 100, n_jobs: int = 2,
               feature_sets=FEATURE_SETS, scenarios=SCENARIOS, on_step=None) -> dict:
    """``{feature_set: {scenario: {accuracy, macro_f1, ...}}}`` (``None`` where a side is empty)."""
    out: dict = {}
    n = len(classes)
    for feat in feature_sets:
        xte, yte = _xy(test_real, classes, feat, packet_cap, seed + 1)
        xr, yr = _xy(train_real, classes, feat, packet_cap, seed + 2)
        xs, ys = _xy(synthetic, classes, feat, packet_cap, seed + 3)
        if "real_matched" in scenarios:
            xm, ym = _xy(_matched(train_real, synthetic, classes, seed), classes, feat, packet_cap, seed + 4)
        res = {}
        for sc in scenarios:
            if on_step:
                on_step(f"{feat}/{sc}")
            if sc == "real":
                tr = (xr, yr)
            elif sc == "synthetic":
                tr = (xs, ys)
            elif sc == "real_matched":
                tr = (xm, ym)
            else:
                tr = (None, None) if xr is None or xs is None else (np.concatenate([xr, xs]), np.concatenate([yr, ys]))
            if tr[0] is None or xte is None or len(np.unique(tr[1])) < 1:
                res[sc] = None
                continue
            res[sc] = _fit_score(tr[0], tr[1], xte, yte, n, seed, n_estimators, n_jobs)
        out[feat] = res
    return out

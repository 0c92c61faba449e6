"""Detectability: can a classifier tell a candidate's traffic from the real test traffic?

Per-field divergences compare marginals one field at a time, so a generator
that samples every field independently (the ``marginals`` baseline) scores
well on them by construction. This classifier two-sample test looks at the
joint structure instead: a random forest learns "real test" (0) vs
"candidate" (1) with stratified k-fold cross-validation over whole flows, on

* ``packet_bits_noports``: per-packet header bits (ports removed), at most
  ``packet_cap`` packets per class and side, plus the class index;
* ``flow_stats_noports``: per-flow statistics (ports removed), plus the class index.

Reported: cross-validated ROC AUC and accuracy. 0.5 = indistinguishable
(ideal), 1.0 = every sample told apart. Both sides are subsampled per class to
the same size, so chance stays 0.5.

The folds hold out whole flows (``StratifiedGroupKFold``): the packets of one
flow share its constants (sequence base, IP ID counter, TTL, window), and with
packets of a flow on both sides of a fold the forest scored packets by the
flow it had memorised (real train vs real test flows: 0.927 that way, 0.5 is
what two samples of one distribution must score). ``grouped=False`` keeps the
packet-level folds for comparison with reports written before.
"""

from __future__ import annotations

import numpy as np

from .data import FlowSet
from .features import flow_matrix, packet_bits

DETECT_FEATURES = ("packet_bits_noports", "flow_stats_noports")


def _side(fs: FlowSet, classes: list[str], feat: str, cap: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per class: feature rows (class index appended) and each row's flow id."""
    out = []
    for k, c in enumerate(classes):
        sub = fs.of(c)
        if feat.startswith("packet"):
            x, g = packet_bits(sub.mats, cap, np.random.default_rng([seed, k]), mask_ports=True, with_flows=True)
            x = x.astype(np.float32)
        else:
            x = flow_matrix(sub.mats, mask_ports=True)
            g = np.arange(len(x))
        x = np.hstack([x, np.full((len(x), 1), k, np.float32)]) if len(x) else x.reshape(0, x.shape[1] + 1)
        out.append((x, g))
    return out


def detectability(test_real: FlowSet, candidate: FlowSet, classes: list[str], packet_cap: int = 1000,
                  seed: int = 0, n_estimators: int = 50, folds: int = 5, n_jobs: int = 2,
                  grouped: bool = True) -> dict:
    """``{feature_set: {"auc", "accuracy", "samples", "folds"} | None}``."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
    out: dict = {}
    for feat in DETECT_FEATURES:
        a = _side(test_real, classes, feat, packet_cap, seed + 11)
        b = _side(candidate, classes, feat, packet_cap, seed + 12)
        rng = np.random.default_rng([seed, 13])
        xs, ys, gs = [], [], []
        base = 0
        for (xa, ga), (xb, gb) in zip(a, b):
            n = min(len(xa), len(xb))
            if n == 0:
                continue
            ia, ib = rng.choice(len(xa), n, replace=False), rng.choice(len(xb), n, replace=False)
            xs += [xa[ia], xb[ib]]
            ys += [np.zeros(n), np.ones(n)]
            # flow ids made unique over classes and sides
            gs += [ga[ia] + base, gb[ib] + base + ga.max() + 1]
            base += ga.max() + gb.max() + 2
        if not xs:
            out[feat] = None
            continue
        x, y, g = np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)
        # a fold needs a flow (a row, ungrouped) of each side
        k = int(min(folds, *(len(np.unique(g[y == s])) if grouped else int((y == s).sum()) for s in (0, 1))))
        if k < 2:
            out[feat] = None
            continue
        # a flow statistics row is a whole flow already: plain stratified folds hold out flows
        by_flow = grouped and feat.startswith("packet")
        cv = (StratifiedGroupKFold(k, shuffle=True, random_state=seed) if by_flow
              else StratifiedKFold(k, shuffle=True, random_state=seed))
        clf = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs)
        p = cross_val_predict(clf, x, y, cv=cv, groups=g if by_flow else None, method="predict_proba")[:, 1]
        out[feat] = {"auc": float(roc_auc_score(y, p)), "accuracy": float(accuracy_score(y, p >= 0.5)),
                     "samples": int(len(y)), "folds": "flows" if grouped else "rows"}
    return out

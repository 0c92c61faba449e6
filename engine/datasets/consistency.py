"""The consistency filter of ``netdiff balance --filter``: keep the synthetic flows that a
classifier trained on the real flows takes for their own class.

Topped up with every synthetic flow, thin classes *lose* macro-F1 on real flows the generator
never saw (bench/balance.md): a forest trained on many synthetic flows learns what makes them
synthetic as part of each class, and the flows that look like another class's real ones pull
its real flows over. Here a random forest is trained on the statistics of the real flows that
the export puts in train (never on a test flow), ports masked (a recipe sets them, so they say
nothing about the traffic), and a synthetic flow is kept only where it gives the flow's class
at least ``min_prob``; of those, the most probable ``need`` per class (balancing may draw more
than it needs, ``--oversample``, so that more pass).

The filter reads only train-side real flows and the synthetic flows, so a balanced export's
test split stays as clean as without it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from engine.artifacts.datasets import read_manifest_rows
from engine.codec.flows import FlowConfig
from engine.codec.pipeline import encode_capture
from engine.errors import InputError
from engine.outdir import atomic_write_bytes
from engine.progress import CancelToken

#: trees of the filter's forest (scikit-learn's RandomForestClassifier)
TREES = 200
#: written into a class's generated folder once it is filtered, so a resumed balance does not
#: filter it twice (the manifest already lists the kept flows only)
VETTED = "vetted.json"
#: the generated folder's whole manifest, before the filter shortened it
ALL = "manifest.drawn.csv"


def flow_features(mats: list[np.ndarray]) -> np.ndarray:
    """``(flows, features)``: :func:`engine.evaluate.features.flow_matrix` of the flows, ports masked."""
    from engine.evaluate.features import flow_matrix
    return flow_matrix(mats, mask_ports=True)


class Filter:
    """A forest on the real train flows' statistics; :meth:`own_prob` scores flows of a class."""

    def __init__(self, x: np.ndarray, labels: list[str], seed: int = 0, n_jobs: int = 1):
        from sklearn.ensemble import RandomForestClassifier
        if len(set(labels)) < 2:
            raise InputError(None, "--filter needs real train flows of at least two classes")
        self.classes = sorted(set(labels))
        y = np.searchsorted(self.classes, labels)
        self.forest = RandomForestClassifier(TREES, random_state=seed, n_jobs=n_jobs).fit(x, y)

    def own_prob(self, x: np.ndarray, cls: str) -> np.ndarray:
        """``(flows,)``: the forest's probability of ``cls`` for each row of ``x`` (0 for a class it never saw)."""
        if cls not in self.classes or len(x) == 0:
            return np.zeros(len(x))
        # the forest's classes are 0..len(self.classes)-1: every one has a training flow
        return self.forest.predict_proba(x)[:, self.classes.index(cls)]


def real_train_features(sources, test_ids: dict[str, list[str]], cfg: FlowConfig = FlowConfig(),
                        cancel: CancelToken | None = None) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """Statistics of every real flow of ``sources`` (:func:`engine.datasets.export.scan_inputs`'
    real captures) that is not in ``test_ids`` (``{class: [flow ids]}``), with their classes,
    and the flows per class (test ones included). One flow's vector at a time: memory is the
    vectors', not the flows'."""
    held = {(c, f) for c, ids in test_ids.items() for f in ids}
    rows, labels, counts = [], [], {}
    for s in sources:
        for b in encode_capture(s.path, cfg, cancel=cancel):
            for i, m in enumerate(b.metas):
                counts[s.cls] = counts.get(s.cls, 0) + 1
                if (s.cls, m.flow_id) not in held:
                    rows.append(flow_features([b.flow(i)])[0])
                    labels.append(s.cls)
    x = np.stack(rows) if rows else np.zeros((0, 0))
    return x, labels, dict(sorted(counts.items()))


def file_features(paths) -> np.ndarray:
    """``(files, features)``: :func:`flow_features` of each per-flow capture file's flow (a
    generated or exported flow file holds one), one file at a time (memory is the vectors')."""
    vecs = []
    for f in paths:
        v = None
        for b in encode_capture(f, FlowConfig(min_packets=1)):
            if len(b):
                v = flow_features([b.flow(0)])[0]
                break
        if v is None:
            raise InputError(f, "holds no flow (a generated flow file should hold one)")
        vecs.append(v)
    return np.stack(vecs) if vecs else np.zeros((0, 0))


def _generated_features(d: Path, manifest: Path) -> tuple[list[dict], np.ndarray]:
    """The rows of a generated folder's manifest and their flows' statistics."""
    rows = read_manifest_rows(manifest, need=("file",))
    return rows, file_features(d / r["file"] for r in rows)


def _record(path: Path) -> dict | None:
    """A folder's ``vetted.json`` when it is whole and sane (else ``None``: filter again)."""
    try:
        r = json.loads(path.read_text())
        ok = isinstance(r, dict) and all(isinstance(r.get(k), int) and 0 <= r[k] for k in ("drawn", "kept")) \
            and r["kept"] <= r["drawn"] and isinstance(r.get("min_prob"), (int, float))
    except (OSError, ValueError):
        return None
    return r if ok else None


def vet(d: str | os.PathLike, cls: str, filt: Filter, keep: int, min_prob: float) -> dict:
    """Filter a class's generated folder ``d`` in place: its manifest lists afterwards only the
    (at most ``keep``) flows with the highest probability of ``cls``, each at least ``min_prob``.
    Returns ``{"drawn", "kept", "min_prob", "median_prob"}`` (also written to ``d/vetted.json``);
    a folder filtered before returns what it recorded then."""
    d = Path(d)
    done = d / VETTED
    if done.is_file() and (rec := _record(done)) is not None:
        return rec
    full = d / ALL
    if not full.is_file():
        # the whole draw is kept aside first: an interrupted filter starts again from it,
        # never from a manifest it already shortened
        atomic_write_bytes(full, [(d / "manifest.csv").read_bytes()])
    rows, x = _generated_features(d, full)
    p = filt.own_prob(x, cls)
    ok = np.nonzero(p >= min_prob)[0]
    chosen = sorted(ok[np.argsort(-p[ok], kind="stable")[:keep]])
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(rows[0].keys()) if rows else ["file"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows[i] for i in chosen)
    res = {"drawn": len(rows), "kept": len(chosen), "min_prob": min_prob,
           "median_prob": round(float(np.median(p)), 4) if len(p) else None}
    atomic_write_bytes(d / "manifest.csv", [buf.getvalue().encode()])
    atomic_write_bytes(done, [json.dumps(res).encode()])
    return res

"""Labeled flows for evaluation: reading directories, and the real train/test split.

Two kinds of input directory are accepted:

* a *labeled capture directory*: ``<class>/<files>.pcap|.pcapng`` (the real
  data, or ``netdiff generate`` output). A ``manifest.csv`` there is only used
  for labels (its ``file`` and ``label`` columns); otherwise the class is the
  first directory level under the root. Directories starting with ``_`` or
  ``.`` are skipped. When one class holds the same capture twice (``x.pcap``
  and ``x.pcapng``, same stem) only the first is read.
* an *encoded dataset directory* (``netdiff encode`` output): ``manifest.csv``
  whose ``file`` column names ``.npz``/``.png``/``.csv`` flow files.

Captures are read through :func:`engine.codec.pipeline.encode_capture`, flow files
through :func:`engine.datasets.encoded.load_flow`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.artifacts.datasets import read_manifest_rows
from engine.codec.matrix import FlowMeta
from engine.datasets.encoded import FLOW_EXTS, load_flow
from engine.constants import CAPTURE_EXTS
from engine.errors import InputError
from engine.inputs import files_in
from engine.codec.flows import FlowConfig
from engine.codec.pipeline import encode_capture
from engine.progress import OnEvent, TaskFinished, TaskProgress, TaskStarted


@dataclass
class FlowSet:
    """Flows with labels: ``mats[i]`` is ``(packets, LAYOUT.width)`` int8, ``metas[i]`` its meta."""

    mats: list[np.ndarray] = field(default_factory=list)
    metas: list[FlowMeta] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.mats)

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.metas]

    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def counts(self) -> Counter:
        return Counter(self.labels)

    def of(self, label: str) -> "FlowSet":
        idx = [i for i, m in enumerate(self.metas) if m.label == label]
        return self.take(idx)

    def take(self, idx: Iterable[int]) -> "FlowSet":
        idx = list(idx)
        return FlowSet([self.mats[i] for i in idx], [self.metas[i] for i in idx])

    def add(self, other: "FlowSet") -> "FlowSet":
        return FlowSet(self.mats + other.mats, self.metas + other.metas)

    def only(self, classes: Iterable[str] | None) -> "FlowSet":
        if classes is None:
            return self
        keep = set(classes)
        return self.take(i for i, m in enumerate(self.metas) if m.label in keep)

    def truncated(self, max_packets: int | None) -> "FlowSet":
        """First ``max_packets`` packets of every flow (the paper keeps the first 1024)."""
        if not max_packets:
            return self
        return FlowSet([m[:max_packets] for m in self.mats],
                       [replace(x, packets=min(x.packets, max_packets)) for x in self.metas])

    @property
    def packets(self) -> int:
        return int(sum(len(m) for m in self.mats))


def _manifest_rows(root: Path) -> list[dict] | None:
    man = root / "manifest.csv"
    if not man.is_file():
        return None
    return read_manifest_rows(man, need=())


def _capture_files(root: Path, rows: list[dict] | None) -> list[tuple[Path, str]]:
    """(file, label) pairs of a labeled capture directory."""
    by_manifest: dict[str, str] = {}
    if rows and "file" in rows[0] and "label" in rows[0]:
        for r in rows:
            if r.get("file") and r.get("label"):
                by_manifest[os.path.normpath(r["file"])] = r["label"]
    out = []
    for p in files_in(root, CAPTURE_EXTS, drop_twins=True):
        rel = p.relative_to(root)
        label = by_manifest.get(os.path.normpath(str(rel)))
        if label is None:
            if len(rel.parts) < 2:
                raise InputError(p, "capture is not inside a class directory (<class>/<file>.pcap)")
            label = rel.parts[0]
        out.append((p, label))
    return out


def append_capture(fs: FlowSet, path: Path, cfg: FlowConfig, label: str) -> None:
    """Add every flow of one capture to ``fs``, labeled ``label``."""
    for b in encode_capture(path, cfg, label=label):
        for j in range(len(b)):
            fs.mats.append(np.ascontiguousarray(b.flow(j)))
            fs.metas.append(b.metas[j])


def load_labeled(path: str | os.PathLike, cfg: FlowConfig = FlowConfig(), classes: Iterable[str] | None = None,
                 on_event: OnEvent | None = None) -> FlowSet:
    """Read every flow of a labeled capture directory or an encoded dataset directory."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(root, "not a directory")
    want = None if classes is None else set(classes)
    emit = on_event or (lambda e: None)
    rows = _manifest_rows(root)
    fs = FlowSet()
    task = f"read {root.name}"
    if rows and "file" in rows[0] and any(Path(r["file"]).suffix.lower() in FLOW_EXTS for r in rows):
        rows = [r for r in rows if want is None or r.get("label") in want]
        emit(TaskStarted(task, total=len(rows), unit="flows"))
        for i, r in enumerate(rows):
            m, meta = load_flow(root / r["file"])
            if r.get("label"):
                meta = replace(meta, label=r["label"])
            fs.mats.append(m)
            fs.metas.append(meta)
            if i % 200 == 0:
                emit(TaskProgress(task, done=i + 1, total=len(rows), unit="flows"))
    else:
        files = [(p, lab) for p, lab in _capture_files(root, rows) if want is None or lab in want]
        if not files:
            raise InputError(root, "holds no <class>/*.pcap|.pcapng captures and no encoded dataset")
        emit(TaskStarted(task, total=len(files), unit="files"))
        for i, (p, lab) in enumerate(files):
            append_capture(fs, p, cfg, lab)
            emit(TaskProgress(task, done=i + 1, total=len(files), unit="files"))
    emit(TaskFinished(task, summary={"flows": len(fs), "classes": dict(fs.counts())}))
    return fs


# -- split ------------------------------------------------------------------------------

@dataclass
class Split:
    train: FlowSet
    test: FlowSet
    source: str           # "seed=<n>, test=<frac>" or the split file's path

    def summary(self) -> dict:
        return {"source": self.source, "train_flows": dict(sorted(self.train.counts().items())),
                "test_flows": dict(sorted(self.test.counts().items()))}


def _rank(seed: int, label: str, flow_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{label}\0{flow_id}".encode()).digest()[:8], "big")


def split_by_flow(fs: FlowSet, seed: int = 0, test_frac: float = 0.2) -> Split:
    """Per class, the ``test_frac`` of flows with the smallest seeded hash of their id go to test.

    Hashing (rather than shuffling) keeps a flow on the same side whatever
    other flows are present. Every class with >= 2 flows gets >= 1 test flow.
    """
    test_idx: set[int] = set()
    by_class: dict[str, list[int]] = {}
    for i, m in enumerate(fs.metas):
        by_class.setdefault(m.label, []).append(i)
    for lab, idx in by_class.items():
        idx = sorted(idx, key=lambda i: _rank(seed, lab, fs.metas[i].flow_id))
        k = int(round(len(idx) * test_frac))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        test_idx.update(idx[:k])
    train = [i for i in range(len(fs)) if i not in test_idx]
    return Split(fs.take(train), fs.take(sorted(test_idx)), f"seed={seed}, test_frac={test_frac}")


def read_split_file(path: str | os.PathLike) -> tuple[set[str] | None, set[str] | None, dict]:
    """Test and train flow ids from a split file (JSON).

    Accepted shapes: ``{"test": [ids...], "train": [ids...]}`` (``netdiff train``'s
    ``split.json`` lists dataset files ``label/flow_id.npz``), the same with
    ``{label: [ids...]}`` dicts instead of lists, or keys ``test_flow_ids`` /
    ``held_out`` / ``train_flow_ids``; ids may be plain flow ids or
    ``label/flow_id``. Returns ``(test, train, rest_of_file)``; ``train`` is
    ``None`` when the file lists only the test side.
    """
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InputError(p, f"cannot read split file: {e}") from None
    if not isinstance(d, dict):
        raise InputError(p, "split file must hold a JSON object")

    def ids(v) -> set[str] | None:
        if v is None:
            return None
        if isinstance(v, dict):
            out = set()
            for lab, lst in v.items():
                if isinstance(lst, list):
                    out.update(str(x) for x in lst)
                    out.update(f"{lab}/{x}" for x in lst)
            return out
        if isinstance(v, list):
            out = set()
            for x in v:
                x = str(x.get("flow_id") if isinstance(x, dict) else x)
                out.add(x)
                if Path(x).suffix.lower() in FLOW_EXTS:      # "label/flow_id.npz" (netdiff train)
                    out.add(x[: -len(Path(x).suffix)])
            return out
        raise InputError(p, "split lists must be lists or {label: list} objects")

    def pick(*keys):
        for k in keys:
            if k in d:
                return d[k]
        return None
    test = ids(pick("test", "test_flow_ids", "held_out", "heldout", "test_ids"))
    train = ids(pick("train", "train_flow_ids", "train_ids"))
    if test is None:
        raise InputError(p, "split file names no test flows (expected a 'test' key)")
    rest = {k: v for k, v in d.items() if not isinstance(v, (list, dict))}
    return test, train, rest


def split_sides(fs: FlowSet, path: str | os.PathLike) -> tuple[list[int], list[int]]:
    """Indices of ``fs`` on the train and the test side of a split file; flows it does not
    name go to train only when it lists no train side."""
    test, train, _ = read_split_file(path)

    def named(m: FlowMeta, s: set[str]) -> bool:
        return m.flow_id in s or f"{m.label}/{m.flow_id}" in s
    te = [i for i, m in enumerate(fs.metas) if named(m, test)]
    tset = set(te)
    tr = [i for i, m in enumerate(fs.metas) if i not in tset and (train is None or named(m, train))]
    return tr, te


def split_from_file(fs: FlowSet, path: str | os.PathLike) -> Split:
    """Apply a split file (:func:`split_sides`)."""
    tr, te = split_sides(fs, path)
    if not te:
        raise InputError(path, "no flow of the real data is in the split file's test set "
                               "(different data or flow settings?)")
    return Split(fs.take(tr), fs.take(te), str(path))

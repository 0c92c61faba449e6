"""Encoded datasets -> fixed-length float batches; train/test splits by flow.

A flow becomes ``(L, LAYOUT.width)`` float32: its first ``L`` packet rows as
{-1, 0, 1}, then padding rows of all -1. Rows are kept compact in memory
(int8, concatenated) and padded per batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.datasets.encoded import load_flow, read_manifest
from engine.errors import InputError
from engine.codec.layout import LAYOUT


def manifest_hash(data_dir: str | os.PathLike) -> str:
    """sha256 of the dataset's manifest.csv (identifies the training data)."""
    p = Path(data_dir) / "manifest.csv"
    if not p.exists():
        raise InputError(data_dir, "not a dataset directory (no manifest.csv)")
    return hashlib.sha256(p.read_bytes()).hexdigest()


def make_split(rows: list[dict], test_fraction: float, seed: int) -> dict:
    """Hold out a test split by flow, stratified by label, with a fixed seed.

    Flows are keyed by their manifest ``file`` (unique within a dataset;
    ``flow_id`` alone can repeat across captures). A class with at least 3
    flows gives at least one test flow; smaller classes stay in train.
    """
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    test: list[dict] = []
    for lab in sorted(by_label):
        rs = sorted(by_label[lab], key=lambda r: r["file"])
        rng = np.random.default_rng([seed, int(hashlib.sha256(lab.encode()).hexdigest()[:8], 16)])
        k = int(round(test_fraction * len(rs)))
        if len(rs) >= 3:
            k = max(k, 1)
        test += [rs[i] for i in sorted(rng.permutation(len(rs))[:k])]
    tset = {r["file"] for r in test}
    train = [r for r in rows if r["file"] not in tset]
    return {"seed": seed, "test_fraction": test_fraction, "key": "file",
            "train": _unique(r["file"] for r in train), "test": _unique(r["file"] for r in test),
            "test_flow_ids": _unique(r["flow_id"] for r in test)}


def _unique(xs) -> list:
    """Order-preserving de-duplication (a manifest can list one file twice)."""
    return list(dict.fromkeys(xs))


def load_split(path: str | os.PathLike) -> dict:
    try:
        d = json.loads(Path(path).read_text())
        assert isinstance(d["train"], list) and isinstance(d["test"], list)
        return d
    except (OSError, ValueError, KeyError, AssertionError) as e:
        raise InputError(path, f"not a split file: {e}") from None


@dataclass
class FlowTable:
    """Flows of a dataset, compact: ``rows[offsets[i]:offsets[i+1]]`` is flow ``i``."""

    rows: np.ndarray          # (R, width) int8
    offsets: np.ndarray       # (n + 1,) int64
    labels: np.ndarray        # (n,) int64 class index
    classes: list[str]
    files: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def sample_weights(self, balance: float) -> np.ndarray:
        """Per-flow sampling probability: a class of ``n`` flows gets mass ~ ``n ** balance``.

        ``balance`` 1 = uniform over flows, 0 = uniform over classes.
        """
        counts = np.bincount(self.labels, minlength=len(self.classes)).astype(np.float64)
        w = counts[self.labels] ** (balance - 1.0)
        return w / w.sum()

    def priors(self, max_packets: int, closing: int | None = None) -> dict:
        """What sampling reads from a checkpoint's config.json besides the weights: the
        flow-shape prior (``lengths``), the initiator's packets (``directions``) and the directions of
        the first ones (``heads``), the field
        vocabularies (``vocab``), the paired spans (``joint``), the port prior (``ports``), the
        flow profiles (``profiles``; with ``closing`` slots for the last packets of flows that end,
        default :data:`engine.model.profiles.TAIL`) and the TCP option lists (``tcp_options``) of these flows."""
        from .directions import fit_directions, fit_heads
        from .lengths import length_prior
        from .ports import fit_port_table
        from .profiles import TAIL, fit_profiles
        from .tcp_options import fit_tcp_options
        from .vocab import fit_joint, fit_vocab
        row_labels = np.repeat(self.labels, np.diff(self.offsets))
        vocab = fit_vocab(self.rows, row_labels, self.classes)
        return {"lengths": length_prior(self.rows, self.offsets, self.labels, self.classes, max_packets),
                "directions": fit_directions(self.rows, self.offsets, self.labels, self.classes, max_packets),
                "heads": fit_heads(self.rows, self.offsets, self.labels, self.classes),
                "vocab": vocab,
                "ports": fit_port_table(self.rows, self.offsets, self.labels, self.classes, max_packets),
                "joint": fit_joint(self.rows, row_labels, self.classes),
                "profiles": fit_profiles(self.rows, self.offsets, self.labels, self.classes, vocab, max_packets,
                                         tail=TAIL if closing is None else closing),
                "tcp_options": fit_tcp_options(self.rows, self.offsets, self.labels, self.classes)}

    def extended(self, mats: list[np.ndarray], labels: list[int], names: list[str]) -> "FlowTable":
        """This table followed by more flows (same classes)."""
        if not mats:
            return self
        rows = np.concatenate([self.rows, *[m[:, : self.rows.shape[1]].astype(np.int8) for m in mats]])
        more = self.offsets[-1] + np.cumsum([len(m) for m in mats])
        return FlowTable(rows, np.concatenate([self.offsets, more]).astype(np.int64),
                         np.concatenate([self.labels, np.asarray(labels, np.int64)]), self.classes,
                         self.files + list(names))

    def batch(self, idx: np.ndarray, length: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, length, width)`` in {-1, 0, 1} (float32, or ``dtype``: int8 moves to a GPU 4x cheaper)
        and ``(B,)`` long labels."""
        x = np.full((len(idx), length, LAYOUT.width), -1, np.int8)
        for j, i in enumerate(idx):
            a, b = self.offsets[i], self.offsets[i + 1]
            b = min(b, a + length)
            x[j, : b - a] = self.rows[a:b]
        return torch.from_numpy(x).to(dtype), torch.from_numpy(self.labels[idx]).long()


def load_table(data_dir: str | os.PathLike, max_packets: int, files: list[str] | None = None,
               classes: list[str] | None = None) -> FlowTable:
    """Read a dataset's flows (only ``files`` if given), keeping the first ``max_packets`` rows."""
    rows = read_manifest(data_dir)
    if files is not None:
        keep = set(files)
        rows = [r for r in rows if r["file"] in keep]
    if classes is None:
        classes = sorted({r["label"] for r in rows})
    cidx = {c: i for i, c in enumerate(classes)}
    mats, labels, names = [], [], []
    for r in rows:
        if r["label"] not in cidx:
            continue
        m, _ = load_flow(Path(data_dir) / r["file"])
        mats.append(m[:max_packets].astype(np.int8))
        labels.append(cidx[r["label"]])
        names.append(r["file"])
    if not mats:
        raise InputError(data_dir, "no flows to train on")
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in mats])]).astype(np.int64)
    return FlowTable(np.concatenate(mats), offsets, np.array(labels, np.int64), list(classes), names)

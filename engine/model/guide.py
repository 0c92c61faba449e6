"""Guidance by real flows: each synthetic flow starts from a real flow of its class.

The paper steers Stable Diffusion with a ControlNet fed by a real flow's image;
the native model does the same job with SDEdit (Meng et al., 2022): a real
flow is noised part of the way up the diffusion schedule (``strength``) and
the class-conditional model denoises it back. The synthetic flow keeps the
real flow's shape (its packet count and transport are held, as the shape
prior holds them for unguided flows) and, the lower the strength, more of its
sizes, gaps and flags; every header bit is still resampled and repaired.

Guides come from a user's own captures (a capture file, a directory of a
class's captures, a labeled capture directory ``<class>/*.pcap``, or a
``netdiff encode`` dataset). A split file keeps held-out flows out of the
guides, so an evaluation on those flows stays honest.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from engine.codec.matrix import present_rows
from engine.constants import CAPTURE_EXTS
from engine.errors import InputError
from engine.inputs import files_in
from engine.codec.flows import FlowConfig


def load_guides(path: str | os.PathLike, label: str, split_file: str | os.PathLike | None = None,
                flow_cfg: FlowConfig = FlowConfig(), on_event=None) -> tuple[list[np.ndarray], list[str]]:
    """The flows of ``label`` at ``path`` as ``(matrices, flow ids)``, in a stable order.

    ``path``: a capture file (every flow is ``label``), a directory of captures of
    ``label``, a labeled capture directory, or an encoded dataset. With ``split_file``
    the flows it lists as test are left out (and, where it lists a train side, every
    flow not on it).
    """
    from engine.evaluate.data import FlowSet, append_capture, load_labeled, split_sides
    p = Path(path)
    if not p.exists():
        raise InputError(p, "guide flows: no such file or directory")
    fs = FlowSet()
    if p.is_file():
        append_capture(fs, p, flow_cfg, label)
    elif (p / "manifest.csv").is_file() or (p / label).is_dir():
        fs = load_labeled(p, flow_cfg, classes=[label], on_event=on_event)
    else:
        files = files_in(p, CAPTURE_EXTS, recursive=False, drop_twins=True)
        if not files:
            raise InputError(p, f"guide flows: holds no captures of {label!r} "
                                f"(expected {label}/*.pcap, *.pcap, or a netdiff encode dataset)")
        for f in files:
            append_capture(fs, f, flow_cfg, label)
    if split_file is not None:
        fs = fs.take(split_sides(fs, split_file)[0])
    mats, ids = [], []
    for m, meta in zip(fs.mats, fs.metas):
        r = m[present_rows(m)]
        if len(r):
            mats.append(r)
            ids.append(meta.flow_id)
    if not mats:
        raise InputError(p, f"guide flows: no flow of class {label!r} there"
                            + (f" on the train side of {split_file}" if split_file else ""))
    return mats, ids


def assign_guides(n: int, seed: int, count: int) -> np.ndarray:
    """``(count,)``: the guide each flow ``0..count-1`` of a request starts from,
    ``guide_order(n, seed)[i % n]``."""
    return np.resize(guide_order(n, seed), count)


def guide_order(n: int, seed: int) -> np.ndarray:
    """Which guide flow ``i`` of a request starts from: ``order[i % n]``, a seeded
    permutation, so every guide is used once before any is used twice and the choice
    does not depend on how flows are split over processes."""
    h = int.from_bytes(hashlib.sha256(f"netdiff/guide/{seed}".encode()).digest()[:8], "little")
    return np.random.default_rng(h).permutation(n)

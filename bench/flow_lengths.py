"""Flow-length JSD per class (whole flows, up to 1024 packets) -> bench/quality_1024.md's table.

    python bench/flow_lengths.py DATASET SYNTHETIC_DIR [SPLIT]

DATASET: `netdiff encode <real> -o DATASET --label-from-dir --max-packets 1024 --min-packets 2`;
SYNTHETIC_DIR: bench_evaluate.py's WORK/synthetic (one generate output per class, each with its
manifest.csv); SPLIT: the generator's split (default configs/default_split.json).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.evaluate.metrics import jsd  # noqa: E402

# doubling from 1 to 1024 packets (a flow is cut at 1024)
BINS = np.array([1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025])


def hist(lengths: list[int]) -> np.ndarray:
    return np.histogram(np.minimum(lengths, 1024), BINS)[0]


def main() -> None:
    ds, syn = Path(sys.argv[1]), Path(sys.argv[2])
    split = json.loads(Path(sys.argv[3] if len(sys.argv) > 3 else ROOT / "configs" / "default_split.json").read_text())
    test, train = set(split["test"]), set(split["train"])
    real = list(csv.DictReader(open(ds / "manifest.csv", newline="")))
    rows = []
    for m in sorted(syn.glob("*/manifest.csv")):
        c = m.parent.name
        sy = [int(r["packets"]) for r in csv.DictReader(open(m, newline=""))]
        te = [int(r["packets"]) for r in real if r["label"] == c and r["file"] in test]
        tr = [int(r["packets"]) for r in real if r["label"] == c and r["file"] in train]
        h = {k: hist(v) for k, v in (("sy", sy), ("te", te), ("tr", tr))}
        rows.append((c, jsd(h["sy"], h["tr"]), jsd(h["sy"], h["te"]), jsd(h["tr"], h["te"]),
                     np.mean(sy), np.mean(tr), np.mean(te)))
    print("| class | synthetic vs train | synthetic vs test | real train vs test | mean length: synthetic / train / test |")
    print("|---|---:|---:|---:|---|")
    for c, a, b, d, ms, mtr, mte in rows:
        print(f"| {c} | {a:.3f} | {b:.3f} | {d:.3f} | {ms:.0f} / {mtr:.0f} / {mte:.0f} |")
    mean = np.mean([r[1:4] for r in rows], axis=0)
    print(f"| **mean** | **{mean[0]:.3f}** | **{mean[1]:.3f}** | **{mean[2]:.3f}** | |")


if __name__ == "__main__":
    main()

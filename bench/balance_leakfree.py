"""Re-score a `netdiff balance --split` export on flows the generator never saw -> a markdown table.

    python bench/balance_leakfree.py EXPORT_DIR [--split configs/default_split.json] [--seeds 1,2,3,4,5]
                                     [--synthetic-share 0.5]

bench/balance.md's split (20 % of the real flows, seed 1) is not the generator's: most of its
test flows were in the shipped model's training split, so a balancing gain measured on it may be
the generator replaying test flows. Here the test side is the generator's own held-out flows
(``--split``'s ``test`` list, matched to the export's real rows by class and flow id); every other
real flow and every synthetic flow goes to train. Scenarios as `--score`: ``imbalanced`` = the real
train flows, ``balanced`` = real + synthetic; random forests with each seed; with and without the
port features; "thin" = classes with fewer than 50 real train flows. ``--synthetic-share F`` keeps
the first F of each class's synthetic flows (by file name): a smaller top-up than the export's.
``--filter P`` keeps only the synthetic flows that ``netdiff balance --filter P`` would keep had its
train side been this one (:class:`engine.datasets.consistency.Filter` trained on this script's real
train flows, never on its test flows): the leak-free measure of the filter.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.datasets.balance import classifier_scores  # noqa: E402


def _filtered(src: Path, rows: list[dict], min_prob: float) -> list[dict]:
    """``rows`` less the synthetic flows the consistency filter, trained on the real train rows, drops."""
    from engine.datasets.consistency import Filter, file_features

    def feats(sel):
        return file_features(src / r["file"] for r in sel)
    train = [r for r in rows if r["origin"] == "real" and r["split"] == "train"]
    filt = Filter(feats(train), [r["class"] for r in train])
    syn = [r for r in rows if r["origin"] != "real"]
    x = feats(syn)
    drop = set()
    for c in sorted({r["class"] for r in syn}):
        ix = [i for i, r in enumerate(syn) if r["class"] == c]
        p = filt.own_prob(x[ix], c)
        drop |= {id(syn[i]) for i, q in zip(ix, p) if q < min_prob}
    print(f"--filter {min_prob}: kept {len(syn) - len(drop)} of {len(syn)} synthetic flows", file=sys.stderr)
    return [r for r in rows if id(r) not in drop]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("export")
    ap.add_argument("--split", default=str(ROOT / "configs" / "default_split.json"))
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--thin", type=int, default=50)
    ap.add_argument("--synthetic-share", type=float, default=1.0)
    ap.add_argument("--filter", type=float, default=None, help="keep synthetic flows of class probability >= P")
    a = ap.parse_args()
    src = Path(a.export)
    rows = list(csv.DictReader(open(src / "manifest.csv", newline="")))
    if a.synthetic_share < 1:
        by_class: dict = {}
        for r in sorted((r for r in rows if r["origin"] != "real"), key=lambda r: r["file"]):
            by_class.setdefault(r["class"], []).append(r)
        keep = {id(r) for v in by_class.values() for r in v[:int(np.ceil(a.synthetic_share * len(v)))]}
        rows = [r for r in rows if r["origin"] == "real" or id(r) in keep]
    held = {(f.split("/")[0], Path(f).stem) for f in json.loads(Path(a.split).read_text())["test"]}
    real = [r for r in rows if r["origin"] == "real"]
    matched = 0
    for r in rows:
        if r["origin"] == "real" and (r["class"], r["flow_id"]) in held:
            r["split"], matched = "test", matched + 1
        else:
            r["split"] = "train"
    if a.filter is not None:
        rows = _filtered(src, rows, a.filter)
    print(f"{len(real)} real flows, {matched} of them in the generator's held-out split "
          f"({len(held)} listed); {len(rows) - len(real)} synthetic", file=sys.stderr)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for p in src.iterdir():
            if p.name != "manifest.csv":
                (d / p.name).symlink_to(p.resolve())
        with open(d / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
        out = {}
        for mask in (False, True):
            for seed in map(int, a.seeds.split(",")):
                s = classifier_scores(d, seed=seed, mask_ports=mask)
                thin = [c for c in s["classes"] if s["imbalanced"]["train_counts"].get(c, 0) < a.thin]
                for sc in ("imbalanced", "balanced"):
                    out.setdefault((mask, sc, "macro"), []).append(s[sc]["macro_f1"])
                    out.setdefault((mask, sc, "thin"), []).append(np.mean([s[sc]["f1"][c] for c in thin]))
        tc = s["test_counts"]
    print(f"test: {sum(tc.values())} held-out real flows in {len(tc)} classes; thin classes (< {a.thin} real "
          f"train flows) with test flows: {', '.join(f'{c} ({tc[c]})' for c in thin)}\n")
    print("| features | macro-F1 imbalanced | macro-F1 balanced | gain | thin-class F1 imbalanced | thin balanced | gain |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mask in (False, True):
        m = {k[1:]: np.array(v) for k, v in out.items() if k[0] == mask}
        gm, gt = m[("balanced", "macro")] - m[("imbalanced", "macro")], m[("balanced", "thin")] - m[("imbalanced", "thin")]
        print(f"| {'no ports' if mask else 'with ports'} | {m[('imbalanced', 'macro')].mean():.3f} | "
              f"{m[('balanced', 'macro')].mean():.3f} | {gm.mean():+.3f} ± {gm.std():.3f} | "
              f"{m[('imbalanced', 'thin')].mean():.3f} | {m[('balanced', 'thin')].mean():.3f} | "
              f"{gt.mean():+.3f} ± {gt.std():.3f} |")


if __name__ == "__main__":
    main()

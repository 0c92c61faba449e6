"""Re-score a `netdiff balance --split` export on flows the generator never saw -> a markdown table.

    python bench/balance_leakfree.py EXPORT_DIR [--split configs/default_split.json] [--seeds 1,2,3,4,5]
                                     [--synthetic-share 0.5] [--filter 0.4]
                                     [--thin-to 10 [--thin-classes a,b] [--target 100] [--duplicate]]

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

``--thin-to K --thin-classes a,b`` asks the question where the test side can answer it: the
listed classes (classes with many held-out flows) keep only K random real train flows (drawn
again for each forest seed) and are topped up to ``--target`` with their synthetic flows (the
export must hold them, e.g. from ``netdiff export REAL GENERATED...``); "thin" then means the
listed classes, and ``--filter`` learns from the thinned train side, as balance would.
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


def _filtered(src: Path, rows: list[dict], min_prob: float, feats: dict) -> list[dict]:
    """``rows`` less the synthetic flows the consistency filter, trained on the real train rows, drops."""
    from engine.datasets.consistency import Filter, file_features

    for r in rows:
        if r["file"] not in feats:
            feats[r["file"]] = file_features([src / r["file"]])[0]

    def x(sel):
        return np.stack([feats[r["file"]] for r in sel])
    train = [r for r in rows if r["origin"] == "real" and r["split"] == "train"]
    filt = Filter(x(train), [r["class"] for r in train])
    syn = [r for r in rows if r["origin"] != "real"]
    drop = set()
    for c in sorted({r["class"] for r in syn}):
        ix = [i for i, r in enumerate(syn) if r["class"] == c]
        p = filt.own_prob(x([syn[i] for i in ix]), c)
        drop |= {id(syn[i]) for i, q in zip(ix, p) if q < min_prob}
    print(f"--filter {min_prob}: kept {len(syn) - len(drop)} of {len(syn)} synthetic flows", file=sys.stderr)
    return [r for r in rows if id(r) not in drop]


def _thinned(rows: list[dict], classes: list[str], k: int, seed: int) -> list[dict]:
    """``rows`` with each of ``classes`` cut to ``k`` random real train flows, and the synthetic
    flows of those classes only (the first ``target - k`` of each are kept later, after any filter)."""
    rng = np.random.default_rng(seed)
    keep = set()
    for c in classes:
        train = [r for r in rows if r["class"] == c and r["origin"] == "real" and r["split"] == "train"]
        if len(train) < k:
            raise SystemExit(f"{c}: {len(train)} real train flows, fewer than --thin-to {k}")
        keep |= {id(train[i]) for i in rng.choice(len(train), k, replace=False)}
    return [r for r in rows if r["class"] not in classes and r["origin"] == "real"
            or r["class"] in classes and (r["split"] == "test" or id(r) in keep or r["origin"] != "real")]


def _duplicated(rows: list[dict], classes: list[str], n: int) -> list[dict]:
    """The control: each of ``classes`` topped up by ``n`` copies of its own real train flows
    (plain random oversampling) instead of synthetic flows."""
    out = [r for r in rows if r["origin"] == "real"]
    for c in classes:
        train = [r for r in out if r["class"] == c and r["split"] == "train"]
        out += [dict(train[i % len(train)], origin="synthetic") for i in range(n)]
    return out


def _capped(rows: list[dict], classes: list[str], n: int) -> list[dict]:
    """The first ``n`` synthetic flows (by file name) of each of ``classes``."""
    syn = sorted((r for r in rows if r["origin"] != "real"), key=lambda r: r["file"])
    keep = set()
    for c in classes:
        got = [id(r) for r in syn if r["class"] == c][:n]
        if len(got) < n:
            print(f"{c}: only {len(got)} synthetic flows for a top-up of {n}", file=sys.stderr)
        keep |= set(got)
    return [r for r in rows if r["origin"] == "real" or id(r) in keep]


def _scores(src: Path, rows: list[dict], seed: int) -> dict:
    """``{mask_ports: classifier_scores}`` of ``rows`` as the export's manifest, without and with
    the port features."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for p in src.iterdir():
            if p.name != "manifest.csv":
                (d / p.name).symlink_to(p.resolve())
        with open(d / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
        return {mask: classifier_scores(d, seed=seed, mask_ports=mask) for mask in (False, True)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("export")
    ap.add_argument("--split", default=str(ROOT / "configs" / "default_split.json"))
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--thin", type=int, default=50)
    ap.add_argument("--synthetic-share", type=float, default=1.0)
    ap.add_argument("--filter", type=float, default=None, help="keep synthetic flows of class probability >= P")
    ap.add_argument("--thin-to", type=int, default=None, help="real train flows kept of each --thin-classes class")
    ap.add_argument("--thin-classes", default="youtube,tls_https,zoom,amazon,google_meet,http,microsoft_teams,netflix")
    ap.add_argument("--target", type=int, default=100, help="flows per thinned class after the top-up")
    ap.add_argument("--duplicate", action="store_true",
                    help="the control: top the thinned classes up with copies of their real train flows")
    a = ap.parse_args()
    if a.thin_to is not None and not (0 <= a.thin_to < a.target) or a.duplicate and not a.thin_to:
        ap.error("--thin-to must be in [0, --target), and --duplicate needs --thin-to >= 1 (flows to copy)")
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
    thinned = a.thin_classes.split(",") if a.thin_to is not None else []
    print(f"{len(real)} real flows, {matched} of them in the generator's held-out split "
          f"({len(held)} listed); {len(rows) - len(real)} synthetic", file=sys.stderr)
    feats: dict = {}
    out = {}
    # without thinning every seed scores the same rows: the filter runs once
    same = None if thinned else _filtered(src, rows, a.filter, feats) if a.filter is not None else rows
    for seed in map(int, a.seeds.split(",")):
        sel = same
        if sel is None:
            sel = _thinned(rows, thinned, a.thin_to, seed)
            if a.filter is not None:
                sel = _filtered(src, sel, a.filter, feats)
            sel = (_duplicated if a.duplicate else _capped)(sel, thinned, a.target - a.thin_to)
        for mask, s in _scores(src, sel, seed).items():
            thin = thinned or [c for c in s["classes"] if s["imbalanced"]["train_counts"].get(c, 0) < a.thin]
            for sc in ("imbalanced", "balanced"):
                out.setdefault((mask, sc, "macro"), []).append(s[sc]["macro_f1"])
                out.setdefault((mask, sc, "thin"), []).append(np.mean([s[sc]["f1"][c] for c in thin]))
                for c in thin:
                    out.setdefault((mask, sc, c), []).append(s[sc]["f1"][c])
    tc = s["test_counts"]
    what = (f"thinned classes ({a.thin_to} real train flows, topped up to {a.target})" if thinned
            else f"thin classes (< {a.thin} real train flows)")
    print(f"test: {sum(tc.values())} held-out real flows in {len(tc)} classes; {what} "
          f"with test flows: {', '.join(f'{c} ({tc[c]})' for c in thin)}\n")
    print("| features | macro-F1 imbalanced | macro-F1 balanced | gain | thin-class F1 imbalanced | thin balanced | gain |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mask in (False, True):
        m = {k[1:]: np.array(v) for k, v in out.items() if k[0] == mask}
        gm, gt = m[("balanced", "macro")] - m[("imbalanced", "macro")], m[("balanced", "thin")] - m[("imbalanced", "thin")]
        print(f"| {'no ports' if mask else 'with ports'} | {m[('imbalanced', 'macro')].mean():.3f} | "
              f"{m[('balanced', 'macro')].mean():.3f} | {gm.mean():+.3f} ± {gm.std():.3f} | "
              f"{m[('imbalanced', 'thin')].mean():.3f} | {m[('balanced', 'thin')].mean():.3f} | "
              f"{gt.mean():+.3f} ± {gt.std():.3f} |")
    if thinned:
        print("\n| class | F1 thinned, with ports | topped up | gain | no ports | topped up | gain |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for c in thin:
            cells = []
            for mask in (False, True):
                i, b = np.array(out[(mask, "imbalanced", c)]), np.array(out[(mask, "balanced", c)])
                cells += [f"{i.mean():.3f}", f"{b.mean():.3f}", f"{(b - i).mean():+.3f}"]
            print(f"| {c} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Port fidelity of generated flows, with and without the port prior -> figures for bench/ports.md.

    python bench/bench_ports.py [--classes zoom dns ...] [-n 40] [--seed 5] [--work /tmp/netdiff-ports]

Generates ``-n`` flows per class twice with the default checkpoint: ``before`` = its weights,
lengths and vocabularies but no ``ports`` table (the sampler then leaves ports to the model,
as before the table existed), ``after`` = the shipped config. Then scores both with
:func:`engine.evaluate.ports.port_fidelity` against the real split of ``configs/default_split.json``
(server port decided with the class's real training flows as the reference) and prints a
markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.datasets.generate import generate  # noqa: E402
from engine.datasets.request import GenerationRequest  # noqa: E402
from engine.evaluate import EvalOptions  # noqa: E402
from engine.evaluate.data import FlowSet, load_labeled  # noqa: E402
from engine.evaluate.ports import port_fidelity  # noqa: E402
from engine.evaluate.run import real_split  # noqa: E402
from engine.model.checkpoint import DEFAULT_MODEL_DIR, dump_config  # noqa: E402


def _model_without_ports(work: Path) -> Path:
    d = work / "model_before"
    d.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    cfg.pop("ports", None)
    (d / "config.json").write_text(dump_config(cfg))
    w = d / "model.safetensors"
    if not w.exists():
        os.symlink(DEFAULT_MODEL_DIR / "model.safetensors", w)
    return d


def _floor(train: FlowSet, n: int, reps: int = 50) -> float:
    """Mean JSD of ``n`` flows drawn from the real training pairs themselves against them: what a
    perfect sampler scores at this sample size (the JSD of a small sample is not 0)."""
    from collections import Counter

    from engine.evaluate.ports import _jsd, _pairs
    from engine.model.ports import port_counts
    ref = _pairs(train, port_counts((m.proto, m.init_port, m.resp_port) for m in train.metas))
    if not ref or n == 0:
        return float("nan")
    keys = list(ref)
    p = np.array([ref[k] for k in keys], np.float64)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(reps):
        draw = rng.multinomial(n, p / p.sum())
        out.append(_jsd(Counter({k: int(v) for k, v in zip(keys, draw) if v}), ref))
    return float(np.mean(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", default=os.environ.get("NETDIFF_DATA", str(ROOT.parent / "shared" / "data")) + "/real")
    ap.add_argument("--classes", nargs="*", default=None, help="default: every class of the model")
    ap.add_argument("-n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--work", default="/tmp/netdiff-ports")
    ap.add_argument("--only", choices=("before", "after"), default=None)
    a = ap.parse_args()
    work = Path(a.work)
    cfg = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    classes = a.classes or cfg["classes"]
    models = {"before": str(_model_without_ports(work)), "after": None}
    if a.only:
        models = {a.only: models[a.only]}
    sets, secs = {}, {}
    for name, model in models.items():
        fs = FlowSet()
        t0 = time.time()
        for c in classes:
            out = work / name / c
            shutil.rmtree(out, ignore_errors=True)
            generate(GenerationRequest(label=c, count=a.n, model=model, seed=a.seed), out)
            fs = fs.add(load_labeled(out))
        sets[name], secs[name] = fs, round(time.time() - t0, 1)
    sp, _ = real_split(a.real, EvalOptions(classes=classes))
    res = port_fidelity(sp.train, sp.test, sets, classes)
    # at the sample size of the last candidate's TCP/UDP flows of the class
    floor = {c: _floor(sp.train.of(c), res["classes"][c][list(sets)[-1]]["flows"]) for c in classes}
    (work / "ports.json").write_text(json.dumps(res, indent=1))
    names = list(sets)
    print(f"{a.n} flows per class, seed {a.seed}; seconds: {secs}\n")
    print("| class | real train flows | JSD floor at n | "
          + " | ".join(f"{k}: seen | {k}: JSD vs train | {k}: top pairs" for k in names) + " |")
    print("|---|---:|---:|" + "---:|---:|---|" * len(names))
    for c in classes:
        row = res["classes"][c]
        cells = []
        for k in names:
            r = row[k]
            top = ", ".join(f"{'TCP' if p == 6 else 'UDP'} {port} x{n}" for p, port, n in r["top"][:3])
            cells += [f"{r['seen']:.2f}" if r["seen"] is not None else "-",
                      f"{r['jsd_train']:.3f}" if r["jsd_train"] is not None else "-", top]
        print(f"| {c} | {row['real_train']['flows']} | {floor[c]:.3f} | " + " | ".join(cells) + " |")
    o = res["overall"]
    print("\noverall:", json.dumps({k: {kk: (round(v, 3) if isinstance(v, float) else v) for kk, v in o[k].items()}
                                    for k in o}))


if __name__ == "__main__":
    main()

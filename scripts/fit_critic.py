"""Fit a checkpoint's critic (``critic.safetensors``, :mod:`engine.model.critic`): an MLP on flow
statistics that tells the class's training flows from the checkpoint's own samples, so that
``netdiff generate --candidates K`` can keep the most real-like of K draws of each flow.

    python scripts/fit_critic.py --model DIR --data DS [--split RUN/split.json] [--flows 256]

``DS``: the encoded dataset the checkpoint was trained on (``netdiff encode ... --label-from-dir``);
only the training flows of the split are read (the test flows stay held out for
``bench/bench_evaluate.py``). Samples ``--flows`` flows per class the way ``netdiff generate``
does (2 packets or more, up to the model's length, the checkpoint's tables), so the critic
sees what it will be asked to pick among; refit it after the tables or weights change.
The shipped critic (eleventh session, 2 CPU cores):

    netdiff encode ../shared/data/real -o /tmp/real_ds --label-from-dir --max-packets 1024 --min-packets 2
    python scripts/fit_critic.py --model engine/default_model --data /tmp/real_ds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.model.checkpoint import load_model, tables_hash, weights_hash  # noqa: E402
from engine.model.critic import fit_critic, save_critic  # noqa: E402
from engine.model.data import load_split, load_table  # noqa: E402
from engine.model.sample import SampleOptions, sample_flows  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="checkpoint directory (or run directory)")
    ap.add_argument("--data", required=True, help="the encoded dataset it was trained on")
    ap.add_argument("--split", default=str(ROOT / "configs" / "default_split.json"),
                    help="the run's split.json (default: configs/default_split.json)")
    ap.add_argument("--flows", type=int, default=256, help="flows sampled per class (default 256)")
    ap.add_argument("--real", type=int, default=2048, help="training flows per class at most (default 2048)")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    model, cfg, d = load_model(a.model)
    L = int(model.config.max_packets)
    split = load_split(a.split)
    table = load_table(a.data, L, files=split["train"], classes=cfg["classes"])
    rng = np.random.default_rng(a.seed)
    real: dict[str, list[np.ndarray]] = {}
    for k, c in enumerate(table.classes):
        idx = np.flatnonzero(table.labels == k)
        if len(idx) > a.real:
            idx = np.sort(rng.choice(idx, a.real, replace=False))
        real[c] = [table.rows[table.offsets[i]:table.offsets[i + 1]] for i in idx]
    opts = SampleOptions(seed=10_000 + a.seed, packets_min=2, packets_max=L,
                         steps=int((cfg.get("sampling") or {}).get("steps", 20)))
    synthetic: dict[str, list[np.ndarray]] = {}
    t0 = time.time()
    for c in cfg["classes"]:
        if not real.get(c):
            continue
        synthetic[c] = list(sample_flows(model, cfg, c, list(range(a.flows)), opts).values())
        print(f"sampled {a.flows} {c} flows ({time.time() - t0:.0f} s)", flush=True)
    critic = fit_critic(real, synthetic, seed=a.seed, epochs=a.epochs,
                        info={"weights": weights_hash(d), "tables": tables_hash(cfg), "split": Path(a.split).name,
                              "sample_seed": opts.seed})
    out = save_critic(d, critic)
    print(f"{out}: {len(critic.classes)} classes, held-out AUC {critic.info.get('holdout_auc')} "
          f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()

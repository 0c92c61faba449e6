"""Fit a checkpoint's critic (``critic.safetensors``, :mod:`engine.model.critic`): an MLP on flow
statistics that tells the class's training flows from the checkpoint's own samples, so that
``netdiff generate --candidates K`` can keep the most real-like of K draws of each flow.

    python scripts/fit_critic.py --model DIR --data DS [--split RUN/split.json] [--flows 256]

``DS``: the encoded dataset the checkpoint was trained on (``netdiff encode ... --label-from-dir``);
only the training flows of the split are read (the test flows stay held out for
``bench/bench_evaluate.py``). Generates ``--flows`` flows per class with ``netdiff generate``'s
defaults (one candidate) into a temporary directory and reads them back, so the critic is
fitted on what it will be asked to pick among: flows as written, repaired. Refit it after the
tables or the weights change (its file records the hashes it was fitted for).
The shipped critic (eleventh session, 2 CPU cores):

    netdiff encode ../shared/data/real -o /tmp/real_ds --label-from-dir --max-packets 1024 --min-packets 2
    python scripts/fit_critic.py --model engine/default_model --data /tmp/real_ds
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.model.checkpoint import load_model, tables_hash, weights_hash  # noqa: E402
from engine.model.critic import fit_critic, save_critic  # noqa: E402
from engine.model.data import load_split, load_table  # noqa: E402
from engine.datasets.generate import generate  # noqa: E402
from engine.datasets.request import GenerationRequest  # noqa: E402
from engine.evaluate.data import load_labeled  # noqa: E402
from scripts.refit_priors import checkpoint_parser  # noqa: E402


def main() -> None:
    ap = checkpoint_parser(__doc__)
    ap.add_argument("--flows", type=int, default=256, help="flows generated per class (default 256)")
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
    seed = 10_000 + a.seed
    synthetic: dict[str, list[np.ndarray]] = {}
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="netdiff-critic-") as tmp:
        for c in cfg["classes"]:
            if not real.get(c):
                continue
            out = Path(tmp) / c
            generate(GenerationRequest(label=c, count=a.flows, model=str(d), seed=seed), out)
            synthetic[c] = load_labeled(out).mats
            shutil.rmtree(out)
            print(f"generated {a.flows} {c} flows ({time.time() - t0:.0f} s)", flush=True)
    critic = fit_critic(real, synthetic, seed=a.seed, epochs=a.epochs,
                        info={"weights": weights_hash(d), "tables": tables_hash(cfg), "split": Path(a.split).name,
                              "sample_seed": seed})
    out = save_critic(d, critic)
    print(f"{out}: {len(critic.classes)} classes, held-out AUC {critic.info.get('holdout_auc')} "
          f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()

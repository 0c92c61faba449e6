"""Write (or refresh) a checkpoint's flow-shape prior and field vocabularies.

    python scripts/refit_priors.py --model DIR --data DS [--split RUN/split.json]

``netdiff train`` writes both into ``RUN/model/config.json`` (``lengths``,
``vocab``) from the run's training split; this does the same for a checkpoint
made before they existed, or by a training process that started before they
did (the shipped model's third leg). Only the training flows of the split are
read. config.json is rewritten through a temp file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.model.checkpoint import dump_config, resolve  # noqa: E402
from engine.model.data import load_split, load_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="checkpoint directory (or run directory)")
    ap.add_argument("--data", required=True, help="the encoded dataset it was trained on")
    ap.add_argument("--split", default=str(ROOT / "configs" / "default_split.json"),
                    help="the run's split.json (default: configs/default_split.json)")
    a = ap.parse_args()
    d = resolve(a.model)
    cfg = json.loads((d / "config.json").read_text())
    split = load_split(a.split)
    L = int(cfg["model"].get("max_packets", 128))
    table = load_table(a.data, L, files=split["train"], classes=cfg["classes"])
    if len(table) != cfg.get("train_flows", len(table)):
        raise SystemExit(f"{a.data}: {len(table)} training flows, the checkpoint says {cfg['train_flows']}")
    cfg.update(table.priors(L))
    tmp = d / "config.json.tmp"
    tmp.write_text(dump_config(cfg))
    os.replace(tmp, d / "config.json")
    print(f"{d / 'config.json'}: lengths, vocab, ports and joint of {len(table)} training flows, {len(cfg['classes'])} classes")


if __name__ == "__main__":
    main()

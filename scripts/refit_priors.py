"""Write (or refresh) a checkpoint's sampling tables: flow-shape prior, initiator counts, field
vocabularies, port prior, flow profiles, TCP option lists, and (with ``--calibrate``) the field
decoder's calibration.

    python scripts/refit_priors.py --model DIR --data DS [--split RUN/split.json] [--pcapng-twins]
                                   [--calibrate | --only KEY,...]

``netdiff train`` writes them into ``RUN/model/config.json`` (``lengths``, ``directions``,
``vocab``, ``ports``, ``joint``, ``profiles``, ``tcp_options``, ``calibration``) from the run's
training split and its model; this does the same for a checkpoint made before
they existed, or by a training process that started before they did (the
shipped model's third leg). Only the training flows of the split are read.
config.json is rewritten through a temp file. Calibration samples 64 flows per
class and round, 3 rounds (engine/model/calibrate.py): 11-22 minutes for the
shipped 1024-packet model on 2 cores.

The shipped model was trained on an encoding of the real captures made before
``x.pcap`` and ``x.pcapng`` of one capture got flow files of their own: both
were listed under ``x-NNNNNN.npz``, which held the ``.pcapng``'s flows (written
last). ``--pcapng-twins`` reads a current encoding that way (each
``x_pcapng-NNNNNN`` flow in place of ``x-NNNNNN``, listed twice), which is what
reproduced the tables of the 128-packet model byte for byte. The 1024-packet model (sixth
session) was trained by ``netdiff train`` on a current encoding, so its tables are refitted
without it:

    netdiff encode ../shared/data/real -o /tmp/real_ds --label-from-dir --max-packets 1024 --min-packets 2
    python scripts/refit_priors.py --model engine/default_model --data /tmp/real_ds --calibrate

The TCP option lists (ninth session) came after the shipped calibration; they decide only the
option area and the data offset, after the calibrated spans are drawn, so they were added
without recalibrating:

    python scripts/refit_priors.py --model engine/default_model --data /tmp/real_ds --only tcp_options

The tenth session's TTL pairs and lighter evidence in the choice of profile change which
profiles the calibration samples under, so the shipped tables were refitted whole (the
command above with ``--calibrate``, 6 min); it rewrites the shipped config.json byte for byte.
The fourteenth session's eight-packet heads and head slots, lighter head evidence and closing
slots refitted them whole the same way (8 min), then the critic (``scripts/fit_critic.py``).
The eighteenth session's responder ports per profile leave the profiles themselves as they were,
so they were added with ``--only profiles`` (20 s; every other key byte for byte, calibration kept).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.datasets.encoded import read_manifest  # noqa: E402
from engine.model.checkpoint import dump_config, resolve  # noqa: E402
from engine.model.data import FlowTable, load_split, load_table  # noqa: E402


def twins_table(data: str, L: int, train: list[str], classes: list[str]) -> FlowTable:
    """The training flows as the pre-twin encoder listed them (see the module doc)."""
    present = {r["file"] for r in read_manifest(data)}
    twin = {f.replace("_pcapng-", "-"): f for f in present if "_pcapng-" in f}      # x-N -> x_pcapng-N
    table = load_table(data, L, files=[twin.get(f, f) for f in train], classes=classes)
    # a capture's flow listed twice (the x.pcap row and the x.pcapng row) counts twice
    idx = [i for i, f in enumerate(table.files) if f.replace("_pcapng-", "-") in present and "_pcapng-" in f]
    if not idx:
        return table
    mats = [table.rows[table.offsets[i]:table.offsets[i + 1]] for i in range(len(table))]
    mats += [mats[i] for i in idx]
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in mats])]).astype(np.int64)
    return FlowTable(np.concatenate(mats), offsets, np.concatenate([table.labels, table.labels[idx]]),
                     table.classes, table.files + [table.files[i] for i in idx])


def checkpoint_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments of a script that refits something of a checkpoint from its training flows
    (this one, scripts/fit_critic.py): ``--model``, ``--data``, ``--split``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", required=True, help="checkpoint directory (or run directory)")
    ap.add_argument("--data", required=True, help="the encoded dataset it was trained on")
    ap.add_argument("--split", default=str(ROOT / "configs" / "default_split.json"),
                    help="the run's split.json (default: configs/default_split.json)")
    return ap


def main() -> None:
    ap = checkpoint_parser(__doc__)
    ap.add_argument("--pcapng-twins", action="store_true",
                    help="read x_pcapng flows as the shipped model's encoding did (see the module doc)")
    ap.add_argument("--calibrate", action="store_true",
                    help="also calibrate the field decoder on the model's own samples (minutes)")
    ap.add_argument("--calibrate-flows", type=int, default=64, help="flows per class and round (default 64)")
    ap.add_argument("--calibrate-rounds", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--only", default=None,
                    help="refit only these tables (comma-separated config keys, e.g. tcp_options) and keep the "
                         "others and the calibration: for a table added after the checkpoint's were fitted "
                         "that the calibrated spans do not depend on")
    ap.add_argument("--no-closing", action="store_true",
                    help="profiles without slots for the last packets of flows that end (the tables before "
                         "the fourteenth session: bench/quality_1024.md)")
    a = ap.parse_args()
    d = resolve(a.model)
    cfg = json.loads((d / "config.json").read_text())
    split = load_split(a.split)
    L = int(cfg["model"].get("max_packets", 128))
    table = (twins_table(a.data, L, split["train"], cfg["classes"]) if a.pcapng_twins
             else load_table(a.data, L, files=split["train"], classes=cfg["classes"]))
    if len(table) != cfg.get("train_flows", len(table)):
        raise SystemExit(f"{a.data}: {len(table)} training flows, the checkpoint says {cfg['train_flows']}"
                         + ("" if a.pcapng_twins else " (the shipped model's encoding listed x.pcap and x.pcapng "
                                                      "flows as one file, twice: try --pcapng-twins)"))
    fitted = table.priors(L, closing=0 if a.no_closing else None)
    if a.only:
        keys = a.only.split(",")
        unknown = sorted(set(keys) - set(fitted))
        if unknown:
            raise SystemExit(f"--only: not a fitted table: {', '.join(unknown)} (tables: {', '.join(fitted)})")
        if a.calibrate:
            raise SystemExit("--only keeps the calibration: leave out --calibrate (or --only)")
        cfg.update({k: fitted[k] for k in keys})
    else:
        cfg.update(fitted)
        cfg.pop("calibration", None)          # fitted on the old tables
    if a.calibrate:
        import time
        from engine.model.calibrate import calibrate
        from engine.model.checkpoint import load_model
        import torch
        model, _, _ = load_model(d, "cuda" if torch.cuda.is_available() else "cpu")
        t0 = time.time()
        cfg["calibration"] = calibrate(model, cfg, cfg["classes"], a.calibrate_flows, a.calibrate_rounds,
                                       on_round=lambda c, r: print(
            f"calibrate {c} round {r + 1} ({time.time() - t0:.0f} s)", flush=True))
    tmp = d / "config.json.tmp"
    tmp.write_text(dump_config(cfg))
    os.replace(tmp, d / "config.json")
    what = a.only.replace(",", ", ") if a.only else ", ".join(fitted) + (" and calibration" if a.calibrate else "")
    print(f"{d / 'config.json'}: {what} "
          f"of {len(table)} training flows, "
          f"{len(cfg['classes'])} classes")


if __name__ == "__main__":
    main()

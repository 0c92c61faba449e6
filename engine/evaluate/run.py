"""``netdiff evaluate``: real vs synthetic, fidelity + ML utility + baselines, one report."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.errors import InputError
from engine.codec.flows import FlowConfig
from engine.progress import Message, OnEvent, TaskFinished, TaskProgress, TaskStarted
from .baselines import BASELINES, make_baseline
from .closeness import closeness
from .data import FlowSet, Split, load_labeled, split_by_flow, split_from_file
from .detect import detectability
from .features import packet_values
from .fidelity import fidelity
from .lengths import flow_length_fidelity
from .ports import enum_fidelity, port_fidelity
from .utility import FEATURE_SETS, SCENARIOS, ml_utility

DEFAULT_SPLIT = Path(__file__).resolve().parents[2] / "configs" / "default_split.json"


@dataclass
class EvalOptions:
    """Settings of one evaluation (all recorded in ``report.json``).

    Attributes:
        classes: classes to evaluate (default: every class in both the real test split and the synthetic set).
        split_file: real train/test split (JSON, e.g. ``netdiff train``'s ``split.json``);
            ``None``: ``configs/default_split.json`` when it exists and matches, else a seeded split;
            ``"seed"``: always the seeded split.
        seed: seed of everything random here (own split, baselines, packet sampling, classifiers).
        test_frac: test share of the own split.
        max_packets: compare only each flow's first packets (e.g. the model's length, 128); ``None`` = all.
        flow_config: how captures are cut into flows (must match how the split was made).
        baselines: also build and score the two baselines.
        utility: run the classifiers.
        packet_cap: packets per class and side for the per-packet classifiers.
        n_estimators: trees per random forest.
        n_jobs: classifier threads.
        plots: write PNG plots.
    """

    classes: list[str] | None = None
    split_file: str | None = None
    seed: int = 0
    test_frac: float = 0.2
    max_packets: int | None = None
    flow_config: FlowConfig = field(default_factory=FlowConfig)
    baselines: bool = True
    utility: bool = True
    packet_cap: int = 2000
    n_estimators: int = 100
    n_jobs: int = 2
    plots: bool = True


def real_split(real_dir, opts: EvalOptions, on_event: OnEvent | None = None) -> tuple[Split, list[str]]:
    """Read the real data and split it by flow; returns the split and notes."""
    emit = on_event or (lambda e: None)
    notes = []
    real = load_labeled(real_dir, opts.flow_config, opts.classes, on_event)
    if len(real) == 0:
        raise InputError(real_dir, "no flows in the real data" + (" for the chosen classes" if opts.classes else ""))
    split = None
    path = opts.split_file
    if path == "seed":
        path = None
    elif path is None and DEFAULT_SPLIT.exists():
        try:
            split = split_from_file(real, DEFAULT_SPLIT)
            notes.append(f"split: {DEFAULT_SPLIT} (default)")
        except InputError as e:
            notes.append(f"default split not usable ({e.problem}); seeded split instead")
    elif path is not None:
        split = split_from_file(real, path)
        notes.append(f"split: {path}")
    if split is None:
        split = split_by_flow(real, opts.seed, opts.test_frac)
        notes.append(f"split: by flow, {split.source}")
    for n in notes:
        emit(Message("info", n))
    return split, notes


def evaluate(real_dir: str | os.PathLike, synthetic_dir, out_dir: str | os.PathLike | None,
             opts: EvalOptions = EvalOptions(), on_event: OnEvent | None = None) -> dict:
    """Run the whole evaluation; writes the report into ``out_dir`` (unless ``None``) and returns it.

    ``synthetic_dir`` is one directory or a list of them (e.g. one ``netdiff generate`` output per class).
    """
    emit = on_event or (lambda e: None)
    t0 = time.time()
    split, notes = real_split(real_dir, opts, on_event)
    mp = opts.max_packets
    train, test = split.train.truncated(mp), split.test.truncated(mp)
    sdirs = [synthetic_dir] if isinstance(synthetic_dir, (str, os.PathLike)) else list(synthetic_dir)
    whole = FlowSet()       # whole flows: their lengths are compared before the cut
    for d in sdirs:
        whole = whole.add(load_labeled(d, opts.flow_config, opts.classes, on_event))
    synth = whole.truncated(mp)
    synthetic_dir = ", ".join(os.fspath(d) for d in sdirs)
    if len(synth) == 0:
        raise InputError(synthetic_dir, "no flows in the synthetic data")
    test_classes = set(test.classes())
    classes = sorted(test_classes & set(synth.classes()))
    if opts.classes:
        classes = [c for c in classes if c in set(opts.classes)]
    missing = sorted(set(opts.classes or test_classes) - set(classes))
    if missing:
        notes.append(f"not evaluated (no real test flows or no synthetic flows): {', '.join(missing)}")
    if not classes:
        raise InputError(synthetic_dir, "no class has both real test flows and synthetic flows "
                                        f"(real: {', '.join(sorted(test_classes))}; synthetic: {', '.join(synth.classes())})")
    train, test, synth = train.only(classes), test.only(classes), synth.only(classes)

    candidates: dict[str, FlowSet] = {"synthetic": synth}
    repair_how = {}
    steps = 1 + (len(BASELINES) if opts.baselines else 0) + (1 if opts.utility else 0)
    steps += (len(FEATURE_SETS) * (len(SCENARIOS) + (len(BASELINES) if opts.baselines else 0))) if opts.utility else 0
    task = "evaluate"
    done = 0
    emit(TaskStarted(task, total=steps, unit="steps"))

    def step(detail):
        nonlocal done
        done += 1
        emit(TaskProgress(task, done=done, total=steps, unit="steps", detail=detail))

    counts = {c: len(synth.of(c)) for c in classes}
    if opts.baselines:
        for kind in BASELINES:
            fs, how = make_baseline(kind, train, counts, opts.seed, opts.flow_config, mp)
            candidates[kind] = fs.truncated(mp)
            repair_how[kind] = how
            step(f"baseline {kind}")

    real_values = {c: packet_values(test.of(c).mats) for c in classes}
    fid = {name: fidelity(test, fs, classes, real_values) for name, fs in candidates.items()}
    # the same distances for the real train split: what a generator that reproduced the real
    # data exactly would score here (the test split's few flows per class keep it above 0)
    ref = fidelity(test, train, classes, real_values)
    reference = {"real_train": {"overall": ref["overall"], "overall_by_group": ref["overall_by_group"]}}
    close = closeness(train, {"real_test": test, **candidates}, classes)
    ports = port_fidelity(train, test, candidates, classes)
    ports["fields"] = enum_fidelity(train, {"real_test": test, **candidates}, classes)
    lengths = flow_length_fidelity(split.train, split.test, whole, classes)
    step("fidelity")

    detect = None
    if opts.utility:
        # real_train, the reference: the real flows the test split never saw score what a
        # perfect generator would (about 0.5: the folds hold out whole flows, detect.py)
        detect = {name: detectability(test, fs, classes, min(opts.packet_cap, 1000), opts.seed,
                                      max(10, opts.n_estimators // 2), n_jobs=opts.n_jobs)
                  for name, fs in {**candidates, "real_train": train}.items()}
        step("detectability")

    util = None
    if opts.utility:
        util = {"synthetic": ml_utility(train, test, synth, classes, opts.packet_cap, opts.seed,
                                        opts.n_estimators, opts.n_jobs, on_step=step)}
        for kind in candidates:
            if kind != "synthetic":
                util[kind] = ml_utility(train, test, candidates[kind], classes, opts.packet_cap, opts.seed,
                                        opts.n_estimators, opts.n_jobs, scenarios=("synthetic",), on_step=step)

    report = {
        "version": 1,
        "inputs": {"real": os.fspath(real_dir), "synthetic": synthetic_dir},
        "options": {**{k: v for k, v in asdict(opts).items() if k != "flow_config"},
                    "flow_config": asdict(opts.flow_config)},
        "split": split.summary(),
        "classes": classes,
        "flows": {c: {"real_train": len(train.of(c)), "real_test": len(test.of(c)),
                      **{k: len(fs.of(c)) for k, fs in candidates.items()}} for c in classes},
        "packets": {"real_train": train.packets, "real_test": test.packets,
                    **{k: fs.packets for k, fs in candidates.items()}},
        "baseline_repair": repair_how,
        "fidelity": fid,
        "reference": reference,
        "utility": util,
        "detectability": detect,
        "closeness": close,
        "ports": ports,
        "flow_lengths": lengths,
        "notes": notes,
        "seconds": None,
    }
    report["summary"] = summarize(report)
    report["seconds"] = round(time.time() - t0, 2)
    if out_dir is not None:
        from .report import write_report
        write_report(out_dir, report, test, candidates, plots=opts.plots)
    emit(TaskFinished(task, summary=report["summary"]))
    return report


def summarize(report: dict) -> dict:
    """The headline figures: mean JSD per candidate, and the utility ratio with ports masked."""
    fid = report["fidelity"]
    s: dict = {"mean_jsd": {k: v["overall"]["jsd"] for k, v in fid.items()},
               "mean_tvd": {k: v["overall"]["tvd"] for k, v in fid.items()},
               "mean_hellinger": {k: v["overall"]["hellinger"] for k, v in fid.items()}}
    others = [v for k, v in s["mean_jsd"].items() if k != "synthetic" and v is not None]
    if others and s["mean_jsd"].get("synthetic") is not None:
        s["synthetic_beats_baselines_on_mean_jsd"] = bool(all(s["mean_jsd"]["synthetic"] < o for o in others))
    c = report.get("closeness")
    if c:
        s["closeness"] = {k: {"median_dcr_ratio": v["median_dcr_ratio"], "exact_copies": v["exact_copies"]}
                          for k, v in c.items()}
    p = report.get("ports")
    if p:
        s["ports"] = {k: {"seen": v["seen"], "mean_jsd_test": v["mean_jsd_test"], "mean_jsd_train": v["mean_jsd_train"]}
                      for k, v in p["overall"].items()}
    fl = report.get("flow_lengths")
    if fl:
        s["flow_length_jsd"] = dict(fl["overall"])
    d = report.get("detectability")
    if d:
        s["detect_auc"] = {k: {f: (v or {}).get("auc") for f, v in dd.items()} for k, dd in d.items()}
    u = report.get("utility")
    if u:
        for feat in ("packet_bits_noports", "flow_stats_noports"):
            r = u["synthetic"].get(feat) or {}
            if r.get("real") and r.get("synthetic") and r["real"]["macro_f1"] > 0:
                ratio = r["synthetic"]["macro_f1"] / r["real"]["macro_f1"]
                s[f"tstr_ratio_{feat}"] = ratio
                s[f"tstr_reaches_0.8_{feat}"] = bool(ratio >= 0.8)
                if r.get("real_matched") and r["real_matched"]["macro_f1"] > 0:
                    s[f"tstr_ratio_matched_{feat}"] = r["synthetic"]["macro_f1"] / r["real_matched"]["macro_f1"]
    return s

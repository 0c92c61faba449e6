"""Class balancing: top up under-represented classes of a real dataset with synthetic flows.

``balance(real_dir, target, out)`` counts the flows per class of a real
labeled capture directory (``<class>/*.pcap``, flows cut as ``netdiff
encode`` cuts them), generates ``target - count`` synthetic flows for every
class below the target, and exports real and synthetic flows together
(:mod:`engine.datasets.export`), each flow flagged real or synthetic in the manifest.

A class is drawn as the model learned it (``netdiff generate --label C``: its
ports, lengths and timing as the real class has them). With ``recipes`` (or a
``recipes_dir``), a class's recipe is used instead (a recipe whose label matches,
from ``recipes_dir``, the user's recipes or the presets): a recipe narrows a class
to one kind of flow (the zoom preset: UDP 8801 media), and a classifier of the whole
class learns far less from those (bench/balance.md, seventeenth session).

With ``split``, the real flows are first split by flow (as the export splits
them) and the target applies to the *train* split: synthetic flows only ever
go to train, the test split stays real.

With ``min_prob`` (``--filter``), each class draws ``oversample`` times the flows it needs
(default once) and keeps those a forest trained on the real train flows takes for the class
(:mod:`engine.datasets.consistency`).

With ``like``, each synthetic flow starts from a real flow of its class
(``netdiff generate --like``); with ``split`` too, the flows the export will put
in test are never guides (``.OUT.balance/guide_split.json``).

Generated classes are kept in ``.OUT.balance/gen/<class>`` until the export
has been renamed into place, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from engine.errors import InputError
from engine.outdir import OutputLock, check_room, user_paths
from engine.datasets.export import ExportOptions, export, n_test, real_test_flows, scan_inputs
from engine.codec.flows import FlowConfig
from engine.codec.pipeline import encode_capture
from engine.progress import CancelToken, Message, OnEvent
from engine.datasets.request import SAMPLING_OVERRIDES, GenerationRequest


def real_sources(real_dir: str | os.PathLike) -> list:
    """The captures of a real labeled capture directory (an error for a generated or exported one)."""
    sources = scan_inputs([real_dir])
    if any(s.origin != "real" or s.rows for s in sources):
        raise InputError(real_dir, "is a generated or exported dataset; --real takes <class>/*.pcap captures")
    return sources


def count_flows(real_dir: str | os.PathLike, cfg: FlowConfig = FlowConfig(),
                cancel: CancelToken | None = None) -> dict[str, int]:
    """Flows per class of a real labeled capture directory."""
    counts: Counter = Counter()
    for s in real_sources(real_dir):
        for b in encode_capture(s.path, cfg, cancel=cancel):
            counts[s.cls] += len(b)
    return dict(sorted(counts.items()))


def parse_target(target: str | int) -> int | str:
    if isinstance(target, int):
        t = target
    elif str(target).strip().lower() == "max":
        return "max"
    else:
        try:
            t = int(str(target))
        except ValueError:
            raise InputError(None, f"--target must be a number of flows or 'max', got {target!r}") from None
    if t < 1:
        raise InputError(None, f"--target must be >= 1, got {t}")
    return t


def plan(counts: dict[str, int], target: int | str, split: float | None = None) -> tuple[int, dict[str, int], dict[str, int]]:
    """(target flows per class, flows that count toward it, synthetic flows to generate per class)."""
    have = {c: n - n_test(n, split) if split else n for c, n in counts.items()}
    t = max(have.values(), default=0) if target == "max" else int(target)
    need = {c: t - n for c, n in have.items() if n < t}
    return t, have, need


#: what :func:`request_for` says of a class drawn as the model learned it
MODEL_CLASS = "the model's own flows of the class"


def request_for(label: str, count: int, recipes_dir: str | os.PathLike | None = None,
                seed: int = 0, recipes: bool = True) -> tuple[GenerationRequest, str]:
    """The class's recipe (with ``recipes``; else, or where none matches, the class as the model
    learned it) with ``count`` flows; returns (request, where it came from)."""
    from engine.datasets.recipes import recipes_for_label
    rc = recipes_for_label(label, recipes_dir) if recipes else None
    if rc is None:
        return GenerationRequest(label=label, count=count, seed=seed, extra={"recipe": "(model)"}), MODEL_CLASS
    return replace(rc.request, count=count, extra=dict(rc.request.extra)), f"{rc.source} recipe {rc.name!r}"


def _generate_resuming(req, d: Path, on_event=None, cancel=None) -> dict:
    """A class's generation that continues an interrupted one (balance continues where it
    stopped, like export); one of another request (a new target, say) is started over."""
    from engine.datasets.generate import generate
    from engine.datasets.partial import ResumeMismatch
    try:
        return generate(req, d, on_event=on_event, cancel=cancel, resume=True)
    except ResumeMismatch:
        if on_event is not None:
            on_event(Message("info", f"{req.label}: the interrupted generation was of another request; starting over"))
        return generate(req, d, on_event=on_event, cancel=cancel, force=True)


def _class_flows(model: str | None) -> dict[str, int]:
    """``{class: training flows}`` of a checkpoint (empty where it does not resolve: generating
    from it says why)."""
    from engine.artifacts.models import read_checkpoint
    from engine.model.checkpoint import resolve
    try:
        return read_checkpoint(resolve(model)).class_flows
    except (InputError, OSError):
        return {}


def work_dir_for(out: Path) -> Path:
    return out.parent / f".{out.name}.balance"


def balance(real_dir: str | os.PathLike, target: int | str, out: str | os.PathLike,
            recipes_dir: str | os.PathLike | None = None, split: float | None = None, seed: int = 0,
            pcapng: bool = False, force: bool = False, on_event: OnEvent | None = None,
            cancel: CancelToken | None = None, generate_fn: Callable | None = None,
            classes: list[str] | None = None, model: str | None = None, like: bool = False,
            strength: float | None = None, sampling: dict | None = None, min_prob: float | None = None,
            oversample: int | None = None, recipes: bool = False) -> dict:
    """Balance ``real_dir`` to ``target`` flows per class into the export ``out``; returns a summary.

    Args:
        recipes: draw each class with its recipe (``recipes_dir``, the user's, the presets) instead of
            as the model learned it; implied by ``recipes_dir``.
        generate_fn: ``generate(req, out_dir, on_event=, cancel=)`` (default :func:`engine.datasets.generate.generate`).
        classes: only top up these classes (default: every class below the target).
        model: checkpoint for every class (default: each recipe's model).
        like: start every synthetic flow from a real flow of its class (train side only).
        strength: with ``like``, how far the real flows are noised (default: the request's).
        sampling: request fields set for every class instead of its recipe's: ``candidates`` (draws
            per synthetic flow, the checkpoint's critic keeps one), ``decodes`` (decodings of each draw).
        min_prob: keep only synthetic flows that a forest trained on the real train flows gives
            their class with at least this probability (:mod:`engine.datasets.consistency`); a
            class may then get fewer flows than it needs.
        oversample: with ``min_prob``, draw this many times the flows a class needs (default
            :data:`OVERSAMPLE`), so that the filter has flows to choose from.
    """
    emit = on_event or (lambda e: None)
    out = Path(out)
    target = parse_target(target)
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(out, "output directory exists and is not empty (use --force to replace it)")
    if split is not None and not 0 < split < 1:
        raise InputError(None, f"--split must be between 0 and 1 (exclusive), got {split}")
    bad = set(sampling or {}) - set(SAMPLING_OVERRIDES)
    if bad:
        raise ValueError(f"not a sampling override: {sorted(bad)}")
    if min_prob is not None and not 0 <= min_prob < 1:
        raise InputError(None, f"--filter must be a probability in [0, 1), got {min_prob}")
    if oversample is not None and min_prob is None:
        raise InputError(None, "--oversample needs --filter (it draws extra flows for the filter to choose from)")
    oversample = OVERSAMPLE if oversample is None else oversample
    if not 1 <= oversample <= 20:
        raise InputError(None, f"--oversample must be 1-20, got {oversample}")
    check_room(out)
    with OutputLock(out), user_paths(out):
        return _balance(real_dir, target, out, recipes_dir, recipes or recipes_dir is not None, split, seed, pcapng,
                        force, emit, on_event, cancel, generate_fn, classes, model, like, strength, sampling or {},
                        min_prob, oversample)


#: below this many real train flows of a class, ``--filter`` warns: a forest that learned a class
#: from 10 flows took 55-111 of 1,200 good synthetic flows for it (bench/balance.md, seventeenth session)
FILTER_MIN_REAL = 20

#: ``--oversample``'s default: flows drawn per flow needed when filtering. 1: the filter only
#: drops; drawing 3x and keeping up to the need kept more flows and lost the gain (bench/balance.md)
OVERSAMPLE = 1


def _balance(real_dir, target, out: Path, recipes_dir, recipes, split, seed, pcapng, force, emit, on_event, cancel,
             generate_fn, classes, model, like, strength, sampling: dict, min_prob, oversample) -> dict:
    held = None
    filt = None
    if min_prob is not None:
        from engine.datasets.consistency import Filter, real_train_features
        # the filter learns from the train side only: the export's test flows stay unseen
        held = real_test_flows([real_dir], split, seed, cancel=cancel) if split else {}
        x, labels, counts = real_train_features(real_sources(real_dir), held, cancel=cancel)
        filt = Filter(x, labels, seed)
    else:
        counts = count_flows(real_dir, cancel=cancel)
    if not counts:
        raise InputError(real_dir, "holds no flows")
    t, have, need = plan(counts, target, split)
    if classes is not None:
        unknown = sorted(set(classes) - set(counts))
        if unknown:
            raise InputError(real_dir, f"has no class {unknown[0]!r}; classes: {', '.join(counts)}")
        need = {c: n for c, n in need.items() if c in classes}
    work = work_dir_for(out)
    gen_dirs, origin = [], {}
    if need:
        if generate_fn is None:
            generate_fn = _generate_resuming
        (work / "gen").mkdir(parents=True, exist_ok=True)
    guide_split = None
    if need and like and split is not None:
        import json
        from engine.outdir import atomic_write_bytes
        guide_split = work / "guide_split.json"
        if held is None:
            held = real_test_flows([real_dir], split, seed, cancel=cancel)
        atomic_write_bytes(guide_split, [json.dumps({"test": held}, indent=1).encode()])
    if filt is not None:
        train_counts = Counter(labels)
        few = {c: train_counts[c] for c in need if train_counts[c] < FILTER_MIN_REAL}
        if few:
            emit(Message("warning", "--filter learns each class from its real train flows; "
                         + ", ".join(f"{c} has {k}" for c, k in sorted(few.items()))
                         + f" (fewer than {FILTER_MIN_REAL}): it will keep few of their synthetic flows, and a "
                         "class the model knows well gains more unfiltered (bench/balance.md)"))
    vetted, learned = {}, {}        # learned: model -> its class_flows, read once per model
    for cls, n in sorted(need.items()):
        req, where = request_for(cls, n * (oversample if filt is not None else 1), recipes_dir, seed, recipes)
        if model is not None:
            req = replace(req, model=model)
        if where == MODEL_CLASS:
            if req.model not in learned:
                learned[req.model] = _class_flows(req.model)
            if cls in learned[req.model]:
                where += f", learned from {learned[req.model][cls]} flows"
        req = replace(req, **sampling)
        if like:
            req = replace(req, like=str(real_dir), like_split=None if guide_split is None else str(guide_split),
                          **({} if strength is None else {"strength": strength}))
            where += f", guided by its real {'train ' if split else ''}flows"
        origin[cls] = where
        d = work / "gen" / cls
        if (d / "manifest.csv").is_file():
            emit(Message("info", f"{cls}: {n} synthetic flows already generated (resuming)"))
        else:
            emit(Message("info", f"{cls}: generating {n} flows ({where})"))
            shutil.rmtree(d, ignore_errors=True)
            generate_fn(req, d, on_event=on_event, cancel=cancel)
        if filt is not None:
            from engine.datasets.consistency import vet
            vetted[cls] = v = vet(d, cls, filt, n, min_prob)
            emit(Message("info", f"{cls}: kept {v['kept']} of {v['drawn']} synthetic flows "
                                 f"(class probability >= {min_prob})"))
        gen_dirs.append(d)
    notes = [f"Balanced with `netdiff balance`: target {t} flows per class"
             + (" in the train split" if split else "") + f" (asked: {target})."]
    kept = {c: vetted[c]["kept"] if c in vetted else n for c, n in need.items()}
    notes += [f"{c}: {have[c]} real + {kept[c]} synthetic ({origin[c]}"
              + (f"; kept {kept[c]} of {vetted[c]['drawn']} drawn, class probability >= {min_prob}"
                 if c in vetted else "") + ")" for c in sorted(need)]
    summary = export([real_dir, *gen_dirs], out, ExportOptions(pcapng=pcapng, split=split, seed=seed),
                     force=force, on_event=on_event, cancel=cancel, title="Class-balanced dataset", notes=notes)
    shutil.rmtree(work, ignore_errors=True)
    summary.update(target=t, real_counts=counts, counted=have, generated=kept, recipes=origin, vetted=vetted)
    return summary


def classifier_scores(dataset_dir: str | os.PathLike, seed: int = 0, n_estimators: int = 200,
                      mask_ports: bool = False, n_jobs: int = 1) -> dict:
    """Does balancing help? Train on the real train flows vs on all train flows, test on real test flows.

    Reads an export made with ``--split`` (e.g. by :func:`balance`): scenario
    ``imbalanced`` trains on the train split's real flows, ``balanced`` on the
    whole train split (real + synthetic); both are scored on the test split
    (real). Features: :func:`engine.evaluate.features.flow_matrix` (per-flow
    statistics; ``mask_ports`` drops the port features, which recipes set).
    Classifier: scikit-learn RandomForest, fixed seed.

    Returns:
        ``{"classes": [...], "train_counts": {...}, "<scenario>": {"macro_f1", "accuracy", "f1": {class: f1}}}``.
    """
    import csv

    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score

    from engine.evaluate.features import flow_matrix
    d = Path(dataset_dir)
    with open(d / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not any(r["split"] == "test" for r in rows):
        raise InputError(d, "has no test split (export with --split)")
    mats: dict[str, np.ndarray] = {}
    for r in rows:
        for b in encode_capture(d / r["file"], FlowConfig(min_packets=1)):
            if len(b) and r["file"] not in mats:
                mats[r["file"]] = b.flow(0)
    rows = [r for r in rows if r["file"] in mats]
    classes = sorted({r["class"] for r in rows if r["split"] == "test"})
    idx = {c: i for i, c in enumerate(classes)}
    rows = [r for r in rows if r["class"] in idx]

    def xy(sel):
        x = flow_matrix([mats[r["file"]] for r in sel], mask_ports=mask_ports)
        return x, np.array([idx[r["class"]] for r in sel])
    test = [r for r in rows if r["split"] == "test"]
    xte, yte = xy(test)
    out: dict = {"classes": classes, "test_counts": dict(Counter(r["class"] for r in test))}
    for name, sel in (("imbalanced", [r for r in rows if r["split"] == "train" and r["origin"] == "real"]),
                      ("balanced", [r for r in rows if r["split"] == "train"])):
        xtr, ytr = xy(sel)
        clf = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs)
        clf.fit(xtr, ytr)
        pred = clf.predict(xte)
        f1 = f1_score(yte, pred, labels=list(range(len(classes))), average=None, zero_division=0)
        out[name] = {"train_counts": dict(Counter(r["class"] for r in sel)),
                     "accuracy": float(accuracy_score(yte, pred)),
                     "macro_f1": float(np.mean(f1)), "f1": {c: float(f1[i]) for c, i in idx.items()}}
    return out

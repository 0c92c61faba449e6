"""Quality of the default model on the held-out real flows -> bench/quality.md.

    python bench/bench_evaluate.py [--real ../shared/data/real] [--work /tmp/netdiff-quality]
                                   [--min-flows 100] [--max-packets 128] [--split FILE] [--no-generate]

1. split the real data like the default checkpoint (``configs/default_split.json``, else the
   checkpoint's own split file when given with --split);
2. for every class with >= --min-flows flows (at least the 6 largest), ``netdiff generate``
   as many flows as the class has in the training split (``--count train``, the default: the
   classifier trained on synthetic flows then sees as many flows as the one trained on real
   flows) or in the test split (``--count test``); ``--jobs`` classes at a time;
3. ``netdiff evaluate`` (fidelity, ML utility, both baselines) on the first --max-packets
   packets of each flow;
4. write bench/quality.md with the figures and the command lines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.evaluate import EvalOptions, evaluate  # noqa: E402
from engine.evaluate.run import real_split  # noqa: E402


def fmt(v, nd=3):
    return "-" if v is None else f"{v:.{nd}f}"


def _model_hash(model) -> str:
    try:
        from engine.model.checkpoint import resolve, weights_hash
        return weights_hash(resolve(model))
    except Exception as e:   # a missing model only costs the hash
        return f"unknown ({e})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", default=os.environ.get("NETDIFF_DATA", str(ROOT.parent / "shared" / "data")) + "/real")
    ap.add_argument("--work", default="/tmp/netdiff-quality")
    ap.add_argument("--min-flows", type=int, default=100)
    ap.add_argument("--max-packets", type=int, default=128)
    ap.add_argument("--split", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-generate", action="store_true", help="reuse WORK/synthetic")
    ap.add_argument("--count", choices=("train", "test"), default="train",
                    help="synthetic flows per class: as many as the real training (default) or test split")
    ap.add_argument("--jobs", type=int, default=2, help="classes generated at a time (one process each)")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    ap.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default: the model's)")
    ap.add_argument("--strength", type=float, default=None,
                    help="guide every synthetic flow by a real flow of the train split, noised this far (0-1]")
    ap.add_argument("--candidates", type=int, default=None,
                    help="draws per flow, the checkpoint's critic keeps one (default: the request's, 1)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "quality.md"))
    a = ap.parse_args()
    work = Path(a.work)
    synth = work / "synthetic"
    report_dir = work / "report"

    opts = EvalOptions(split_file=a.split, seed=a.seed, max_packets=a.max_packets)
    sp, notes = real_split(a.real, opts)
    total = {c: sp.train.counts().get(c, 0) + sp.test.counts().get(c, 0) for c in sp.test.classes()}
    ranked = sorted(total, key=lambda c: -total[c])
    classes = [c for c in ranked if total[c] >= a.min_flows]
    if len(classes) < 6:
        classes = ranked[:6]
    test_counts = {c: sp.test.counts()[c] for c in classes}
    gen_counts = {c: (sp.train if a.count == "train" else sp.test).counts()[c] for c in classes}
    print("split:", notes, file=sys.stderr)
    print("classes:", test_counts, file=sys.stderr)

    split_file = sp.source
    if a.strength is not None and not Path(split_file).is_file():
        raise SystemExit(f"--strength needs a split file (guides must come from the train side); split: {split_file}")
    gen_cmds, gen_s, running = [], {}, []
    t_all = time.time()

    def reap(block: bool) -> None:
        for c, p, t in list(running):
            if block or p.poll() is not None:
                if p.wait() != 0:
                    raise SystemExit(f"netdiff generate failed for {c}")
                gen_s[c] = round(time.time() - t, 1)
                print(f"generated {c}: {gen_counts[c]} flows in {gen_s[c]} s", file=sys.stderr)
                running.remove((c, p, t))
                return
    for c in sorted(classes, key=lambda c: -gen_counts[c]):     # longest first: the pool drains evenly
        cmd = [sys.executable, "-m", "netdiff_tui", "generate", "--label", c, "-n", str(gen_counts[c]),
               "-o", str(synth / c), "--seed", str(a.seed), "--force", "-q"]
        if a.model:
            cmd += ["--model", a.model]
        if a.steps:
            cmd += ["--steps", str(a.steps)]
        if a.guidance is not None:
            cmd += ["--guidance", str(a.guidance)]
        if a.candidates is not None:
            cmd += ["--candidates", str(a.candidates)]
        if a.strength is not None:
            # guides from the train split only: the test flows stay unseen
            cmd += ["--like", a.real, "--like-split", split_file, "--strength", str(a.strength)]
        gen_cmds.append("netdiff " + shlex.join(cmd[3:]))
        if not a.no_generate:
            while len(running) >= max(1, a.jobs):
                reap(False)
                time.sleep(0.5)
            running.append((c, subprocess.Popen(cmd, cwd=ROOT), time.time()))
    while running:
        reap(True)
    gen_wall = round(time.time() - t_all, 1)

    opts.classes = classes
    t = time.time()
    rep = evaluate(a.real, synth, report_dir, opts)
    eval_s = round(time.time() - t, 1)
    write_quality(Path(a.out), rep, a, classes, test_counts, gen_counts, gen_cmds, gen_s, gen_wall, eval_s, report_dir)
    print(json.dumps(rep["summary"], indent=1))


def write_quality(path: Path, r: dict, a, classes, test_counts, gen_counts, gen_cmds, gen_s, gen_wall, eval_s,
                  report_dir) -> None:
    s = r["summary"]
    cands = list(r["fidelity"])
    title = "# Quality of the default model (held-out real flows)"
    if a.strength is not None:
        title = f"# Quality of the default model guided by real train flows, strength {a.strength:g} (held-out real flows)"
    L = [title, "",
         f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} / {os.cpu_count()} CPU(s), "
         f"Python {platform.python_version()}; evaluation took {eval_s} s"
         + (f", generation {gen_wall:.0f} s wall ({a.jobs} classes at a time)." if gen_s else "."), "",
         f"- real data: `{a.real}`; split: {r['split']['source']} (only the **test** flows are compared)",
         f"- classes: those with >= {a.min_flows} real flows ({len(classes)}); synthetic flows per class = "
         f"flows in the class's {a.count} split ({sum(gen_counts.values())} in all)",
         f"- compared: the first {a.max_packets} packets of every flow (the model's length)",
         f"- model: `{a.model or 'engine/default_model'}` (weights sha256 {_model_hash(a.model)}); "
         f"packets: real test {r['packets']['real_test']}, model {r['packets']['synthetic']}",
         f"- baselines: random bits + repair, per-field marginals of the real train split + repair "
         f"({next(iter(r.get('baseline_repair', {}).values()), 'n/a')})"]
    if a.strength is not None:
        L.append(f"- sampling: every synthetic flow starts from a real flow of the class's **train** split "
                 f"(`--like`, cycled through in a seeded order), noised to strength {a.strength:g} and denoised; "
                 f"its length and transport are kept, its field values weigh in the vocabulary prior "
                 f"(docs/model.md, \"Guidance by real flows\")")
    L.append("")
    L += ["## Headline", ""]
    L += ["| candidate | mean JSD | mean TVD | mean Hellinger |", "|---|---:|---:|---:|"]
    for k in cands:
        L.append(f"| {k} | {fmt(s['mean_jsd'][k])} | {fmt(s['mean_tvd'][k])} | {fmt(s['mean_hellinger'][k])} |")
    ref = (r.get("reference") or {}).get("real_train")
    if ref:
        L.append("| real train (reference: what a perfect generator scores) | "
                 + " | ".join(fmt(ref["overall"][m]) for m in ("jsd", "tvd", "hellinger")) + " |")
    L.append("")
    beats = s.get("synthetic_beats_baselines_on_mean_jsd")
    L.append(f"- **Does the model beat both baselines on mean JSD? {'Yes' if beats else 'No'}** "
             f"(model {fmt(s['mean_jsd']['synthetic'])}, random {fmt(s['mean_jsd'].get('random'))}, "
             f"marginals {fmt(s['mean_jsd'].get('marginals'))}).")
    u = r.get("utility") or {}
    for feat in ("packet_bits_noports", "flow_stats_noports"):
        res = (u.get("synthetic") or {}).get(feat) or {}
        if res.get("real") and res.get("synthetic"):
            ratio = s.get(f"tstr_ratio_{feat}")
            L.append(f"- **{feat}: train-synthetic/test-real macro-F1 {fmt(res['synthetic']['macro_f1'])} vs "
                     f"train-real/test-real {fmt(res['real']['macro_f1'])} = {fmt(ratio, 2)}x — "
                     f"{'reaches' if ratio is not None and ratio >= 0.8 else 'does not reach'} the 0.8x target.**"
                     + (f" (Against real training data cut to the synthetic set's size, "
                        f"{fmt(res['real_matched']['macro_f1'])}: {fmt(s.get('tstr_ratio_matched_' + feat), 2)}x.)"
                        if res.get("real_matched") else ""))
    L.append("")
    d = r.get("detectability") or {}
    if d:
        L += ["## Detectability (cross-validated random forest, real test vs candidate; 0.5 = indistinguishable)",
              "", "| candidate | ROC AUC, packet bits (no ports) | ROC AUC, flow statistics (no ports) |",
              "|---|---:|---:|"]
        for k in [*cands, "real_train"]:
            if k not in d:
                continue
            v = d.get(k) or {}
            L.append(f"| {'real train (reference: what a perfect generator scores)' if k == 'real_train' else k} | "
                     f"{fmt((v.get('packet_bits_noports') or {}).get('auc'))} | "
                     f"{fmt((v.get('flow_stats_noports') or {}).get('auc'))} |")
        L.append("")
    c = r.get("closeness") or {}
    if c:
        L += ["## Closeness to the real train split (copying check)", "",
              "Distance from each flow's statistics (no ports, scaled per class by the train split's spread) "
              "to the nearest real train flow of its class, and the share of flows equal to a train flow "
              "packet for packet (ports masked). The real test split, which the model never saw, is the "
              "reference: a ratio well below 1 would mean copying.", "",
              "| flows | median distance | 5th percentile | median / real test | exact copies |",
              "|---|---:|---:|---:|---:|"]
        for k, v in c.items():
            L.append(f"| {k} | {fmt(v['median_dcr'])} | {fmt(v['p05_dcr'])} | {fmt(v['median_dcr_ratio'], 2)} | "
                     f"{fmt(v['exact_copies'])} |")
        L.append("")
    L += ["## Mean JSD by group (over classes)", "", "| group | " + " | ".join(cands) + " |",
          "|---|" + "---:|" * len(cands)]
    ref = (r.get("reference") or {}).get("real_train")
    if ref:
        L[-2] = L[-2] + " real train (reference) |"
        L[-1] = L[-1] + "---:|"
    for g in ("header", "header_present", "packet", "flow"):
        L.append(f"| {g} | " + " | ".join(fmt(r["fidelity"][k]["overall_by_group"][g]["jsd"]) for k in cands)
                 + (f" | {fmt(ref['overall_by_group'][g]['jsd'])}" if ref else "") + " |")
    L += ["", "## Mean JSD per class", "", "| class | test flows | synthetic flows | " + " | ".join(cands) + " |",
          "|---|---:|---:|" + "---:|" * len(cands)]
    for c in classes:
        if c not in r["classes"]:
            continue
        L.append(f"| {c} | {test_counts[c]} | {gen_counts[c]} | " + " | ".join(
            fmt(r["fidelity"][k]["classes"][c]["mean"]["jsd"]) for k in cands) + " |")
    L += ["", "## ML utility (random forest, tested on the real test split)", "",
          "| features | train real | train real (size-matched) | train model | train real+model | train random | train marginals |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for feat, res in (u.get("synthetic") or {}).items():
        row = [(res.get(sc) or {}).get("macro_f1") for sc in ("real", "real_matched", "synthetic", "mix")]
        row += [((u.get(b) or {}).get(feat, {}).get("synthetic") or {}).get("macro_f1") for b in ("random", "marginals")]
        L.append(f"| {feat} | " + " | ".join(fmt(v) for v in row) + " |")
    L += ["", "Macro-F1 over the evaluated classes; `_noports` drops the port fields (ports come from recipes).", ""]
    L += ["## Reproduce", "", "```"]
    L += [f"netdiff evaluate --real {a.real} --plan --max-packets {a.max_packets}"
          + (f" --split {a.split}" if a.split else "")]
    L += gen_cmds
    L += [f"netdiff evaluate --real {a.real} --synthetic {Path(a.work) / 'synthetic'} -o {report_dir} "
          f"--classes {','.join(classes)} --max-packets {a.max_packets}" + (f" --split {a.split}" if a.split else ""),
          "# or all of it:", f"python bench/bench_evaluate.py --real {a.real} --work {a.work} --count {a.count}"
          + (f" --model {a.model}" if a.model else ""), "```", "",
          f"Full tables and plots: `{report_dir}/report.md`. Metric definitions: docs/evaluation.md.", ""]
    from engine.outdir import atomic_write_bytes
    atomic_write_bytes(path, ["\n".join(L).encode()])


if __name__ == "__main__":
    main()

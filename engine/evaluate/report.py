"""Evaluation outputs: ``report.json``, ``report.md`` and PNG plots, each written atomically."""

from __future__ import annotations

import io
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from engine.outdir import atomic_write_bytes
from .data import FlowSet
from .features import SPECS, kind_names, packet_values
from .fidelity import cdf_points, field_means

METRIC_NAMES = {"jsd": "JSD", "tvd": "TVD", "hellinger": "Hellinger"}


def _f(v, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{nd}f}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _table(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _ports_section(p: dict, classes: list[str]) -> list[str]:
    """Port fidelity (engine.evaluate.ports): the group the port-masked classifiers leave out."""
    L = ["## Port fidelity (transport, server port)", "",
         "Per candidate, over its TCP/UDP flows: `seen` = share on a (transport, server port) pair of the class's "
         "real train flows; JSD of the pair distribution from the real test / train split's, mean over classes "
         "(`real_test` vs train is the floor a held-out split of this size gives).", ""]
    o = p["overall"]
    L += [_table(["candidate", "flows", "seen", "mean JSD vs test", "mean JSD vs train"],
                 [[k, v["flows"], _f(v["seen"]), _f(v["mean_jsd_test"]), _f(v["mean_jsd_train"])]
                  for k, v in o.items()]), ""]
    names = [k for k in o if k != "real_train"]
    rows = [[c] + [f"{_f(p['classes'][c][k]['seen'], 2)} / {_f(p['classes'][c][k]['jsd_train'])}" for k in names]
            for c in classes]
    L += ["Per class: seen / JSD vs train.", "", _table(["class"] + names, rows), ""]
    fields = p.get("fields")
    if fields:
        L += ["Other enumerated fields, per packet: share of values the class's real train packets have "
              "(TTL, ICMP type and code, TCP option kinds in order) / mean JSD vs train over classes.", ""]
        cands = list(next(iter(fields.values()))["overall"])
        L += [_table(["field"] + cands, [[f] + [f"{_f(v['overall'][k]['seen'])} / {_f(v['overall'][k]['mean_jsd_train'])}"
                                               for k in cands] for f, v in fields.items()]), ""]
    return L


def _lengths_section(fl: dict, classes: list[str]) -> list[str]:
    """Flow length over whole flows (engine.evaluate.lengths): what the max_packets cut hides."""
    L = ["## Flow length (whole flows)", "",
         "Packets per flow before any cut (up to 1024), binned as `flow_packets`; JSD of the synthetic "
         "flows from the real test split and from the train split (what the model's length prior was fitted "
         "on); `real train vs test` is the floor a held-out split of this size gives. Baselines are left out "
         "(their lengths are the train split's, cut).", ""]
    rows = []
    for c in classes:
        e = fl["classes"][c]
        j, m = e["jsd"], e["mean_packets"]
        rows.append([c, _f(j["synthetic_vs_test"]), _f(j["synthetic_vs_train"]), _f(j["real_train_vs_test"]),
                     " / ".join("-" if m[k] is None else f"{m[k]:.0f}" for k in ("synthetic", "real_train", "real_test")),
                     e["max_packets"]["synthetic"]])
    o = fl["overall"]
    rows.append(["**mean**", _f(o["synthetic_vs_test"]), _f(o["synthetic_vs_train"]), _f(o["real_train_vs_test"]),
                 "", ""])
    L += [_table(["class", "synthetic vs test", "synthetic vs train", "real train vs test",
                  "mean packets: synthetic / train / test", "longest synthetic"], rows), ""]
    return L


def render_markdown(r: dict, plots: list[str]) -> str:
    cands = list(r["fidelity"])
    classes = r["classes"]
    s = r["summary"]
    L = ["# NetDiffusion evaluation report", ""]
    L += [f"- real: `{r['inputs']['real']}`", f"- synthetic: `{r['inputs']['synthetic']}`",
          f"- split: {r['split']['source']}",
          f"- flows compared: first {r['options']['max_packets']} packets of each flow" if r["options"]["max_packets"]
          else "- flows compared: all packets", f"- seed: {r['options']['seed']}; took {r['seconds']} s", ""]
    if r.get("baseline_repair"):
        L += ["Baselines: " + "; ".join(f"`{k}` = {v}" for k, v in r["baseline_repair"].items()), ""]
    for n in r.get("notes", []):
        L.append(f"> {n}")
    L += ["", "## Summary", ""]
    rows = [[c, _f(s["mean_jsd"][c]), _f(s["mean_tvd"][c]), _f(s["mean_hellinger"][c])] for c in cands]
    ref = (r.get("reference") or {}).get("real_train")
    if ref:
        rows.append(["real_train (reference)"] + [_f(ref["overall"][m]) for m in ("jsd", "tvd", "hellinger")])
    L += [_table(["candidate", "mean JSD", "mean TVD", "mean Hellinger"], rows), ""]
    if ref:
        L += ["`real_train (reference)`: the real train split compared with the test split the same way, i.e. "
              "what a generator that reproduced the real data exactly would score.", ""]
    if "synthetic_beats_baselines_on_mean_jsd" in s:
        L.append(f"- synthetic beats every baseline on mean JSD: **{'yes' if s['synthetic_beats_baselines_on_mean_jsd'] else 'no'}**")
    for feat in ("packet_bits_noports", "flow_stats_noports"):
        k = f"tstr_ratio_{feat}"
        if k in s:
            L.append(f"- {feat}: train-synthetic / train-real macro-F1 = {_f(s[k])} "
                     f"({'reaches' if s[k] >= 0.8 else 'below'} 0.8)"
                     + (f"; against size-matched real: {_f(s['tstr_ratio_matched_' + feat])}"
                        if f"tstr_ratio_matched_{feat}" in s else ""))
    L += ["", "Means are over classes (macro); a class's mean is over every compared quantity "
          "(header fields, packet size, gaps, direction, flow length, direction share). "
          "Lower is better; all distances are in [0, 1].", ""]

    L += ["## Flows per class", ""]
    head = ["class", "real train", "real test"] + cands
    rows = [[c, r["flows"][c]["real_train"], r["flows"][c]["real_test"]] + [r["flows"][c].get(k, 0) for k in cands]
            for c in classes]
    L += [_table(head, rows), ""]

    for m in ("jsd", "tvd", "hellinger"):
        L += [f"## Mean {METRIC_NAMES[m]} per class", ""]
        rows = [[c] + [_f(r["fidelity"][k]["classes"][c]["mean"][m]) for k in cands] for c in classes]
        rows.append(["**all classes**"] + [f"**{_f(r['fidelity'][k]['overall'][m])}**" for k in cands])
        L += [_table(["class"] + cands, rows), ""]

    L += ["## Mean JSD by group", "", "header = fields of the layout table (absent = own bin, so the protocol "
          "mix counts); header_present = the same fields over only the packets that carry the header; "
          "packet = direction, size, gap; flow = flow length, direction share.", ""]
    rows = [[g] + [_f(r["fidelity"][k]["overall_by_group"][g]["jsd"]) for k in cands]
            + ([_f(ref["overall_by_group"][g]["jsd"])] if ref else [])
            for g in ("header", "header_present", "packet", "flow")]
    L += [_table(["group"] + cands + (["real_train (reference)"] if ref else []), rows), ""]

    L += ["## JSD per field (mean over classes)", ""]
    fm = {k: field_means(r["fidelity"][k], "jsd") for k in cands}
    rows = [[sp.name, sp.group] + [_f(fm[k][sp.name]) for k in cands] for sp in SPECS]
    L += [_table(["quantity", "group"] + cands, rows), ""]

    if r.get("detectability"):
        L += ["## Detectability (real test vs candidate, cross-validated random forest)", "",
              "ROC AUC (accuracy in brackets): 0.5 = indistinguishable from real, 1.0 = always told apart. "
              "Looks at joint structure, which per-field divergences miss; the folds hold out whole flows. "
              "`real_train` is the reference: "
              "real flows the test split never saw, i.e. what a perfect generator would score.", ""]
        d = r["detectability"]
        feats = sorted({f for dd in d.values() for f in dd})
        rows = [[k] + ["-" if not d[k].get(f) else f"{_f(d[k][f]['auc'])} ({_f(d[k][f]['accuracy'])})" for f in feats]
                for k in [*cands, "real_train"] if k in d]
        L += [_table(["candidate"] + feats, rows), ""]
    if r.get("closeness"):
        L += ["## Closeness to the real train split (copying check)", "",
              "Per class, distance from each flow's statistics (no ports, scaled by the train split's spread) "
              "to the nearest real train flow (DCR), and the share of flows equal to a train flow packet for "
              "packet (ports masked). `real_test` (flows the model never saw) is the reference: a ratio well "
              "below 1, or more exact copies than it has, means copying.", ""]
        c = r["closeness"]
        rows = [[k, c[k]["flows"], _f(c[k]["median_dcr"]), _f(c[k]["p05_dcr"]), _f(c[k]["median_dcr_ratio"], 2),
                 _f(c[k]["exact_copies"])] for k in c]
        L += [_table(["flows", "count", "median DCR", "5th pct DCR", "median / real_test", "exact copies"], rows), ""]
    if r.get("ports"):
        L += _ports_section(r["ports"], classes)
    if r.get("flow_lengths"):
        L += _lengths_section(r["flow_lengths"], classes)
    if r.get("utility"):
        L += ["## ML utility (tested on the real test split)", "",
              "Random forest; macro-F1 (accuracy in brackets). `train real` = the real train split, "
              "`size-matched` = as many real train flows per class as the synthetic set has, "
              "`train synthetic` = the synthetic set only, `real + synthetic` = both, `train <baseline>` = that "
              "baseline only. `_noports` drops the port fields. Sample counts are in report.json.", ""]
        u = r["utility"]
        head = ["features", "train real", "train real (size-matched)", "train synthetic", "real + synthetic"] + [
            f"train {k}" for k in u if k != "synthetic"]
        rows = []
        for feat, res in u["synthetic"].items():
            cells = [res.get(sc) for sc in ("real", "real_matched", "synthetic", "mix")]
            cells += [(u[k].get(feat) or {}).get("synthetic") for k in u if k != "synthetic"]
            rows.append([feat] + ["-" if v is None else f"{_f(v['macro_f1'])} ({_f(v['accuracy'])})" for v in cells])
        L += [_table(head, rows), ""]

    L += ["## Per class, per field (JSD)", ""]
    for c in classes:
        L += [f"### {c}", ""]
        rows = [[sp.name] + [_f((r["fidelity"][k]["classes"][c]["fields"][sp.name] or {}).get("jsd")) for k in cands]
                for sp in SPECS]
        L += [_table(["quantity"] + cands, rows), ""]
    kn = r.get("tcp_option_kinds")
    if kn:
        L += ["TCP option-kind codes: " + ", ".join(f"{k} = `{v}`" for k, v in kn.items()), ""]
    if plots:
        L += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    L += ["Metric definitions and binning: see docs/evaluation.md.", ""]
    return "\n".join(L)


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    atomic_write_bytes(path, [buf.getvalue()])


def write_plots(out: Path, r: dict, test: FlowSet, candidates: dict[str, FlowSet]) -> list[str]:
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    names: list[str] = []
    classes = r["classes"]
    cands = list(r["fidelity"])
    colors = dict(zip(["real"] + cands, ["black", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]))

    # mean JSD per class and candidate
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(classes) + 2), 4))
    w = 0.8 / max(1, len(cands))
    x = np.arange(len(classes))
    for j, k in enumerate(cands):
        ax.bar(x + j * w, [r["fidelity"][k]["classes"][c]["mean"]["jsd"] or 0 for c in classes], w,
               label=k, color=colors.get(k))
    ax.set_xticks(x + w * (len(cands) - 1) / 2, classes, rotation=30, ha="right")
    ax.set_ylabel("mean JSD (lower is better)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    _save(fig, out / "mean_jsd_per_class.png")
    plt.close(fig)
    names.append("mean_jsd_per_class.png")

    # per-field divergence bars, one figure per class
    fnames = [s.name for s in SPECS]
    for c in classes:
        fig, ax = plt.subplots(figsize=(8, 0.18 * len(fnames) + 1.5))
        y = np.arange(len(fnames))
        h = 0.8 / max(1, len(cands))
        for j, k in enumerate(cands):
            vals = [(r["fidelity"][k]["classes"][c]["fields"][n] or {}).get("jsd") or 0 for n in fnames]
            ax.barh(y + j * h, vals, h, label=k, color=colors.get(k))
        ax.set_yticks(y + h * (len(cands) - 1) / 2, fnames, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("JSD (base 2)")
        ax.set_title(f"{c}: per-field divergence, real test vs candidate")
        ax.legend(fontsize=8)
        fig.tight_layout()
        n = f"divergence_{_safe(c)}.png"
        _save(fig, out / n)
        plt.close(fig)
        names.append(n)

    # CDFs of packet size and gaps, real vs candidates, one panel per class
    vals = {"real": {c: packet_values(test.of(c).mats) for c in classes}}
    for k, fs in candidates.items():
        vals[k] = {c: packet_values(fs.of(c).mats) for c in classes}
    for q, xlabel, logx, fname in (("packet_size", "IPv4 total length (bytes)", False, "cdf_packet_size.png"),
                                   ("iat_us", "inter-arrival time (us, log)", True, "cdf_iat.png")):
        ncol = min(4, len(classes))
        nrow = math.ceil(len(classes) / ncol)
        fig, axs = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), squeeze=False)
        for i, c in enumerate(classes):
            ax = axs[i // ncol][i % ncol]
            for k in ["real"] + cands:
                v = vals[k][c][q]
                v = v[v >= 0]
                if logx:
                    v = np.maximum(v, 0.1)
                xs, ys = cdf_points(v)
                if len(xs):
                    ax.plot(xs, ys, label=k, color=colors.get(k), lw=1.6 if k in ("real", "synthetic") else 1.0,
                            ls="-" if k in ("real", "synthetic") else "--")
            if logx:
                ax.set_xscale("log")
            ax.set_title(c, fontsize=9)
            ax.set_ylim(0, 1)
            ax.tick_params(labelsize=7)
        for i in range(len(classes), nrow * ncol):
            axs[i // ncol][i % ncol].axis("off")
        axs[0][0].legend(fontsize=7)
        fig.supxlabel(xlabel, fontsize=9)
        fig.supylabel("CDF", fontsize=9)
        fig.tight_layout()
        _save(fig, out / fname)
        plt.close(fig)
        names.append(fname)
    return names


def write_report(out_dir: str | os.PathLike, r: dict, test: FlowSet, candidates: dict[str, FlowSet],
                 plots: bool = True) -> list[Path]:
    """Write report.json, report.md and the plots; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r["tcp_option_kinds"] = {str(k): v for k, v in kind_names().items()}
    names = write_plots(out, r, test, candidates) if plots else []
    r["plots"] = names
    atomic_write_bytes(out / "report.json", [json.dumps(r, indent=1, default=_jsonable).encode()])
    atomic_write_bytes(out / "report.md", [render_markdown(r, names).encode()])
    return [out / "report.json", out / "report.md"] + [out / n for n in names]


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)

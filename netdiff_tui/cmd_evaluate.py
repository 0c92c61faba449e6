"""``netdiff evaluate``: how close synthetic traffic is to real traffic (fidelity, ML utility, baselines)."""

from __future__ import annotations

import json

import click

from engine.errors import InputError

from .cli import Progress, main
from .detach import detachable


@main.command()
@click.option("--real", "real", required=True, type=click.Path(),
              help="Real data: <class>/*.pcap|.pcapng directory, or an encoded dataset directory.")
@click.option("--synthetic", "synthetic", type=click.Path(), multiple=True,
              help="Synthetic data, same kinds of directory (e.g. `netdiff generate -o` output); "
                   "repeat for several (one per class).")
@click.option("-o", "--out", "out", default="evaluation", show_default=True, type=click.Path(),
              help="Report directory (report.json, report.md, PNG plots).")
@click.option("--split", "split", type=click.Path(), default=None,
              help="Real train/test split file (JSON, e.g. a training run's split.json). "
                   "Default: configs/default_split.json when it matches the data, else a seeded split by flow; "
                   "'seed': always the seeded split.")
@click.option("--classes", default=None, help="Comma-separated classes to evaluate (default: all common ones).")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Also score random-bits and per-field-marginals baselines (both repaired).")
@click.option("--utility/--no-utility", default=True, show_default=True, help="Run the classifiers.")
@click.option("--plots/--no-plots", default=True, show_default=True)
@click.option("--max-packets", type=int, default=None,
              help="Compare only each flow's first N packets (use the model's length, e.g. 128).")
@click.option("--seed", default=0, show_default=True, help="Seed of the split, baselines and classifiers.")
@click.option("--test-frac", default=0.2, show_default=True, help="Test share of the seeded split.")
@click.option("--packet-cap", default=2000, show_default=True,
              help="Packets per class and side for the per-packet classifiers.")
@click.option("--trees", default=100, show_default=True, help="Trees per random forest.")
@click.option("--plan", is_flag=True,
              help="Only print the real test split's flows per class and matching `netdiff generate` commands.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True)
@detachable("evaluate")
def evaluate(real, synthetic, out, split, classes, baselines, utility, plots, max_packets, seed, test_frac,
             packet_cap, trees, plan, as_json, quiet):
    """Compare synthetic traffic with the real test split: JSD/TVD/Hellinger per field and class,
    classifier utility (train synthetic, test real), and baselines; writes a report directory."""
    from engine.evaluate import EvalOptions, evaluate as run
    from engine.evaluate.run import real_split
    cls = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    if max_packets is not None and max_packets < 1:
        raise InputError(None, "--max-packets must be >= 1")
    if not 0 < test_frac < 1:
        raise InputError(None, "--test-frac must be between 0 and 1")
    opts = EvalOptions(classes=cls, split_file=split, seed=seed, test_frac=test_frac, max_packets=max_packets,
                       baselines=baselines, utility=utility, packet_cap=packet_cap, n_estimators=trees,
                       plots=plots)
    if plan:
        sp, notes = real_split(real, opts)
        counts = dict(sorted(sp.test.counts().items(), key=lambda kv: -kv[1]))
        if as_json:
            click.echo(json.dumps({"split": sp.summary(), "notes": notes}, indent=2))
            return
        for n in notes:
            click.echo(f"# {n}")
        click.echo(f"# {'class':<20} {'train':>6} {'test':>6}")
        tr = sp.train.counts()
        for c, n in counts.items():
            click.echo(f"# {c:<20} {tr.get(c, 0):>6} {n:>6}")
        for c, n in counts.items():
            click.echo(f"netdiff generate --label {c} -n {n} -o synthetic/{c}")
        return
    if not synthetic:
        raise InputError(None, "--synthetic DIR is required (or use --plan)")
    with Progress(None if not quiet else False) as prog:
        rep = run(real, list(synthetic), out, opts, on_event=prog)
    s = rep["summary"]
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    if quiet:
        return
    for n in rep["notes"]:
        click.echo(n)
    click.echo(f"classes: {', '.join(rep['classes'])}")
    click.echo(f"{'candidate':<12} {'JSD':>7} {'TVD':>7} {'Hell.':>7}")
    for k in s["mean_jsd"]:
        vals = [s[m][k] for m in ("mean_jsd", "mean_tvd", "mean_hellinger")]
        click.echo(f"{k:<12} " + " ".join("      -" if v is None else f"{v:7.3f}" for v in vals))
    u = rep.get("utility")
    if u:
        for feat in ("packet_bits_noports", "flow_stats_noports"):
            r = u["synthetic"][feat]
            f1 = {sc: (r[sc] or {}).get("macro_f1") for sc in ("real", "real_matched", "synthetic", "mix")}
            click.echo(f"macro-F1 {feat:<20} " + "  ".join(
                f"train {sc}: {'-' if v is None else f'{v:.3f}'}" for sc, v in f1.items()))
    c = (rep.get("closeness") or {}).get("synthetic")
    if c and c.get("median_dcr_ratio") is not None:
        click.echo(f"closeness to the train split: median distance {c['median_dcr_ratio']:.2f}x the real test "
                   f"split's (below 1 = copying), exact copies {c['exact_copies']:.1%}")
    p = ((rep.get("ports") or {}).get("overall") or {}).get("synthetic")
    if p and p.get("seen") is not None:
        j = {k: "-" if p[k] is None else f"{p[k]:.3f}" for k in ("mean_jsd_train", "mean_jsd_test")}
        click.echo(f"ports: {p['seen']:.1%} of TCP/UDP flows on a (transport, server port) pair of the class's train "
                   f"flows; JSD of the pairs {j['mean_jsd_train']} vs train, {j['mean_jsd_test']} vs test")
    fl = (rep.get("flow_lengths") or {}).get("overall") or {}
    if fl.get("synthetic_vs_test") is not None:
        from engine.artifacts.reports import FLOW_LENGTH_JSD
        j = {k: "-" if fl.get(k) is None else f"{fl[k]:.3f}" for k in FLOW_LENGTH_JSD}
        click.echo(f"flow length (whole flows): JSD {j['synthetic_vs_train']} vs train, {j['synthetic_vs_test']} vs test "
                   f"(real train vs test: {j['real_train_vs_test']})")
    click.echo(f"report: {out}/report.md ({rep['seconds']} s)")

"""``netdiff recipes ...``, ``netdiff export`` and ``netdiff balance``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from engine.errors import InputError
from netdiff_tui.cli import Progress, friendly, main
from netdiff_tui.detach import detachable
from engine.datasets.request import SAMPLING_OVERRIDES
from netdiff_tui.request_options import request_options


# -- recipes ------------------------------------------------------------------------------

@main.group()
def recipes():
    """Generation recipes: list, show, create, validate and edit them.

    User recipes live in the folder printed by `netdiff recipes list`; presets
    ship with netdiff. A user recipe with a preset's name shadows the preset.
    """


@recipes.command("list")
@click.option("--json", "as_json", is_flag=True)
@friendly
def list_(as_json):
    """User recipes and presets, with their label, transport and ports."""
    from engine.datasets import recipes as rp
    rows = []
    users = set(rp.user_names())
    for src, names, d in (("user", rp.user_names(), rp.user_dir()), ("preset", rp.preset_names(), rp.presets_dir())):
        for n in names:
            row = {"name": n, "source": src, "path": str(d / f"{n}.toml"),
                   "shadowed": src == "preset" and n in users}
            try:
                rc = rp.load_recipe(d / f"{n}.toml", src)
                q = rc.request
                row.update(label=q.label, transport=q.transport,
                           ports=",".join(map(str, rp.compress_ports(q.server_ports))) or "-",
                           description=rc.description, valid=True)
            except InputError as e:
                row.update(label="?", transport="?", ports="?", description=f"INVALID: {e.problem}", valid=False)
            rows.append(row)
    if as_json:
        click.echo(json.dumps({"user_dir": str(rp.user_dir()), "recipes": rows}, indent=2))
        return
    if not rows:
        click.echo("no recipes")
    w = max([len(r["name"]) for r in rows] + [4])
    click.echo(f"{'NAME':<{w}}  {'SOURCE':<7} {'LABEL':<16} {'TRANSPORT':<9} {'PORTS':<16} DESCRIPTION")
    for r in rows:
        src = r["source"] + ("*" if r["shadowed"] else "")
        click.echo(f"{r['name']:<{w}}  {src:<7} {r['label']:<16} {r['transport']:<9} {r['ports']:<16} {r['description']}")
    click.echo(f"\nuser recipes: {rp.user_dir()}" + ("   (* = shadowed by a user recipe)" if users & set(rp.preset_names()) else ""))


@recipes.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved GenerationRequest as JSON.")
@friendly
def show(name, as_json):
    """Print a recipe (file text, or the request it makes with --json)."""
    from dataclasses import asdict
    from engine.datasets import recipes as rp
    path, src = rp.find(name)
    rc = rp.load_recipe(path, src)
    if as_json:
        d = asdict(rc.request)
        click.echo(json.dumps({"name": rc.name, "source": src, "path": str(path), "sha256": rc.sha256,
                               "request": d}, indent=2, default=list))
        return
    click.echo(f"# {src}: {path}")
    click.echo(Path(path).read_text(encoding="utf-8").rstrip("\n"))


@recipes.command()
@click.argument("name")
@click.option("--from", "from_", metavar="PRESET", default=None, help="Start from this preset (or recipe).")
@click.option("--label", default=None, help="Class label of a new recipe (without --from).")
@click.option("--force", is_flag=True, help="Replace an existing user recipe.")
@friendly
def new(name, from_, label, force):
    """Create a user recipe NAME, from defaults or --from PRESET."""
    from engine.datasets import recipes as rp
    from engine.outdir import atomic_write_bytes
    if not rp.NAME_RE.match(name):
        raise InputError(None, f"recipe name {name!r}: use 1-64 lowercase letters, digits, '_', '-' or '.'")
    dest = rp.user_dir() / f"{name}.toml"
    if dest.exists() and not force:
        raise InputError(dest, "a recipe with this name exists (use --force to replace it, or `edit`)")
    if from_:
        path, _src = rp.find(from_)
        text = rp.with_name(Path(path).read_text(encoding="utf-8"), name)
        if label:
            import re
            text = re.sub(r'(?m)^label\s*=\s*"[^"\n]*"', f'label = "{label}"', text, count=1)
    else:
        text = rp.template(name, label or "tls_https")
    rc = rp.parse_recipe(__import__("tomllib").loads(text), dest, "user")   # validate before writing
    atomic_write_bytes(dest, [text.encode()])
    click.echo(f"{dest}: recipe {rc.name!r} (label {rc.request.label}); edit it with `netdiff recipes edit {name}`")


@recipes.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Validate every user recipe and preset.")
@click.option("-q", "--quiet", is_flag=True)
@friendly
def validate(names, all_, quiet):
    """Check recipes (names or files); exit status 2 if any is invalid."""
    from engine.datasets import recipes as rp
    targets = list(names)
    if all_:
        targets += [str(rp.user_dir() / f"{n}.toml") for n in rp.user_names()]
        targets += [str(rp.presets_dir() / f"{n}.toml") for n in rp.preset_names()]
    if not targets:
        raise InputError(None, "name a recipe (or a .toml file), or use --all")
    bad = 0
    for t in targets:
        try:
            rc = rp.resolve(t)
        except InputError as e:
            click.echo(f"netdiff: error: {e}", err=True)
            bad += 1
            continue
        if not quiet:
            q = rc.request
            click.echo(f"ok: {rc.path}: {rc.name} -> {q.count} {q.label} flows, {q.transport} "
                       f"{','.join(map(str, rp.compress_ports(q.server_ports))) or '(model ports)'}, "
                       f"{q.packets_min}-{q.packets_max} packets, sha256 {rc.sha256[:12]}")
    if bad:
        sys.exit(2)


@recipes.command()
@click.argument("name")
@friendly
def edit(name):
    """Open a user recipe in $EDITOR, then validate it (a preset is copied to your recipes first)."""
    from engine.datasets import recipes as rp
    from engine.outdir import atomic_write_bytes
    dest = rp.user_dir() / f"{name}.toml"
    if not dest.exists():
        path, src = rp.find(name)
        if src == "file":
            dest = Path(path)
        else:
            text = Path(path).read_text(encoding="utf-8")
            atomic_write_bytes(dest, [text.encode()])
            click.echo(f"copied {src} {name!r} to {dest}", err=True)
    while True:
        click.edit(filename=str(dest))
        try:
            rc = rp.load_recipe(dest, "user")
        except InputError as e:
            click.echo(f"netdiff: error: {e}", err=True)
            if sys.stdin.isatty() and click.confirm("Edit again?", default=True):
                continue
            sys.exit(2)
        click.echo(f"ok: {dest}: {rc.name} ({rc.request.label}), sha256 {rc.sha256[:12]}")
        return


# -- export and balance ------------------------------------------------------------------

@main.command("export")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="Output dataset directory.")
@click.option("--pcapng", is_flag=True, help="Also write one pcapng per class, label and flow id in packet comments.")
@click.option("--split", type=float, default=None, help="Hold out this fraction of each class's flows as test.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--class", "classes", multiple=True, help="Export only this class (repeatable; default: every class).")
@click.option("--max-per-class", type=int, default=None,
              help="At most this many flows of each class (the first ones, in input order).")
@click.option("--force", is_flag=True, help="Replace a non-empty output directory.")
@click.option("-q", "--quiet", is_flag=True)
@detachable("export", resume_args=())
def export_cmd(inputs, out, pcapng, split, seed, classes, max_per_class, force, quiet):
    """Generated datasets and real <class>/*.pcap folders -> one labeled dataset of per-flow pcaps.

    Interrupted? Run the same command again: it continues where it stopped.
    """
    from engine.datasets.export import ExportOptions, export
    with Progress(None if not quiet else False) as prog:
        s = export(list(inputs), out, ExportOptions(pcapng=pcapng, split=split, seed=seed, classes=tuple(classes),
                                                    max_per_class=max_per_class), force=force,
                   on_event=_with_messages(prog, quiet))
    if not quiet:
        _print_counts(s)
    return s


@main.command("balance")
@click.option("--real", "real", required=True, type=click.Path(), help="Real labeled captures: <class>/*.pcap.")
@click.option("--target", required=True, help="Flows per class: a number, or 'max' (the largest class).")
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="Output dataset directory.")
@click.option("--recipes", "use_recipes", is_flag=True,
              help="Draw each class with its recipe (--recipes-dir, yours, the presets) instead of as the model "
                   "learned it; a recipe narrows a class to one kind of flow, which a classifier of the whole "
                   "class learns less from (bench/balance.md).")
@click.option("--recipes-dir", type=click.Path(), default=None,
              help="Look for each class's recipe here first (implies --recipes).")
@click.option("--class", "classes", multiple=True, help="Only top up this class (repeatable).")
@click.option("--split", type=float, default=None, help="Hold out this fraction of real flows as test first.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--pcapng", is_flag=True)
@request_options(only=("model", *SAMPLING_OVERRIDES), show_defaults=False)
@click.option("--like", "like_flag", is_flag=True, help="Start every synthetic flow from a real flow of its class "
                                                       "(with --split: from the train side only).")
@request_options(only=("strength",), show_defaults=False)
@click.option("--filter", "min_prob", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Keep only synthetic flows that a forest trained on the real (train) flows takes for their "
                   "class with at least this probability, e.g. 0.4; needs enough real flows per class to learn "
                   "from (bench/balance.md).")
@click.option("--oversample", type=click.IntRange(1, 20), default=None,
              help="With --filter: draw this many times the flows a class needs, so that more pass  [default: 1]")
@click.option("--force", is_flag=True)
@click.option("--score", is_flag=True, help="With --split: print per-class F1 of a classifier trained on the "
                                             "imbalanced vs the balanced train split (tested on real test flows).")
@click.option("-q", "--quiet", is_flag=True)
@detachable("balance", resume_args=())
def balance_cmd(real, target, out, use_recipes, recipes_dir, classes, split, seed, pcapng, like_flag, min_prob,
                oversample, force, score, quiet, **_request_fields):
    """Top up under-represented classes with synthetic flows and export the mix.

    Each class is drawn as the model learned it (`netdiff generate --label C`), or with --recipes
    by its recipe. --model, --candidates, --decodes and --strength apply to every class (their
    values as `netdiff generate` takes them).
    """
    from engine.datasets.balance import balance
    from netdiff_tui.request_options import given
    # only the request options it declares: its own --seed (the split's) is no request field
    over = given(click.get_current_context(), only=("model", *SAMPLING_OVERRIDES, "strength"))
    # None is "each recipe's model" to balance(): a typed "default" means the shipped model for all
    model = (over["model"] or "default") if "model" in over else None
    strength, like = over.get("strength"), like_flag
    if strength is not None and not like:
        raise InputError(None, "--strength needs --like")
    with Progress(None if not quiet else False) as prog:
        s = balance(real, target, out, recipes_dir=recipes_dir, split=split, seed=seed, pcapng=pcapng,
                    force=force, on_event=_with_messages(prog, quiet), classes=list(classes) or None,
                    model=model, like=like, strength=strength,
                    sampling={k: over[k] for k in SAMPLING_OVERRIDES if k in over}, min_prob=min_prob,
                    oversample=oversample, recipes=use_recipes)
    if not quiet:
        click.echo(f"target {s['target']} flows per class" + (" (train split)" if split else ""))
        for c, n in s["generated"].items():
            v = s["vetted"].get(c)
            kept = f"; kept {v['kept']} of {v['drawn']} drawn" if v else ""
            click.echo(f"  {c}: {s['counted'][c]} real + {n} synthetic ({s['recipes'][c]}{kept})")
        _print_counts(s)
    if score:
        if split is None:
            raise InputError(None, "--score needs --split (it tests on the real test split)")
        click.echo(score_table(out, seed))


def score_table(out, seed: int = 0) -> str:
    """Markdown: macro-F1 and per-class F1, imbalanced vs balanced, with and without port features."""
    from engine.datasets.balance import classifier_scores
    res = {m: classifier_scores(out, seed=seed, mask_ports=m) for m in (False, True)}
    a = res[False]
    lines = ["| class | test flows | real train | balanced train | F1 imbalanced | F1 balanced |"
             " F1 imbalanced (no ports) | F1 balanced (no ports) |", "|---|---|---|---|---|---|---|---|"]
    for c in a["classes"]:
        lines.append(f"| {c} | {a['test_counts'].get(c, 0)} | {a['imbalanced']['train_counts'].get(c, 0)} | "
                     f"{a['balanced']['train_counts'].get(c, 0)} | {a['imbalanced']['f1'][c]:.3f} | "
                     f"{a['balanced']['f1'][c]:.3f} | {res[True]['imbalanced']['f1'][c]:.3f} | "
                     f"{res[True]['balanced']['f1'][c]:.3f} |")
    lines.append(f"| **macro-F1** | | | | **{a['imbalanced']['macro_f1']:.3f}** | **{a['balanced']['macro_f1']:.3f}** | "
                 f"**{res[True]['imbalanced']['macro_f1']:.3f}** | **{res[True]['balanced']['macro_f1']:.3f}** |")
    lines.append(f"| accuracy | | | | {a['imbalanced']['accuracy']:.3f} | {a['balanced']['accuracy']:.3f} | "
                 f"{res[True]['imbalanced']['accuracy']:.3f} | {res[True]['balanced']['accuracy']:.3f} |")
    return "\n".join(lines)


def _with_messages(prog, quiet):
    from engine.progress import Message

    def emit(ev):
        if isinstance(ev, Message) and not quiet:
            click.echo(f"netdiff: {ev.level}: {ev.text}", err=True)
        prog(ev)
    return emit


def _print_counts(s: dict) -> None:
    cls = s["classes"]
    real = sum(v.get("real", 0) for v in cls.values())
    syn = sum(v.get("synthetic", 0) for v in cls.values())
    click.echo(f"{s['out']}: {s['flows']} flows in {len(cls)} classes ({real} real, {syn} synthetic)"
               + (f"; resumed {s['resumed_flows']} finished flows" if s.get("resumed_flows") else ""))

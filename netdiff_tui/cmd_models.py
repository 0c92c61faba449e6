"""``netdiff models``: checkpoints on disk and on the Hugging Face Hub (engine.hub underneath).

The Hub cache is huggingface_hub's own (``HF_HOME`` / ``HF_HUB_CACHE``); a mirror is
``HF_ENDPOINT``; ``HF_HUB_OFFLINE=1`` keeps every command off the network.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from engine.artifacts.models import classes_text
from engine.errors import InputError
from netdiff_tui.cli import Progress, friendly, main
from netdiff_tui.detach import detachable


def _settings():
    from netdiff_tui.settings import SettingsError, load_settings
    try:
        return load_settings()
    except SettingsError as e:
        click.echo(f"netdiff: warning: {e}; using default settings", err=True)
        from netdiff_tui.settings import Settings
        return Settings()


def _local_checkpoints() -> list[tuple[str, str, Path]]:
    """The user's checkpoints and runs, found where the console looks (settings: models_dir, runs_dirs)."""
    from engine.artifacts import find_models
    s = _settings()
    return [(m.name, m.kind, Path(m.path)) for m in find_models(s.expanded("models_dir"), s.expanded_runs())
            if m.kind != "default"]


@main.group()
def models():
    """Checkpoints: the shipped default, your runs, the Hugging Face Hub cache (download, verify, delete)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly
def list_cmd(as_json):
    """Everything local: the default, your runs and checkpoints, every repository in the Hub cache."""
    from engine.hub.cache import age, human_size, list_models
    from engine.hub.refs import hub_cache_dir
    rows = list_models(_local_checkpoints())
    if as_json:
        click.echo(json.dumps({"hub_cache": str(hub_cache_dir()), "models": [r.to_dict() for r in rows]}, indent=2))
        return
    table = []
    for r in rows:
        revs = ", ".join(x["commit"][:12] + (f" ({', '.join(x['refs'])})" if x["refs"] else "")
                         for x in r.revisions) or "-"
        cls = f"{len(r.classes)}" if r.classes else "-"
        table.append((r.name, r.kind, r.format, cls, revs, human_size(r.size), age(r.last_used), r.ref))
    head = ("name", "kind", "format", "classes", "revisions", "size", "last used", "use as --model")
    w = [max(len(str(x[i])) for x in table + [head]) for i in range(len(head))]
    for row in [head] + table:
        click.echo("  ".join(str(c).ljust(w[i]) for i, c in enumerate(row)).rstrip())
    click.echo(f"Hub cache: {hub_cache_dir()}")


@models.command()
@click.argument("ref")
@click.option("--revision", default=None, help="Branch, tag or commit (Hub references).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def info(ref, revision, as_json):
    """Config, classes, files (sizes, hashes), where it lives, which recipes use it."""
    from engine.hub.cache import age, human_size, info as get_info
    d = get_info(ref, revision)
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
        return
    click.echo(f"{d['ref']}  ({d['kind']}, {d['format']})")
    click.echo(f"where: {d['path'] or 'not downloaded (described from the Hub)'}")
    if d.get("commit"):
        click.echo(f"commit: {d['commit']}")
    if d.get("revisions") and len(d["revisions"]) > 1:
        click.echo("cached revisions: " + ", ".join(f"{r['commit'][:12]} {human_size(r['size'])}"
                                                    + (f" ({', '.join(r['refs'])})" if r["refs"] else "")
                                                    for r in d["revisions"]))
    if d.get("last_used"):
        click.echo(f"last used: {age(d['last_used'])}")
    if d["classes"]:
        click.echo(classes_text(d["classes"], d.get("class_flows")))
    for k, v in d["config"].items():
        click.echo(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    click.echo(f"files ({len(d['files'])}, {human_size(d['size'])}):")
    w = max((len(f["name"]) for f in d["files"]), default=4)
    for f in d["files"]:
        click.echo(f"  {f['name']:<{w}}  {human_size(f['size']):>10}  {f['algorithm']}:{f['hash']}")
    click.echo("used by recipes: " + (", ".join(d["recipes"]) if d["recipes"] else "none"))


@models.command()
@click.argument("repo")
@click.option("--revision", default=None, help="Branch, tag or commit (default: main); the commit is printed.")
@click.option("--include", "include", multiple=True,
              help="Glob of files to fetch (repeatable; default: *.safetensors *.json *.md *.txt).")
@click.option("--allow-pickle", is_flag=True,
              help="Also fetch pickled weights (.bin/.ckpt/.pt/.pkl); loading them can run arbitrary code.")
@click.option("--dry-run", is_flag=True, help="Show the files and the total size, fetch nothing.")
@click.option("-q", "--quiet", is_flag=True)
@detachable("download", resume_args=())
def download(repo, revision, include, allow_pickle, dry_run, quiet):
    """Download a Hub repository (pinned to a commit) into the Hub cache."""
    from engine.hub import download as dl
    from engine.hub.cache import human_size
    from netdiff_tui.settings import data_dir
    if allow_pickle:
        click.echo("netdiff: warning: --allow-pickle: pickled weights can run arbitrary code when loaded; "
                   "fetch them only from sources you trust", err=True)
    plan = dl.plan_download(repo, revision, include, allow_pickle)
    if plan.requested and plan.requested != plan.commit:
        click.echo(f"{plan.ref.repo_id}: {plan.requested} -> commit {plan.commit}")
    else:
        click.echo(f"{plan.ref.repo_id}: commit {plan.commit}")
    w = max(len(f.name) for f in plan.files)
    for f in plan.files:
        click.echo(f"  {f.name:<{w}}  {human_size(f.size):>10}  {'cached' if f.cached else 'to fetch'}")
    pick = [s for s in plan.skipped if s.lower().endswith(dl.PICKLE_SUFFIXES)]
    if pick and not allow_pickle:
        click.echo(f"  not fetched (pickled weights; --allow-pickle to fetch): {', '.join(pick)}")
    click.echo(f"total {human_size(plan.total_bytes)} ({plan.total_bytes} bytes) in {len(plan.files)} files; "
               f"{human_size(plan.fetch_bytes)} ({plan.fetch_bytes} bytes) to download")
    if dry_run:
        click.echo(f"dry run: nothing fetched; pin it as {plan.ref}")
        return
    with Progress(None if not quiet else False) as prog:
        def on_event(ev):
            from engine.progress import Message
            prog(ev)
            if isinstance(ev, Message):
                click.echo(f"netdiff: {ev.level}: {ev.text}", err=True)
        result = dl.download(plan, on_event=on_event)
    try:
        dl.record(result, data_dir() / "downloads.jsonl")
    except OSError as e:
        click.echo(f"netdiff: warning: could not record the download in {data_dir()}: {e.strerror}", err=True)
    click.echo(f"{result.snapshot}")
    click.echo(f"use it as --model {plan.ref}")


@models.command()
@click.argument("ref")
@click.option("--revision", default=None, help="Branch, tag or commit (Hub references).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def verify(ref, revision, as_json):
    """Hash every file against the Hub's hashes (offline: the cache names blobs by them). Exit 1 on damage."""
    from engine.hub.cache import verify as run_verify
    rep = run_verify(ref, revision)
    if as_json:
        click.echo(json.dumps({"ref": rep.ref, "path": rep.path, "ok": rep.ok, "missing": rep.missing,
                               "files": [f.__dict__ for f in rep.files]}, indent=2))
    else:
        for f in rep.files:
            mark = "ok" if f.ok else "BAD"
            click.echo(f"{mark:<4} {f.name}  {f.algorithm}" + (f"  {f.problem}" if f.problem else ""))
        if rep.missing:
            click.echo(f"not downloaded (listed by the Hub): {', '.join(rep.missing)}")
    if not rep.ok:
        bad = [f.name for f in rep.bad]
        click.echo(f"netdiff: error: {rep.ref}: {len(bad)} damaged file(s): {', '.join(bad)}; "
                   f"delete the revision and download it again", err=True)
        sys.exit(1)
    if not as_json:
        what = "hashes match the Hub's" if rep.files and rep.files[0].algorithm != "structure" else \
            "well-formed (local checkpoints carry no published hashes)"
        click.echo(f"{rep.ref}: {len(rep.files)} file(s) {what}")


@models.command()
@click.argument("ref")
@click.option("--revision", default=None, help="Only this cached revision (branch, tag or commit).")
@click.option("--dry-run", is_flag=True, help="Show the plan only.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@friendly
def delete(ref, revision, dry_run, yes):
    """Free Hub-cache space: the plan first (revisions, bytes freed), then delete on confirmation."""
    from engine.hub.cache import human_size
    from engine.hub.delete import execute_delete, plan_delete
    plan = plan_delete(ref, revision)
    click.echo(f"{plan.repo_id}: delete {len(plan.revisions)} revision(s):")
    for r in plan.revisions:
        click.echo(f"  {r['commit']}" + (f" ({', '.join(r['refs'])})" if r["refs"] else "")
                   + f"  {human_size(r['size'])}")
    click.echo(f"frees {human_size(plan.freed_bytes)} ({plan.freed_bytes} bytes)")
    for rc in plan.recipes:
        click.echo(f"netdiff: warning: recipe {rc} uses this model; it will need a download again", err=True)
    if dry_run:
        click.echo("dry run: nothing deleted")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise InputError(None, "not a terminal to confirm on: pass --yes to delete (or --dry-run)")
        if not click.confirm("delete?", default=False):
            click.echo("nothing deleted")
            return
    freed = execute_delete(plan)
    click.echo(f"deleted; freed {human_size(freed)}")


@models.command("import")
@click.argument("run", type=click.Path())
@click.option("-o", "--out", default=None, type=click.Path(),
              help="Where to write the folder (default: models_dir/<name> from the settings).")
@click.option("--name", default=None, help="Name of the model (default: the run directory's name).")
@click.option("--report", default=None, type=click.Path(),
              help="netdiff evaluate report (directory or report.json) whose figures go on the model card.")
@click.option("--force", is_flag=True, help="Replace an existing folder.")
@friendly
def import_cmd(run, out, name, report, force):
    """Put a training run into a Hub-compatible folder: config.json, model.safetensors, README.md card."""
    from engine.hub.publish import build_layout, checkpoint_dir
    src = checkpoint_dir(run)
    nm = name or (Path(run).resolve().name if src.name == "model" else src.resolve().name)
    dest = Path(out) if out else _settings().expanded("models_dir") / nm
    d = build_layout(run, dest, report, name=nm, force=force)
    click.echo(f"{d}: config.json, model.safetensors, README.md")
    click.echo(f"use it as --model {d}; share it with `netdiff models push {d} ORG/NAME`")


@models.command()
@click.argument("run", type=click.Path())
@click.argument("repo")
@click.option("--report", default=None, type=click.Path(), help="Evaluation report for the model card.")
@click.option("--private", is_flag=True, help="Create the repository private.")
@click.option("-m", "--message", default=None, help="Commit message.")
@friendly
def push(run, repo, report, private, message):
    """Upload a run to a Hub repository (HF_ENDPOINT for a mirror); needs HF_TOKEN or `hf auth login`."""
    from engine.hub.publish import push as do_push
    repo_id, commit = do_push(run, repo, report, private, message)
    click.echo(f"pushed to {repo_id} at commit {commit}")
    click.echo(f"use it as --model hf://{repo_id}@{commit}")

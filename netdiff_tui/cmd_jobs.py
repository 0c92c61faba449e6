"""``netdiff jobs``: the jobs that long commands leave (``--detach`` or not), listed, followed, stopped.

A job is named by its directory name (or a unique prefix of it, or its path); the jobs directory
is $NETDIFF_JOBS_DIR or the console's ``jobs_dir`` setting.
"""

from __future__ import annotations

import json
import shutil
import time

import click

from engine.errors import InputError
from netdiff_tui.cli import Progress, friendly, main
from netdiff_tui.detach import jobs_dir

FINISHED = ("done", "failed", "cancelled")


@main.group()
def jobs():
    """List, follow, cancel and resume jobs (started with --detach, or in the foreground)."""


def _entries():
    from engine.artifacts import find_jobs
    base = jobs_dir()
    return [j for j in find_jobs([base]) if j.record is not None or j.problem] if base.is_dir() else []


def _resolve(ref: str):
    from engine.artifacts import read_job, resolve_job
    d = resolve_job(jobs_dir(), ref)
    return d, read_job(d)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _duration(rec) -> str:
    """How long it ran (or has been running)."""
    if not rec.start:
        return "-"
    s = max(0, int((rec.end or time.time()) - rec.start))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _view(d, rec) -> dict:
    """A job as ``list --json`` and ``show --json`` print it: the record plus what readers derive."""
    import dataclasses

    from engine.artifacts import effective_status, log_tail
    status, reason = effective_status(rec)
    out = dataclasses.asdict(rec)
    out.update(id=d.name, path=str(d), status=status, reason=reason)
    if status == "failed" and rec.detached:
        out["log_tail"] = log_tail(d, 10)
    return out


@jobs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per job).")
@click.option("--running", "only_running", is_flag=True, help="Only jobs still running.")
@friendly
def list_cmd(as_json, only_running):
    """Every job, newest first: id, kind, label, status, started, duration, pid."""
    rows = []
    for e in _entries():
        if e.record is None:
            rows.append({"id": e.path.parent.name, "path": str(e.path.parent), "status": "unreadable",
                         "reason": e.problem})
            continue
        rows.append(_view(e.path.parent, e.record) | {"duration": _duration(e.record)})
    if only_running:
        rows = [r for r in rows if r["status"] == "running"]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no jobs in {jobs_dir()}")
        return
    w = max(len(r["id"]) for r in rows)
    click.echo(f"{'id':<{w}}  {'kind':<9} {'label':<14} {'status':<10} {'started':<19}  {'time':>8}  where")
    for r in rows:
        if r["status"] == "unreadable":
            click.echo(f"{r['id']:<{w}}  {'?':<9} {'':<14} {'unreadable':<10} {r['reason']}")
            continue
        where = (r["device"] or "") + (" detached" if r["detached"] else "")
        click.echo(f"{r['id']:<{w}}  {r['kind']:<9} {r['label'][:14]:<14} {r['status']:<10} {_when(r['start']):<19}  "
                   f"{r['duration']:>8}  {where.strip()}")


@jobs.command("show")
@click.argument("job")
@click.option("--json", "as_json", is_flag=True)
@friendly
def show(job, as_json):
    """One job: its command, status, device, result, and the end of its log when it failed."""
    import shlex

    from engine.artifacts import log_tail
    d, rec = _resolve(job)
    v = _view(d, rec)
    if as_json:
        click.echo(json.dumps(v, indent=1))
        return
    rows = [("id", d.name), ("kind", rec.kind), ("label", rec.label or "-"), ("status", v["status"]),
            ("reason", v["reason"] or "-"), ("command", "netdiff " + shlex.join(rec.argv) if rec.argv else "-"),
            ("in", rec.cwd or "-"), ("output", rec.out or "-"), ("started", _when(rec.start)),
            ("ended", _when(rec.end)), ("process", f"pid {rec.pid} on {rec.host}"),
            ("device", rec.device or "-"), ("detached", "yes" if rec.detached else "no"),
            ("resumable", "yes" if rec.resumable else "no"), ("directory", str(d))]
    for k, val in sorted(rec.result.items()):
        if not isinstance(val, (dict, list)):
            rows.append((f"result.{k}", val))
    w = max(len(k) for k, _ in rows)
    for k, val in rows:
        click.echo(f"{k:<{w}}  {val}")
    tail = log_tail(d, 10) if v["status"] in ("failed", "cancelled") else []
    if tail:
        click.echo("last log lines:")
        for ln in tail:
            click.echo(f"  {ln}")


@jobs.command("logs")
@click.argument("job")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the job writes, until it ends.")
@click.option("-n", "--lines", type=int, default=None, help="Only the last N lines.")
@friendly
def logs(job, follow, lines):
    """The job's output (log.txt of a detached job)."""
    from engine.artifacts import job_alive, log_tail, read_job
    from engine.jobs import LOG_FILE
    d, rec = _resolve(job)
    p = d / LOG_FILE
    if not p.is_file():
        raise InputError(p, "no log: the job was not started with --detach (its events: netdiff jobs attach)")
    if lines is not None:
        for ln in log_tail(d, lines):
            click.echo(ln)
        if not follow:
            return
        pos = p.stat().st_size
    else:
        pos = 0
    while True:
        with open(p, "rb") as f:
            f.seek(pos)
            chunk = f.read()
            pos = f.tell()
        if chunk:
            click.echo(chunk.decode("utf-8", "replace"), nl=False)
        if not follow:
            return
        rec = read_job(d)
        if rec.status != "running" or job_alive(rec) is False:
            with open(p, "rb") as f:        # what it wrote after our last look
                f.seek(pos)
                rest = f.read()
            if rest:
                click.echo(rest.decode("utf-8", "replace"), nl=False)
            return
        time.sleep(0.5)


@jobs.command("attach")
@click.argument("job")
@friendly
def attach(job):
    """Follow a job's progress until it ends (Ctrl-C leaves it running). Exit 0 when it is done."""
    from engine.artifacts import effective_status, read_job
    from engine.progress import EventLog, Message
    d, rec = _resolve(job)
    click.echo(f"{d.name}: {rec.kind} {rec.label}".rstrip())
    log = EventLog(d / "events.jsonl")

    def ended() -> bool:
        r = read_job(d)
        return effective_status(r)[0] != "running"

    try:
        with Progress() as prog:
            for ev in log.follow(stop=ended, poll=0.25):
                if isinstance(ev, Message) and ev.level in ("warning", "error"):
                    prog.rp.console.print(f"{ev.level}: {ev.text}")
                else:
                    prog(ev)
            for ev in log.follow(stop_at_end=True):    # events written between the last look and the end
                pass
    except KeyboardInterrupt:
        click.echo(f"\nleft {d.name} running; attach again with: netdiff jobs attach {d.name}", err=True)
        raise SystemExit(130)
    rec = read_job(d)
    status, reason = effective_status(rec)
    click.echo(f"{d.name}: {status}" + (f": {reason}" if reason else ""))
    for k, v in sorted(rec.result.items()):
        if not isinstance(v, (dict, list)):
            click.echo(f"  {k}: {v}")
    if status != "done":
        raise SystemExit(1)


@jobs.command("cancel")
@click.argument("job")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the job has recorded its end.")
@friendly
def cancel(job, wait):
    """Stop a running job (SIGTERM): it keeps what it finished; `netdiff jobs resume` continues it."""
    from engine.artifacts import effective_status, read_job
    from engine.jobs import cancel_job
    d, _ = _resolve(job)
    cancel_job(d)
    click.echo(f"{d.name}: asked to stop")
    deadline = time.monotonic() + 120
    while wait and time.monotonic() < deadline:
        status, reason = effective_status(read_job(d))
        if status != "running":
            click.echo(f"{d.name}: {status}" + (f": {reason}" if reason else ""))
            return
        time.sleep(0.2)
    if wait:
        click.echo(f"{d.name}: still stopping after 120 s (it saves its state first)")


@jobs.command("resume")
@click.argument("job")
@friendly
def resume(job):
    """Continue a cancelled or failed job as a new detached job (same command, plus its resume option)."""
    import shlex

    from engine.jobs import resume_job
    d, _ = _resolve(job)
    new = resume_job(jobs_dir(), d)
    click.echo(f"{new.name}: started (netdiff {shlex.join(new.record.argv)}); "
               f"follow it with: netdiff jobs attach {new.name}")


@jobs.command("prune")
@click.option("--older-than", "older_than", type=float, default=0.0, show_default=True,
              help="Only jobs that ended more than this many days ago.")
@click.option("--status", "statuses", multiple=True, type=click.Choice(FINISHED),
              help="Only jobs with this status (repeatable; default: every finished job).")
@click.option("--dry-run", is_flag=True, help="Say what would go, remove nothing.")
@friendly
def prune(older_than, statuses, dry_run):
    """Remove the records of finished jobs (job.json, events, log). Their outputs are not touched;
    running jobs are never removed."""
    from engine.hub.cache import human_size
    cut = time.time() - older_than * 86400
    want = statuses or FINISHED
    gone, size = [], 0
    for e in _entries():
        if e.record is None or e.status not in want or (e.record.end or e.modified) > cut:
            continue
        d = e.path.parent
        gone.append(d)
        size += sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    verb = "would remove" if dry_run else "removed"
    if not dry_run:
        for d in gone:
            shutil.rmtree(d, ignore_errors=True)
    click.echo(f"{verb} {len(gone)} job record(s), {human_size(size)}")

"""Long commands as jobs: ``--detach`` runs the command as a detached process and returns.

:func:`detachable` replaces :func:`netdiff_tui.cli.friendly` on every long command. It gives the
command ``--detach`` and a hidden ``--job-dir`` and makes each run a job (engine.jobs):

- ``--detach``: the command line is rebuilt from the options the user gave (:func:`command_argv`),
  started with :func:`engine.jobs.start_detached`, and the job's name printed; nothing else runs here.
- ``--job-dir DIR`` (the detached child): the child takes the job over and records how it ended.
- neither: the run is still recorded as a job (not detached) so the console and
  ``netdiff jobs`` list and follow it.

Every progress event of the command reaches the job's ``events.jsonl`` through the CLI's progress
sink (:class:`netdiff_tui.cli.Progress` forwards to :data:`current`); a command's return value
(its summary dict) becomes the job's ``result``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import click
from click.core import ParameterSource

from engine.jobs import JOB_DIR_OPTION

current = None          # the job this process runs, while a detachable command runs (main thread)

NOT_IN_ARGV = ("detach", "job_dir")


def jobs_dir() -> Path:
    """Where jobs live: $NETDIFF_JOBS_DIR, else the console setting ``jobs_dir``."""
    env = os.environ.get("NETDIFF_JOBS_DIR")
    if env:
        return Path(env).expanduser()
    from netdiff_tui.settings import Settings, SettingsError, load_settings
    try:
        return load_settings().expanded("jobs_dir")
    except SettingsError:
        return Settings().expanded("jobs_dir")


def _opt(p: click.Option) -> str:
    longs = [o for o in p.opts if o.startswith("--")]
    return longs[0] if longs else p.opts[0]


def command_argv(ctx: click.Context, drop=NOT_IN_ARGV) -> list[str]:
    """The ``netdiff`` arguments that run this command again with the options the user gave.

    Only parameters given on the command line (or by environment) are kept: the rest take their
    defaults again. Values go as strings, which is how click read them.
    """
    names, c = [], ctx
    while c.parent is not None:         # the subcommand path; the root's name is however it was invoked
        names.append(c.info_name)
        c = c.parent
    argv = names[::-1]
    for p in ctx.command.params:
        if p.name in drop or ctx.get_parameter_source(p.name) not in (ParameterSource.COMMANDLINE,
                                                                      ParameterSource.ENVIRONMENT):
            continue
        v = ctx.params[p.name]
        if isinstance(p, click.Argument):
            argv += [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]
        elif p.is_flag and not p.count:
            if v:
                argv.append(_opt(p))
            elif p.secondary_opts:
                argv.append(p.secondary_opts[0])
        elif p.multiple:
            for x in v:
                argv += [_opt(p)] + ([str(y) for y in x] if isinstance(x, tuple) else [str(x)])
        elif isinstance(v, tuple):
            argv += [_opt(p)] + [str(y) for y in v]
        elif v is not None:
            argv += [_opt(p), str(v)]
    return argv


def _label(params: dict) -> str:
    for k in ("label", "preset", "recipe", "repo", "target"):
        v = params.get(k)
        if isinstance(v, str) and v:
            return Path(v).stem if k == "recipe" else v
    out = params.get("out")
    return Path(out).name if out else ""


def _device(kind: str) -> str:
    """Where a model job computes: named so the Jobs view says which GPU a job holds."""
    if kind not in ("generate", "train", "balance"):
        return ""
    import torch
    if torch.cuda.is_available():
        i = torch.cuda.current_device()
        seen = os.environ.get("CUDA_VISIBLE_DEVICES")
        return f"cuda:{i} ({torch.cuda.get_device_name(i)})" + (f", CUDA_VISIBLE_DEVICES={seen}" if seen else "")
    return "cpu"


def detachable(kind: str, resume_args: tuple[str, ...] | None = None):
    """Make a command a job that ``--detach`` can start in the background (see the module doc).

    ``resume_args``: what ``netdiff jobs resume`` adds to the command line to continue a stopped run
    (``()``: the same command continues by itself; None: it cannot be continued).
    Includes :func:`netdiff_tui.cli.friendly` (one-line errors, signals stop like Ctrl-C).
    """
    def deco(fn):
        from netdiff_tui.cli import friendly

        @functools.wraps(fn)
        def run(*a, detach: bool = False, job_dir: str | None = None, **kw):
            from engine.errors import InputError
            from engine.jobs import adopt_job, create_job, request_dict, running, start_detached
            global current
            ctx = click.get_current_context()
            request = request_dict({k: v for k, v in kw.items() if k != "quiet"})
            if detach and job_dir:
                raise InputError(None, f"--detach and {JOB_DIR_OPTION} do not go together")
            if detach and int(os.environ.get("WORLD_SIZE", "1")) > 1:
                # every rank would start its own background copy of the whole job
                raise InputError(None, "--detach does not go under accelerate launch; detach the launcher instead "
                                       "(setsid nohup accelerate launch ... > log 2>&1 &)")
            if detach:
                job = start_detached(jobs_dir(), kind, command_argv(ctx), request=request, out=kw.get("out"),
                                     label=_label(kw), resume_args=resume_args)
                click.echo(f"{job.name}: started ({kind}, pid {job.record.pid}); "
                           f"follow it with: netdiff jobs attach {job.name}")
                return {"job": job.name}
            if job_dir:
                job = adopt_job(job_dir)
                job.record.device = _device(kind)
                job.save()
            elif int(os.environ.get("RANK", "0")) == 0:
                try:
                    job = create_job(jobs_dir(), kind, request, kw.get("out"), _label(kw), argv=command_argv(ctx),
                                     resume_args=resume_args)
                except OSError:
                    job = None          # a record for followers: never fail the work for it
            else:
                job = None              # another rank of a multi-process run: rank 0 records the job
            current = job
            try:
                with running(job):
                    rv = fn(*a, **kw)
                    if job is not None and isinstance(rv, dict):
                        job.record.result = request_dict(rv)
                return rv
            finally:
                current = None

        run = friendly(run)
        run = click.option(JOB_DIR_OPTION, "job_dir", type=click.Path(), default=None, hidden=True)(run)
        return click.option("--detach", is_flag=True,
                            help="Run as a background job that outlives this shell (netdiff jobs).")(run)
    return deco

"""``netdiff train`` and ``netdiff generate``: the native diffusion model."""

from __future__ import annotations

import click

from engine.errors import InputError
from netdiff_tui.cli import Duration, Progress, main
from netdiff_tui.detach import detachable
from netdiff_tui.request_options import request_from_command_line, request_options


@main.command()
@click.option("--data", "data", required=True, type=click.Path(), help="Encoded dataset directory (netdiff encode).")
@click.option("--out", "out", required=True, type=click.Path(), help="Run directory (checkpoints, events, model/).")
@click.option("--config", "config", type=click.Path(), default=None, help="Training config JSON (TrainConfig fields).")
@click.option("--resume", is_flag=True, help="Continue from the run directory's last checkpoint.")
@click.option("--init-from", "init_from", default=None, metavar="REF",
              help="Fine-tune: start from this checkpoint (default, a run, a checkpoint directory, hf://org/name@commit) "
                   "with its classes plus the data's new ones (1000 steps unless --steps/--config say otherwise).")
@click.option("--steps", type=int, default=None, help="Total training steps (overrides the config).")
@click.option("--time-limit", "time_limit", type=Duration(), default=None, metavar="DURATION",
              help="Stop at the first step after this wall time (5400, 90m, 1h30m) and export the model as it "
                   "is; --resume continues. Export and calibration come after it: leave them time.")
@click.option("--model-type", type=click.Choice(["native", "sd"]), default="native", show_default=True,
              help="native: the packet diffusion model; sd: LoRA fine-tuning of a Stable Diffusion pipeline.")
@click.option("--base", default=None, help="(sd) Base pipeline: a diffusers directory or a Hub repository.")
@click.option("--rank", type=int, default=None, help="(sd) LoRA rank (default 128).")
@click.option("--batch-size", type=int, default=None, help="(sd) Images per step and process (default 1).")
@click.option("--rows", type=int, default=None, help="(sd) Packets per image (default 1024).")
@click.option("--mixed-precision", type=click.Choice(["no", "fp16", "bf16"]), default=None,
              help="(sd) Compute precision of the frozen model (GPU).")
@click.option("--gradient-checkpointing", is_flag=True, default=None, help="(sd) Trade compute for memory.")
@click.option("-q", "--quiet", is_flag=True)
@detachable("train", resume_args=("--resume",))
def train(**params):
    """Train the class-conditional packet diffusion model (works under accelerate launch),
    or with --model-type sd a LoRA adapter on a Stable Diffusion pipeline."""
    from engine.errors import Cancelled
    try:
        _train(**params)
    except Cancelled as e:
        raise Cancelled(f"{e}; checkpoint saved. Resume with: {_resume_command(click.get_current_context())}") from e


def _resume_command(ctx: click.Context) -> str:
    """The command that continues this run: the options given, plus --resume (the run keeps its config)."""
    import shlex
    from click.core import ParameterSource
    argv = ["netdiff", "train"]
    for p in ctx.command.params:
        if p.name in ("resume", "quiet") or ctx.get_parameter_source(p.name) != ParameterSource.COMMANDLINE:
            continue
        v = ctx.params[p.name]
        argv += [p.opts[-1] if p.opts[-1].startswith("--") else p.opts[0]] + ([] if v is True else [str(v)])
    return shlex.join(argv + ["--resume"])


def _train(data, out, config, resume, init_from, steps, time_limit, model_type, base, rank, batch_size, rows,
           mixed_precision, gradient_checkpointing, quiet):
    if steps is not None and steps < 1:
        raise InputError(None, "--steps must be >= 1")
    sd_opts = {"rank": rank, "batch_size": batch_size, "rows": rows, "mixed_precision": mixed_precision,
               "gradient_checkpointing": gradient_checkpointing}
    if model_type == "sd":
        if init_from is not None:
            raise InputError(None, "--init-from: only with the native model (--model-type native)")
        from engine.model.sd.train import SDTrainConfig, train_lora
        cfg = SDTrainConfig.load(config) if config else SDTrainConfig()
        with Progress(None if not quiet else False) as prog:
            s = train_lora(data, out, base, cfg, resume=resume, steps=steps, overrides=sd_opts, on_event=prog,
                           time_limit=time_limit)
        if not quiet and "adapter" in s:      # the main process writes the adapter and reports
            click.echo(f"{out}: {s['steps']} LoRA steps ({s['family']}) on {s['train_flows']} flows, "
                       f"{s['classes']} classes, {s['seconds']} s; adapter in {s['adapter']}{_limited(s)}")
        return
    given = [f"--{k.replace('_', '-')}" for k, v in {"base": base, **sd_opts}.items() if v is not None]
    if given:
        raise InputError(None, f"{', '.join(given)}: only with --model-type sd")
    from engine.model.train import TrainConfig, train as run_train
    if init_from is not None:
        from engine.model.finetune import finetune_config
        cfg = finetune_config(init_from, _config_fields(config) if config else None)
    else:
        cfg = TrainConfig.load(config) if config else TrainConfig()
    with Progress(None if not quiet else False) as prog:
        summary = run_train(data, out, cfg, resume=resume, steps=steps, on_event=prog, time_limit=time_limit)
    if not quiet and "model" in summary:
        click.echo(f"{out}: {summary['steps']} steps on {summary['train_flows']} flows, "
                   f"{summary['classes']} classes, {summary['seconds']} s; model in {summary['model']}"
                   f"{_limited(summary)}")


def _limited(summary: dict) -> str:
    """What a run stopped by --time-limit tells its user, and how to go on."""
    if not summary.get("time_limited"):
        return ""
    ctx = click.get_current_context()
    return (f"\n(time limit: stopped at step {summary['steps']} of {summary['steps_planned']}; "
            f"continue with: {_resume_command(ctx)})")


def _config_fields(path) -> dict:
    """A --config file's fields as given (a fine-tuning run lays them over the checkpoint's)."""
    import json
    from pathlib import Path
    from engine.model.train import TrainConfig
    TrainConfig.load(path)      # the same checks (readable, known keys) as a plain run
    return json.loads(Path(path).read_text())


def run_generate(req, out, force: bool = False, quiet: bool = False, resume: bool = False,
                 processes: int | None = None) -> dict:
    """The body of ``netdiff generate``: run a request with a progress bar, print a summary.

    Reused by commands that build the request another way (presets, recipes).
    """
    from engine.datasets.generate import generate
    from engine.progress import Message, TaskStarted
    state = {}

    def echo_messages(ev):
        if isinstance(ev, Message) and ev.level in ("warning", "error"):
            if not state.get("bar"):
                # before the bar (e.g. what became of an interrupted run's flows): say it now
                click.echo(f"netdiff: {ev.level}: {ev.text}", err=True)
            else:
                state.setdefault("msgs", []).append(ev.text)

    with Progress(None if not quiet else False) as prog:
        def on_event(ev):
            prog(ev)
            state["bar"] = state.get("bar") or isinstance(ev, TaskStarted)
            echo_messages(ev)
        summary = generate(req, out, on_event=on_event, force=force, resume=resume, processes=processes or None)
    if "rank" in summary:      # a non-zero rank of a multi-process run: rank 0 reports
        return summary
    for m in state.get("msgs", []):
        click.echo(f"netdiff: warning: {m}", err=True)
    if not quiet:
        s = summary["sampling"]
        extra = f", {s['gave_up']} kept after {8} draws" if s.get("gave_up") else ""
        clean = summary.get("compliance_clean")
        how = [f"{summary['processes']} sampling processes"] if (summary.get("processes") or 1) > 1 else []
        how += ["bf16"] if summary.get("precision") == "bf16" else []
        click.echo(f"{out}: {summary['flows']} {req.label} flows, {summary['packets']} packets, "
                   f"model {summary['model_hash']}, seed {req.seed}, {summary['seconds']} s"
                   f"{' (' + ', '.join(how) + ')' if how else ''}"
                   f"{extra}; compliance: {'clean' if clean else ('see compliance.json' if clean is not None else 'not repaired')}")
    return summary


@main.command()
@click.option("--preset", default=None, help="Start from a shipped preset (`netdiff recipes list`); options override it.")
@click.option("--recipe", default=None, help="Start from a recipe (name or .toml file); options override it.")
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="Output directory.")
@request_options()
@click.option("--force", is_flag=True, help="Replace a non-empty output directory (and discard an interrupted run's flows).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run of the same command from the flows it kept.")
@click.option("--processes", type=click.IntRange(0, 1024), default=0, show_default=True,
              help="Sampling processes on a CPU: 0 = one per core when the count is worth it (48 flows each), "
                   "1 = this process only. The flows are the same either way.")
@click.option("-q", "--quiet", is_flag=True)
@detachable("generate", resume_args=("--resume",))
def generate(preset, recipe, out, force, resume, processes, quiet, **_request_fields):
    """Sample labeled flows from the diffusion model, repair them, write one pcap per flow.

    The request options (--label ... --allow-fragments) are the recipe keys (docs/recipes.md); given
    with --preset/--recipe they override the recipe's values.
    """
    req = request_from_command_line(click.get_current_context(), preset, recipe)
    return run_generate(req, out, force=force, quiet=quiet, resume=resume, processes=processes)

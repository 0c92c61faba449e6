"""``netdiff train`` and ``netdiff generate``: the native diffusion model."""

from __future__ import annotations

import json

import click

from engine.errors import InputError
from netdiff_tui.cli import Progress, friendly, main


@main.command()
@click.option("--data", "data", required=True, type=click.Path(), help="Encoded dataset directory (netdiff encode).")
@click.option("--out", "out", required=True, type=click.Path(), help="Run directory (checkpoints, events, model/).")
@click.option("--config", "config", type=click.Path(), default=None, help="Training config JSON (TrainConfig fields).")
@click.option("--resume", is_flag=True, help="Continue from the run directory's last checkpoint.")
@click.option("--steps", type=int, default=None, help="Total training steps (overrides the config).")
@click.option("-q", "--quiet", is_flag=True)
@friendly
def train(data, out, config, resume, steps, quiet):
    """Train the class-conditional packet diffusion model (works under accelerate launch)."""
    from engine.model.train import TrainConfig, train as run_train
    cfg = TrainConfig.load(config) if config else TrainConfig()
    if steps is not None and steps < 1:
        raise InputError(None, "--steps must be >= 1")
    with Progress(None if not quiet else False) as prog:
        summary = run_train(data, out, cfg, resume=resume, steps=steps, on_event=prog)
    if not quiet and "model" in summary:
        click.echo(f"{out}: {summary['steps']} steps on {summary['train_flows']} flows, "
                   f"{summary['classes']} classes, {summary['seconds']} s; model in {summary['model']}")


def _job_log(req, out):
    """An events.jsonl for this generation in the console's jobs directory, so that
    ``netdiff tui`` (in another shell, after an SSH reconnect) can follow it."""
    import os
    import time
    from pathlib import Path

    from engine.progress import EventLog
    from netdiff_tui.settings import load_settings
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    try:
        jobs = Path(load_settings().jobs_dir).expanduser()
        d = jobs / f"generate-{req.label}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "job.json").write_text(json.dumps({"kind": "generate", "label": req.label, "count": req.count,
                                                "seed": req.seed, "out": str(Path(out).resolve())}) + "\n")
        return EventLog(d / "events.jsonl")
    except OSError:
        return None      # following is a convenience: never fail a generation for it


def run_generate(req, out, force: bool = False, quiet: bool = False) -> dict:
    """The body of ``netdiff generate``: run a request with a progress bar, print a summary.

    Reused by commands that build the request another way (presets, recipes).
    """
    from engine.datasets.generate import generate
    from engine.progress import Message
    state = {}

    def echo_messages(ev):
        if isinstance(ev, Message) and ev.level in ("warning", "error"):
            state.setdefault("msgs", []).append(ev.text)

    job_log = _job_log(req, out)
    with Progress(None if not quiet else False) as prog:
        def on_event(ev):
            prog(ev)
            echo_messages(ev)
            if job_log is not None:
                job_log(ev)
        summary = generate(req, out, on_event=on_event, force=force)
    if "rank" in summary:      # a non-zero rank of a multi-process run: rank 0 reports
        return summary
    for m in state.get("msgs", []):
        click.echo(f"netdiff: warning: {m}", err=True)
    if not quiet:
        s = summary["sampling"]
        extra = f", {s['gave_up']} kept after {8} draws" if s.get("gave_up") else ""
        clean = summary.get("compliance_clean")
        click.echo(f"{out}: {summary['flows']} {req.label} flows, {summary['packets']} packets, "
                   f"model {summary['model_hash']}, seed {req.seed}, {summary['seconds']} s"
                   f"{extra}; compliance: {'clean' if clean else ('see compliance.json' if clean is not None else 'not repaired')}")
    return summary


@main.command()
@click.option("--label", default=None, help="Class to generate (one of the model's classes); or --preset/--recipe.")
@click.option("--preset", default=None, help="Start from a shipped preset (`netdiff recipes list`); options override it.")
@click.option("--recipe", default=None, help="Start from a recipe (name or .toml file); options override it.")
@click.option("-n", "--count", type=int, default=10, show_default=True, help="Number of flows.")
@click.option("-o", "--out", "out", required=True, type=click.Path(), help="Output directory.")
@click.option("--model", default=None, help="Checkpoint directory (default: the shipped model).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=int, default=None, help="Sampling steps (default: the model's, 20).")
@click.option("--guidance", type=float, default=None, help="Classifier-free guidance scale (1 = off).")
@click.option("--packets-min", type=int, default=2, show_default=True)
@click.option("--packets-max", type=int, default=128, show_default=True)
@click.option("--transport", type=click.Choice(["any", "tcp", "udp", "icmp"]), default="any", show_default=True)
@click.option("--like", default=None, type=click.Path(exists=True),
              help="Start each flow from a real flow of the class: a capture, a directory of the class's "
                   "captures, a labeled capture directory or a netdiff encode dataset.")
@click.option("--like-split", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Split file whose test flows are never used as guides (with --like).")
@click.option("--strength", type=float, default=None,
              help="With --like: how far each real flow is noised, in (0, 1] (default 0.5; 1 keeps only its shape).")
@click.option("--like-values", type=float, default=None,
              help="With --like: weight of the real flow's own field values against the class's (default 1; 0 = "
                   "the class's only).")
@click.option("--raw-fields", is_flag=True,
              help="Keep the model's raw header bits (no decoding onto the class's field values).")
@click.option("--force", is_flag=True, help="Replace a non-empty output directory.")
@click.option("-q", "--quiet", is_flag=True)
@friendly
def generate(label, preset, recipe, count, out, model, seed, steps, guidance, packets_min, packets_max, transport,
             like, like_split, strength, like_values, raw_fields, force, quiet):
    """Sample labeled flows from the diffusion model, repair them, write one pcap per flow."""
    from engine.datasets.request import GenerationRequest
    from netdiff_tui.cmd_recipes import cli_overrides, recipe_request
    if steps is not None and steps < 1:
        raise InputError(None, "--steps must be >= 1")
    given = cli_overrides(click.get_current_context(), {p: p for p in (
        "count", "model", "seed", "steps", "guidance", "packets_min", "packets_max", "transport",
        "like", "like_split", "strength", "like_values")})
    req = recipe_request(preset, recipe, label, given)
    if req is None:
        if not label:
            raise InputError(None, "give --label (or --preset / --recipe)")
        req = GenerationRequest(label=label, count=count, model=model, seed=seed, steps=steps, guidance=guidance,
                                packets_min=packets_min, packets_max=packets_max, transport=transport,
                                like=like, like_split=like_split,
                                **{k: v for k, v in (("strength", strength), ("like_values", like_values))
                                   if v is not None})
    if req.like_split and not req.like:
        raise InputError(None, "--like-split needs --like")
    if raw_fields:
        from dataclasses import replace
        req = replace(req, field_vocab=False)
    run_generate(req, out, force=force, quiet=quiet)

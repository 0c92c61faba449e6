"""``netdiff tui``: the Textual console (also what ``netdiff`` alone runs; see :mod:`.console`)."""

from __future__ import annotations

import click

from .cli import main
from .console import TABS, launch


@main.command()
@click.option("--tab", type=click.Choice(TABS), default="models", show_default=True, help="Tab to open first.")
@click.option("--follow", "follow", type=click.Path(), default=None,
              help="Follow this job (a run/job directory or its events.jsonl), e.g. after an SSH reconnect.")
@click.option("--report", "report", type=click.Path(), default=None,
              help="Open this compliance.json / report.json (or a directory holding one).")
@click.option("--settings", "settings_file", type=click.Path(), default=None,
              help="Settings TOML (default: the user config dir's settings.toml).")
def tui(tab, follow, report, settings_file):
    """The interactive console: models, recipes, jobs, reports, generate."""
    launch(tab, follow, report, settings_file)

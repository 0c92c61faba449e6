"""``netdiff tui``: the Textual console (also what ``netdiff`` alone runs).

Textual is imported only when the console starts, so other commands do not pay for it.
"""

from __future__ import annotations

import click

from .cli import main

TABS = ("models", "recipes", "jobs", "reports", "generate")


def launch(tab: str = "models", follow: str | None = None, report: str | None = None,
           settings_file: str | None = None) -> None:
    from .app import NetdiffApp
    from .settings import SettingsError, load_settings
    settings = None
    if settings_file is not None:
        try:
            settings = load_settings(settings_file)
        except SettingsError as e:
            click.echo(f"netdiff: error: {e}", err=True)
            raise SystemExit(2) from None
    NetdiffApp(settings=settings, initial_tab=tab, follow_path=follow, report_path=report).run()


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

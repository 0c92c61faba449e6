"""Start the Textual console. Kept apart from the command modules so that ``netdiff`` alone
(cli.main) and ``netdiff tui`` (cmd_tui) both reach it without importing each other; Textual is
imported only when the console starts, so other commands do not pay for it."""

from __future__ import annotations

import click

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

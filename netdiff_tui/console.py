"""Start the Textual console. Kept apart from the command modules so that ``netdiff`` alone
(cli.main) and ``netdiff tui`` (cmd_tui) both reach it without importing each other; Textual is
imported only when the console starts, so other commands do not pay for it."""

from __future__ import annotations

import os
import sys

import click

TABS = ("models", "recipes", "jobs", "reports", "export", "generate")


def has_terminal() -> bool:
    """Whether the console can draw: stdin and stdout are a terminal, or a Textual driver that needs
    none was chosen (``netdiff serve`` runs the app with TEXTUAL_DRIVER set to textual's web driver)."""
    if os.environ.get("TEXTUAL_DRIVER"):
        return True
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):       # closed or replaced streams
        return False


def launch(tab: str = "models", follow: str | None = None, report: str | None = None,
           settings_file: str | None = None) -> None:
    if not has_terminal():
        click.echo("netdiff: error: the console needs a terminal (stdin and stdout are not one); "
                   "run it in a terminal, or use `netdiff serve` for a browser", err=True)
        raise SystemExit(2)
    from .app import NetdiffApp
    from .settings import SettingsError, load_settings
    settings = None
    if settings_file is not None:
        try:
            settings = load_settings(settings_file)
        except SettingsError as e:
            click.echo(f"netdiff: error: {e}", err=True)
            raise SystemExit(2) from None
        if os.environ.get("NETDIFF_JOBS_DIR"):         # as the command line reads it
            from dataclasses import replace
            settings = replace(settings, jobs_dir=os.environ["NETDIFF_JOBS_DIR"])
    NetdiffApp(settings=settings, initial_tab=tab, follow_path=follow, report_path=report).run()

"""``netdiff selftest``: check this installation (Python install or frozen bundle), offline.

The engine's checks are :mod:`engine.selftest`; the console's check is here because only
``netdiff_tui`` may import Textual. It starts the console headless and opens every tab the
app composes (found at run time, so a new tab is checked without editing this file).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

from netdiff_tui.cli import friendly, main

CONSOLE_DEADLINE_S = 60.0


def check_console(d: Path) -> str:
    """Start the console headless, open every tab, and see no error notification."""
    import asyncio

    from engine.selftest import CheckFailed
    return asyncio.run(_console(d, CheckFailed))


async def _console(d: Path, CheckFailed) -> str:
    from textual.widgets import TabbedContent, TabPane

    from netdiff_tui.app import NetdiffApp
    from netdiff_tui.settings import Settings

    errors: list[str] = []

    class Probe(NetdiffApp):
        def notify(self, message, *a, severity="information", **kw):
            if severity == "error":
                errors.append(str(message))
            return super().notify(message, *a, severity=severity, **kw)

    # every directory the console reads or writes is the check's own (no user state seen or changed)
    settings = Settings(models_dir=str(d / "models"), runs_dirs=(str(d / "runs"),), jobs_dir=str(d / "jobs"),
                        output_dir=str(d / "out"), poll_interval=0.05)
    app = Probe(settings=settings)
    app.animation_level = "none"
    deadline = time.monotonic() + CONSOLE_DEADLINE_S

    async def until(cond, what: str) -> None:
        while not cond():
            if time.monotonic() > deadline:
                raise CheckFailed(f"console: {what} not reached in {CONSOLE_DEADLINE_S:.0f} s")
            await pilot.pause(0.02)

    t0 = time.perf_counter()
    async with app.run_test(headless=True, size=(120, 36)) as pilot:
        tabs = app.query_one(TabbedContent)
        await until(lambda: tabs.active, "the first tab")
        first = time.perf_counter() - t0
        ids = [p.id for p in app.query(TabPane)]
        if not ids:
            raise CheckFailed("console: no tabs")
        for tab in ids:
            pane = app.query_one(f"TabPane#{tab}", TabPane)

            def shown() -> bool:
                return tabs.active == tab and pane.display and pane.region.area > 0
            while True:
                tabs.active = tab
                await until(shown, f"tab {tab!r}")
                # TabbedContent follows focus: the focus the previous tab's activation gave its list can
                # land after this switch (a loaded machine) and take the view back; settle, then look again
                await pilot.pause(0.1)
                if shown():
                    break
                if time.monotonic() > deadline:
                    raise CheckFailed(f"console: tab {tab!r} does not stay open")
        await until(lambda: not any(w.is_running for w in app.workers), "the end of the console's scans")
        await pilot.pause()
    if errors:
        raise CheckFailed(f"console: {errors[0]}")
    return f"first screen in {first:.2f} s; opened {len(ids)} tabs: {', '.join(ids)}"


def all_checks(workdir: Path):
    """The checks in order, with the detached job started first (collected last)."""
    from engine.selftest import ENGINE_CHECKS, DetachedJob
    (workdir / "detached").mkdir(parents=True, exist_ok=True)
    job = DetachedJob(workdir / "detached")
    return [*ENGINE_CHECKS, ("console", check_console), ("detached job", job.check)]


CHECK_NAMES = ("codec", "generate", "repair+check", "recipes", "sd pipeline", "console", "detached job")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
@click.option("--check", "only", multiple=True, type=click.Choice(CHECK_NAMES),
              help="Run only this check (repeatable).")
@click.option("--keep", is_flag=True, help="Keep the working directory (printed) for a look at what failed.")
@friendly
def selftest(as_json, only, keep):
    """Check this installation works: codec, generation, repair, recipes, SD, console, detached jobs.

    Offline and without a terminal; one line per check; exit 0 only when none fails (a check
    that does not apply here, such as SD without its libraries, says "skip").
    """
    # offline by construction: nothing here may reach the Hugging Face Hub, even with a token set
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # read at import by transformers: its import-time advice (torchvision) is not a check's result
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from engine.selftest import run_checks
    t0 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="netdiff-selftest-"))
    try:
        if only:
            from engine.selftest import ENGINE_CHECKS, DetachedJob
            want = set(only)
            job = DetachedJob(workdir / "detached-job") if "detached job" in want else None
            table = dict(ENGINE_CHECKS, console=check_console)
            if job is not None:
                table["detached job"] = job.check
            checks = [(n, table[n]) for n in CHECK_NAMES if n in want]
        else:
            checks = all_checks(workdir)
        echo = None if as_json else (lambda r: click.echo(r.line()))
        results = run_checks(checks, workdir, echo)
    finally:
        if keep:
            click.echo(f"selftest: working directory kept: {workdir}", err=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - t0
    failed = [r for r in results if r.status == "fail"]
    ok = not failed
    if as_json:
        click.echo(json.dumps({"ok": ok, "seconds": round(total, 3), "python": sys.version.split()[0],
                               "frozen": bool(getattr(sys, "frozen", False)),
                               "checks": [r.to_dict() for r in results]}, indent=1))
    else:
        n = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
        click.echo(f"selftest: {n['pass']} passed, {n['fail']} failed, {n['skip']} skipped in {total:.1f} s")
    sys.exit(0 if ok else 1)

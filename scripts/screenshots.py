"""SVG screenshots of every console screen for docs/screens/ and the README.

Usage: python scripts/screenshots.py [OUT_DIR] [--size 100x30]

Makes real data first, in a temporary directory, with the commands a user runs (the shipped model,
8 zoom flows, an export with a split: a few seconds on a CPU), then opens the console headless
(App.run_test) on each screen and writes OUT_DIR/<screen>.svg (default docs/screens). The Hub
cache, settings and jobs are the temporary directory's, so nothing of this machine shows except
the system line, which is fixed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def netdiff(*argv: str, env: dict) -> None:
    subprocess.run([sys.executable, "-m", "netdiff_tui", *argv], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


async def wait(pilot, cond, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: {what} not shown in {timeout:.0f} s")
        await pilot.pause(0.05)


async def shoot(work: Path, out_dir: Path, size: tuple[int, int]) -> list[Path]:
    from netdiff_tui.app import NetdiffApp
    from netdiff_tui.screens.dialogs import HelpScreen
    from netdiff_tui.screens.flowviewer import FlowViewerScreen
    from netdiff_tui.settings import Settings
    settings = Settings(models_dir=str(work / "models"), runs_dirs=(str(work / "runs"),),
                        jobs_dir=str(work / "jobs"), output_dir="out", poll_interval=0.05,
                        refresh_interval=0.2)
    gen, exp = work / "out" / "zoom", work / "out" / "zoom_export"
    written = []

    async def screen(name: str, steps, **kw) -> None:
        # the system line is this machine's, as read (no made-up GPU in the pictures)
        app = NetdiffApp(settings=settings, **kw)
        app.animation_level = "none"
        async with app.run_test(size=size) as pilot:
            await steps(app, pilot)
            for w in app.query("Input, TextArea"):
                w.cursor_blink = False
            await pilot.pause(0.3)
            path = out_dir / f"{name}.svg"
            tmp = path.with_suffix(".svg.tmp")
            tmp.write_text(app.export_screenshot(title=f"NetDiffusion Studio: {name}"), encoding="utf-8")
            os.replace(tmp, path)
            written.append(path)

    async def models(app, pilot):
        await wait(pilot, lambda: app.models, "the models")

    async def recipes(app, pilot):
        await pilot.press("2")
        await wait(pilot, lambda: app.query_one("#recipes-table").row_count > 0, "the recipes")

    async def jobs(app, pilot):
        view = app.query_one("#job-view")
        await wait(pilot, lambda: view.state is not None and view.state.result, "the job's result")
        app.query_one("#jobs-table").focus()

    async def reports(app, pilot):
        await wait(pilot, lambda: app.query_one("#reports-table").row_count > 0, "the report")
        app.query_one("#reports-table").focus()

    async def export(app, pilot):
        pane = app.query_one("#export-pane")
        await wait(pilot, lambda: pane.datasets, "the datasets")
        app.export_from([gen])
        pane.started(next((work / "jobs").glob("export-*")))
        app.scan_jobs()
        await wait(pilot, lambda: str(pane.query_one("#export-card").render()).strip(), "the data card")

    async def generate(app, pilot):
        await pilot.press("6")
        app.query_one("#gen-label").value = "zoom"

    async def flows(app, pilot):
        app.open_flows(gen)
        await wait(pilot, lambda: isinstance(app.screen, FlowViewerScreen) and app.screen.current, "a flow")

    async def help_(app, pilot):
        await pilot.press("question_mark")
        await wait(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")

    gen_job = next((work / "jobs").glob("generate-*"))
    await screen("models", models)
    await screen("recipes", recipes)
    await screen("jobs", jobs, follow_path=str(gen_job))
    await screen("reports", reports, report_path=str(gen / "compliance.json"))
    await screen("export", export, initial_tab="export")
    await screen("generate", generate, initial_tab="generate")
    await screen("flows", flows, initial_tab="jobs")
    await screen("help", help_, initial_tab="jobs")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=str(ROOT / "docs" / "screens"))
    ap.add_argument("--size", default="100x30", help="terminal columns x rows")
    a = ap.parse_args(argv)
    cols, rows = (int(x) for x in a.size.lower().split("x"))
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="netdiff-shots-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, NETDIFF_JOBS_DIR=str(work / "jobs"), HF_HOME=str(work / "hf"),
                   XDG_CONFIG_HOME=str(work / "config"), XDG_DATA_HOME=str(work / "data"), TZ="UTC")
        os.environ.update({k: env[k] for k in ("HF_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "TZ")})
        time.tzset()
        netdiff("generate", "--preset", "zoom", "-n", "8", "-o", str(work / "out" / "zoom"), env=env)
        netdiff("export", str(work / "out" / "zoom"), "-o", str(work / "out" / "zoom_export"), "--split", "0.25",
                env=env)
        sys.path.insert(0, str(ROOT))
        os.chdir(work)          # the console shows paths relative to here (out/...), not the temp dir
        for p in asyncio.run(shoot(work, out_dir, (cols, rows))):
            print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

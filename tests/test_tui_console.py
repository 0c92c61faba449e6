"""The operator console end to end (issue #15): a generation started from the Generate form runs as a
detached job, a new console re-attaches to it and sees its result, opens its compliance report and
flow viewer, and exports it; the Export tab shows the data card and the files are on disk.

Real processes run here (``netdiff generate`` and ``netdiff export`` as detached jobs, the shipped
model, 4 flows): waits are on app state with wall-clock deadlines, never fixed sleeps.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("textual")

from conftest import ROOT  # noqa: E402
from test_tui import make_app, notifications, settings, sync, wait_for  # noqa: E402,F401

SMALL = (80, 24)
JOB_DEADLINE = 120.0        # a detached generate: a fresh Python, torch, the model, 4 flows (2 loaded cores)


def console_settings(settings):
    return replace(settings, default_count=4, refresh_interval=0.2)


@sync
async def test_generate_job_reattach_report_flows_export(settings, tmp_path):
    from netdiff_tui.screens.flowviewer import FlowViewerScreen
    from netdiff_tui.widgets.bitimage import BitImage
    s = console_settings(settings)
    out = tmp_path / "out" / "zoom"

    # 1. the Generate form, by keys: preset zoom (the last preset), 4 flows (the setting), ctrl+g
    app = make_app(s, initial_tab="generate")
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("6")          # the Generate tab (again): its first control takes the focus
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "gen-preset")
        await pilot.press("enter", "end", "enter")
        await wait_for(pilot, lambda: app.query_one("#gen-preset").value == "zoom")
        await pilot.press("ctrl+g")
        pane = app.query_one("#jobs-pane")
        await wait_for(pilot, lambda: pane.following is not None and app.query_one("#tabs").active == "jobs")
        job = pane.following.parent
        assert (job / "job.json").is_file() and (job / "log.txt").exists()
    # the console is gone; the job is its own process
    from engine.artifacts import read_job
    rec = read_job(job)
    assert rec.detached and rec.argv[:3] == ["generate", "--preset", "zoom"] and rec.out == str(out)
    assert rec.pid and rec.pid != __import__("os").getpid()

    # 2. a new console: it follows the job (running or already done) and shows its result
    app = make_app(s, initial_tab="jobs")
    async with app.run_test(size=SMALL) as pilot:
        pane = app.query_one("#jobs-pane")
        view = app.query_one("#job-view")
        await wait_for(pilot, lambda: pane.job_dir == job)
        await wait_for(pilot, lambda: view.state is not None and view.state.status in ("done", "failed"),
                       timeout=JOB_DEADLINE)
        assert view.state.status == "done", view.state.tail
        result = str(view.query_one("#job-result").render())
        assert "4 flows" in result and "compliance: clean" in result
        assert (out / "manifest.csv").is_file()

        # 3. its compliance report
        app.query_one("#jobs-table").focus()
        await pilot.press("o")
        table = app.query_one("#reports-table")
        await wait_for(pilot, lambda: app.query_one("#tabs").active == "reports" and table.row_count > 0)
        assert "Compliance repair" in str(app.query_one("#reports-summary").render())
        assert "ipv4_checksum" in [str(table.get_row_at(i)[0]) for i in range(table.row_count)]

        # 4. its flow viewer: 4 flows, the first decoded, then the next
        await pilot.press("3")
        await wait_for(pilot, lambda: app.query_one("#tabs").active == "jobs")
        app.query_one("#jobs-table").focus()
        await pilot.press("v")
        await wait_for(pilot, lambda: isinstance(app.screen, FlowViewerScreen))
        fv = app.screen
        await wait_for(pilot, lambda: len(fv.files) == 4 and fv.current is not None)
        first = fv.current.path
        assert fv.query_one(BitImage).matrix.shape[1] > 1000
        assert fv.query_one("#flows-packets").row_count == len(fv.current.packets) > 0
        await pilot.press("n")
        await wait_for(pilot, lambda: fv.current is not None and fv.current.path != first)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, FlowViewerScreen))

        # 5. export it: e chooses the dataset on the Export tab; a split, then ctrl+g
        app.query_one("#jobs-table").focus()
        await pilot.press("e")
        exp = app.query_one("#export-pane")
        await wait_for(pilot, lambda: app.query_one("#tabs").active == "export" and out in exp.chosen)
        app.query_one("#export-split").focus()
        await pilot.press(*"0.5")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: exp.job is not None)
        await wait_for(pilot, lambda: "netdiff export" in str(exp.query_one("#export-card").render())
                       or "failed" in str(exp.query_one("#export-status").render()), timeout=JOB_DEADLINE)
        assert "done" in str(exp.query_one("#export-status").render())
        assert not [n for n in notifications(app) if "error" in n.lower()]
    dest = tmp_path / "out" / "export"
    pcaps = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.pcap"))
    assert len(pcaps) == 4 and {p.split("/")[0] for p in pcaps} == {"train", "test"}
    assert all(p.split("/")[1] == "zoom" for p in pcaps)
    assert (dest / "manifest.json").is_file() and (dest / "README.md").is_file()


def test_tui_without_a_terminal_exits_2(tmp_path):
    """No terminal (stdin from /dev/null, stdout to a file): one line on stderr, exit 2, no hang."""
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    env = {k: v for k, v in __import__("os").environ.items() if k != "TEXTUAL_DRIVER"}
    with open(out, "wb") as o, open(err, "wb") as e, open("/dev/null", "rb") as i:
        rc = subprocess.run([sys.executable, "-m", "netdiff_tui", "tui"], stdin=i, stdout=o, stderr=e,
                            cwd=ROOT, env=env, timeout=60).returncode
    assert rc == 2
    lines = err.read_text().splitlines()
    assert len(lines) == 1 and "needs a terminal" in lines[0], lines
    assert out.read_text() == ""

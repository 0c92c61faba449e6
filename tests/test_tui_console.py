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

from conftest import ROOT, settle_tables  # noqa: E402
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

    # 1. the Generate form, by keys: preset zoom, 4 flows (the setting), ctrl+g
    app = make_app(s, initial_tab="generate")
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("6")          # the Generate tab (again): its first control takes the focus
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "gen-preset")
        await pilot.press("enter", *"zoom", "enter")      # open the list, type to search, choose
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
        await pilot.press("4")              # a tab key closes the viewer, then shows the tab
        await wait_for(pilot, lambda: not isinstance(app.screen, FlowViewerScreen)
                       and app.query_one("#tabs").active == "reports")
        await pilot.press("3")

        # 5. export it: e chooses the dataset on the Export tab; a split, a class and its count, then ctrl+g
        app.query_one("#jobs-table").focus()
        await pilot.press("e")
        exp = app.query_one("#export-pane")
        await wait_for(pilot, lambda: app.query_one("#tabs").active == "export" and out in exp.chosen)
        app.query_one("#export-split").focus()
        await pilot.press(*"0.5")
        app.query_one("#export-classes").focus()
        await pilot.press(*"zoom")
        app.query_one("#export-max").focus()
        await pilot.press("3")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: exp.job is not None)
        await wait_for(pilot, lambda: "netdiff export" in str(exp.query_one("#export-card").render())
                       or "failed" in str(exp.query_one("#export-status").render()), timeout=JOB_DEADLINE)
        assert "done" in str(exp.query_one("#export-status").render())
        assert not [n for n in notifications(app) if "error" in n.lower()]
    dest = tmp_path / "out" / "export"
    pcaps = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.pcap"))
    assert len(pcaps) == 3 and {p.split("/")[0] for p in pcaps} == {"train", "test"}   # --max-per-class 3
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


# -- snapshots of every screen (80x24 and 120x40), from fixed files -------------------------------

SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
START = 1_764_806_400.0         # 2025-12-04 00:00 UTC: job records' start (shown as a date)

CARD = """# zoom_export

A labeled dataset exported by `netdiff export`: 4 flows in 1 class.

| class | train | test | packets |
|---|---|---|---|
| zoom | 2 | 2 | 204 |
"""


@pytest.fixture
def fixed(tmp_path, monkeypatch, settings):
    """Fixed datasets, jobs and reports under tmp_path, the clock zone fixed, paths shown relative."""
    import json
    import shutil
    import time as _time

    from engine.progress import EventLog, Message, TaskFinished, TaskProgress, TaskStarted
    from test_tui import FROZEN_REPAIR
    monkeypatch.setenv("TZ", "UTC")
    _time.tzset()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    gen = out / "zoom"
    (gen / "zoom").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "eth.pcap", gen / "zoom" / "zoom-00000.pcap")
    (gen / "manifest.csv").write_text("file,label\nzoom/zoom-00000.pcap,zoom\n")
    (gen / "generate.json").write_text(json.dumps({"request": {"label": "zoom", "count": 4},
                                                   "summary": {"flows": 4, "packets": 204}}))
    (gen / "compliance.json").write_text(json.dumps(FROZEN_REPAIR))
    exp = out / "zoom_export"
    exp.mkdir()
    (exp / "README.md").write_text(CARD)
    jobs = tmp_path / "jobs"

    def job(name, kind, status, out_dir, result, events, log, argv):
        d = jobs / name
        d.mkdir(parents=True)
        rec = {"kind": kind, "status": status, "out": str(out_dir), "label": out_dir.name, "start": START,
               "end": START + 9, "device": "cpu" if kind == "generate" else "", "result": result,
               "detached": True, "argv": argv, "resumable": True, "resume_args": ["--resume"], "version": 1}
        (d / "job.json").write_text(json.dumps(rec))
        el = EventLog(d / "events.jsonl")
        for ev in events:
            el(ev)
        (d / "log.txt").write_text("\n".join(log) + "\n")
        return d

    t = START
    gen_job = job("generate-zoom-20251204-000000-4242", "generate", "done", gen,
                  {"flows": 4, "packets": 204, "seconds": 2.2, "label": "zoom"},
                  [TaskStarted("sample", 4, "flows", time=t), TaskProgress("sample", 2, 4, "flows", time=t + 1),
                   TaskProgress("sample", 4, 4, "flows", time=t + 2), TaskFinished("generate", {"flows": 4}, time=t + 3),
                   Message("info", "wrote 4 flows", time=t + 3)],
                  ["netdiff: generate zoom: 4 flows", f"{gen.name}: 4 zoom flows, 204 packets; compliance: clean"],
                  ["generate", "--preset", "zoom", "-n", "4", "-o", str(gen)])
    exp_job = job("export-zoom_export-20251204-000100-4243", "export", "done", exp,
                  {"flows": 4, "classes": 1},
                  [TaskStarted("export", 4, "flows", time=t + 60), TaskFinished("export", {"flows": 4}, time=t + 61)],
                  [f"{exp.name}: 4 flows in 1 classes (0 real, 4 synthetic)"],
                  ["export", str(gen), "-o", str(exp), "--split", "0.5"])
    s = replace(settings, jobs_dir=str(jobs), output_dir="out", runs_dirs=(), refresh_interval=0.2)
    return types_ns(settings=s, gen=gen, gen_job=gen_job, exp_job=exp_job, exp=exp)


def types_ns(**kw):
    import types
    return types.SimpleNamespace(**kw)


def _still(app):
    for w in app.query("Input, TextArea"):
        w.cursor_blink = False


def _snap(snap_compare, app, size, steps):
    async def before(pilot):
        _still(app)
        await steps(pilot)
        _still(app)
        await pilot.pause()
    return snap_compare(app, terminal_size=size, run_before=before)


@SIZES
def test_snapshot_jobs(fixed, snap_compare, size):
    app = make_app(fixed.settings, follow_path=str(fixed.gen_job))

    async def steps(pilot):
        view = app.query_one("#job-view")
        await wait_for(pilot, lambda: app.query_one("#jobs-table").row_count == 2)
        await wait_for(pilot, lambda: view.state is not None and view.state.result and view.finished)
        app.query_one("#jobs-table").focus()
    assert _snap(snap_compare, app, size, steps)


@SIZES
def test_snapshot_report(fixed, snap_compare, size):
    app = make_app(fixed.settings, report_path=str(fixed.gen / "compliance.json"))

    async def steps(pilot):
        await wait_for(pilot, lambda: app.query_one("#reports-table").row_count > 0)
        app.query_one("#reports-table").focus()
    assert _snap(snap_compare, app, size, steps)


@SIZES
def test_snapshot_evaluation(fixed, snap_compare, size, tmp_path):
    import json

    from test_tui import EVALUATION
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "report.json").write_text(json.dumps(EVALUATION))
    app = make_app(fixed.settings, report_path="eval/report.json")

    async def steps(pilot):
        await wait_for(pilot, lambda: app.query_one("#reports-table").row_count > 0)
        app.query_one("#reports-table").focus()
    assert _snap(snap_compare, app, size, steps)


MY_RECIPE = """# my zoom calls: more flows, another seed
name = "my_zoom"
label = "zoom"
description = "Zoom media, 40 flows"
count = 40
seed = 7

[traffic]
transport = "udp"
service_ports = [8801]
"""


@SIZES
def test_snapshot_recipes(fixed, snap_compare, size, monkeypatch):
    """The Recipes tab with a user recipe open (the list also names the shipped presets: adding one
    changes this snapshot)."""
    from engine.datasets import recipes as rp
    monkeypatch.setattr(rp, "user_dir", lambda: Path("recipes"))     # relative: shown the same on any machine
    rp.user_dir().mkdir()
    (rp.user_dir() / "my_zoom.toml").write_text(MY_RECIPE)
    app = make_app(fixed.settings, initial_tab="recipes")

    async def steps(pilot):
        pane = app.query_one("#recipes-pane")
        await wait_for(pilot, lambda: any(e.name == "my_zoom" for e in pane.entries))
        table = app.query_one("#recipes-table")
        table.focus()
        table.move_cursor(row=next(i for i, e in enumerate(pane.entries) if e.name == "my_zoom"))
        await wait_for(pilot, lambda: pane.current is not None and pane.current.name == "my_zoom")
    assert _snap(snap_compare, app, size, steps)


@SIZES
def test_snapshot_export(fixed, snap_compare, size):
    app = make_app(fixed.settings, initial_tab="export")

    async def steps(pilot):
        pane = app.query_one("#export-pane")
        await wait_for(pilot, lambda: len(pane.datasets) == 1)
        app.query_one("#export-table").focus()
        await pilot.press("space")
        pane.started(fixed.exp_job)
        app.scan_jobs()
        await wait_for(pilot, lambda: "zoom_export" in str(pane.query_one("#export-card").render()))
    assert _snap(snap_compare, app, size, steps)


@SIZES
def test_snapshot_generate(fixed, snap_compare, size):
    app = make_app(fixed.settings, initial_tab="generate")

    async def steps(pilot):
        await pilot.press("6")
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "gen-preset")
        app.query_one("#gen-label").value = "dns"
    assert _snap(snap_compare, app, size, steps)


@SIZES
def test_snapshot_flow_viewer(fixed, snap_compare, size):
    from netdiff_tui.screens.flowviewer import FlowViewerScreen
    app = make_app(fixed.settings, initial_tab="jobs")

    async def steps(pilot):
        app.open_flows(fixed.gen)
        await wait_for(pilot, lambda: isinstance(app.screen, FlowViewerScreen) and app.screen.current is not None)
    assert _snap(snap_compare, app, size, steps)


@SIZES
def test_snapshot_help(fixed, snap_compare, size):
    from netdiff_tui.screens.dialogs import HelpScreen
    app = make_app(fixed.settings, initial_tab="jobs")       # the Models tab would show this machine's models

    async def steps(pilot):
        await wait_for(pilot, lambda: app.query_one("#jobs-table").row_count == 2
                       and str(app.query_one("#job-title").render()).startswith("export-zoom_export"))
        await settle_tables(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
    assert _snap(snap_compare, app, size, steps)


@SIZES
def test_snapshot_cancel_dialog(fixed, snap_compare, size):
    from netdiff_tui.screens.dialogs import ConfirmScreen
    app = make_app(fixed.settings, initial_tab="jobs")

    async def steps(pilot):
        await wait_for(pilot, lambda: app.query_one("#jobs-table").row_count == 2
                       and str(app.query_one("#job-title").render()).startswith("export-zoom_export"))
        await settle_tables(pilot)              # the tab under the dialog is drawn as it is now
        app.cancel_job(fixed.gen_job)
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    assert _snap(snap_compare, app, size, steps)


@sync
async def test_help_lists_every_binding_and_palette_opens_export(fixed):
    from textual.command import CommandPalette

    from netdiff_tui.screens.dialogs import HelpScreen, binding_rows
    app = make_app(fixed.settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        table = app.screen.query_one("#help-table")
        ids = {str(table.get_row_at(i)[3]) for i in range(table.row_count)}
        assert ids == {r[3] for r in binding_rows(app)} and {"job-cancel", "export-start", "flows-zoom"} <= ids
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))
        for title, tab in (("Export", "export"),):
            await pilot.press("ctrl+p")
            await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
            await pilot.press(*f"open {title.lower()}")
            await wait_for(pilot, lambda: any(f"Open {title}" in str(o.prompt)
                                              for o in app.screen.query("CommandList").first().options))
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.query_one("#tabs").active == tab)


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "monochrome"])
@sync
async def test_bit_image_half_blocks_and_monochrome(monkeypatch, no_color):
    """Two packets per line in the paper's colours (1 red, 0 green, absent blue; fit and 1:1), or one
    packet per line in characters without colour."""
    import numpy as np
    from textual.app import App

    from engine.codec.image import PALETTE
    from netdiff_tui.widgets.bitimage import BitImage
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    m = np.full((3, 1105), -1, np.int8)
    m[0, :10], m[1, :10], m[2, :10] = 1, 0, 1

    class Box(App):
        def compose(self):
            yield BitImage(id="img")

    app = Box()
    async with app.run_test(size=(40, 6)) as pilot:
        img = app.query_one(BitImage)
        img.show(m)
        await pilot.pause()
        rgb = ["rgb({},{},{})".format(*c) for c in PALETTE.tolist()]     # -1, 0, 1
        if no_color:
            assert img.monochrome
            lines = ["".join(s.text for s in img.render_line(y)) for y in range(3)]
            assert lines[0].startswith("█" * 10 + " ") and lines[1].startswith("·" * 10 + " ")
        else:
            img.fit = False
            img.toggle_fit()            # fit: 40 cells over 1105 bits, the first a mix of red over green
            first = img.render_line(0)._segments[0]
            assert first.text[0] == "▀" and len("".join(s.text for s in img.render_line(0))) == img.size.width
            img.toggle_fit()            # 1:1: red over green for 10 cells, then blue over blue
            segs = img.render_line(0)._segments
            assert segs[0].text == "▀" * 10 and str(segs[0].style.color.name) == rgb[2]
            assert segs[0].style.bgcolor.name == rgb[1] and segs[1].style.color.name == rgb[0]
            last = img.render_line(1)._segments          # packet 3 over nothing (black)
            assert last[0].style.color.name == rgb[2] and last[0].style.bgcolor.name == "rgb(0,0,0)"

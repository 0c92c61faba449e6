"""The Textual console: tabs, recipes, following a job's events.jsonl, reports, the palette, snapshots.

No real data and no trained model are needed: jobs are synthetic events files,
the report is a check of tests/fixtures/eth.pcap, and generation is stubbed.
Snapshots live in tests/__snapshots__/test_tui/ (update with ``--snapshot-update``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import re
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("textual")

from conftest import FIXTURES  # noqa: E402
from engine.errors import InputError  # noqa: E402
from engine.progress import EventLog, Message, TaskFinished, TaskProgress, TaskStarted, TrainStep  # noqa: E402
from netdiff_tui.app import NetdiffApp  # noqa: E402
from netdiff_tui.settings import Settings, SettingsError, field_docs, load_settings  # noqa: E402

SIZE = (120, 36)
T0 = 1_700_000_000.0


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """Everything the console looks at lives under tmp_path (user recipes too)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return Settings(models_dir=str(tmp_path / "models"), runs_dirs=(str(tmp_path / "runs"),),
                    jobs_dir=str(tmp_path / "jobs"), output_dir=str(tmp_path / "out"), poll_interval=0.05)


def sync(fn):
    """Run an async test on its own event loop (no async pytest plugin needed)."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        return asyncio.run(fn(*a, **kw))
    return wrapper


SYSTEM_LINE = "GPU0 H100 12% 3.1G/80.0G | CPU 7% | RAM 5.2G/31.0G | disk 120.4G free"


def make_app(settings: Settings, **kw) -> NetdiffApp:
    """The console with a fixed system panel line (what it shows must not depend on the machine)."""
    kw.setdefault("system_provider", lambda: SYSTEM_LINE)
    app = NetdiffApp(settings=settings, **kw)
    app.animation_level = "none"
    return app


async def wait_for(pilot, cond, timeout: float = 30.0) -> None:
    # a wall-clock deadline: on a loaded 2-core CI machine one pause can take far longer than asked
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


def step(i: int, total: int = 100, loss: float | None = None) -> TrainStep:
    return TrainStep(i, total, 1.0 / (1 + i) if loss is None else loss, 3e-4, 12.5, (total - i) / 12.5, time=T0 + i)


def compliance_dir(root: Path) -> Path:
    """compliance.json of a check of eth.pcap's flows (engine.repair.check_flows), in root/eth/."""
    from engine.codec.flows import FlowConfig
    from engine.codec.pipeline import encode_capture
    from engine.repair import check_flows
    mats, metas = [], []
    for b in encode_capture(FIXTURES / "eth.pcap", FlowConfig(min_packets=1)):
        mats += [b.flow(i) for i in range(len(b))]
        metas += b.metas
    rep = check_flows(mats, metas, source="eth.pcap")
    d = root / "eth"
    d.mkdir(parents=True)
    rep.write(d)
    return d


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]


# -- behaviour ---------------------------------------------------------------------------

@sync
async def test_tabs_switch_with_keys(settings):
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.query_one("#tabs")
        assert tabs.active == "models"
        for key, tab in (("2", "recipes"), ("3", "jobs"), ("4", "reports"), ("5", "export"), ("6", "generate"),
                         ("1", "models")):
            await pilot.press(key)
            await wait_for(pilot, lambda: tabs.active == tab)


@sync
async def test_a_result_waits_for_the_pane_it_feeds(settings):
    """A job scan that finishes before the Jobs pane has composed its table (start-up on a busy
    machine: it once failed the tab test) is shown when the table is there, not an error."""
    from netdiff_tui.screens.jobs import JobsPane
    from netdiff_tui.screens.messages import JobsLoaded
    from netdiff_tui.widgets.table import Table
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.main(JobsPane)
        await wait_for(pilot, lambda: bool(pane.query("#jobs-table")))
        left = pane.query_one("#jobs-left")
        await pane.query_one("#jobs-table").remove()
        jobs = []
        app.post_message(JobsLoaded(jobs))
        await pilot.pause()
        assert pane.jobs is not jobs                 # not shown yet: the table is gone
        t = Table(id="jobs-table", cursor_type="row")
        t.add_columns("job", "kind", "status", "started")
        await left.mount(t, before=0)
        await wait_for(pilot, lambda: pane.jobs is jobs)
        assert app.is_running


@sync
async def test_every_binding_has_an_id(settings):
    """Every class of the console's screen modules that binds keys (found by the help screen) names each binding."""
    from netdiff_tui.screens.dialogs import binding_classes
    classes = dict((cls.__name__, cls) for _, cls in binding_classes(make_app(settings)))
    assert {"NetdiffApp", "JobsPane", "ExportPane", "GeneratePane", "RecipesPane", "FlowViewerScreen",
            "HelpScreen", "ConfirmScreen"} <= set(classes)
    ids = []
    for name, cls in classes.items():
        for b in cls.BINDINGS:
            assert getattr(b, "id", None), (name, b)
            ids.append(b.id)
    assert len(ids) == len(set(ids)), "binding ids must be unique (settings remap them by id)"


@sync
async def test_recipes_lists_presets_and_validates(settings):
    from engine.datasets import recipes as rp
    app = make_app(settings, initial_tab="recipes")
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one("#recipes-pane")
        names = [e.name for e in pane.entries if e.source == "preset"]
        assert names == rp.preset_names() and "zoom" in names
        table = app.query_one("#recipes-table")
        assert table.row_count == len(names)
        # a broken edit shows the engine's one-line error
        pane.load(next(e for e in pane.entries if e.name == "zoom"))
        ta = app.query_one("#recipe-text")
        ta.read_only = False
        ta.load_text(re.sub(r"(?m)^mtu = \d+", "mtu = 100", ta.text))
        ta.focus()
        await pilot.press("f2")
        await pilot.pause()
        status = str(app.query_one("#recipe-status").render())
        assert "traffic.mtu" in status and "between 576 and 9216" in status


@sync
async def test_new_recipe_from_preset(settings):
    from engine.datasets import recipes as rp
    app = make_app(settings, initial_tab="recipes")
    async with app.run_test(size=SIZE) as pilot:
        app.action_new_recipe("zoom")
        await pilot.pause()
        inp = app.screen.query_one("#new-recipe-name")
        inp.value = "my_zoom"
        await pilot.press("enter")
        await wait_for(pilot, lambda: (rp.user_dir() / "my_zoom.toml").is_file())
        pane = app.query_one("#recipes-pane")
        await wait_for(pilot, lambda: pane.current is not None and pane.current.name == "my_zoom")
        assert pane.current.source == "user" and not pane.current.error
        assert rp.load_recipe(rp.user_dir() / "my_zoom.toml").name == "my_zoom"


@sync
async def test_jobs_follows_events_file_written_while_running(settings, tmp_path):
    run = tmp_path / "runs" / "run1"
    (run).mkdir(parents=True)
    (run / "train_config.json").write_text("{}")
    log = EventLog(run / "events.jsonl")
    log(Message("info", "training on 2 classes", time=T0))
    log(step(10))
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.jobs) == 1)
        assert app.jobs[0].kind == "train"
        await pilot.press("3")
        table = app.query_one("#jobs-table")
        table.focus()
        await pilot.press("enter")              # follow the highlighted job
        view = app.query_one("#job-view")
        bar = view.query_one("ProgressBar")
        await wait_for(pilot, lambda: bar.progress == 10)
        assert bar.total == 100
        # the job goes on in "another process": append while the app follows
        for i in (20, 30, 40):
            log(step(i))
        with open(run / "events.jsonl", "a") as f:   # a half-written line is not read yet
            f.write('{"kind": "TrainStep", "step": 5')
        await wait_for(pilot, lambda: bar.progress == 40)
        assert list(app.query_one("#job-loss").data) == pytest.approx([1 / 11, 1 / 21, 1 / 31, 1 / 41])
        assert "40/100" in str(view.query_one("#job-status").render())
        with open(run / "events.jsonl", "a") as f:
            f.write(', "total_steps": 100, "loss": 0.01, "lr": 0.0, "it_per_s": 1.0, "eta_s": 0.0, "time": 0}\n')
        log(TaskFinished("train", {"steps": 100}, time=T0 + 200))
        await wait_for(pilot, lambda: view.finished)
        assert view.step == 5 and bar.progress == 100


@sync
async def test_follow_given_on_the_command_line(settings, tmp_path):
    job = tmp_path / "elsewhere" / "gen1"
    log = EventLog(job / "events.jsonl")
    log(TaskStarted("sample", 8, "flows", time=T0))
    log(TaskProgress("sample", 6, 8, "flows", time=T0))
    app = make_app(settings, follow_path=str(job))
    async with app.run_test(size=SIZE) as pilot:
        bar = app.query_one("#job-view").query_one("ProgressBar")
        await wait_for(pilot, lambda: bar.progress == 6)
        assert app.query_one("#tabs").active == "jobs" and bar.total == 8


@sync
async def test_reports_renders_compliance_json(settings, tmp_path):
    d = compliance_dir(tmp_path)
    rep = json.loads((d / "compliance.json").read_text())
    app = make_app(settings, initial_tab="reports")
    async with app.run_test(size=SIZE) as pilot:
        inp = app.query_one("#reports-path")
        inp.value = str(d)
        inp.focus()
        await pilot.press("enter")
        table = app.query_one("#reports-table")
        await wait_for(pilot, lambda: table.row_count == len(rep["rules"]))
        first = table.get_row_at(0)
        assert first[0] == rep["rules"][0]["name"] and str(first[3]) == str(rep["rules"][0]["before"]["packets"])
        summary = str(app.query_one("#reports-summary").render())
        assert "eth.pcap" in summary and f"{rep['packets']} packets" in summary


@sync
async def test_reports_bad_file_is_one_line_notification(settings, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    app = make_app(settings, report_path=str(bad))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: any("not a report" in m for m in notifications(app)))
        assert all("\n" not in m for m in notifications(app))


EVALUATION = {"classes": ["dns", "zoom"], "inputs": {"real": "r", "synthetic": "s"},
         "summary": {"mean_jsd": {"synthetic": 0.2, "random": 0.6}, "tstr_ratio_flow_stats_noports": 0.87,
                     "closeness": {"synthetic": {"median_dcr_ratio": 7.3, "exact_copies": 0.0}}},
         "fidelity": {k: {"classes": {c: {"mean": {"jsd": v, "tvd": v / 2}} for c in ("dns", "zoom")},
                          "overall": {"jsd": v, "tvd": v / 2}} for k, v in (("synthetic", 0.2), ("random", 0.6))}}


def test_evaluation_report_view(tmp_path):
    from netdiff_tui.screens.catalog import load_report
    (tmp_path / "report.json").write_text(json.dumps(EVALUATION))
    v = load_report(tmp_path)
    assert v.kind == "evaluation" and v.columns[:3] == ["class", "synthetic JSD", "random JSD"]
    assert v.rows[0][:3] == ["dns", "0.200", "0.600"] and v.rows[-1][0] == "all classes"
    assert "flow stats 0.87x" in "\n".join(v.summary) and "7.30x the real test flows'" in "\n".join(v.summary)
    # the plot: bars scaled to the largest value (random 0.6: full width; synthetic 0.2: a third)
    syn, rnd = (next(ln for ln in v.plot if ln.startswith(k)) for k in ("synthetic", "random"))
    assert rnd.count("█") == 24 and syn.count("█") == 8 and syn.endswith("0.200")
    assert any(ln.startswith("flow stats") and ln.endswith("0.870x") for ln in v.plot)
    assert not any(ln.startswith("flow length") for ln in v.summary)     # a report from before the figure
    whole = {**EVALUATION, "summary": {**EVALUATION["summary"], "flow_length_jsd": {
        "synthetic_vs_test": 0.112, "synthetic_vs_train": 0.014, "real_train_vs_test": 0.111}}}
    (tmp_path / "report.json").write_text(json.dumps(whole))
    assert "flow length, whole flows (JSD): 0.014 vs train, 0.112 vs test (real train vs test 0.111)" \
        in load_report(tmp_path).summary


@sync
async def test_command_palette_finds_actions(settings, tmp_path):
    from textual.command import CommandPalette
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"open reports")
        await wait_for(pilot, lambda: any("Open Reports" in str(o.prompt)
                                          for o in app.screen.query("CommandList").first().options))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.query_one("#tabs").active == "reports")


def _capture_jobs(monkeypatch) -> list:
    """engine.jobs.start_detached records what it was asked and makes the job directory, starting nothing."""
    import engine.jobs as jobs
    started = []

    def fake(jobs_dir, kind, argv, **kw):
        job = jobs.create_job(jobs_dir, kind, kw.get("request"), kw.get("out"), kw.get("label", ""), argv=argv,
                              resume_args=kw.get("resume_args"))
        started.append((kind, list(argv), kw, job.path))
        return job

    monkeypatch.setattr(jobs, "start_detached", fake)
    return started


@sync
async def test_generate_starts_the_cli_command_as_a_job(settings, monkeypatch):
    """The form runs what `netdiff generate` would: the argv parses with the CLI into the form's request."""
    from netdiff_tui.cmd_model import generate
    from netdiff_tui.request_options import request_from_command_line
    started = _capture_jobs(monkeypatch)
    app = make_app(settings, initial_tab="generate")
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#gen-label").value = "dns"
        app.query_one("#gen-count").value = "3"
        app.query_one("#gen-seed").value = "7"
        await pilot.press("ctrl+g")
        pane = app.query_one("#jobs-pane")
        await wait_for(pilot, lambda: pane.following is not None)
        assert app.query_one("#tabs").active == "jobs"
    (kind, argv, kw, path), = started
    out = (Path(settings.output_dir) / "dns").absolute()
    assert kind == "generate" and argv == ["generate", "--label", "dns", "--count", "3", "--seed", "7", "-o", str(out)]
    assert kw["resume_args"] == ("--resume",) and pane.following == path / "events.jsonl"
    ctx = generate.make_context("generate", argv[1:])
    req = request_from_command_line(ctx)
    assert (req.label, req.count, req.seed) == ("dns", 3, 7) and kw["request"] == req


@sync
async def test_generate_error_is_one_line_notification(settings, monkeypatch):
    started = _capture_jobs(monkeypatch)
    app = make_app(settings, initial_tab="generate")
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#gen-label").value = "dns"
        app.query_one("#gen-count").value = "0"
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: notifications(app))
        msg = notifications(app)[0]
        assert "\n" not in msg and "count" in msg and "Traceback" not in msg
    assert started == []


def _job_of(jobs_dir: Path, proc=None, status: str = "running"):
    """A generate job record whose process is ``proc`` (a stand-in child), or a stopped one."""
    from engine.jobs import create_job
    from engine.outdir import Holder
    job = create_job(jobs_dir, "generate", {"label": "zoom"}, jobs_dir.parent / "out" / "zoom", "zoom",
                     argv=["generate", "--preset", "zoom", "-o", str(jobs_dir.parent / "out" / "zoom")],
                     resume_args=("--resume",))
    job.record.detached = True
    if proc is not None:
        h = Holder.of_pid(proc.pid)
        job.record.pid, job.record.start_ticks, job.record.boot_id = h.pid, h.start_ticks, h.boot_id
    job.record.status = status
    job.save()
    return job


@sync
async def test_cancel_and_resume_by_key(settings, monkeypatch):
    import subprocess
    jobs_dir = Path(settings.jobs_dir)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        job = _job_of(jobs_dir, proc)
        app = make_app(settings, initial_tab="jobs")
        async with app.run_test(size=SIZE) as pilot:
            view = app.query_one("#job-view")
            await wait_for(pilot, lambda: view.state is not None and view.state.status == "running")
            assert "memory: " in str(view.query_one("#job-meta").render())     # its process's, read while it runs
            app.query_one("#jobs-table").focus()
            await pilot.press("c")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
            await pilot.press("y")
            assert proc.wait(timeout=30) == -15          # SIGTERM, as `netdiff jobs cancel`
            # the stand-in recorded no end: the console reads a dead job as failed, never running
            await wait_for(pilot, lambda: view.state.status == "failed")
            assert "ended without recording an end" in str(view.query_one("#job-meta").render())
            started = _capture_jobs(monkeypatch)
            await pilot.press("r")
            await wait_for(pilot, lambda: started)
            assert started[0][1] == job.record.argv + ["--resume"]
            await wait_for(pilot, lambda: app.query_one("#jobs-pane").job_dir == started[0][3])
    finally:
        proc.kill()
        proc.wait()


def test_settings_file(tmp_path):
    p = tmp_path / "settings.toml"
    p.write_text('poll_interval = 0.25\nruns_dirs = "/r"\nkeymap = { show-models = "m" }\n')
    s = load_settings(p)
    assert s.poll_interval == 0.25 and s.runs_dirs == ("/r",) and s.keymap == {"show-models": "m"}
    p.write_text("pol_interval = 1\n")
    with pytest.raises(SettingsError, match="unknown key 'pol_interval'.*poll_interval"):
        load_settings(p)
    assert load_settings(tmp_path / "absent.toml") == Settings()
    docs = field_docs()
    assert set(docs) == {f for f in Settings.__dataclass_fields__} and all(docs.values())


def test_models_catalog(tmp_path):
    from netdiff_tui.screens.catalog import find_models
    ck = tmp_path / "models" / "small"
    ck.mkdir(parents=True)
    (ck / "config.json").write_text(json.dumps({"classes": ["dns", "zoom"], "steps": 300, "layout": "1"}))
    (ck / "model.safetensors").write_bytes(b"\0" * 2048)
    run = tmp_path / "runs" / "r1"
    (run / "checkpoints" / "step-0000200").mkdir(parents=True)
    (run / "train_config.json").write_text(json.dumps({"classes": ["dns"]}))
    ms = {m.name: m for m in find_models(tmp_path / "models", [tmp_path / "runs"]) if m.kind != "default"}
    assert ms["small"].classes == ("dns", "zoom") and ms["small"].steps == 300 and ms["small"].ready
    assert ms["r1"].kind == "run" and ms["r1"].steps == 200 and not ms["r1"].ready


# -- snapshots (fixed size, no animation; tests/__snapshots__/test_tui/*.svg) ------------------

def _quiet(app):
    for w in app.query("Input, TextArea"):
        w.cursor_blink = False


def test_snapshot_generate_form(settings, snap_compare):
    """(Not the Recipes tab: its look would change with every edit of a shipped preset.)"""
    app = make_app(replace(settings, output_dir="out"), initial_tab="generate")

    async def before(pilot):
        _quiet(app)
        app.query_one("#gen-label").value = "dns"
        app.query_one("#gen-count").value = "50"
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


FROZEN_REPAIR = {   # a repair report frozen here, so that new repair rules do not change the snapshot
    "mode": "repair", "source": "generate:zoom", "clean": True, "packets": 412, "flows": 20,
    "padding_rows_dropped": 0, "empty_flows": 0,
    "totals": {"before": {"packets": 391, "flows": 20}, "changed": {"packets": 391, "flows": 20},
               "after": {"packets": 0, "flows": 0}},
    "options": {}, "seconds": 0.0123,
    "rules": [
        {"name": n, "description": "", "scope": sc, "enabled": on, "before": {"packets": b, "flows": bf},
         "changed": {"packets": c, "flows": cf, "fields": fl}, "after": {"packets": 0, "flows": 0}}
        for n, sc, on, b, bf, c, cf, fl in (
            ("ipv4_header", "packet", True, 212, 19, 212, 19, {"ipv4_ver": 40, "ipv4_hl": 212}),
            ("ipv4_ttl", "packet", True, 17, 6, 17, 6, {"ipv4_ttl": 17}),
            ("tcp_handshake", "flow", True, 31, 11, 31, 11, {"tcp_flags": 31}),
            ("udp_length", "packet", True, 0, 0, 0, 0, {}),
            ("ipv4_checksum", "packet", True, 391, 20, 391, 20, {"ipv4_cksum": 391}),
            ("ipv4_fragments", "packet", False, 3, 1, 0, 0, {}))],
}


def test_snapshot_reports(settings, snap_compare, tmp_path):
    d = tmp_path / "zoom"
    d.mkdir()
    (d / "compliance.json").write_text(json.dumps(FROZEN_REPAIR))
    app = make_app(settings, report_path=str(d / "compliance.json"))

    async def before(pilot):
        _quiet(app)
        await wait_for(pilot, lambda: app.query_one("#reports-table").row_count > 0)
        app.query_one("#reports-table").focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_snapshot_job_view(settings, snap_compare, tmp_path):
    job = tmp_path / "elsewhere" / "run7"
    log = EventLog(job / "events.jsonl")
    log(Message("info", "training on 20 classes, 1800 flows", time=T0))
    for i in range(10, 310, 10):
        log(step(i, 600, loss=0.5 / (1 + i / 50) + (0.02 if i % 30 == 0 else 0)))
    log(Message("info", "checkpoint step-0000300", time=T0 + 300))
    app = make_app(settings, follow_path=str(job))

    async def before(pilot):
        _quiet(app)
        await wait_for(pilot, lambda: app.query_one("#job-view").step == 300)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


@sync
async def test_models_tab_and_keymap(settings, tmp_path):
    ck = Path(settings.models_dir) / "small"
    ck.mkdir(parents=True)
    (ck / "config.json").write_text(json.dumps({"classes": ["dns", "zoom"], "steps": 300, "layout": "2",
                                                "model": {"d_model": 64}}))
    (ck / "model.safetensors").write_bytes(b"\0" * 4096)
    app = make_app(replace(settings, keymap={"show-reports": "r"}))
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one("#models-table")
        await wait_for(pilot, lambda: any(table.get_row_at(i)[0] == "small" for i in range(table.row_count)))
        row = next(table.get_row_at(i) for i in range(table.row_count) if table.get_row_at(i)[0] == "small")
        assert row[1:6] == ["local", "2", "300", "4.0 KiB", "2"]
        table.focus()
        # the key goes to whatever has focus: wait until the table holds it and the app is idle
        await wait_for(pilot, lambda: table.has_focus)
        await pilot.wait_for_scheduled_animations()
        await pilot.press("r")
        # under load the tab switch can take more than one frame
        await wait_for(pilot, lambda: app.query_one("#tabs").active == "reports")
        assert app.query_one("#tabs").active == "reports"


def test_generate_form_guide_fields(tmp_path):
    from engine.errors import InputError
    from netdiff_tui.screens.generate import build_request
    form = {"label": "zoom", "count": "5", "seed": "1", "model": ""}
    req = build_request(None, {**form, "like": str(tmp_path), "strength": "0.3"})
    assert req.like == str(tmp_path) and req.strength == 0.3
    assert build_request(None, form).like is None
    with pytest.raises(InputError, match="like: .*no such file"):
        build_request(None, {**form, "like": str(tmp_path / "nope")})
    with pytest.raises(InputError, match=r"strength: must be > 0 and <= 1, got 2"):
        build_request(None, {**form, "strength": "2"})


@sync
async def test_command_palette_runs_a_models_action(settings):
    """The Models pane's actions are in the palette too: 'download' shows the tab and opens its dialog."""
    from textual.command import CommandPalette

    from netdiff_tui.screens.models_dialogs import DownloadDialog
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        app.action_show_tab("jobs")
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"models: download")
        await wait_for(pilot, lambda: any("Models: download" in str(o.prompt)
                                          for o in app.screen.query("CommandList").first().options))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DownloadDialog))
        assert app.query_one("#tabs").active == "models"

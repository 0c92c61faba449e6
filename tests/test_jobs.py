"""engine.jobs (one way to create a job directory) and EventLog.follow (one way to follow it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest

from conftest import ROOT
from engine.artifacts import find_jobs, job_alive, read_job
from engine.errors import Cancelled, InputError
from engine.jobs import create_job, running
from engine.progress import EventLog, Message, TaskProgress, TaskStarted


@dataclass
class Req:
    label: str
    count: int


def test_create_job_writes_the_record_every_reader_uses(tmp_path):
    job = create_job(tmp_path / "jobs", "generate", Req("zoom", 5), tmp_path / "out", label="zoom")
    assert job.path.parent == tmp_path / "jobs" and job.path.name.startswith("generate-zoom-")
    job(TaskStarted("sample", 5, "flows"))
    rec = read_job(job.path)
    assert (rec.kind, rec.request, rec.out, rec.status) == ("generate", {"label": "zoom", "count": 5},
                                                           str((tmp_path / "out").resolve()), "running")
    assert rec.pid == os.getpid() and rec.host == socket.gethostname() and abs(rec.start - time.time()) < 60
    assert job_alive(rec) is True
    [entry] = find_jobs([tmp_path / "jobs"])
    assert entry.kind == "generate" and entry.status == "running" and entry.path == job.events_path
    # a second job in the same second of the same process gets its own directory
    assert create_job(tmp_path / "jobs", "generate", Req("zoom", 5), label="zoom").path != job.path


@pytest.mark.parametrize("exc, status", [(None, "done"), (Cancelled("cancelled"), "cancelled"),
                                         (KeyboardInterrupt(), "cancelled"), (InputError("x.pcap", "bad"), "failed")])
def test_running_records_how_the_work_ended(tmp_path, exc, status):
    job = create_job(tmp_path, "generate", {"label": "dns"})
    with pytest.raises(type(exc)) if exc else _nothing():
        with running(job):
            if exc is not None:
                raise exc
    rec = read_job(job.path)
    assert rec.status == status and rec.end is not None and rec.end >= rec.start
    if status == "failed":
        assert rec.reason == "x.pcap: bad"
        assert [e.text for e in EventLog(job.events_path).read() if isinstance(e, Message)] == ["x.pcap: bad"]


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_a_dead_running_job_reads_as_failed(tmp_path):
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    job = create_job(tmp_path, "train", {})
    rec = json.loads((job.path / "job.json").read_text())
    rec["pid"] = int(p.stdout)                          # a process that has exited
    (job.path / "job.json").write_text(json.dumps(rec))
    [entry] = find_jobs([tmp_path])
    assert entry.status == "failed"
    assert "ended without recording an end" in entry.reason
    rec["pid"], rec["start_ticks"] = os.getpid(), (rec["start_ticks"] or 0) + 1   # a live pid, reused
    (job.path / "job.json").write_text(json.dumps(rec))
    assert find_jobs([tmp_path])[0].status == "failed"
    rec["host"] = "elsewhere"
    (job.path / "job.json").write_text(json.dumps(rec))
    assert job_alive(read_job(job.path)) is None       # another machine's pid tells nothing here


@pytest.mark.parametrize("text, problem", [
    ('{"kind": "generate", "pid": -4}', "pid: expected an integer"),
    ('{"kind": "rm -rf", "pid": 1}', "kind: expected one of"),
    ('{"kind": "generate", "status": "won"}', "status: expected one of"),
    ('{"kind": "generate", "start": 1e300}', "start: expected a number"),
    ('{"kind": "generate", "request": [1]}', "request: expected an object"),
    ('[1, 2]', "expected a JSON object"),
    ('{"kind": ', "not JSON"),
])
def test_hostile_job_json_is_one_line_and_never_breaks_the_listing(tmp_path, text, problem):
    d = tmp_path / "j"
    d.mkdir()
    (d / "job.json").write_text(text)
    (d / "events.jsonl").write_text("")
    with pytest.raises(InputError, match=problem) as e:
        read_job(d)
    assert "job.json" in str(e.value) and "\n" not in str(e.value)
    [entry] = find_jobs([tmp_path])
    assert entry.record is None and problem.split(":")[0] in entry.problem


def test_follow_skips_bad_lines_restarts_on_truncation_and_stops_when_asked(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    log(TaskStarted("t", 3))
    with open(log.path, "a") as f:
        f.write('{"kind": "Nope"}\n[1]\n{"kind": "TaskProgress", "task": "t", "done": 1, "bogus": 2}\n')
    log(TaskProgress("t", 1, 3))
    got, stop = [], threading.Event()
    follower = EventLog(log.path)

    def run():
        for ev in follower.follow(poll=0.01, stop=stop.is_set, idle=True):
            got.append(ev)
    th = threading.Thread(target=run)
    th.start()
    deadline = time.monotonic() + 10
    while sum(e is not None for e in got) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [type(e).__name__ for e in got if e is not None] == ["TaskStarted", "TaskProgress"]
    assert follower.bad_lines == 3 and None in got          # idle ticks once caught up
    log.path.write_text("")                                  # replaced by a new run: read from the start
    log(Message("info", "again"))
    while not any(isinstance(e, Message) for e in got) and time.monotonic() < deadline:
        time.sleep(0.01)
    half = '{"kind": "Message", "level": "info", "te'
    with open(log.path, "a") as f:
        f.write(half)                                        # a line being written is not read yet
    time.sleep(0.05)
    with open(log.path, "a") as f:
        f.write('xt": "whole"}\n')
    while not any(isinstance(e, Message) and e.text == "whole" for e in got) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    th.join(5)
    assert not th.is_alive()
    assert [e.text for e in got if isinstance(e, Message)] == ["again", "whole"]


def test_cli_generation_and_console_share_one_job_writer():
    """No module writes job.json but engine.jobs; no module but engine.progress decodes events.jsonl."""
    offenders = []
    for base in ("engine", "netdiff_tui"):
        for p in (ROOT / base).rglob("*.py"):
            s = p.read_text()
            rel = p.relative_to(ROOT).as_posix()
            if rel != "engine/jobs.py" and ('"job.json"' in s or "'job.json'" in s):
                offenders.append(rel)
            if rel != "engine/progress.py" and "event_from_dict" in s:
                offenders.append(rel)
    assert offenders == []


def test_console_launch_does_not_import_the_command_modules():
    """cli.py reaches the console through netdiff_tui.console, which imports no command module."""
    code = ("import sys, netdiff_tui.console; "
            "print(sorted(m for m in sys.modules if m.startswith('netdiff_tui.c')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['netdiff_tui.console']"


def test_console_lists_jobs_with_their_status(tmp_path, monkeypatch):
    """A job created and ended by engine.jobs (as `netdiff generate` does) shows in the Jobs tab with its status."""
    import asyncio

    from netdiff_tui.app import NetdiffApp
    from netdiff_tui.settings import Settings
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    jobs = tmp_path / "jobs"
    failed = create_job(jobs, "generate", {"label": "dns"}, label="dns")
    with pytest.raises(InputError), running(failed):
        raise InputError("x.pcap", "bad")
    create_job(jobs, "generate", {"label": "zoom"}, label="zoom")      # still running (this process)
    settings = Settings(models_dir=str(tmp_path / "models"), runs_dirs=(), jobs_dir=str(jobs),
                        output_dir=str(tmp_path / "out"), poll_interval=0.05)

    async def run():
        app = NetdiffApp(settings=settings, initial_tab="jobs")
        app.animation_level = "none"
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one("#jobs-table")
            deadline = time.monotonic() + 30
            while table.row_count != 2 and time.monotonic() < deadline:
                await pilot.pause(0.05)
            return {table.get_row_at(i)[0]: table.get_row_at(i)[2] for i in range(table.row_count)}
    assert asyncio.run(run()) == {"dns": "failed", "zoom": "running"}


def test_console_generation_says_in_one_line_when_its_job_cannot_start(tmp_path, monkeypatch):
    """jobs_dir unusable (here: a file): starting a generation from the console is one error line
    naming the path, and no job or output appears."""
    import asyncio

    from netdiff_tui.app import NetdiffApp
    from netdiff_tui.settings import Settings
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("NETDIFF_JOBS_DIR", raising=False)
    (tmp_path / "jobs").write_text("not a directory")
    settings = Settings(models_dir=str(tmp_path / "models"), runs_dirs=(), jobs_dir=str(tmp_path / "jobs"),
                        output_dir=str(tmp_path / "out"), poll_interval=0.05)

    async def run():
        app = NetdiffApp(settings=settings, initial_tab="generate")
        app.animation_level = "none"
        async with app.run_test(size=(120, 40)) as pilot:
            app.query_one("#gen-label").value = "dns"
            await pilot.press("ctrl+g")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                errors = [n.message for n in app._notifications if n.severity == "error"]
                if errors:
                    return errors
                await pilot.pause(0.05)
            return []
    errors = asyncio.run(run())
    assert len(errors) == 1 and "jobs" in errors[0] and "\n" not in errors[0], errors
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

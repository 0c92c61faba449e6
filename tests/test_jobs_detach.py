"""Detached jobs: ``--detach`` outlives the shell that started it; ``netdiff jobs`` lists, follows,
cancels, resumes and prunes them; a job whose process died reads as failed with its log."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from engine.artifacts import effective_status, find_jobs, read_job
from engine.jobs import create_job, start_detached

ROOT = Path(__file__).resolve().parent.parent
NETDIFF = [sys.executable, "-m", "netdiff_tui"]


def _wait_for(pred, what: str, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    d = tmp_path / "jobs"
    monkeypatch.setenv("NETDIFF_JOBS_DIR", str(d))
    return d


def _cli(*args, env=None):
    return subprocess.run(NETDIFF + list(args), cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env or os.environ.copy())


def _only_job(jobs_dir: Path) -> Path:
    found = [e.path.parent for e in find_jobs([jobs_dir]) if e.record is not None]
    assert len(found) == 1, found
    return found[0]


def _status(d: Path) -> str:
    return effective_status(read_job(d))[0]


def test_a_detached_job_survives_the_sighup_of_a_dropped_ssh_session(jobs, tmp_path):
    out = tmp_path / "zoom"
    # the "SSH session": a shell in its own session and process group, as sshd gives one; it starts
    # the job and waits, as a user's shell would
    shell = subprocess.Popen(["bash", "-c", f"{' '.join(NETDIFF)} generate --label zoom -n 60 --steps 4 "
                                            f"-o {out} --detach; exec sleep 600"],
                             cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=os.environ.copy())
    try:
        d = _wait_for(lambda: next((e.path.parent for e in find_jobs([jobs]) if e.record is not None
                                    and e.record.detached and e.record.pid != shell.pid and e.path.stat().st_size),
                                   None), "the job's first event")
        assert _status(d) == "running"
        os.killpg(shell.pid, signal.SIGHUP)        # the connection drops: the session's group gets SIGHUP
        assert shell.wait(timeout=30) == -signal.SIGHUP
        assert _status(d) == "running", "the job must not be in the shell's session"
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
    _wait_for(lambda: _status(d) != "running", "the job to end")
    r = _cli("jobs", "list", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["id"], x["status"]) for x in rows] == [(d.name, "done")]
    assert rows[0]["result"]["flows"] == 60 and rows[0]["device"] == "cpu"
    assert len(list(out.rglob("*.pcap"))) == 60


def test_cancel_then_resume_finishes_with_every_flow(jobs, tmp_path):
    out = tmp_path / "g"
    # 1,000 flows: the run must still be going when `jobs cancel` (a new process) gets to it, even
    # when generate samples on every core
    r = _cli("generate", "--label", "dns", "-n", "1000", "--steps", "4", "-o", str(out), "--detach")
    assert r.returncode == 0 and "started" in r.stdout, r.stderr
    d = _only_job(jobs)
    # stop it once it has written flows (a window), so resuming has something to keep
    _wait_for(lambda: any((out.parent / f".{out.name}.partial").rglob("*.pcap")), "the first kept window")
    r = _cli("jobs", "cancel", d.name[:20])
    assert r.returncode == 0, r.stderr
    rec = read_job(d)
    kept = re.search(r"(\d+) of 1000 flows are kept", rec.reason)
    assert rec.status == "cancelled" and kept, rec.reason
    assert 256 <= int(kept.group(1)) < 1000 and int(kept.group(1)) % 256 == 0     # whole windows
    r = _cli("jobs", "resume", d.name)
    assert r.returncode == 0, r.stderr
    new = [e.path.parent for e in find_jobs([jobs]) if e.path.parent != d]
    assert len(new) == 1
    assert read_job(new[0]).argv[-1] == "--resume"
    r = _cli("jobs", "attach", new[0].name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert read_job(new[0]).result["flows"] == 1000 and read_job(new[0]).result["resumed"] is True
    assert len(list(out.rglob("*.pcap"))) == 1000


def test_a_job_whose_process_died_is_failed_with_its_last_log_lines(jobs):
    # an output folder under a plain file: no one can make it, root included (a path like
    # /nonexistent/dir is made by a root test run, and the job then succeeds)
    blocker = jobs.parent / "not-a-folder"
    blocker.write_text("")
    job = start_detached(jobs, "generate", ["generate", "--label", "zoom", "-n", "1", "-o", str(blocker / "dir" / "x")],
                         label="zoom")
    _wait_for(lambda: _status(job.path) != "running", "the job to end")
    r = _cli("jobs", "show", job.name)
    assert "status" in r.stdout and "failed" in r.stdout
    # a process killed outright cannot record its end: the reader says so, with the log's end
    rec = read_job(job.path)
    rec.status, rec.end, rec.pid = "running", None, _dead_pid()
    job.record = rec
    job.save()
    r = _cli("jobs", "list", "--json")
    row = json.loads(r.stdout)[0]
    assert row["status"] == "failed" and "ended without recording an end" in row["reason"]
    assert any("not-a-folder" in ln for ln in row["log_tail"])


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_attached_runs_are_jobs_too_and_prune_removes_only_finished_ones(jobs, tmp_path):
    from netdiff_tui.cli import main
    r = CliRunner().invoke(main, ["generate", "--label", "zoom", "-n", "2", "--steps", "2", "-o", str(tmp_path / "a"), "-q"])
    assert r.exit_code == 0, r.output
    done = _only_job(jobs)
    rec = read_job(done)
    assert rec.status == "done" and not rec.detached and rec.result["flows"] == 2
    assert rec.argv[:1] == ["generate"] and "--label" in rec.argv
    live = create_job(jobs, "train", {}, label="live")           # this process: running
    r = CliRunner().invoke(main, ["jobs", "prune", "--dry-run"])
    assert r.exit_code == 0 and "would remove 1 job record(s)" in r.output
    r = CliRunner().invoke(main, ["jobs", "prune"])
    assert r.exit_code == 0 and "removed 1" in r.output
    assert not done.exists() and live.path.exists()


def test_unknown_or_ambiguous_job_is_one_line(jobs):
    from netdiff_tui.cli import main
    create_job(jobs, "train", {}, label="a")
    create_job(jobs, "train", {}, label="b")
    r = CliRunner().invoke(main, ["jobs", "show", "nope"])
    assert r.exit_code == 2 and "no job 'nope'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["jobs", "show", "train"])
    assert r.exit_code == 2 and "names 2 jobs" in r.output
    done = create_job(jobs, "export", {}, label="c")
    done.finish("done")
    r = CliRunner().invoke(main, ["jobs", "cancel", done.name])
    assert r.exit_code == 2 and "job is not running (status: done)" in r.output
    r = CliRunner().invoke(main, ["jobs", "resume", done.name])
    assert r.exit_code == 2 and "nothing to resume" in r.output


def test_command_argv_rebuilds_what_the_user_gave():
    from netdiff_tui.detach import command_argv

    seen = {}

    @click.group()
    def root():
        pass

    @root.command()
    @click.argument("inputs", nargs=-1)
    @click.option("-o", "--out")
    @click.option("--flag/--no-flag", default=True)
    @click.option("--quiet", "-q", is_flag=True)
    @click.option("--tag", multiple=True)
    @click.option("--pair", nargs=2, type=int)
    @click.option("--n", "count", type=int, default=5)
    def cmd(**kw):
        seen["argv"] = command_argv(click.get_current_context())

    r = CliRunner().invoke(root, ["cmd", "a b", "c", "-o", "x", "--no-flag", "-q", "--tag", "t1", "--tag", "t2",
                                  "--pair", "1", "2"])
    assert r.exit_code == 0, r.output
    assert seen["argv"] == ["cmd", "a b", "c", "--out", "x", "--no-flag", "--quiet", "--tag", "t1", "--tag", "t2",
                            "--pair", "1", "2"]


def test_detach_is_refused_under_accelerate_launch(jobs, monkeypatch, tmp_path):
    from netdiff_tui.cli import main
    monkeypatch.setenv("WORLD_SIZE", "2")
    r = CliRunner().invoke(main, ["generate", "--label", "zoom", "-n", "1", "-o", str(tmp_path / "x"), "--detach"])
    assert r.exit_code == 2 and "does not go under accelerate launch" in r.output
    assert not jobs.exists() or not any(jobs.iterdir())


def test_encode_detaches_and_records_its_counts(jobs, tmp_path):
    """Encoding a large capture folder is long work too: it runs as a job with its counts as the result."""
    out = tmp_path / "enc"
    r = _cli("encode", "tests/fixtures/eth.pcap", "tests/fixtures/eth_vlan.pcap", "-o", str(out), "--detach")
    assert r.returncode == 0, r.stderr
    d = _only_job(jobs)
    _wait_for(lambda: _status(d) != "running", "the encode job to end")
    rec = read_job(d)
    assert (rec.kind, rec.status) == ("encode", "done"), (rec.status, rec.reason)
    assert rec.result["flows"] == len(list(out.glob("**/*.npz"))) > 0
    assert (out / "manifest.csv").is_file()

"""``netdiff selftest``: each check passes on a working install, fails on what it guards, and the
command's exit status and lines say so. The full command runs once, as a user would run it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import FIXTURES, ROOT
from engine import selftest
from engine.errors import InputError


def eth_counts() -> int:
    good = {g["file"]: g for g in json.loads((FIXTURES / "fixtures.json").read_text())["good"]}
    g = good["eth.pcap"]
    return g["tcp"] + g["udp"] + g["icmp"]


def test_embedded_capture_is_the_loopback_fixture():
    assert selftest.SAMPLE.read_bytes() == (FIXTURES / "eth.pcap").read_bytes()


def test_codec_check_counts_every_packet(tmp_path):
    detail = selftest.check_codec(tmp_path)
    assert detail.startswith(f"{eth_counts()} packets in ")


def test_codec_check_fails_on_a_broken_capture(tmp_path):
    with pytest.raises(InputError, match="bad_truncated.pcap"):
        selftest.check_codec(tmp_path, FIXTURES / "bad_truncated.pcap")


def test_repair_check_finds_and_fixes_every_packet(tmp_path):
    detail = selftest.check_repair(tmp_path)
    assert f"check found {eth_counts()} bad packets" in detail
    assert (tmp_path / "repaired.pcap").stat().st_size > 0


def test_recipes_check_loads_every_preset(tmp_path):
    n = len(list((ROOT / "presets").glob("*.toml")))
    assert selftest.check_recipes(tmp_path).startswith(f"{n} presets load and validate")


def test_run_checks_reports_each_outcome_and_goes_on(tmp_path):
    def boom(d):
        raise ValueError("first line\nsecond line")

    def skip(d):
        raise selftest.Skip("not here")

    seen = []
    res = selftest.run_checks([("boom", boom), ("skip", skip), ("ok", lambda d: f"ran in {d.name}")],
                              tmp_path, seen.append)
    assert [(r.name, r.status) for r in res] == [("boom", "fail"), ("skip", "skip"), ("ok", "pass")]
    assert seen == res
    assert res[0].detail == "ValueError: first line"
    assert res[1].detail == "skipped: not here"
    assert res[2].detail == "ran in ok"
    assert all("\n" not in r.line() for r in res)


def test_console_check_opens_every_tab_the_app_has(tmp_path):
    pytest.importorskip("textual")
    from netdiff_tui.app import NetdiffApp
    from netdiff_tui.cmd_selftest import check_console
    from netdiff_tui.settings import Settings
    from textual.widgets import TabPane
    s = Settings(models_dir=str(tmp_path / "m"), runs_dirs=(str(tmp_path / "r"),), jobs_dir=str(tmp_path / "j"))
    # the tabs as the app composes them: the check must open each
    app = NetdiffApp(settings=s)

    async def ids():
        async with app.run_test(headless=True, size=(120, 36)):
            return [p.id for p in app.query(TabPane)]
    expected = asyncio.run(ids())
    assert expected
    detail = check_console(tmp_path / "console")
    assert detail.endswith(f"opened {len(expected)} tabs: {', '.join(expected)}")


def test_cli_exit_status_is_1_when_a_check_fails(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    monkeypatch.setattr(selftest, "SAMPLE", FIXTURES / "bad_truncated.pcap")
    from netdiff_tui.cli import main
    r = CliRunner().invoke(main, ["selftest", "--check", "codec", "--check", "recipes"])
    lines = r.output.splitlines()
    assert r.exit_code == 1, r.output
    assert lines[0].startswith("fail  codec") and "bad_truncated.pcap" in lines[0]
    assert lines[1].startswith("pass  recipes")
    assert lines[-1].startswith("selftest: 1 passed, 1 failed, 0 skipped")


def test_selftest_command_end_to_end(tmp_path):
    """The whole command in a fresh process, no terminal: every check passes (SD skips only
    where its libraries are missing; the detached job only where this build lacks jobs)."""
    from engine import jobs
    from netdiff_tui.cmd_selftest import CHECK_NAMES
    # PYTHONPATH: this checkout's code, run from another directory, whatever the install points at
    env = dict(os.environ, NETDIFF_JOBS_DIR=str(tmp_path / "jobs"), XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               XDG_DATA_HOME=str(tmp_path / "data"), TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "netdiff_tui", "selftest", "--json"], cwd=tmp_path, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    out = json.loads(p.stdout)
    by = {c["name"]: c for c in out["checks"]}
    assert list(by) == [n for n in CHECK_NAMES], p.stdout
    may_skip = set()
    if selftest.sd_libraries():
        may_skip.add("sd pipeline")
    if not hasattr(jobs, "start_detached"):
        may_skip.add("detached job")
    for name, c in by.items():
        assert c["status"] == "pass" or (name in may_skip and c["status"] == "skip"), c
    assert p.returncode == 0 and out["ok"] is True
    # its working directory is gone; it left nothing in the user's jobs directory
    assert not [x for x in tmp_path.iterdir() if x.name.startswith("netdiff-selftest-")]
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())


def test_detached_check_fails_at_once_when_the_job_process_died(tmp_path):
    """A child that dies without recording its end (killed, crashed at import in a bundle) is a
    failure reported when it is seen dead, not a wait for the deadline."""
    from engine.jobs import create_job
    job = create_job(tmp_path / "jobs", "generate", out=tmp_path / "out", label="zoom")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job.record.pid, job.record.start_ticks = dead.pid, None
    job.save()
    (job.path / "log.txt").write_text("ImportError: cannot import name 'cudnn' from 'torch.backends'\n"
                                      "[PYI-123:ERROR] Failed to execute script '__main__'\n")
    check = selftest.DetachedJob.__new__(selftest.DetachedJob)
    check.d, check.t0, check.error, check.job = tmp_path, time.perf_counter(), None, job
    with pytest.raises(selftest.CheckFailed, match=f"failed: its process \\(pid {dead.pid}\\) ended without .*; "
                                                   "ImportError: cannot import name 'cudnn'"):
        check.check(tmp_path)
    assert time.perf_counter() - check.t0 < selftest.DETACHED_DEADLINE_S / 2


def test_detached_check_names_the_last_log_line_that_is_not_the_bootloaders(tmp_path):
    """A frozen child's bootloader ends its log with [PYI-...] lines; the error above them is the news."""
    from engine.jobs import create_job
    job = create_job(tmp_path / "jobs", "generate", out=tmp_path / "out", label="zoom")
    job.record.status = "failed"
    job.save()
    (job.path / "log.txt").write_text("ModuleNotFoundError: No module named 'x'\n"
                                      "[PYI-123:ERROR] Failed to execute script '__main__'\n")
    check = selftest.DetachedJob.__new__(selftest.DetachedJob)
    check.d, check.t0, check.error, check.job = tmp_path, time.perf_counter(), None, job
    with pytest.raises(selftest.CheckFailed, match="failed: ModuleNotFoundError: No module named 'x'$"):
        check.check(tmp_path)

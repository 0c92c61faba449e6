"""Output ownership and writing (#11 defects 1, 4, 8): one run per output, disk errors found early
and named by the user's path, modes from the umask."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import outdir
from engine.errors import InputError
from engine.outdir import Holder, OutputLock, atomic_write_bytes, check_room, lock_path, user_paths

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--label", "zoom", "--steps", "1", "--packets-max", "8", "-q"]


def _cli(*args):
    from netdiff_tui.cli import main
    return CliRunner().invoke(main, list(args))


_HOLD = ("import sys; from engine.outdir import OutputLock; l = OutputLock(sys.argv[1], 'holder test').acquire(); "
         "print('locked', flush=True); sys.stdin.read(); l.release()")


def _holder_process(out: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], cwd=ROOT, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


# -- the lock ------------------------------------------------------------------------------

def test_second_run_is_refused_naming_directory_and_holder(tmp_path):
    out = tmp_path / "out"
    p = _holder_process(out)
    try:
        with pytest.raises(InputError) as e:
            OutputLock(out).acquire()
        msg = str(e.value)
        assert msg.startswith(f"{out}: in use by another run: pid {p.pid} on {socket.gethostname()}")
        assert "holder test" in msg
    finally:
        p.stdin.close()
        p.wait(30)
    assert not lock_path(out).exists()          # released and removed on the way out
    with OutputLock(out) as lk:                 # free again
        assert lk.previous is None


def test_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "out"
    p = _holder_process(out)
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    assert lock_path(out).exists()               # the file stays, the kernel dropped the flock
    with OutputLock(out) as lk:
        assert lk.previous is not None and lk.previous.pid == p.pid
        rec = json.loads(lock_path(out).read_text())
        assert rec["pid"] == os.getpid() and rec["host"] == socket.gethostname()


def test_lock_is_reentrant_within_a_run(tmp_path):
    out = tmp_path / "out"
    with OutputLock(out):
        with OutputLock(out):                    # balance's inner export into the same OUT
            pass
        assert lock_path(out).exists()
    assert not lock_path(out).exists()


def test_leftovers_of_dead_runs_are_cleaned_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    for d in (".out.k2j4x9.partial", ".out.old-4242", ".out.partial", ".out.export", ".outer.x.partial", "out"):
        (tmp_path / d).mkdir()
    gone = outdir.clean_leftovers(out)
    assert sorted(p.name for p in gone) == [".out.k2j4x9.partial", ".out.old-4242"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.export", ".out.partial", ".outer.x.partial", "out"]


def test_holder_liveness_tells_reused_pid_and_other_host():
    me = Holder.me("x")
    assert me.alive() is True
    reused = Holder(me.pid, me.host, me.started, "x", (me.start_ticks or 0) + 1, me.boot_id)
    assert reused.alive() is False
    assert Holder(me.pid, "elsewhere.example", me.started, "x").alive() is None
    assert Holder.parse("not json") is None and Holder.parse('{"pid": -3, "host": "h"}') is None


def test_other_host_holder_without_flock_names_the_file_to_delete(tmp_path, monkeypatch):
    out = tmp_path / "out"
    rec = Holder(4242, "gpu-node-7", "2026-01-01T00:00:00+00:00", "netdiff generate ...")
    lock_path(out).parent.mkdir(parents=True, exist_ok=True)
    lock_path(out).write_text(json.dumps(rec.__dict__))

    def no_flock(fd, op):               # a network mount without flock
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(outdir.fcntl, "flock", no_flock)
    with pytest.raises(InputError) as e:
        OutputLock(out).acquire()
    assert "pid 4242 on gpu-node-7" in str(e.value) and f"delete {lock_path(out)}" in str(e.value)


def test_two_concurrent_generates_one_wins_and_its_dataset_is_complete(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "netdiff_tui", "generate", *TINY, "-n", "40", "-o", str(out)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    res = [(p.wait(300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in res)
    assert codes == [0, 2], res
    loser = next(err for c, err in res if c == 2)
    assert loser.startswith(f"netdiff: error: {out}: ") and "Traceback" not in loser
    assert "in use by another run" in loser or "exists and is not empty" in loser
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and len({r["file"] for r in rows}) == 40
    assert all((out / r["file"]).stat().st_size > 24 for r in rows)
    assert sorted(p.name for p in (out / "zoom").iterdir()) == sorted(Path(r["file"]).name for r in rows)
    assert not lock_path(out).exists() and not (tmp_path / ".out.partial").exists()


# -- room, unwritable places and I/O errors --------------------------------------------------

@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if generation gets as far as loading the model."""
    import engine.datasets.generate as gen

    def load_model(*a, **kw):
        raise AssertionError("the model was loaded before the output location was checked")
    monkeypatch.setattr(gen, "load_model", load_model)


def test_output_under_a_regular_file_fails_before_any_work(tmp_path, no_model):
    f = tmp_path / "file"
    f.write_text("x")
    out = f / "sub" / "out"
    r = _cli("generate", *TINY, "-n", "2", "-o", str(out))
    assert r.exit_code == 2
    assert r.output.strip() == f"netdiff: error: {out}: cannot be created: {f} is not a directory"


def test_unwritable_location_is_named(tmp_path):
    # tests run as root, for whom chmod does not stop writes; sysfs refuses new entries to anyone
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no /sys on this system")
    out = Path("/sys/netdiff-test-out/out")
    with pytest.raises(InputError) as e:
        check_room(out)
    assert str(e.value).startswith(f"{out}: cannot be created: ")


def test_full_file_system_is_detected_before_sampling(tmp_path, monkeypatch, no_model):
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(outdir.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 4096, 4096))
    out = tmp_path / "out"
    r = _cli("generate", *TINY, "-n", "2", "-o", str(out))
    assert r.exit_code == 2
    assert r.output.startswith(f"netdiff: error: {out}: not enough free space: 4.1 KB free")
    assert not out.exists() and not lock_path(out).exists()


def test_no_space_while_writing_names_the_users_path(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = outdir._write_fd

    def enospc_after_some(fd, chunks):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, chunks)
    monkeypatch.setattr(outdir, "_write_fd", enospc_after_some)
    out = tmp_path / "out"
    r = _cli("generate", *TINY, "-n", "6", "-o", str(out))
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert line.startswith(f"netdiff: error: {out}: cannot write: No space left on device")
    assert ".part" not in line and "--resume" in line
    assert not any(p.name.endswith(".part") for p in tmp_path.rglob("*"))


def test_user_paths_hides_work_names_and_keeps_visible_ones(tmp_path):
    out = tmp_path / "out"
    elsewhere = tmp_path / "in" / "capture.pcap"
    with pytest.raises(InputError) as e, user_paths(out):
        raise OSError(errno.EIO, "Input/output error", str(elsewhere))      # an input, not the output
    assert str(e.value) == f"{elsewhere}: Input/output error"
    for internal in (tmp_path / ".out.partial" / "zoom" / ".a.pcap.x1y2.part", None):
        with pytest.raises(InputError) as e, user_paths(out):
            raise OSError(errno.EIO, "Input/output error", internal and str(internal))
        assert str(e.value) == f"{out}: cannot write: Input/output error"
    for visible in (out / "zoom" / "a.pcap", tmp_path / ".out.partial" / "zoom" / "a.pcap"):
        with pytest.raises(InputError) as e, user_paths(out):
            raise OSError(errno.EIO, "Input/output error", str(visible))
        assert str(e.value) == f"{out}: cannot write zoom/a.pcap: Input/output error"


# -- modes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o002, 0o664, 0o775), (0o077, 0o600, 0o700)])
def test_files_and_directories_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        atomic_write_bytes(tmp_path / "f.bin", [b"abc"])
        outdir.make_dir(tmp_path / "d")
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").read_bytes() == b"abc"
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "d").stat().st_mode & 0o777 == dir_mode


def test_generated_dataset_is_group_readable_under_a_shared_umask(tmp_path):
    out = tmp_path / "out"
    old = os.umask(0o002)
    try:
        r = _cli("generate", *TINY, "-n", "2", "-o", str(out))
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in [out, *out.rglob("*")]}
    assert modes["."] == 0o775 and modes["zoom"] == 0o775
    assert all(m == 0o664 for k, m in modes.items() if k not in (".", "zoom")), modes


# -- export and balance take the same lock ---------------------------------------------------------

def _labeled_captures(tmp_path: Path) -> Path:
    import shutil
    real = tmp_path / "real"
    for cls in ("a", "b"):
        (real / cls).mkdir(parents=True)
        shutil.copy(ROOT / "tests" / "fixtures" / "eth.pcap", real / cls / "x.pcap")
    return real


@pytest.mark.parametrize("command", ["export", "balance"])
def test_export_and_balance_refuse_an_output_in_use(tmp_path, command):
    real = _labeled_captures(tmp_path)
    out = tmp_path / "out"
    args = [str(real), "-o", str(out)] if command == "export" else ["--real", str(real), "--target", "1", "-o", str(out)]
    p = _holder_process(out)
    try:
        r = _cli(command, *args)
    finally:
        p.stdin.close()
        p.wait(30)
    assert r.exit_code == 2
    assert r.output.startswith(f"netdiff: error: {out}: in use by another run: pid {p.pid} on ")
    assert not out.exists()
    r = _cli(command, *args)                     # once it is free, the same command runs
    assert r.exit_code == 0, r.output
    assert (out / "manifest.csv").is_file() and not lock_path(out).exists()

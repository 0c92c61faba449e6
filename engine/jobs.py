"""A job directory: what one long piece of work (a generation, a training run) leaves for others to follow.

::

    JOBS_DIR/<kind>-<name>-<YYYYmmdd-HHMMSS>-<pid>/
        job.json       who and what: kind, request, out, pid, host, start; its status and end
        events.jsonl   typed progress events (engine.progress.EventLog), appended as they happen

The command line and the console create jobs through :func:`create_job` alone, so a job started
in either is listed and followed by the other (``netdiff tui --follow DIR``, the Jobs tab); their
readers are :func:`engine.artifacts.read_job` and :func:`engine.artifacts.find_jobs`, and following
is :meth:`engine.progress.EventLog.follow`.

``status`` is ``running`` until :meth:`Job.finish` records ``done``, ``failed`` or ``cancelled``
(and a one-line reason). A job whose process died without finishing keeps ``running``; a reader
tells it from a live one by ``pid``, ``host`` and the process's start time (:func:`engine.artifacts.job_alive`)
and shows it as failed.

Detached jobs (:func:`start_detached`) are the same directories with two more files: the job runs
``netdiff ARGV --job-dir DIR`` as its own process in a new session (so a dropped SSH session's
SIGHUP, or the console quitting, does not reach it), stdin closed, stdout and stderr in ``log.txt``.
``argv`` in job.json is what :func:`resume_job` runs again (plus the command's resume option) and
what ``netdiff jobs show`` prints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import Cancelled, InputError
from engine.outdir import Holder, atomic_write_bytes
from engine.progress import Event, EventLog, Message

JOB_FILE = "job.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "log.txt"
JOB_VERSION = 1
STATUSES = ("running", "done", "failed", "cancelled")
KINDS = ("encode", "generate", "train", "evaluate", "export", "repair", "balance", "download", "job")
JOB_DIR_OPTION = "--job-dir"        # how a detached child is told which job it runs


@dataclass
class JobRecord:
    """The contents of ``job.json``.

    Attributes:
        kind: what the job does (one of :data:`KINDS`).
        request: the job's parameters as JSON values (a generation request, training options).
        out: the output directory or file the job writes (absolute), "" if none.
        pid: the process running it.
        host: the machine that process runs on (a pid means nothing elsewhere).
        start: wall time it started (seconds since the epoch).
        status: one of :data:`STATUSES`.
        end: wall time it finished, None while running.
        reason: one line saying why it failed or was cancelled.
        label: what a list shows beside the kind (a class, a run name).
        start_ticks, boot_id: tell the process apart from a later one given the same pid
            (engine.outdir.Holder decides whether it is alive).
        argv: the ``netdiff`` arguments that run it (detached jobs; what resume runs again).
        detached: started by :func:`start_detached` (its output is in ``log.txt``).
        resumable: running ``argv`` again (plus ``resume_args``) continues it after a stop.
        resume_args: what is added to ``argv`` to continue it (e.g. ``["--resume"]``; none where the
            same command continues by itself, as export does).
        device: where the work runs ("cpu", "cuda:0 (NVIDIA H200)"), "" when it needs no device.
        result: the command's summary once done (flows, packets, files, compliance ...).
        cwd: the directory ``argv`` is run in (its relative paths are relative to it).
    """

    kind: str
    request: dict = field(default_factory=dict)
    out: str = ""
    pid: int = 0
    host: str = ""
    start: float = 0.0
    status: str = "running"
    end: float | None = None
    reason: str = ""
    label: str = ""
    start_ticks: int | None = None
    boot_id: str = ""
    argv: list = field(default_factory=list)
    detached: bool = False
    resumable: bool = False
    resume_args: list = field(default_factory=list)
    device: str = ""
    result: dict = field(default_factory=dict)
    cwd: str = ""
    version: int = JOB_VERSION

    def holder(self) -> Holder:
        """The process as engine.outdir knows processes (its ``alive()`` is the one liveness rule)."""
        return Holder(self.pid, self.host, "", "", self.start_ticks, self.boot_id)

    def to_json(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self), indent=1, default=str) + "\n").encode()


class Job:
    """A created job: append events with ``job(event)``, end it with :meth:`finish`."""

    def __init__(self, path: Path, record: JobRecord):
        self.path = path
        self.record = record
        self.log = EventLog(path / EVENTS_FILE)

    @property
    def events_path(self) -> Path:
        return self.log.path

    def __call__(self, ev: Event) -> None:
        self.log(ev)

    def finish(self, status: str, reason: str = "", result: dict | None = None) -> None:
        if status not in STATUSES[1:]:
            raise ValueError(f"job status {status!r} (expected one of {', '.join(STATUSES[1:])})")
        self.record.status, self.record.end, self.record.reason = status, time.time(), reason
        if result is not None:
            self.record.result = request_dict(result)
        self.save()

    def save(self) -> None:
        atomic_write_bytes(self.path / JOB_FILE, [self.record.to_json()])

    @property
    def name(self) -> str:
        return self.path.name


def request_dict(req) -> dict:
    """A request object (a dataclass, a dict) as the JSON object job.json keeps."""
    if dataclasses.is_dataclass(req) and not isinstance(req, type):
        d = dataclasses.asdict(req)
    elif isinstance(req, dict):
        d = dict(req)
    else:
        raise TypeError(f"a job request is a dataclass or a dict, not {type(req).__name__}")
    return json.loads(json.dumps(d, default=str))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:60] or "job"


def create_job(jobs_dir: str | os.PathLike, kind: str, request=None, out: str | os.PathLike | None = None,
               label: str = "", argv: list[str] | None = None, resume_args: tuple[str, ...] | None = None) -> Job:
    """Make a new job directory under ``jobs_dir`` with its ``job.json`` (status ``running``).

    Raises:
        InputError: an unknown kind; OSError: the directory cannot be written.
    """
    if kind not in KINDS:
        raise InputError(None, f"unknown job kind {kind!r} (expected one of {', '.join(KINDS)})")
    now = time.time()
    me = Holder.me()
    rec = JobRecord(kind=kind, request=request_dict(request) if request is not None else {},
                    out=str(Path(out).resolve()) if out is not None else "", pid=me.pid, host=me.host,
                    start=now, label=label, start_ticks=me.start_ticks, boot_id=me.boot_id,
                    argv=list(argv or []), resumable=resume_args is not None, resume_args=list(resume_args or ()),
                    cwd=os.getcwd())
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    base = Path(jobs_dir).expanduser()
    name = "-".join(x for x in (kind, _slug(label) if label else "", stamp, str(rec.pid)) if x)
    path, n = base / name, 1
    while True:
        try:
            path.mkdir(parents=True)
            break
        except FileExistsError:         # same second, same process: a second job
            n += 1
            path = base / f"{name}-{n}"
    atomic_write_bytes(path / JOB_FILE, [rec.to_json()])
    (path / EVENTS_FILE).touch()        # listed (and followable) from the start, before its first event
    return Job(path, rec)


def netdiff_command() -> list[str]:
    """How this installation runs ``netdiff``: the frozen binary itself, or this Python's module."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "netdiff_tui"]


def start_detached(jobs_dir: str | os.PathLike, kind: str, argv: list[str], *, request=None,
                   out: str | os.PathLike | None = None, label: str = "", resume_args: tuple[str, ...] | None = None,
                   env: dict | None = None, cwd: str | os.PathLike | None = None) -> Job:
    """Run ``netdiff ARGV`` as a detached job and return at once.

    The child runs in a new session (no controlling terminal: closing the SSH session or the
    console does not stop it), with stdin closed and its output in the job's ``log.txt``; it
    takes the job over (:func:`adopt_job`) and records how it ended. ``job.json`` names the
    child's pid from the start, so the job is never mistaken for a dead one while it starts.

    Raises:
        InputError: an unknown kind; OSError: the jobs directory cannot be written or the
            program cannot be started.
    """
    job = create_job(jobs_dir, kind, request, out, label, argv=argv, resume_args=resume_args)
    job.record.detached = True
    job.record.cwd = str(Path(cwd or os.getcwd()).resolve())
    cmd = netdiff_command() + list(argv) + [JOB_DIR_OPTION, str(job.path)]
    child_env = dict(os.environ if env is None else env)
    child_env.pop("RANK", None)
    with open(job.path / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=child_env, close_fds=True, cwd=job.record.cwd)
    # reap it when it ends, so a long-lived parent (the console) leaves no zombie behind
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()
    child = Holder.of_pid(proc.pid)
    job.record.pid, job.record.start_ticks, job.record.boot_id = child.pid, child.start_ticks, child.boot_id
    job.save()
    return job


def adopt_job(path: str | os.PathLike) -> Job:
    """The detached child's side: take over the job directory its parent made (pid, start time).

    Raises:
        InputError: ``path`` is not a job directory made by :func:`start_detached`.
    """
    from engine.artifacts.jobs import read_job
    path = Path(path)
    rec = read_job(path)
    me = Holder.me()
    rec.pid, rec.host, rec.start_ticks, rec.boot_id = me.pid, me.host, me.start_ticks, me.boot_id
    rec.status, rec.end, rec.reason = "running", None, ""
    job = Job(path, rec)
    job.save()
    return job


def cancel_job(path: str | os.PathLike) -> None:
    """Ask a running job to stop (SIGTERM to its process group, as a scheduler would): it saves
    what it can, records ``cancelled`` and exits. Work it finished stays; resume continues it.

    Raises:
        InputError: the job is not running, or runs on another machine.
    """
    from engine.artifacts.jobs import effective_status, job_alive, read_job
    path = Path(path)
    rec = read_job(path)
    status = effective_status(rec)[0]
    if status != "running":
        raise InputError(path, f"job is not running (status: {status})")
    if job_alive(rec) is None:
        raise InputError(path, f"job runs on {rec.host}; cancel it there")
    try:
        if rec.detached and os.getpgid(rec.pid) == rec.pid:
            os.killpg(rec.pid, signal.SIGTERM)   # the whole group: accelerate's worker processes too
        else:
            os.kill(rec.pid, signal.SIGTERM)
    except ProcessLookupError:
        raise InputError(path, "job is not running (its process just ended)") from None


def resume_job(jobs_dir: str | os.PathLike, path: str | os.PathLike) -> Job:
    """Start a new detached job that continues a stopped one: the same command plus its resume option.

    Raises:
        InputError: the job is still running, was started without a command line (not detached
            and not recorded), or its command cannot be resumed.
    """
    from engine.artifacts.jobs import job_alive, read_job
    path = Path(path)
    rec = read_job(path)
    if rec.status == "running" and job_alive(rec) is not False:
        raise InputError(path, "job is still running")
    if rec.status == "done":
        raise InputError(path, "job finished; nothing to resume")
    if not rec.argv:
        raise InputError(path, "job has no recorded command line to run again")
    if not rec.resumable:
        raise InputError(path, f"'netdiff {rec.argv[0]}' cannot be resumed; start it again")
    argv = list(rec.argv) + [a for a in rec.resume_args if a not in rec.argv]
    if rec.cwd and not Path(rec.cwd).is_dir():
        raise InputError(path, f"job ran in {rec.cwd}, which is gone; its relative paths cannot be resolved")
    return start_detached(jobs_dir, rec.kind, argv, request=rec.request, out=rec.out or None, label=rec.label,
                          resume_args=rec.resume_args, cwd=rec.cwd or None)


@contextmanager
def running(job: Job | None) -> Iterator[Job | None]:
    """Record how the work in the ``with`` block ended: done, cancelled (Ctrl-C, a signal, a cancel
    button) or failed, with a one-line reason also logged as a message event. ``None`` passes."""
    if job is None:
        yield None
        return
    try:
        yield job
    except (Cancelled, KeyboardInterrupt) as e:
        reason = str(e) or type(e).__name__
        if type(e) is not KeyboardInterrupt and isinstance(e, KeyboardInterrupt):
            reason = f"stopped by {reason}"     # StopRequested: SIGTERM (netdiff jobs cancel) or SIGHUP
        _quietly(job, "cancelled", reason, "warning")
        raise
    except SystemExit as e:
        if e.code in (0, None):
            _quietly(job, "done", "", None)
        else:
            _quietly(job, "failed", f"exit status {e.code}", "error")
        raise
    except BaseException as e:
        text = str(e).strip().splitlines()
        reason = (text[0] if text else type(e).__name__)[:500]
        _quietly(job, "failed", reason, "error")
        raise
    else:
        _quietly(job, "done", "", None)


def _quietly(job: Job, status: str, reason: str, level: str | None) -> None:
    try:
        if level is not None:
            job(Message(level, reason))
        job.finish(status, reason)
    except OSError:
        pass            # the job record is a convenience: it never hides the work's own outcome

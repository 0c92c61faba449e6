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
tells it from a live one by ``pid``, ``host`` and the process's start time (:func:`engine.artifacts.job_alive`). Detached jobs
(a later issue) add fields here; readers ignore fields they do not know.
"""

from __future__ import annotations

import dataclasses
import json
import os
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
JOB_VERSION = 1
STATUSES = ("running", "done", "failed", "cancelled")
KINDS = ("generate", "train", "evaluate", "export", "repair", "balance", "job")


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

    def finish(self, status: str, reason: str = "") -> None:
        if status not in STATUSES[1:]:
            raise ValueError(f"job status {status!r} (expected one of {', '.join(STATUSES[1:])})")
        self.record.status, self.record.end, self.record.reason = status, time.time(), reason
        atomic_write_bytes(self.path / JOB_FILE, [self.record.to_json()])


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
               label: str = "") -> Job:
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
                    start=now, label=label, start_ticks=me.start_ticks, boot_id=me.boot_id)
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
        _quietly(job, "cancelled", reason, "warning")
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

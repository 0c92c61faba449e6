"""Jobs on disk: directories with an ``events.jsonl`` (training runs, generations; engine.jobs
writes the ``job.json`` beside it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.artifacts.fields import Fields, read_json_object
from engine.artifacts.models import TRAIN_CONFIG, candidate_dirs
from engine.errors import InputError
from engine.jobs import EVENTS_FILE, JOB_FILE, KINDS, STATUSES, JobRecord

MAX_PID = 2**22          # Linux pid_max's ceiling
MAX_TIME = 2**40         # seconds since the epoch; a file claiming more is not ours


def read_job(d: str | Path) -> JobRecord:
    """A job directory's ``job.json``.

    Raises:
        InputError: missing or unreadable, or a field of the wrong type or range.
    """
    p = Path(d) / JOB_FILE
    f = Fields(read_json_object(p), p)
    return JobRecord(kind=f.str_("kind", "job", KINDS), request=f.obj("request").d, out=f.str_("out"),
                     pid=f.int_("pid", 0, MAX_PID, 0), host=f.str_("host"), start=f.float_("start", 0, MAX_TIME, 0.0),
                     status=f.str_("status", "running", STATUSES), end=f.float_("end", 0, MAX_TIME),
                     reason=f.str_("reason"), label=f.str_("label"), start_ticks=f.int_("start_ticks", 0, 2**63 - 1),
                     boot_id=f.str_("boot_id"), version=f.int_("version", 0, 1000, 0))


def job_alive(rec: JobRecord) -> bool | None:
    """Whether a ``running`` job's process still runs: None when it ran on another host (unknowable here)."""
    if rec.status != "running":
        return False
    if rec.pid <= 0:
        return None
    return rec.holder().alive()


@dataclass
class JobEntry:
    """A directory with an ``events.jsonl``: a training run or a job."""

    name: str
    path: Path                      # the events.jsonl
    kind: str                       # "train", "generate", ... or "job"
    modified: float = 0.0
    size: int = 0
    record: JobRecord | None = None
    problem: str = ""               # why job.json could not be read, if it could not

    @property
    def status(self) -> str:
        if self.record is None:
            return ""
        if self.record.status == "running" and job_alive(self.record) is False:
            return "stopped"            # its process is gone without recording an end
        return self.record.status


def job_entry(d: Path) -> JobEntry:
    ev = d / EVENTS_FILE
    st = ev.stat()
    rec, problem, kind = None, "", "job"
    if (d / TRAIN_CONFIG).is_file():
        kind = "train"
    elif (d / JOB_FILE).is_file():
        try:
            rec = read_job(d)
            kind = rec.kind
        except InputError as e:
            problem = str(e)
    elif (d / "generate.json").is_file():
        kind = "generate"
    return JobEntry(d.name, ev, kind, st.st_mtime, st.st_size, rec, problem)


def find_jobs(dirs: list[str | Path]) -> list[JobEntry]:
    """Every directory holding an ``events.jsonl`` under ``dirs``, two levels down (newest first)."""
    out, seen = [], set()
    for root in dirs:
        for d in candidate_dirs(Path(root).expanduser()):
            ev = d / EVENTS_FILE
            if ev.is_file() and ev.resolve() not in seen:
                seen.add(ev.resolve())
                out.append(job_entry(d))
    return sorted(out, key=lambda j: -j.modified)


def events_path(p: str | Path) -> Path:
    """A job directory or its events file -> the events file."""
    p = Path(p).expanduser()
    return p / EVENTS_FILE if p.is_dir() else p

"""Jobs on disk: directories with an ``events.jsonl`` (training runs, generations; engine.jobs
writes the ``job.json`` beside it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.artifacts.fields import Fields, read_json_object
from engine.artifacts.models import TRAIN_CONFIG, candidate_dirs
from engine.errors import InputError
from engine.jobs import EVENTS_FILE, JOB_FILE, KINDS, LOG_FILE, STATUSES, JobRecord

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
                     boot_id=f.str_("boot_id"), argv=list(f.str_list("argv", 1000)),
                     detached=bool(f.bool_("detached", False)), resumable=bool(f.bool_("resumable", False)),
                     resume_args=list(f.str_list("resume_args", 20)),
                     device=f.str_("device"), result=f.obj("result").d, cwd=f.str_("cwd"), version=f.int_("version", 0, 1000, 0))


MAX_LOG_TAIL = 1 << 20       # bytes of a log read for its last lines: a huge log costs no more


def log_tail(d: str | Path, n: int = 20) -> list[str]:
    """The last ``n`` lines of a job's ``log.txt`` (progress-bar carriage returns resolved), [] if none."""
    p = Path(d) / LOG_FILE
    try:
        with open(p, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - MAX_LOG_TAIL))
            data = f.read()
    except OSError:
        return []
    lines = [ln.rsplit("\r", 1)[-1] for ln in data.decode("utf-8", "replace").splitlines()]
    return [ln for ln in lines if ln.strip()][-n:] if n > 0 else []


def effective_status(rec: JobRecord) -> tuple[str, str]:
    """(status, reason) as a user should read them: a ``running`` job whose process is gone failed."""
    if rec.status == "running" and job_alive(rec) is False:
        return "failed", f"its process (pid {rec.pid}) ended without recording an end"
    return rec.status, rec.reason


def resolve_job(jobs_dir: str | Path, ref: str) -> Path:
    """A job named on the command line: its directory, its name, or a unique prefix of its name.

    Raises:
        InputError: no such job, or the prefix names several.
    """
    p = Path(ref).expanduser()
    if (p / JOB_FILE).is_file():
        return p
    base = Path(jobs_dir).expanduser()
    if (base / ref / JOB_FILE).is_file():
        return base / ref
    hits = sorted(d for d in base.glob(f"{ref}*") if (d / JOB_FILE).is_file()) if base.is_dir() and ref else []
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise InputError(None, f"no job {ref!r} in {base} (netdiff jobs list shows them)")
    raise InputError(None, f"{ref!r} names {len(hits)} jobs ({', '.join(h.name for h in hits[:4])}"
                           f"{', ...' if len(hits) > 4 else ''}); give more of the name")


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
        return "" if self.record is None else effective_status(self.record)[0]

    @property
    def reason(self) -> str:
        return self.problem if self.record is None else effective_status(self.record)[1]


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

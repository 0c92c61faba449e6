"""How a run owns and writes its output: one lock per output, atomic files, user-facing I/O errors.

Every command that writes a dataset directory (``generate``, ``export``,
``balance``) goes through here, so the rules hold in one place:

Ownership
    ``OutputLock(OUT)`` holds ``.OUT.lock`` next to ``OUT`` with an exclusive
    ``fcntl.flock`` for the whole run. The kernel decides who wins, so two runs
    started at the same instant cannot both get it; the loser fails at once
    with one line naming ``OUT`` and the holder (pid, host, start time,
    command: the JSON the holder wrote into the lock file). The file is
    unlinked by its holder on the way out, and a run that locked a file checks
    that the path still names the file it locked (else a holder unlinking it
    in between would let two runs in).

Stale locks
    A run killed with SIGKILL (or a crashed machine) leaves the file behind,
    but never the flock: the kernel drops it when the process dies, so a
    leftover file never blocks. The next run takes it over and says whose it
    was. Where the file system has no flock (``ENOLCK``/``EOPNOTSUPP``: some
    network mounts) the record decides: a holder on this host is alive when its
    pid runs and has the same start time (``/proc/PID/stat`` field 22 and the
    boot id, so a reused pid does not count); a holder on another host cannot be
    checked from here, and the error tells the user to delete the lock file
    once that run is known to be gone.

Writing
    :func:`atomic_write_bytes` writes through a temp file and a rename, and gives
    the file the mode an ordinary ``open`` would (0666 less the umask: datasets
    are shared on lab servers), not mkstemp's 0600; :func:`make_dir` likewise.
    :func:`check_room` runs before any work: the output location must be
    creatable and writable, with room for a first batch. :func:`user_paths`
    turns any ``OSError`` from the writing into an :class:`InputError` naming the
    user's path (never an internal temp name).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.errors import InputError

_umask_lock = threading.Lock()


# -- modes ---------------------------------------------------------------------------------

def current_umask() -> int:
    """The process umask, read without a window where it is changed (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        u = os.umask(0o022)
        os.umask(u)
    return u


def file_mode() -> int:
    return 0o666 & ~current_umask()


def make_dir(path: str | os.PathLike, parents: bool = False, exist_ok: bool = False) -> Path:
    """mkdir with the umask's mode (what ``mkdir`` in a shell gives), unlike mkdtemp's 0700."""
    p = Path(path)
    p.mkdir(mode=0o777, parents=parents, exist_ok=exist_ok)
    return p


def _write_fd(fd: int, chunks: Iterable) -> None:
    for c in chunks:
        view = memoryview(c).cast("B")
        while view:
            n = os.write(fd, view)
            view = view[n:]


def atomic_write_bytes(path: str | os.PathLike, chunks) -> None:
    """Write ``chunks`` (bytes-likes) to ``path`` through a temp file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        try:
            os.fchmod(fd, file_mode())
            _write_fd(fd, chunks)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# -- room and errors -------------------------------------------------------------------------

def _first_existing(p: Path) -> Path:
    p = p.absolute()
    while not os.path.lexists(p):
        p = p.parent
    return p


def check_room(out: str | os.PathLike, need_bytes: int = 0) -> None:
    """Fail now, naming ``out``, if it cannot be created or written, or its file system lacks
    ``need_bytes`` free. Creates ``out``'s parent (an output location is a directory)."""
    out = Path(out)
    anc = _first_existing(out.parent)
    if not anc.is_dir():
        raise InputError(out, f"cannot be created: {anc} is not a directory")
    with user_paths(out, "cannot be created"):
        make_dir(out.parent, parents=True, exist_ok=True)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory")
    # a real write: root passes os.access on read-only mounts and under chmod 0
    with user_paths(out, "cannot write there"):
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
        os.close(fd)
        os.unlink(probe)
    if need_bytes > 0:
        try:
            free = shutil.disk_usage(out.parent).free
        except OSError:
            return
        if free < need_bytes:
            raise InputError(out, f"not enough free space: {_size(free)} free on its file system, "
                                  f"the first batch needs about {_size(need_bytes)}")


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


@contextlib.contextmanager
def user_paths(out: str | os.PathLike, doing: str = "cannot write") -> Iterator[None]:
    """Turn an ``OSError`` raised inside into an InputError naming ``out`` (and the file inside
    ``out`` it concerned, when it was one the user will see)."""
    try:
        yield
    except InputError:
        raise
    except OSError as e:
        what = e.strerror or str(e)
        parts = _parts_in(out, e.filename)
        if parts is None:           # not ours: an input that could not be read, say
            raise InputError(e.filename, what) from None
        inside = "/".join(parts[1:]) if len(parts) > 1 and not any(q.startswith(".") for q in parts[1:]) else ""
        raise InputError(out, f"{doing}{f' {inside}' if inside else ''}: {what}") from None


def _parts_in(out, filename) -> tuple[str, ...] | None:
    """``filename``'s parts from ``out``'s parent when it is ``out`` or in it or in one of its work
    directories (``.OUT.partial``, ``.OUT.export``, ``.OUT.lock``, ...); ``()`` for no file name
    or a directory on the way to OUT; None for a file elsewhere. Inside OUT a file keeps its name; hidden (temp) names mean
    nothing to the user and are left out by the caller."""
    if not filename:
        return ()
    f, o = Path(os.fspath(filename)).absolute(), Path(out).absolute()
    if o.is_relative_to(f):          # a directory on the way to OUT (being created)
        return ()
    try:
        rel = f.relative_to(o.parent)
    except (ValueError, TypeError):
        return None
    name = Path(out).name
    if not rel.parts or not (rel.parts[0] == name or rel.parts[0].startswith(f".{name}.")):
        return None
    return rel.parts


# -- ownership ---------------------------------------------------------------------------------

@dataclass
class Holder:
    """Who holds (or held) an output: the lock file's record."""

    pid: int
    host: str
    started: str             # ISO time, for people
    command: str
    start_ticks: int | None = None    # /proc/PID/stat starttime: tells a reused pid apart
    boot_id: str = ""

    @classmethod
    def me(cls, command: str | None = None) -> "Holder":
        return cls(os.getpid(), socket.gethostname(), dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                   command if command is not None else _command_line(), _start_ticks(os.getpid()), _boot_id())

    @classmethod
    def of_pid(cls, pid: int, command: str = "") -> "Holder":
        """Another process on this machine (a child just started), as :meth:`me` describes this one."""
        return cls(pid, socket.gethostname(), dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                   command, _start_ticks(pid), _boot_id())

    @classmethod
    def parse(cls, text: str) -> "Holder | None":
        try:
            d = json.loads(text)
            h = cls(int(d["pid"]), str(d["host"]), str(d.get("started", "?")), str(d.get("command", "?")),
                    None if d.get("start_ticks") is None else int(d["start_ticks"]), str(d.get("boot_id", "")))
        except (ValueError, KeyError, TypeError):
            return None
        return h if h.pid > 0 else None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started} ({self.command})"

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool | None:
        """True/False for a holder on this host; None when it cannot be told (another host)."""
        if not self.here:
            return None
        if self.boot_id and _boot_id() and self.boot_id != _boot_id():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        if self.start_ticks is not None:
            now = _start_ticks(self.pid)
            if now is not None and now != self.start_ticks:
                return False        # the pid was reused by another process
        if _state(self.pid) == "Z":
            return False            # ended; its parent has not reaped it yet
        return True


def _command_line() -> str:
    args = [Path(sys.argv[0]).name if sys.argv else "python"] + sys.argv[1:]
    s = " ".join(args)
    return s if len(s) <= 300 else s[:297] + "..."


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        # the command name (field 2) may hold spaces and ')'; fields after the last ')' are fixed
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        return stat[stat.rindex(")") + 2:].split()[0]
    except (OSError, ValueError, IndexError):
        return ""


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def lock_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}.lock"


_held: dict[str, list] = {}        # lock path -> [OutputLock, depth]: a run's nested steps share its lock
_held_guard = threading.Lock()


class OutputLock:
    """Exclusive ownership of the output directory ``out`` for one run (see the module docstring).

    Re-entrant within a process: ``balance`` holds OUT and its inner ``export``
    into OUT takes the same lock again. ``previous`` is the record a dead run
    left, when this run took its leftover file over.
    """

    def __init__(self, out: str | os.PathLike, command: str | None = None):
        self.out = Path(out)
        self.path = lock_path(self.out)
        self.command = command
        self.fd: int | None = None
        self.previous: Holder | None = None
        self._key = os.path.join(os.path.realpath(self.path.parent), self.path.name)

    def acquire(self) -> "OutputLock":
        with _held_guard:
            if self._key in _held:
                _held[self._key][1] += 1
                self.previous = _held[self._key][0].previous
                return self
        with user_paths(self.out, "cannot lock it"):
            for _ in range(20):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, file_mode())
                try:
                    got = self._flock(fd)
                    if got and self._same_file(fd):
                        break
                except BaseException:
                    os.close(fd)
                    raise
                os.close(fd)     # the holder unlinked it between our open and flock: try the new one
            else:
                raise InputError(self.out, f"could not lock {self.path} (it keeps being replaced)")
            try:
                text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
                self.previous = Holder.parse(text) if text.strip() else None
                rec = json.dumps(asdict(Holder.me(self.command))).encode() + b"\n"
                os.ftruncate(fd, 0)
                os.pwrite(fd, rec, 0)
            except BaseException:
                os.close(fd)
                raise
        self.fd = fd
        with _held_guard:
            _held[self._key] = [self, 1]
        return self

    def _flock(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            self._busy(self._holder(fd), flock=True)
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
        # no flock on this file system: the record decides (a small race between two runs
        # starting within the same millisecond remains; flock-capable file systems have none)
        h = self._holder(fd)
        if h is not None and h.pid != os.getpid() and h.alive() is not False:
            self._busy(h, flock=False)
        return True

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        fst = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)

    @staticmethod
    def _holder(fd: int) -> Holder | None:
        try:
            return Holder.parse(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        except OSError:
            return None

    def _busy(self, h: Holder | None, flock: bool) -> None:
        who = h.describe() if h is not None else "another run"
        if h is not None and not h.here:
            hint = f"; if that run is gone, delete {self.path}"
        elif flock and h is not None and h.alive() is False:
            hint = f" (no longer running: a process it started still holds {self.path})"
        else:
            hint = ""
        raise InputError(self.out, f"in use by another run: {who}{hint}")

    def release(self) -> None:
        with _held_guard:
            ent = _held.get(self._key)
            if ent is None or ent[0] is not self:
                if ent is not None:
                    ent[1] -= 1
                return
            ent[1] -= 1
            if ent[1] > 0:
                return
            del _held[self._key]
        fd, self.fd = self.fd, None
        if fd is None:
            return
        # unlink while still holding it: a run waiting on this inode re-checks the path and retries
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(fd)

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def clean_leftovers(out: str | os.PathLike, keep: Iterable[Path] = ()) -> list[Path]:
    """Remove ``.OUT.<random>.partial`` / ``.OUT.old-<pid>`` directories of runs that died
    (call it only while holding OUT's lock); returns what was removed."""
    out = Path(out)
    keep = {Path(k).name for k in keep}
    gone = []
    try:
        names = os.listdir(out.parent)
    except OSError:
        return gone
    pre = f".{out.name}."
    for n in names:
        if not n.startswith(pre) or n in keep:
            continue
        rest = n[len(pre):]
        if rest.endswith(".partial") or rest.startswith("old-"):
            p = out.parent / n
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p)
    return gone


def replace_dir(src: Path, out: Path) -> None:
    """Move the finished ``src`` into place as ``out`` (an existing ``out`` is replaced)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(src, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

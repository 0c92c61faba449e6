"""Typed progress events for long work, and a cancellation token.

Engine functions take an optional ``on_event`` callback; the CLI turns events
into a progress bar, the TUI into a live view, and jobs append them to an
``events.jsonl`` file so that another process can follow (see
:class:`EventLog`). Nothing here assumes a terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import Cancelled


@dataclass
class Event:
    """Base class: every event has a kind (its class name) and a wall time."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = type(self).__name__
        return d


@dataclass
class TaskStarted(Event):
    task: str
    total: float | None = None
    unit: str = ""
    time: float = field(default_factory=time.time)


@dataclass
class TaskProgress(Event):
    task: str
    done: float
    total: float | None = None
    unit: str = ""
    detail: str = ""
    time: float = field(default_factory=time.time)


@dataclass
class TaskFinished(Event):
    task: str
    summary: dict = field(default_factory=dict)
    time: float = field(default_factory=time.time)


@dataclass
class TrainStep(Event):
    step: int
    total_steps: int
    loss: float
    lr: float
    it_per_s: float
    eta_s: float
    device_mem_mb: float = 0.0
    time: float = field(default_factory=time.time)


@dataclass
class Message(Event):
    level: str
    text: str
    time: float = field(default_factory=time.time)


EVENT_TYPES = {c.__name__: c for c in (TaskStarted, TaskProgress, TaskFinished, TrainStep, Message)}

OnEvent = Callable[[Event], None]


def event_from_dict(d: dict) -> Event:
    d = dict(d)
    cls = EVENT_TYPES[d.pop("kind")]
    return cls(**d)


class CancelToken:
    """Set from any thread (a signal handler, a UI button); checked by the worker."""

    def __init__(self):
        self._ev = threading.Event()

    def cancel(self) -> None:
        self._ev.set()

    @property
    def cancelled(self) -> bool:
        return self._ev.is_set()

    def check(self) -> None:
        if self._ev.is_set():
            raise Cancelled("cancelled")


class StopRequested(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C's KeyboardInterrupt would be, so every command
    stops on them the way it stops on Ctrl-C (a dropped SSH session sends SIGHUP, a
    scheduler or ``kill`` sends SIGTERM)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


_pending_stop: int | None = None


def _raise_stop(signum, frame):
    # Raising from a handler is not enough on its own: Python runs the handler in whatever
    # bytecode the main thread is in, and an exception raised inside a __del__ or a weakref
    # callback is printed and dropped ("Exception ignored in ..."). The signal is therefore
    # also recorded, and check_stop() raises it again at the next safe point.
    global _pending_stop
    _pending_stop = signum
    if _deferred:
        return          # raised by stop_deferred() when its block ends
    raise StopRequested(signum)


_deferred = 0


@contextlib.contextmanager
def stop_deferred():
    """SIGTERM/SIGHUP that arrive inside the block stop the run when it ends, not in it: a window
    of flows being committed to disk is kept whole (a stop mid-commit threw the window away)."""
    global _deferred
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1
    if not _deferred:
        check_stop()


def check_stop() -> None:
    """Raise :class:`StopRequested` if SIGTERM/SIGHUP arrived and its first raise was lost.
    Called between batches by long loops and by every progress sink (main thread only)."""
    if _pending_stop is not None and threading.current_thread() is threading.main_thread():
        raise StopRequested(_pending_stop)


def pending_stop() -> int | None:
    """The stop signal received by this process, if any (whether or not its raise got through)."""
    return _pending_stop


def stop_on_signals() -> None:
    """Make SIGTERM and SIGHUP stop the process like Ctrl-C (idempotent; main thread only,
    where Python delivers signals). Code that saves state on a stop request installs its own
    handlers for the duration (training) and puts these back."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in STOP_SIGNALS:
        if signal.getsignal(s) in (signal.SIG_DFL, _raise_stop):
            signal.signal(s, _raise_stop)


def stop_status(exc: BaseException | None) -> int:
    """The exit status of a run stopped by ``exc`` (or the stop that caused it): 128 + the signal."""
    while exc is not None and not isinstance(exc, KeyboardInterrupt):
        exc = exc.__cause__ or exc.__context__
    return 128 + (exc.signum if isinstance(exc, StopRequested) else signal.SIGINT)


class EventLog:
    """Append-only JSON-lines event file: the job's state as another process sees it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, ev: Event) -> None:
        line = json.dumps(ev.to_dict()) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)

    def read(self) -> list[Event]:
        return list(self.follow(stop_at_end=True))

    def follow(self, stop_at_end: bool = False, poll: float = 0.5, stop: Callable[[], bool] | None = None,
               idle: bool = False) -> Iterator[Event | None]:
        """Yield events as they are appended (complete lines only), from any process.

        The file may be hostile or half-written: a line that is not an event is skipped and
        counted in ``bad_lines``; a file truncated or replaced is read again from its start.
        ``stop`` is asked between looks (a console worker stops following without waiting for
        an event); with ``idle`` a ``None`` is yielded each time the reader has caught up, so a
        caller can show what it has gathered.
        """
        pos, buf = 0, b""
        self.bad_lines = 0
        while stop is None or not stop():
            try:
                with open(self.path, "rb") as f:
                    if f.seek(0, 2) < pos:      # truncated or replaced: start over
                        pos, buf = 0, b""
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
            except FileNotFoundError:
                chunk = b""
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for ln in lines:
                if ln.strip():
                    try:
                        yield event_from_dict(json.loads(ln))
                    except (ValueError, KeyError, TypeError):
                        self.bad_lines += 1
            if stop_at_end:
                return
            if idle:
                yield None
            deadline = time.monotonic() + poll
            while time.monotonic() < deadline and (stop is None or not stop()):
                time.sleep(min(0.05, poll))


def fanout(*callbacks: OnEvent | None) -> OnEvent:
    cbs = [c for c in callbacks if c is not None]

    def emit(ev: Event) -> None:
        for c in cbs:
            c(ev)
    return emit

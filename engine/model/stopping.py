"""When a training loop stops before its last step: a stop signal, the cancel token, or the wall-time
limit (``netdiff train --time-limit``), agreed by every process at the same step. Both trainers
(engine.model.train, engine.model.sd.train) run their loops inside one :class:`StopPoll`."""

from __future__ import annotations

import signal
import threading
import time

import torch

from engine.errors import InputError
from engine.progress import CancelToken


class StopPoll:
    """``with StopPoll(acc, cancel, time_limit, started) as poll:`` then ``poll()`` before each step:
    ``"stop"`` (SIGINT, SIGTERM or SIGHUP (engine.progress.STOP_SIGNALS) or the cancel token: save and
    raise), ``"time"`` (``time_limit`` seconds after ``started``: save and export as it is) or None.

    While the block runs, the first stop signal only sets a flag, so the loop saves at the next step
    boundary; a second one gives up at once (KeyboardInterrupt)."""

    clock = staticmethod(time.monotonic)

    def __init__(self, acc, cancel: CancelToken | None, time_limit: float | None, started: float):
        self.check(time_limit)
        self.acc, self.cancel = acc, cancel
        self.deadline = None if time_limit is None else started + time_limit
        self.hit = False
        self.old = {}

    @staticmethod
    def check(time_limit: float | None) -> None:
        """Refuse a limit that is not a positive number of seconds (before anything is loaded)."""
        if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit > 0):
            raise InputError(None, f"time limit must be > 0 seconds, got {time_limit!r}")

    def __enter__(self) -> "StopPoll":
        if threading.current_thread() is threading.main_thread():
            from engine.progress import STOP_SIGNALS
            for s in (signal.SIGINT, *STOP_SIGNALS):
                self.old[s] = signal.signal(s, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.hit:   # second signal: give up immediately
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *a):
        for s, h in self.old.items():
            signal.signal(s, h)

    def __call__(self) -> str | None:
        stop = self.hit or (self.cancel is not None and self.cancel.cancelled)
        over = self.deadline is not None and self.clock() >= self.deadline
        if self.acc.num_processes > 1:
            f = torch.tensor([float(stop), float(over)], device=self.acc.device)
            stop, over = (bool(v > 0) for v in self.acc.reduce(f, reduction="sum").tolist())
        return "stop" if stop else "time" if over else None

"""Sampling on every CPU core from one ``netdiff generate``: a pool of worker processes.

One torch thread per process, not several threads in one: the thread count can change how a
matrix product is split and so the last bits of a float (samples must not depend on the
machine), and OpenMP threads on shared cores wait on each other (engine.model.diffusion.cpu_threads).
A flow's result depends only on its index and the options (``sample_flows``), so chunks can go to
whichever process is free and the bytes are those of one process; a test compares them.

Workers are spawned (a forked torch with an OpenMP pool can hang), load the checkpoint once,
ignore Ctrl-C (the parent decides) and exit when the parent is gone, so a killed job leaves no
orphans. A worker that dies (out of memory, killed) fails the run with one line.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict

import numpy as np

from engine.errors import InputError
from engine.progress import CancelToken, OnEvent, TaskProgress, check_stop

CHUNK = 16                  # flows per task: small enough to balance, large enough for matrix products
FLOWS_PER_PROCESS = 48      # a worker costs a few seconds of start-up (torch import, model load)
MEMORY_PER_PROCESS = 1.5e9  # peak RSS of a 64-flow batch of 128 packets is ~1.2 GB (bench/model.md)

_state: dict = {}


def usable_cores() -> int:
    """CPU cores this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _available_memory() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def auto_processes(count: int) -> int:
    """How many sampling processes ``count`` flows are worth on this machine: one per core, none
    beyond what memory holds, and one (no pool) for a few flows, where start-up would dominate."""
    n = min(usable_cores(), max(1, math.ceil(count / FLOWS_PER_PROCESS)))
    mem = _available_memory()
    if mem is not None:
        n = min(n, max(1, int(mem // MEMORY_PER_PROCESS)))
    return max(1, n)


class _Guides:
    """The guides a chunk's flows start from, by their index in the request's guide list (only
    those travel to the worker, so a worker's memory is bounded by its chunk)."""

    def __init__(self, n: int, picked: dict[int, np.ndarray]):
        self.n, self.picked = n, picked

    def __len__(self) -> int:
        return self.n

    def __bool__(self) -> bool:
        return self.n > 0

    def __getitem__(self, k) -> np.ndarray:
        return self.picked[int(k)]


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(1.0)


def _init(model_dir: str, label: str, opts, parent: int) -> None:
    # Ctrl-C and a job's SIGTERM/SIGHUP reach the whole process group: the parent stops the run,
    # keeps what is written and kills the workers
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import torch
    torch.set_num_threads(1)
    from engine.model.checkpoint import load_model
    model, mcfg, _ = load_model(model_dir, "cpu")
    _state.update(model=model, mcfg=mcfg, label=label, opts=opts)


def _run(indices: list[int], guides: _Guides | None):
    from engine.model.sample import SampleStats, sample_flows
    st = SampleStats()
    flows = sample_flows(_state["model"], _state["mcfg"], _state["label"], indices, _state["opts"],
                         guides=guides, stats=st)
    return flows, asdict(st)


class SamplePool:
    """``processes`` worker processes sampling flows of one request (CPU only).

    Use as a context manager; :meth:`sample` is :func:`engine.model.sample.sample_flows` for a
    list of indices, spread over the workers in chunks of :data:`CHUNK` flows.
    """

    def __init__(self, model_dir: str, label: str, opts, processes: int, guides: list | None = None):
        self.label, self.opts, self.guides = label, opts, guides
        self.processes = processes
        self.ex = ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn"), initializer=_init,
                                      initargs=(str(model_dir), label, opts, os.getpid()))

    def __enter__(self) -> "SamplePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close(kill=exc[0] is not None)

    def close(self, kill: bool = False) -> None:
        if kill:
            # a cancelled run must not wait for the chunks in flight (minutes on a busy machine)
            for p in list((getattr(self.ex, "_processes", None) or {}).values()):
                if p.is_alive():
                    p.kill()
        self.ex.shutdown(wait=True, cancel_futures=True)

    def _guides_for(self, idx: list[int]) -> _Guides | None:
        if not self.guides:
            return None
        from engine.model.guide import assign_guides
        which = assign_guides(len(self.guides), self.opts.seed, max(idx) + 1)
        return _Guides(len(self.guides), {int(which[i]): self.guides[int(which[i])] for i in idx})

    def submit(self, indices: list[int]) -> tuple[list[int], set]:
        """Start sampling ``indices``; :meth:`collect` waits for them. Submitting the next window
        before writing the current one keeps the workers busy while this process repairs and writes."""
        chunks = [indices[i:i + CHUNK] for i in range(0, len(indices), CHUNK)]
        return indices, {self.ex.submit(_run, c, self._guides_for(c)) for c in chunks}

    def collect(self, handle: tuple[list[int], set], stats=None, on_event: OnEvent | None = None,
                cancel: CancelToken | None = None) -> dict[int, np.ndarray]:
        """``{index: (packets, width) int8}`` for a :meth:`submit`, as one process would sample them."""
        emit = on_event or (lambda ev: None)
        indices, futs = handle
        out: dict[int, np.ndarray] = {}
        try:
            while futs:
                check_stop()
                if cancel is not None:
                    cancel.check()
                finished, futs = wait(futs, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in finished:
                    flows, st = f.result()
                    out.update(flows)
                    if stats is not None:
                        for k, v in st.items():
                            setattr(stats, k, getattr(stats, k) + v)
                if finished:
                    emit(TaskProgress("sample", len(out), len(indices), "flows"))
        except BrokenProcessPool:
            check_stop()            # a signal to the process group can reach a worker still starting up
            if cancel is not None:
                cancel.check()
            raise InputError(None, "a sampling process died (out of memory, or killed); "
                                   "--processes 1 samples in this process") from None
        return out

    def sample(self, indices: list[int], stats=None, on_event: OnEvent | None = None,
               cancel: CancelToken | None = None) -> dict[int, np.ndarray]:
        """:meth:`submit` then :meth:`collect`."""
        return self.collect(self.submit(indices), stats, on_event, cancel)

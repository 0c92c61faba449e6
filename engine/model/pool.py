"""Sampling on every CPU core from one ``netdiff generate``: a pool of worker processes.

One torch thread per process, not several threads in one: the thread count can change how a
matrix product is split and so the last bits of a float (samples must not depend on how busy
the machine is), and OpenMP threads on shared cores wait on each other (engine.model.diffusion.cpu_threads).
A flow's result depends only on its index and the options (``sample_flows``), so chunks can go to
whichever process is free and the bytes are those of one process; a test compares them.

Workers are spawned (a forked torch with an OpenMP pool can hang), load the checkpoint once,
ignore Ctrl-C (the parent decides) and exit when the parent is gone, so a killed job leaves no
orphans. A worker that dies (out of memory, killed) fails the run with one line.

Each worker has its own pipe and holds one chunk at a time: the parent sends the next chunk only
after reading the worker's result, so neither side can block on a full pipe while the other does
the same. (concurrent.futures' process pool was the first version: killing its workers on a
cancel could leave its manager thread reading half a result forever, a hung test once in a few
runs.)
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from dataclasses import asdict
from multiprocessing.connection import wait

import numpy as np

from engine.errors import InputError
from engine.progress import CancelToken, OnEvent, TaskProgress, check_stop

CHUNK = 16                  # samples per task: small enough to balance, large enough for matrix products
FLOWS_PER_PROCESS = 48      # a worker costs a few seconds of start-up (torch import, model load)
MEMORY_PER_PROCESS = 1.5e9  # a worker with a 16-flow chunk of 128 packets peaked at 0.61 GB; room for longer flows

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


def _worker(conn, model_dir: str, label: str, opts, parent: int) -> None:
    # Ctrl-C and a job's SIGTERM/SIGHUP reach the whole process group: the parent stops the run,
    # keeps what is written and kills the workers
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import torch
    torch.set_num_threads(1)
    from engine.errors import one_line
    from engine.model.checkpoint import load_model
    from engine.model.sample import SampleStats, sample_flows
    try:
        model, mcfg, _ = load_model(model_dir, "cpu")
    except Exception as e:          # the parent loaded the same checkpoint: this is rare, but say it
        conn.send((None, None, None, one_line(e)))
        return
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        k, idx, guides = task
        st = SampleStats()
        try:
            flows = sample_flows(model, mcfg, label, idx, opts, guides=guides, stats=st)
        except Exception as e:
            conn.send((k, None, None, one_line(e)))
            return
        conn.send((k, flows, asdict(st), None))


class SamplePool:
    """``processes`` worker processes sampling flows of one request (CPU only).

    Use as a context manager. :meth:`submit` queues flow indices in chunks of :data:`CHUNK`,
    :meth:`collect` returns them as :func:`engine.model.sample.sample_flows` would, sampled by
    whichever worker was free.
    """

    def __init__(self, model_dir: str, label: str, opts, processes: int, guides: list | None = None):
        self.opts, self.guides = opts, guides
        ctx = mp.get_context("spawn")
        self.procs, self.conns = [], []
        for _ in range(processes):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(theirs, str(model_dir), label, opts, os.getpid()), daemon=True)
            p.start()
            theirs.close()          # so a dead worker's pipe reads as closed here
            self.procs.append(p)
            self.conns.append(mine)
        self.todo: deque = deque()          # (chunk id, indices) not sent yet
        self.busy: dict[int, int] = {}      # worker -> chunk id it holds
        self.done: dict[int, tuple] = {}    # chunk id -> (flows, stats)
        self.next_id = 0

    def __enter__(self) -> "SamplePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close(kill=exc[0] is not None)

    def close(self, kill: bool = False) -> None:
        """Stop the workers: ask them to exit (after a finished run), or kill them (a cancelled or
        failed one must not wait for the chunks in flight: seconds to minutes)."""
        for w, (p, c) in enumerate(zip(self.procs, self.conns)):
            if not kill and p.is_alive() and w not in self.busy:
                try:
                    c.send(None)
                except OSError:
                    pass
        for p in self.procs:
            p.join(timeout=30 if not kill else 0)
            if p.is_alive():
                p.kill()
                p.join()
        for c in self.conns:
            c.close()
        self.procs, self.conns = [], []

    def _guides_for(self, idx: list[int]) -> _Guides | None:
        if not self.guides:
            return None
        from engine.model.guide import assign_guides
        which = assign_guides(len(self.guides), self.opts.seed, max(idx) + 1)
        return _Guides(len(self.guides), {int(which[i]): self.guides[int(which[i])] for i in idx})

    def _feed(self) -> None:
        for w in range(len(self.procs)):
            if w not in self.busy and self.todo:
                k, idx = self.todo.popleft()
                try:
                    self.conns[w].send((k, idx, self._guides_for(idx)))
                except OSError:
                    pass        # the worker is gone: collect() reads why (its last word, or the closed pipe)
                self.busy[w] = k

    def submit(self, indices: list[int]) -> tuple[list[int], int]:
        """Queue ``indices``; returns a handle for :meth:`collect`. Submitting the next window before
        writing the current one keeps the workers busy while this process repairs and writes."""
        ids = []
        # CHUNK samples per task: a group of decoded candidates stays in one task (sampled once),
        # and a task of CHUNK candidates would give the denoiser CHUNK / decodes flows at a time
        step = CHUNK * max(1, self.opts.decodes)
        for i in range(0, len(indices), step):
            self.todo.append((self.next_id, indices[i:i + step]))
            ids.append(self.next_id)
            self.next_id += 1
        self._feed()
        return ids, len(indices)

    def collect(self, handle: tuple[list[int], int], stats=None, on_event: OnEvent | None = None,
                cancel: CancelToken | None = None) -> dict[int, np.ndarray]:
        """``{index: (packets, width) int8}`` of a :meth:`submit`, as one process would sample them."""
        emit = on_event or (lambda ev: None)
        ids, total = handle
        want, out = set(ids), {}
        while True:
            for k in [k for k in want if k in self.done]:
                flows, st = self.done.pop(k)
                want.discard(k)
                out.update(flows)
                if stats is not None:
                    stats.add(st)
                emit(TaskProgress("sample", len(out), total, "flows"))
            if not want:
                return out
            check_stop()
            if cancel is not None:
                cancel.check()
            live = {self.conns[w]: w for w in self.busy}
            for c in wait(list(live), timeout=0.5):
                w = live[c]
                try:
                    k, flows, st, err = c.recv()
                except (EOFError, OSError):
                    check_stop()            # a signal to the process group can reach a worker still starting up
                    if cancel is not None:
                        cancel.check()
                    raise InputError(None, "a sampling process died (out of memory, or killed); "
                                           "--processes 1 samples in this process") from None
                if err is not None:
                    raise InputError(None, f"a sampling process failed: {err}")
                del self.busy[w]
                self.done[k] = (flows, st)
                self._feed()

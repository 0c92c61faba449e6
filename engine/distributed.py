"""Processes launched together (accelerate launch / torchrun): how each one leaves."""

from __future__ import annotations

import atexit

_registered = False


def end_group_at_exit(state) -> None:
    """End ``state``'s process group (an accelerate ``PartialState``) when this process exits, once.

    A process group left to the interpreter's teardown aborted a rank now and then in gloo
    ("terminate called without an active exception", SIGABRT, after its work was written); ending
    it at exit, not after each call, keeps it for every train() or generate() the process still
    runs (balance runs several). Without several processes it does nothing.
    """
    global _registered
    if state.num_processes > 1 and not _registered:
        _registered = True
        atexit.register(state.destroy_process_group)

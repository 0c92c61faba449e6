"""Errors a user sees as one line."""

from __future__ import annotations

import os


class InputError(Exception):
    """Bad input: the message names the file and the problem, on one line."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class Cancelled(Exception):
    """Long work stopped at the user's request; state on disk stays resumable."""


def one_line(err: BaseException) -> str:
    """An exception as the one line a user sees: an InputError as it is, an OSError as
    ``path: reason``, anything else with its type and the first line of its message."""
    if isinstance(err, InputError):
        return str(err)
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename or ''}: {err.strerror}".lstrip(": ")
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__

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

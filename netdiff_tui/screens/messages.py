"""Typed messages the console's thread workers post back to the UI thread."""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from engine.progress import Event


class ModelsLoaded(Message):
    """The checkpoint scan finished."""

    def __init__(self, models: list) -> None:
        super().__init__()
        self.models = models


class JobsLoaded(Message):
    """The job scan finished; ``states``: job directory -> catalog.JobState of the jobs being watched
    (the followed one, the Export tab's)."""

    def __init__(self, jobs: list, states: dict | None = None) -> None:
        super().__init__()
        self.jobs = jobs
        self.states = states or {}


class JobEvents(Message):
    """New events were appended to a followed ``events.jsonl``."""

    def __init__(self, path: Path, events: list[Event]) -> None:
        super().__init__()
        self.path = path
        self.events = events


class JobStarted(Message):
    """A detached job was started from the console (``switch``: show it on the Jobs tab)."""

    def __init__(self, path: Path, kind: str, switch: bool = True) -> None:
        super().__init__()
        self.path = path
        self.kind = kind
        self.switch = switch


class DatasetsLoaded(Message):
    """The scan for datasets to export finished."""

    def __init__(self, datasets: list) -> None:
        super().__init__()
        self.datasets = datasets


class ReportLoaded(Message):
    """A report file was read and made readable."""

    def __init__(self, view) -> None:
        super().__init__()
        self.view = view

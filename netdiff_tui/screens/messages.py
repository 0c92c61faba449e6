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
    """The job scan finished."""

    def __init__(self, jobs: list) -> None:
        super().__init__()
        self.jobs = jobs


class JobEvents(Message):
    """New events were appended to a followed ``events.jsonl``."""

    def __init__(self, path: Path, events: list[Event]) -> None:
        super().__init__()
        self.path = path
        self.events = events


class ReportLoaded(Message):
    """A report file was read and made readable."""

    def __init__(self, view) -> None:
        super().__init__()
        self.view = view


class GenerateEvent(Message):
    """One progress event of the running generation."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class GenerateFinished(Message):
    """The generation wrote its dataset."""

    def __init__(self, out: Path, summary: dict) -> None:
        super().__init__()
        self.out = out
        self.summary = summary

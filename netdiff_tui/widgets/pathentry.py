"""A path box with its button: Enter or a click posts one ``PathEntry.Chosen`` message."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Input


class PathEntry(Horizontal):
    """``Input`` (id ``{prefix}-path``) and ``Button`` (id ``{prefix}-{verb}``) on one line."""

    DEFAULT_CSS = """
    PathEntry { height: 1; margin: 1 0 0 0; }
    PathEntry Input { width: 1fr; }
    PathEntry Button { margin: 0 0 0 1; }
    """

    class Chosen(Message):
        """The user asked to open ``path`` (non-empty, stripped)."""

        def __init__(self, entry: "PathEntry", path: str) -> None:
            super().__init__()
            self.entry = entry
            self.path = path

    def __init__(self, prefix: str, label: str, placeholder: str) -> None:
        super().__init__(id=f"{prefix}-open-row")
        self.prefix, self.label, self.placeholder = prefix, label, placeholder

    def compose(self) -> ComposeResult:
        yield Input(placeholder=self.placeholder, id=f"{self.prefix}-path", compact=True)
        yield Button(self.label, id=f"{self.prefix}-{self.label.lower()}", compact=True)

    @on(Button.Pressed)
    @on(Input.Submitted)
    def _chosen(self, event: Button.Pressed | Input.Submitted) -> None:
        event.stop()
        v = self.query_one(Input).value.strip()
        if v:
            self.post_message(self.Chosen(self, v))

"""The system panel: one line of GPU, CPU, RAM and disk free, refreshed by a thread worker on a timer."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from textual import work
from textual.widgets import Static

from ..screens import sysstats

PLACEHOLDER = "no GPU | CPU - | RAM - | disk -"


class SysBar(Static):
    """One line of system state: ``GPU0 H100 12% 3.1G/80.0G | CPU 7% | RAM 5.2G/31.0G | disk 120.4G free``.

    ``SysBar()`` reads NVML (when nvidia-ml-py is installed) and /proc every ``interval``
    seconds in a thread worker, never on the UI thread; disk free is for the app's
    ``settings.output_dir`` (the current directory when the app has no settings).

    Test hook: ``SysBar(provider=callable)`` replaces the readers with any zero-argument
    callable returning the line (it is still called from the worker thread), and
    ``interval=0`` samples only once on mount, so snapshots are deterministic. The line
    shown last is in ``.line``.
    """

    DEFAULT_CSS = """
    SysBar { height: 1; width: 1fr; background: $panel; color: $text; padding: 0 1; }
    """

    def __init__(self, provider: Callable[[], str] | None = None, interval: float = 2.0, **kw):
        super().__init__(PLACEHOLDER, markup=False, **kw)
        self.interval = interval
        self.provider = provider
        self.line = ""

    def _out_dir(self) -> Path:
        s = getattr(self.app, "settings", None)
        return s.expanded("output_dir") if s is not None and hasattr(s, "expanded") else Path(".")

    def on_mount(self) -> None:
        if self.provider is None:
            self.provider = sysstats.SystemSampler(self._out_dir)
        self.sample()
        if self.interval > 0:
            self.set_interval(self.interval, self.sample)

    @work(thread=True, group="sysbar", exclusive=True, description="system panel", exit_on_error=False)
    def sample(self) -> None:
        """Read the system once (worker thread) and show the line."""
        line = self.provider()
        self.app.call_from_thread(self._show, line)

    def _show(self, line: str) -> None:
        self.line = line
        self.update(line)

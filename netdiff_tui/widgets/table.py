"""The console's tables: Textual's DataTable, repainted once it has measured new rows."""

from __future__ import annotations

from textual import events
from textual.widgets import DataTable


class Table(DataTable):
    """A DataTable whose columns are drawn as wide as it measured them.

    DataTable measures added or changed cells when idle, but lines it painted before that stay in
    its line cache (their key does not hold the column widths) until its next change: a list filled
    while the console was busy kept columns as narrow as their headers ("zoo" for "zoom_export").
    Textual calls every class's ``_on_idle`` in turn, this one first, so the repaint is queued to
    run after DataTable's own measuring.
    """

    def _on_idle(self, event: events.Idle) -> None:
        if self._require_update_dimensions or self._updated_cells:
            self.call_later(self._repaint_measured)

    def _repaint_measured(self) -> None:
        self._clear_caches()
        self.refresh()

"""Reports tab: a compliance.json (check/repair) or an evaluation report.json, as a table."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Static

from .catalog import ReportView


def _numeric(cell: str) -> bool:
    return cell == "-" or cell.replace(".", "", 1).isdigit()


class ReportsPane(Vertical):
    """Path box, summary lines, and the report's table (rules before/after, or fidelity per class)."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="reports-open-row"):
            yield Input(placeholder="compliance.json, report.json, or a directory holding one", id="reports-path")
            yield Button("Open", id="reports-open")
        yield Static("Open a report: `netdiff check/repair` and `netdiff generate` write compliance.json, "
                     "`netdiff evaluate` writes report.json.", id="reports-summary")
        yield DataTable(id="reports-table", zebra_stripes=True, cursor_type="row")

    def show(self, view: ReportView) -> None:
        self.query_one("#reports-summary", Static).update(
            f"[b]{view.title}[/b]\n" + "\n".join(view.summary), )
        t = self.query_one("#reports-table", DataTable)
        t.clear(columns=True)
        t.add_columns(*view.columns)
        for row in view.rows:
            t.add_row(*(Text(c, justify="right") if _numeric(c) else c for c in row))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "reports-open":
            self._open()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "reports-path":
            self._open()

    def _open(self) -> None:
        v = self.query_one("#reports-path", Input).value.strip()
        if v:
            self.app.open_report(v)

"""Reports tab: a compliance.json (check/repair: each rule before and after repair) or an evaluation
report.json (fidelity per class against the baselines, utility), as a table; ``v`` opens the flow
viewer on the report's dataset."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from ..widgets.table import Table
from ..widgets.pathentry import PathEntry

from .catalog import ReportView


def _numeric(cell: str) -> bool:
    return cell == "-" or cell.replace(".", "", 1).isdigit()


class ReportsPane(Vertical):
    """Path box, summary lines, and the report's table (rules before/after, or fidelity per class)."""

    BINDINGS = [Binding("v", "open_flows", "Flows", id="report-flows")]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.view: ReportView | None = None

    def compose(self) -> ComposeResult:
        yield PathEntry("reports", "Open", "compliance.json, report.json, or a directory holding one")
        yield Static("Open a report: `netdiff check/repair` and `netdiff generate` write compliance.json, "
                     "`netdiff evaluate` writes report.json.", id="reports-summary")
        yield Static("", id="reports-plot", markup=False)
        yield Table(id="reports-table", zebra_stripes=True, cursor_type="row")

    def show(self, view: ReportView) -> None:
        self.view = view
        self.query_one("#reports-summary", Static).update(
            f"[b]{view.title}[/b]\n" + "\n".join(view.summary), )
        plot = self.query_one("#reports-plot", Static)
        plot.update("\n".join(view.plot))
        plot.display = bool(view.plot)
        t = self.query_one("#reports-table", DataTable)
        t.clear(columns=True)
        t.add_columns(*view.columns)
        for row in view.rows:
            t.add_row(*(Text(c, justify="right") if _numeric(c) else c for c in row))

    def on_path_entry_chosen(self, event: PathEntry.Chosen) -> None:
        self.app.open_report(event.path)

    def action_open_flows(self) -> None:
        from .flowdata import dataset_of
        d = dataset_of(self.view.path.parent) if self.view is not None else None
        if d is None:
            self.app.notify("no dataset beside this report (a generation's compliance.json has one)",
                            severity="warning")
        else:
            self.app.open_flows(d)

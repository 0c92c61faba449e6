"""Jobs tab: runs and generations that write an ``events.jsonl``, followed live.

The view follows the file, not the process: a job started by ``netdiff train``
in another shell (or before an SSH reconnect) shows up the same way.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable

from ..widgets.jobview import JobView
from ..widgets.pathentry import PathEntry
from .catalog import JobInfo, age, human_size


class JobsPane(Horizontal):
    """A table of known jobs, a path box, and the followed job's live view."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.jobs: list[JobInfo] = []
        self.following: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="jobs-left"):
            t = DataTable(id="jobs-table", cursor_type="row", zebra_stripes=True)
            t.add_columns("job", "kind", "status", "updated", "size")
            yield t
            yield PathEntry("jobs", "Follow", "run dir or events.jsonl to follow")
        s = self.app.settings
        yield JobView(points=s.sparkline_points, lines=s.message_lines, id="job-view")

    def show(self, jobs: list[JobInfo]) -> None:
        self.jobs = jobs
        t = self.query_one(DataTable)
        t.clear()
        for i, j in enumerate(jobs):
            t.add_row(j.name, j.kind, j.status or "-", age(j.modified), human_size(j.size), key=str(i))

    def start(self, path: Path) -> None:
        """Reset the view for ``path`` (the app's worker then feeds it)."""
        self.following = path
        view = self.query_one(JobView)
        view.reset(f"following {path.parent.name}/{path.name}")
        view.query_one("#job-title").tooltip = str(path)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "jobs-table" and event.row_key.value is not None:
            i = int(event.row_key.value)
            if 0 <= i < len(self.jobs):
                self.app.follow(self.jobs[i].path)

    def on_path_entry_chosen(self, event: PathEntry.Chosen) -> None:
        self.app.follow(event.path)

"""Jobs tab: every job of the jobs directory and of the training runs, refreshed on a timer, and the
followed job's live view (events, record, log tail, result).

The view follows files, not processes: a job started by ``netdiff ... --detach`` in another shell,
by an earlier console, or before an SSH reconnect shows up the same way. Keys act on the followed job.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable

from ..widgets.table import Table
from ..widgets.jobview import JobView
from ..widgets.pathentry import PathEntry
from .catalog import JobInfo


def job_row(j: JobInfo) -> tuple[str, str, str, str]:
    """(job, kind, status, started) as the table shows them; start from the record (stable), else the file."""
    rec = j.record
    what = (rec.label or "-") if rec is not None else j.name
    when = time.strftime("%m-%d %H:%M", time.localtime(rec.start if rec is not None and rec.start else j.modified))
    return what, j.kind, j.status or "-", when


class JobsPane(Horizontal):
    """A table of known jobs, a path box, and the followed job's live view."""

    BINDINGS = [
        Binding("c", "cancel_job", "Cancel job", id="job-cancel"),
        Binding("r", "resume_job", "Resume job", id="job-resume"),
        Binding("o", "open_report", "Report", id="job-report"),
        Binding("v", "open_flows", "Flows", id="job-flows"),
        Binding("e", "export_job", "Export", id="job-export"),
    ]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.jobs: list[JobInfo] = []
        self.following: Path | None = None      # the followed events.jsonl

    def compose(self) -> ComposeResult:
        with Vertical(id="jobs-left"):
            t = Table(id="jobs-table", cursor_type="row", zebra_stripes=True)
            t.add_columns("job", "kind", "status", "started")
            yield t
            yield PathEntry("jobs", "Follow", "job or run dir to follow")
        s = self.app.settings
        yield JobView(points=s.sparkline_points, lines=s.message_lines, id="job-view")

    def show(self, jobs: list[JobInfo]) -> None:
        """Refresh the table in place (the cursor stays on its job)."""
        t = self.query_one(DataTable)
        keys = [str(j.path) for j in jobs]
        rows = [job_row(j) for j in jobs]
        if keys == [str(j.path) for j in self.jobs] and t.row_count == len(keys):
            for k, row, old in zip(keys, rows, (job_row(j) for j in self.jobs)):
                for col, (new, was) in zip(t.columns, zip(row, old)):
                    if new != was:
                        t.update_cell(k, col, new)
        else:
            cur = self.jobs[t.cursor_row].path if self.jobs and 0 <= t.cursor_row < len(self.jobs) else self.following
            t.clear()
            for k, row in zip(keys, rows):
                t.add_row(*row, key=k)
            if cur is not None and str(cur) in keys:
                t.move_cursor(row=keys.index(str(cur)), animate=False)
        self.jobs = jobs

    def start(self, path: Path) -> None:
        """Reset the view for ``path`` (the app's workers then feed it)."""
        self.following = path
        view = self.query_one(JobView)
        view.reset(f"{path.parent.name}")
        view.query_one("#job-title").tooltip = str(path)
        keys = [str(j.path) for j in self.jobs]
        if str(path) in keys:
            self.query_one(DataTable).move_cursor(row=keys.index(str(path)), animate=False)

    @property
    def job_dir(self) -> Path | None:
        return self.following.parent if self.following is not None else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "jobs-table" and event.row_key.value is not None:
            self.app.follow(event.row_key.value)

    def on_path_entry_chosen(self, event: PathEntry.Chosen) -> None:
        self.app.follow(event.path)

    # -- keys: the followed job -------------------------------------------------------------

    def _state(self, need: str):
        state = self.query_one(JobView).state
        if self.following is None:
            self.app.notify("no job followed: choose one in the list (Enter)", severity="warning")
            return None
        if state is None or not state.status:
            self.app.notify(f"{self.following.parent.name}: no job record (job.json) to {need}", severity="warning")
            return None
        return state

    def action_cancel_job(self) -> None:
        if (st := self._state("cancel")) is not None:
            self.app.cancel_job(st.path)

    def action_resume_job(self) -> None:
        if (st := self._state("resume")) is not None:
            self.app.resume_job(st.path)

    def action_open_report(self) -> None:
        if (st := self._state("open a report of")) is not None:
            if st.report is None:
                self.app.notify(f"{st.path.name}: no report (yet) in its output", severity="warning")
            else:
                self.app.open_report(st.report)

    def action_open_flows(self) -> None:
        if (st := self._state("show flows of")) is not None:
            if st.dataset is None:
                self.app.notify(f"{st.path.name}: its output holds no dataset (yet)", severity="warning")
            else:
                self.app.open_flows(st.dataset)

    def action_export_job(self) -> None:
        if (st := self._state("export")) is not None:
            if st.dataset is None:
                self.app.notify(f"{st.path.name}: its output holds no dataset (yet)", severity="warning")
            else:
                self.app.export_from([st.dataset])

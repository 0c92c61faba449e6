"""Models tab: the checkpoint manager (local default, runs, Hub cache) and fine-tuning.

The app feeds :meth:`ModelsPane.show` with its local model entries; the pane adds the Hub
cache repositories itself and runs its own thread workers for everything that reads the disk
or the network (details, verify, delete plans, the download dry run). Downloads and fine-tuning
runs are detached ``netdiff`` jobs (engine.jobs.start_detached with the CLI's own argv); the pane
follows the last one it started with a progress bar.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, ProgressBar, Static
from textual.worker import get_current_worker

from engine.errors import InputError, one_line

from ..widgets.table import Table
from . import models_data as md
from .models_dialogs import DeleteDialog, DownloadDialog, FineTuneDialog, JobRequest


class ModelsPane(Vertical):
    """A table of checkpoints, the highlighted one's details, and the progress of the job it started.

    Keys: ``d`` download by repo id, ``v`` verify, ``x`` delete (Hub cache), ``f`` fine-tune,
    ``c`` cancel the job the progress bar follows.
    """

    BINDINGS = [
        Binding("d", "download", "Download", id="models-download"),
        Binding("v", "verify", "Verify", id="models-verify"),
        Binding("x", "delete", "Delete", id="models-delete"),
        Binding("f", "finetune", "Fine-tune", id="models-finetune"),
        Binding("c", "cancel_job", "Cancel job", id="models-job-cancel"),
    ]
    DEFAULT_CSS = """
    ModelsPane { height: 1fr; }
    #models-main { height: 1fr; }
    #models-job { height: auto; display: none; }
    #models-job.active { display: block; }
    #models-job-label { width: 1fr; }
    #models-job-bar { width: 30; }
    """

    # -- results of the pane's workers (typed messages) ---------------------------------------------

    class HubScanned(Message):
        def __init__(self, rows: list[md.PaneRow], error: str = "") -> None:
            super().__init__()
            self.rows, self.error = rows, error

    class InfoRead(Message):
        def __init__(self, ref: str, info: dict | None, error: str = "") -> None:
            super().__init__()
            self.ref, self.info, self.error = ref, info, error

    class Verified(Message):
        def __init__(self, ref: str, report, error: str = "") -> None:
            super().__init__()
            self.ref, self.report, self.error = ref, report, error

    class DeletePlanned(Message):
        def __init__(self, plan, error: str = "") -> None:
            super().__init__()
            self.plan, self.error = plan, error

    class Deleted(Message):
        def __init__(self, text: str, error: str = "") -> None:
            super().__init__()
            self.text, self.error = text, error

    class JobStarted(Message):
        def __init__(self, job, request: JobRequest | None, error: str = "") -> None:
            super().__init__()
            self.job, self.request, self.error = job, request, error

    class JobProgress(Message):
        def __init__(self, path: Path, done: float, total: float | None, text: str) -> None:
            super().__init__()
            self.path, self.done, self.total, self.text = path, done, total, text

    class JobCancelled(Message):
        def __init__(self, path: Path, error: str = "") -> None:
            super().__init__()
            self.path, self.error = path, error

    class JobEnded(Message):
        def __init__(self, path: Path, kind: str, status: str, reason: str) -> None:
            super().__init__()
            self.path, self.kind, self.status, self.reason = path, kind, status, reason

    def __init__(self, **kw):
        super().__init__(**kw)
        self.models: list = []                      # the app's entries (engine.artifacts.ModelEntry)
        self.local: list[md.PaneRow] = []
        self.hub: list[md.PaneRow] = []
        self.rows: list[md.PaneRow] = []
        self.infos: dict[str, dict] = {}            # ref -> engine.hub.cache.info (read once)
        self.verified: dict[str, object] = {}       # ref -> last VerifyReport
        self.selected: md.PaneRow | None = None
        self.job_path: Path | None = None           # the job the progress bar follows
        self.job_status = ""                        # running, done, failed, cancelled

    def compose(self) -> ComposeResult:
        with Horizontal(id="models-main"):
            t = Table(id="models-table", cursor_type="row", zebra_stripes=True)
            t.add_columns(*md.COLUMNS)
            yield t
            with VerticalScroll(id="models-details-box"):
                yield Static("scanning checkpoints...", id="models-details", markup=False)
        with Horizontal(id="models-job"):
            yield Static("", id="models-job-label", markup=False)
            yield ProgressBar(id="models-job-bar", show_eta=False)

    # -- rows -----------------------------------------------------------------------------------

    def show(self, models: list) -> None:
        """The app's local checkpoints (engine.artifacts.ModelEntry); Hub cache repos are added by a scan."""
        self.models = models
        self.local = [md.local_row(m) for m in models]
        self._fill()
        self.scan_hub()

    def rescan(self) -> None:
        """Read the Hub cache again (after a download or a delete)."""
        self.infos.clear()
        self.scan_hub()

    @work(thread=True, group="models-hub", exclusive=True, description="scan the Hub cache", exit_on_error=False)
    def scan_hub(self) -> None:
        try:
            rows = md.hub_rows()
        except Exception as e:      # an unreadable cache says so in the details, the local rows stay
            self.post_message(self.HubScanned([], f"Hub cache: {one_line(e)}"))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(self.HubScanned(rows))

    def on_models_pane_hub_scanned(self, message: HubScanned) -> None:
        self.hub = message.rows
        self._fill()
        if message.error:
            self.notify(message.error, severity="warning")

    def _fill(self) -> None:
        t = self.query_one(DataTable)
        keep = self.selected.ref if self.selected is not None else None
        self.rows = self.local + self.hub
        t.clear()
        for r in self.rows:
            t.add_row(*md.table_row(r), key=r.ref)
        if not self.rows:
            s = self.app.settings
            self.selected = None
            self.query_one("#models-details", Static).update(
                "No checkpoints found.\n\nThe shipped default model is not installed, no checkpoint directories "
                f"(model.safetensors + config.json) are in\n  {s.expanded('models_dir')}\nor training runs in\n  "
                + "\n  ".join(map(str, s.expanded_runs()))
                + "\nand the Hub cache is empty.\n\nd downloads a model from the Hub; "
                "`netdiff train --data DIR --out RUN` trains one.")
            return
        idx = next((i for i, r in enumerate(self.rows) if r.ref == keep), 0)
        t.move_cursor(row=idx)
        self._select(self.rows[idx])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "models-table" or event.row_key is None or event.row_key.value is None:
            return
        row = next((r for r in self.rows if r.ref == event.row_key.value), None)
        if row is not None and row is not self.selected:
            self._select(row)

    def _select(self, row: md.PaneRow) -> None:
        self.selected = row
        self._details()
        if row.ref not in self.infos:
            self.read_info(row)

    def _details(self, error: str = "") -> None:
        r = self.selected
        if r is None:
            return
        self.query_one("#models-details", Static).update(
            md.details_text(r, self.infos.get(r.ref), error, self.verified.get(r.ref)))

    @work(thread=True, group="models-info", exclusive=True, description="read checkpoint", exit_on_error=False)
    def read_info(self, row: md.PaneRow) -> None:
        from engine.hub.cache import info
        try:
            data = info(row.ref)
        except Exception as e:
            self.post_message(self.InfoRead(row.ref, None, one_line(e)))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(self.InfoRead(row.ref, data))

    def on_models_pane_info_read(self, message: InfoRead) -> None:
        if message.info is not None:
            self.infos[message.ref] = message.info
        if self.selected is not None and self.selected.ref == message.ref:
            self._details(message.error)

    # -- verify -----------------------------------------------------------------------------------

    def action_verify(self) -> None:
        r = self.selected
        if r is None:
            self.notify("no checkpoint selected", severity="warning")
            return
        self.notify(f"verifying {r.name}...")
        self.verify(r.ref)

    @work(thread=True, group="models-verify", exclusive=True, description="verify checkpoint", exit_on_error=False)
    def verify(self, ref: str) -> None:
        from engine.hub.cache import verify
        try:
            self.post_message(self.Verified(ref, verify(ref)))
        except Exception as e:
            self.post_message(self.Verified(ref, None, one_line(e)))

    def on_models_pane_verified(self, message: Verified) -> None:
        if message.report is None:
            self.notify(message.error, title="verify", severity="error", timeout=10)
            return
        self.verified[message.ref] = message.report
        self.notify(md.verify_summary(message.report), title="verify",
                    severity="information" if message.report.ok else "error", timeout=10)
        if self.selected is not None and self.selected.ref == message.ref:
            self._details()

    # -- delete -----------------------------------------------------------------------------------

    def action_delete(self) -> None:
        r = self.selected
        if r is None:
            self.notify("no checkpoint selected", severity="warning")
            return
        self.plan_delete(r.ref)

    @work(thread=True, group="models-delete", exclusive=True, description="delete plan", exit_on_error=False)
    def plan_delete(self, ref: str) -> None:
        from engine.hub.delete import plan_delete
        try:
            self.post_message(self.DeletePlanned(plan_delete(ref)))
        except Exception as e:      # the default, a local directory, not cached: refused in one line
            self.post_message(self.DeletePlanned(None, one_line(e)))

    def on_models_pane_delete_planned(self, message: DeletePlanned) -> None:
        if message.plan is None:
            self.notify(message.error, title="delete", severity="error", timeout=10)
            return
        plan = message.plan
        for rc in plan.recipes:
            self.notify(f"recipe {Path(rc).name} uses this model; it will need a download again",
                        title="delete", severity="warning", timeout=10)

        def answered(yes: bool | None) -> None:
            if yes:
                self.execute_delete(plan)
            else:
                self.notify("nothing deleted")
        self.app.push_screen(DeleteDialog(plan), answered)

    @work(thread=True, group="models-delete", exclusive=True, description="delete", exit_on_error=False)
    def execute_delete(self, plan) -> None:
        from engine.hub.delete import execute_delete
        try:
            freed = execute_delete(plan)
        except Exception as e:
            self.post_message(self.Deleted("", one_line(e)))
            return
        self.post_message(self.Deleted(f"{plan.repo_id}: deleted {len(plan.revisions)} revision(s), "
                                       f"freed {md.human_size(freed)}"))

    def on_models_pane_deleted(self, message: Deleted) -> None:
        if message.error:
            self.notify(message.error, title="delete", severity="error", timeout=10)
            return
        self.notify(message.text, title="delete")
        self.selected = None
        self.rescan()

    # -- download and fine-tune: detached jobs ------------------------------------------------------

    def action_download(self) -> None:
        r = self.selected
        self.app.push_screen(DownloadDialog(r.name if r is not None and r.kind == "hub" else ""), self._start)

    def action_finetune(self) -> None:
        r = self.selected
        if r is None:
            self.notify("no checkpoint selected", severity="warning")
            return
        runs = self.app.settings.expanded_runs()
        out = md.default_run_dir(runs[0] if runs else Path("runs"), r)
        self.app.push_screen(FineTuneDialog(r, str(out)), self._start)

    def _start(self, req: JobRequest | None) -> None:
        if req is not None:
            self.start_job(req)

    def jobs_dir(self) -> Path:
        """$NETDIFF_JOBS_DIR (as the command line reads it), else the console's ``jobs_dir`` setting."""
        env = os.environ.get("NETDIFF_JOBS_DIR")
        return Path(env).expanduser() if env else self.app.settings.expanded("jobs_dir")

    @work(thread=True, group="models-start", exclusive=False, description="start job", exit_on_error=False)
    def start_job(self, req: JobRequest) -> None:
        from engine.jobs import start_detached
        try:
            if req.finetune is not None:
                req.finetune.write_config()
            job = start_detached(self.jobs_dir(), req.kind, req.argv, request=req.request, out=req.out,
                                 label=req.label, resume_args=req.resume_args)
        except Exception as e:
            self.post_message(self.JobStarted(None, req, one_line(e)))
            return
        self.post_message(self.JobStarted(job, req))

    def on_models_pane_job_started(self, message: JobStarted) -> None:
        if message.job is None:
            self.notify(message.error, title="start job", severity="error", timeout=10)
            return
        job, req = message.job, message.request
        notes = "; ".join(req.finetune.notes) if req.finetune is not None and req.finetune.notes else ""
        self.notify(f"{job.name}: started (netdiff {' '.join(req.argv[:2])}); on the Jobs tab too"
                    + (f"; {notes}" if notes else ""), title=req.kind)
        self.job_path = job.path
        self._job_status("running")
        box = self.query_one("#models-job")
        box.add_class("active")
        self.query_one("#models-job-label", Static).update(f"{req.kind} {req.label}: starting")
        self.query_one("#models-job-bar", ProgressBar).update(total=None, progress=0)
        self.follow_job(job.path, req.kind, req.label)
        if hasattr(self.app, "scan_jobs"):      # the console's Jobs tab lists it at once
            self.app.scan_jobs()

    @work(thread=True, group="models-follow", exclusive=True, description="follow job", exit_on_error=False)
    def follow_job(self, path: Path, kind: str, label: str) -> None:
        from engine.artifacts.jobs import effective_status, log_tail, read_job
        from engine.progress import EventLog, Message as Said, TaskFinished, TaskProgress, TaskStarted, TrainStep
        worker = get_current_worker()
        poll = max(0.05, float(getattr(self.app.settings, "poll_interval", 0.5)))
        done, total, text = 0.0, None, "starting"
        for ev in EventLog(path / "events.jsonl").follow(poll=poll, stop=lambda: worker.is_cancelled, idle=True):
            if ev is None:          # caught up: one refresh, then is the job still alive?
                self.post_message(self.JobProgress(path, done, total, f"{kind} {label}: {text}"))
                try:
                    status, reason = effective_status(read_job(path))
                except InputError as e:
                    status, reason = "failed", str(e)
                if status != "running":
                    if status == "failed" and not reason:
                        reason = (log_tail(path, 1) or [""])[-1]
                    self.post_message(self.JobEnded(path, kind, status, reason))
                    return
                continue
            if isinstance(ev, TaskStarted):
                total, done = ev.total, 0.0
            elif isinstance(ev, TaskProgress):
                done, total = ev.done, ev.total if ev.total is not None else total
                text = (f"{md.human_size(int(done))} of {md.human_size(int(total or 0))}" if ev.unit == "B"
                        else f"{int(done)}/{int(total) if total else '?'} {ev.unit}".strip())
            elif isinstance(ev, TrainStep):
                done, total = ev.step, ev.total_steps
                text = f"step {ev.step}/{ev.total_steps} loss {ev.loss:.4f}"
            elif isinstance(ev, TaskFinished):
                done = total if total else done
                text = "finishing"
            elif isinstance(ev, Said) and ev.level in ("warning", "error"):
                text = ev.text[:80]

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # the cancel key is offered (and shown in the footer) only while the followed job runs
        if action == "cancel_job":
            return self.job_path is not None and self.job_status == "running"
        return True

    def _job_status(self, status: str) -> None:
        self.job_status = status
        self.refresh_bindings()

    def action_cancel_job(self) -> None:
        if self.job_path is not None and self.job_status == "running":
            self.cancel_job(self.job_path)

    @work(thread=True, group="models-cancel", exclusive=True, description="cancel job", exit_on_error=False)
    def cancel_job(self, path: Path) -> None:
        from engine.jobs import cancel_job
        try:
            cancel_job(path)
        except Exception as e:      # it just ended, or runs on another machine
            self.post_message(self.JobCancelled(path, one_line(e)))
            return
        self.post_message(self.JobCancelled(path))

    def on_models_pane_job_cancelled(self, message: JobCancelled) -> None:
        if message.error:
            self.notify(message.error, title="cancel", severity="error", timeout=10)
        else:
            self.notify(f"{message.path.name}: asked to stop; it saves what it has", title="cancel")

    def on_models_pane_job_progress(self, message: JobProgress) -> None:
        if message.path != self.job_path:
            return
        bar = self.query_one("#models-job-bar", ProgressBar)
        bar.update(total=message.total or None, progress=message.done)
        self.query_one("#models-job-label", Static).update(message.text)

    def on_models_pane_job_ended(self, message: JobEnded) -> None:
        if message.path != self.job_path:
            return
        self._job_status(message.status)
        name = message.path.name
        bar = self.query_one("#models-job-bar", ProgressBar)
        if message.status == "done":
            bar.update(total=bar.total or 1, progress=bar.total or 1)
            self.query_one("#models-job-label", Static).update(f"{message.kind}: done ({name})")
            self.notify(f"{name}: done", title=message.kind)
            if message.kind == "download":
                self.rescan()
            elif message.kind == "train" and hasattr(self.app, "scan_models"):
                self.app.scan_models()
        else:
            self.query_one("#models-job-label", Static).update(
                f"{message.kind}: {message.status}" + (f": {message.reason}" if message.reason else ""))
            self.notify(f"{name}: {message.status}" + (f": {message.reason}" if message.reason else ""),
                        title=message.kind, severity="error", timeout=10)

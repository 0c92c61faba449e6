"""NetDiffusion Studio console: a Textual view over the engine.

Tabs: Models, Recipes, Jobs, Reports, Generate. Long work runs in thread
workers that post typed messages back (:mod:`netdiff_tui.screens.messages`);
one ``on_worker_state_changed`` handler reports every worker's failure as a
one-line notification. Nothing here re-implements the engine.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from engine.errors import Cancelled
from engine.jobs import create_job, running
from engine.progress import CancelToken, EventLog

from .palette import NetdiffCommands
from .screens import catalog
from .screens.generate import GeneratePane
from .screens.jobs import JobsPane
from .screens.messages import GenerateEvent, GenerateFinished, JobEvents, JobsLoaded, ModelsLoaded, ReportLoaded
from .screens.models import ModelsPane
from .screens.recipes import RecipesPane
from .screens.reports import ReportsPane
from .settings import Settings, SettingsError, load_settings
from .widgets.jobview import JobView


def one_line(err: BaseException) -> str:
    """An exception as the one line a user sees."""
    from engine.errors import InputError
    if isinstance(err, InputError):
        return str(err)
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename or ''}: {err.strerror}".lstrip(": ")
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


class NetdiffApp(App[None]):
    """The NetDiffusion Studio console."""

    TITLE = "NetDiffusion Studio"
    # Shipped next to this module (package data); an install without it still runs, unstyled.
    CSS_PATH = "app.tcss" if (Path(__file__).parent / "app.tcss").is_file() else None
    COMMANDS = App.COMMANDS | {NetdiffCommands}
    BINDINGS = [
        Binding("1", "show_tab('models')", "Models", id="show-models"),
        Binding("2", "show_tab('recipes')", "Recipes", id="show-recipes"),
        Binding("3", "show_tab('jobs')", "Jobs", id="show-jobs"),
        Binding("4", "show_tab('reports')", "Reports", id="show-reports"),
        Binding("5", "show_tab('generate')", "Generate", id="show-generate"),
        Binding("ctrl+r", "refresh", "Refresh", id="refresh"),
    ]

    def __init__(self, settings: Settings | None = None, initial_tab: str = "models",
                 follow_path: str | os.PathLike | None = None, report_path: str | os.PathLike | None = None):
        super().__init__()
        self._settings_error = None
        if settings is None:
            try:
                settings = load_settings()
            except SettingsError as e:
                settings, self._settings_error = Settings(), str(e)
        self.settings = settings
        if follow_path is not None:
            initial_tab = "jobs"
        elif report_path is not None:
            initial_tab = "reports"
        self.initial_tab = initial_tab
        self.jobs: list[catalog.JobInfo] = []
        self.models: list[catalog.ModelInfo] = []
        self._follow_path = follow_path
        self._report_path = report_path
        self._cancel: CancelToken | None = None

    # -- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial=self.initial_tab, id="tabs"):
            with TabPane("Models", id="models"):
                yield ModelsPane(id="models-pane")
            with TabPane("Recipes", id="recipes"):
                yield RecipesPane(id="recipes-pane")
            with TabPane("Jobs", id="jobs"):
                yield JobsPane(id="jobs-pane")
            with TabPane("Reports", id="reports"):
                yield ReportsPane(id="reports-pane")
            with TabPane("Generate", id="generate"):
                yield GeneratePane(id="generate-pane")
        yield Footer()

    def on_mount(self) -> None:
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        if self._settings_error:
            self.notify(self._settings_error + " (using defaults)", severity="error", timeout=10)
        self.scan_models()
        self.scan_jobs()
        if self._follow_path is not None:
            self.follow(self._follow_path)
        if self._report_path is not None:
            self.open_report(self._report_path)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """Focus the active tab's list (or first control), so its key bindings work at once.

        Text fields are skipped: they would take the digit keys that switch tabs.
        """
        for sel in ("DataTable", "Select, Button"):
            for w in event.pane.query(sel):
                if w.focusable:
                    w.focus()
                    return

    # -- actions ------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_refresh(self) -> None:
        self.scan_models()
        self.scan_jobs()
        self.query_one(RecipesPane).reload()

    def action_new_recipe(self, preset: str | None = None) -> None:
        self.action_show_tab("recipes")
        self.query_one(RecipesPane).action_new(preset)

    def action_start_generation(self) -> None:
        self.action_show_tab("generate")
        self.query_one(GeneratePane).action_start()

    def action_cancel_generation(self) -> None:
        self.cancel_generation()

    def follow(self, path: str | os.PathLike) -> None:
        """Show the Jobs tab following ``path`` (a job directory or its events.jsonl)."""
        p = catalog.events_path(path)
        if not p.exists():
            self.notify(f"{p}: no such file (a job directory holds events.jsonl)", severity="error")
            return
        self.action_show_tab("jobs")
        self.query_one(JobsPane).start(p)
        self.follow_events(p)

    def open_report(self, path: str | os.PathLike) -> None:
        self.action_show_tab("reports")
        self.load_report(str(path))

    def start_generation(self, req, out: Path) -> None:
        self._cancel = CancelToken()
        self.query_one(GeneratePane).set_running(True)
        self.run_generation(req, out, self.settings.expanded("jobs_dir"), self._cancel)

    def cancel_generation(self) -> None:
        if self._cancel is not None and not self._cancel.cancelled:
            self._cancel.cancel()
            self.notify("cancelling generation...")

    # -- workers (thread) ---------------------------------------------------------------

    @work(thread=True, group="scan-models", exclusive=True, description="scan checkpoints", exit_on_error=False)
    def scan_models(self) -> None:
        s = self.settings
        self.post_message(ModelsLoaded(catalog.find_models(s.expanded("models_dir"), s.expanded_runs())))

    @work(thread=True, group="scan-jobs", exclusive=True, description="scan jobs", exit_on_error=False)
    def scan_jobs(self) -> None:
        s = self.settings
        self.post_message(JobsLoaded(catalog.find_jobs(s.expanded_runs() + [s.expanded("jobs_dir")])))

    @work(thread=True, group="follow", exclusive=True, description="follow job", exit_on_error=False)
    def follow_events(self, path: Path) -> None:
        worker = get_current_worker()
        batch = []
        for ev in EventLog(path).follow(poll=max(0.05, self.settings.poll_interval),
                                        stop=lambda: worker.is_cancelled, idle=True):
            if ev is not None:
                batch.append(ev)
            elif batch:                     # caught up with the file: show what came in one refresh
                self.post_message(JobEvents(path, batch))
                batch = []

    @work(thread=True, group="report", exclusive=True, description="open report", exit_on_error=False)
    def load_report(self, path: str) -> None:
        self.post_message(ReportLoaded(catalog.load_report(path)))

    @work(thread=True, group="generate", exclusive=True, description="generate", exit_on_error=False)
    def run_generation(self, req, out: Path, jobs_dir: Path, cancel: CancelToken) -> None:
        try:
            job = create_job(jobs_dir, "generate", req, out, label=req.label)
        except OSError as e:        # another console could not follow it; the generation itself still runs
            job = None
            self.call_from_thread(self.notify, f"job record not written: {one_line(e)}", severity="warning")

        def emit(ev) -> None:
            if job is not None:
                job(ev)
            self.post_message(GenerateEvent(ev))

        from engine.datasets import generate as gen    # imports torch: only when a generation starts
        with running(job):
            summary = gen.generate(req, out, on_event=emit, cancel=cancel)
        self.post_message(GenerateFinished(out, summary))

    # -- worker results -----------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker failures are reported (a one-line notification)."""
        w = event.worker
        if w.group == "generate" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.query_one(GeneratePane).set_running(False)
        if event.state == WorkerState.ERROR and w.error is not None:
            if isinstance(w.error, Cancelled):
                self.notify(f"{w.description}: cancelled; finished work is kept", severity="warning")
            else:
                self.notify(one_line(w.error), title=w.description, severity="error", timeout=10)

    def on_models_loaded(self, message: ModelsLoaded) -> None:
        self.models = message.models
        self.query_one(ModelsPane).show(message.models)

    def on_jobs_loaded(self, message: JobsLoaded) -> None:
        self.jobs = message.jobs
        self.query_one(JobsPane).show(message.jobs)

    def on_job_events(self, message: JobEvents) -> None:
        pane = self.query_one(JobsPane)
        if pane.following == message.path:
            pane.query_one(JobView).apply(message.events)

    def on_report_loaded(self, message: ReportLoaded) -> None:
        self.query_one(ReportsPane).show(message.view)

    def on_generate_event(self, message: GenerateEvent) -> None:
        self.query_one(GeneratePane).query_one(JobView).apply([message.event])

    def on_generate_finished(self, message: GenerateFinished) -> None:
        s = message.summary
        clean = s.get("compliance_clean")
        self.notify(f"{message.out}: {s.get('flows')} flows, {s.get('packets')} packets; compliance: "
                    + ("clean" if clean else "see the report" if clean is not None else "not repaired"))
        self.scan_jobs()
        if (message.out / "compliance.json").is_file():
            self.load_report(str(message.out / "compliance.json"))


def run_app(**kw) -> None:
    NetdiffApp(**kw).run()


if __name__ == "__main__":
    run_app()

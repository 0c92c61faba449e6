"""NetDiffusion Studio console: a Textual view over the engine and its jobs.

Tabs: Models, Recipes, Jobs, Reports, Export, Generate; the system panel (SysBar) under the title.
Long work (generate, export; the Models tab's downloads and fine-tuning) runs as detached jobs:
the console builds the same ``netdiff ...`` command line the CLI would run and starts it with
``engine.jobs.start_detached``, so it outlives the console and an SSH session. Files are read by
thread workers that post typed messages back (:mod:`netdiff_tui.screens.messages`); one
``on_worker_state_changed`` handler reports every worker's failure as a one-line notification.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import replace
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from engine.errors import Cancelled, InputError, one_line
from engine.jobs import JOB_FILE
from engine.progress import EventLog

from .palette import NetdiffCommands
from .screens import catalog
from .screens.export import ExportPane
from .screens.generate import GeneratePane
from .screens.jobs import JobsPane
from .screens.messages import DatasetsLoaded, JobEvents, JobsLoaded, JobStarted, ModelsLoaded, ReportLoaded
from .screens.models import ModelsPane
from .screens.recipes import RecipesPane
from .screens.reports import ReportsPane
from .settings import Settings, SettingsError, load_settings
from .widgets.jobview import JobView
from .widgets.sysbar import SysBar

TABS = (("models", "Models"), ("recipes", "Recipes"), ("jobs", "Jobs"), ("reports", "Reports"),
        ("export", "Export"), ("generate", "Generate"))


#: how long a worker's result waits for the widgets it feeds to be composed before that is an error
SETTLE_S = 5.0


def while_open(handler):
    """A worker's result that arrives while the console closes (its tabs already gone) is dropped;
    one that arrives before the pane it feeds has composed its widgets (a fast scan at start-up:
    the pane is in the DOM, its table not yet) is handled again after the next refresh, for up to
    :data:`SETTLE_S`."""
    @functools.wraps(handler)
    def run(self, message, since: float | None = None):
        if self._exit or not self.screen_stack:
            return None
        try:
            return handler(self, message)
        except NoMatches:
            if self._exit:
                return None
            now = time.monotonic()
            if since is None or now - since < SETTLE_S:
                self.call_after_refresh(run, self, message, now if since is None else since)
                return None
            raise
    return run


class ConsoleTabs(TabbedContent):
    """Tabs that change only when asked (keys, palette, the console's own calls).

    TabbedContent also shows the tab of any widget that gets the focus; when a tab is hidden,
    Textual moves the focus to a sibling of the blurred widget, still in the hidden tab, and the
    switch was undone by it (a race that tests and the self-test's tab walk hit)."""

    def _on_tab_pane_focused(self, event) -> None:
        event.prevent_default()         # the base class's handler would switch the tab
        event.stop()


class MainScreen(Screen):
    """The tabs' screen. Its focus is the open tab's list, set when a tab is shown (the first one too):
    auto focus would pick the first focusable widget, a text field that takes the digits switching tabs."""

    AUTO_FOCUS = ""            # "" (not None, which defers to the app): focus nothing


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
        Binding("5", "show_tab('export')", "Export", id="show-export"),
        Binding("6", "show_tab('generate')", "Generate", id="show-generate"),
        Binding("question_mark,f1", "help", "Help", id="help"),
        Binding("ctrl+r", "refresh", "Refresh", id="refresh", show=False),
    ]

    def __init__(self, settings: Settings | None = None, initial_tab: str = "models",
                 follow_path: str | os.PathLike | None = None, report_path: str | os.PathLike | None = None,
                 system_provider=None):
        """``system_provider``: the SysBar's reader (a zero-argument callable returning its line); tests
        pass a fixed one so that what the screen shows does not depend on the machine."""
        super().__init__()
        self._settings_error = None
        if settings is None:
            try:
                settings = load_settings()
            except SettingsError as e:
                settings, self._settings_error = Settings(), str(e)
            # as on the command line: $NETDIFF_JOBS_DIR names where jobs live
            if os.environ.get("NETDIFF_JOBS_DIR"):
                settings = replace(settings, jobs_dir=os.environ["NETDIFF_JOBS_DIR"])
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
        self._system_provider = system_provider
        self._scanned_once = False

    def main(self, selector, expect_type=None):
        """query_one on the console's own screen (the tabs), whichever screen or dialog is on top."""
        screen = self.screen_stack[0] if self.screen_stack else self.screen
        return screen.query_one(selector) if expect_type is None else screen.query_one(selector, expect_type)

    def get_default_screen(self) -> Screen:
        return MainScreen(id="_default")

    @property
    def jobs_dir(self) -> Path:
        return self.settings.expanded("jobs_dir")

    # -- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        interval = 0 if self._system_provider is not None else self.settings.system_interval
        yield SysBar(provider=self._system_provider, interval=interval, id="sysbar")
        with ConsoleTabs(initial=self.initial_tab, id="tabs"):
            with TabPane("Models", id="models"):
                yield ModelsPane(id="models-pane")
            with TabPane("Recipes", id="recipes"):
                yield RecipesPane(id="recipes-pane")
            with TabPane("Jobs", id="jobs"):
                yield JobsPane(id="jobs-pane")
            with TabPane("Reports", id="reports"):
                yield ReportsPane(id="reports-pane")
            with TabPane("Export", id="export"):
                yield ExportPane(id="export-pane")
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
        self.scan_datasets()
        self.set_interval(self.settings.refresh_interval, self.scan_jobs, name="refresh jobs")
        if self._follow_path is not None:
            self.follow(self._follow_path)
        if self._report_path is not None:
            self.open_report(self._report_path)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """Focus the active tab's list (or first control), so its key bindings work at once.

        Text fields are skipped: they would take the digit keys that switch tabs.
        """
        if event.pane.id == "export":
            self.scan_datasets()
        # Two tab keys in quick succession queue two of these events: focusing into the pane of the
        # first, no longer shown, would make TabbedContent switch back to it.
        if event.tabbed_content.active == event.pane.id:
            self._focus_pane(event.pane)

    def _focus_pane(self, pane) -> None:
        for sel in ("DataTable", "Select, Button"):
            for w in pane.query(sel):
                if w.focusable:
                    w.focus()
                    return

    # -- actions ------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        """Show a tab, closing the screens over the tabs (flow viewer, help) so that it is seen."""
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.main(TabbedContent).active = tab

    def action_help(self) -> None:
        from .screens.dialogs import HelpScreen
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_refresh(self) -> None:
        self.scan_models()
        self.scan_jobs()
        self.scan_datasets()
        self.main(RecipesPane).reload()

    def action_new_recipe(self, preset: str | None = None) -> None:
        self.action_show_tab("recipes")
        self.main(RecipesPane).action_new(preset)

    def action_start_generation(self) -> None:
        self.action_show_tab("generate")
        self.main(GeneratePane).action_start()

    def action_start_export(self) -> None:
        self.action_show_tab("export")
        self.main(ExportPane).action_start()

    def _followed_state(self):
        return self.main(JobsPane).query_one(JobView).state

    def action_job(self, what: str) -> None:
        """A Jobs-tab key by name (cancel, resume, report, flows, export), from the palette."""
        self.action_show_tab("jobs")
        pane = self.main(JobsPane)
        {"cancel": pane.action_cancel_job, "resume": pane.action_resume_job, "report": pane.action_open_report,
         "flows": pane.action_open_flows, "export": pane.action_export_job}[what]()

    def follow(self, path: str | os.PathLike, switch: bool = True) -> None:
        """Follow ``path`` (a job directory or its events.jsonl) on the Jobs tab."""
        p = catalog.events_path(path)
        if not p.exists():
            self.notify(f"{p}: no such file (a job directory holds events.jsonl)", severity="error")
            return
        if switch:
            self.action_show_tab("jobs")
        self.main(JobsPane).start(p)
        self.follow_events(p)
        self.scan_jobs()

    def open_report(self, path: str | os.PathLike) -> None:
        self.action_show_tab("reports")
        self.load_report(str(path))

    def open_flows(self, dataset: str | os.PathLike) -> None:
        """The flow viewer over a dataset directory (a generation or an export)."""
        from .screens.flowviewer import FlowViewerScreen
        self.push_screen(FlowViewerScreen(Path(dataset)))

    def export_from(self, datasets: list[Path]) -> None:
        """The Export tab with these datasets chosen."""
        pane = self.main(ExportPane)
        for d in datasets:
            try:
                pane.add(catalog.dataset_info(d))
            except InputError as e:
                self.notify(str(e), title="export", severity="error")
        self.action_show_tab("export")

    def start_job(self, kind: str, argv: list[str], out: Path | None = None, label: str = "", request=None,
                  switch: bool = True) -> None:
        """Start ``netdiff ARGV`` as a detached job (what ``--detach`` does); the Jobs tab follows it."""
        self.run_start_job(kind, argv, out, label, request, switch)

    def cancel_job(self, job_dir: Path) -> None:
        from .screens.dialogs import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_cancel_job(job_dir)
        self.push_screen(ConfirmScreen(f"Cancel {job_dir.name}?\nIt stops at the next safe point and keeps "
                                       "the work it finished; resume (r) continues it.", yes="Cancel job",
                                       danger=True), answered)

    def resume_job(self, job_dir: Path) -> None:
        self.run_resume_job(job_dir)

    # -- workers (thread) ---------------------------------------------------------------

    @work(thread=True, group="scan-models", exclusive=True, description="scan checkpoints", exit_on_error=False)
    def scan_models(self) -> None:
        s = self.settings
        self.post_message(ModelsLoaded(catalog.find_models(s.expanded("models_dir"), s.expanded_runs())))

    def scan_jobs(self) -> None:
        """Rescan the jobs and read the watched jobs' records (the followed one, the Export tab's)."""
        try:
            watched = {self.main(JobsPane).job_dir, self.main(ExportPane).job} - {None}
        except NoMatches:       # the timer fired while the console closes: its tabs are gone
            return
        self._scan_jobs(sorted(watched))

    @work(thread=True, group="scan-jobs", exclusive=True, description="scan jobs", exit_on_error=False)
    def _scan_jobs(self, watched: list[Path]) -> None:
        s = self.settings
        jobs = catalog.find_jobs(s.expanded_runs() + [self.jobs_dir])
        states = {d: catalog.job_state(d) for d in watched}
        self.post_message(JobsLoaded(jobs, states))

    @work(thread=True, group="scan-datasets", exclusive=True, description="scan datasets", exit_on_error=False)
    def scan_datasets(self) -> None:
        self.post_message(DatasetsLoaded(catalog.find_datasets([self.settings.expanded("output_dir")])))

    @work(thread=True, group="follow", exclusive=True, description="follow job", exit_on_error=False)
    def follow_events(self, path: Path) -> None:
        from engine.artifacts.jobs import effective_status, read_job
        worker = get_current_worker()
        batch, ended, next_look = [], False, 0.0
        for ev in EventLog(path).follow(poll=max(0.05, self.settings.poll_interval),
                                        stop=lambda: worker.is_cancelled, idle=True):
            if ev is not None:
                batch.append(ev)
                continue
            if batch:                       # caught up with the file: show what came in one refresh
                self.post_message(JobEvents(path, batch))
                batch = []
            if ended:                       # one more look after the end was recorded, then stop
                return
            if time.monotonic() >= next_look and (path.parent / JOB_FILE).is_file():
                next_look = time.monotonic() + 1.0
                try:
                    ended = effective_status(read_job(path.parent))[0] != "running"
                except InputError:
                    pass                    # half-written or foreign: keep following the events

    @work(thread=True, group="report", exclusive=True, description="open report", exit_on_error=False)
    def load_report(self, path: str) -> None:
        self.post_message(ReportLoaded(catalog.load_report(path)))

    @work(thread=True, group="start-job", exclusive=False, description="start job", exit_on_error=False)
    def run_start_job(self, kind: str, argv: list[str], out, label: str, request, switch: bool) -> None:
        from engine.jobs import start_detached
        # export and balance continue an interrupted run by themselves: their rerun takes no flag
        resume = ("--resume",) if kind == "generate" else () if kind in ("export", "balance") else None
        job = start_detached(self.jobs_dir, kind, argv, request=request, out=out, label=label, resume_args=resume)
        self.post_message(JobStarted(job.path, kind, switch))

    @work(thread=True, group="cancel-job", exclusive=False, description="cancel job", exit_on_error=False)
    def run_cancel_job(self, job_dir: Path) -> None:
        from engine.jobs import cancel_job
        cancel_job(job_dir)
        self.call_from_thread(self.notify, f"{job_dir.name}: cancelling (it keeps finished work)")
        self.call_from_thread(self.scan_jobs)

    @work(thread=True, group="resume-job", exclusive=False, description="resume job", exit_on_error=False)
    def run_resume_job(self, job_dir: Path) -> None:
        from engine.jobs import resume_job
        job = resume_job(self.jobs_dir, job_dir)
        self.post_message(JobStarted(job.path, job.record.kind, True))

    # -- worker results -----------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker failures are reported (a one-line notification)."""
        w = event.worker
        if event.state == WorkerState.ERROR and w.error is not None:
            if isinstance(w.error, Cancelled):
                self.notify(f"{w.description}: cancelled; finished work is kept", severity="warning")
            else:
                self.notify(one_line(w.error), title=w.description, severity="error", timeout=10)

    @while_open
    def on_models_loaded(self, message: ModelsLoaded) -> None:
        self.models = message.models
        self.main(ModelsPane).show(message.models)

    @while_open
    def on_jobs_loaded(self, message: JobsLoaded) -> None:
        self.jobs = message.jobs
        pane = self.main(JobsPane)
        pane.show(message.jobs)
        for d, state in message.states.items():
            if d == pane.job_dir:
                pane.query_one(JobView).show_state(state)
            self.main(ExportPane).show_state(state)
        if not self._scanned_once:
            self._scanned_once = True
            if pane.following is None and self._follow_path is None:
                self._follow_newest(message.jobs)

    def _follow_newest(self, jobs: list[catalog.JobInfo]) -> None:
        """After a reconnect the job to see is the one still running: follow the newest such (else
        the newest job with a record) without leaving the tab the console opened on."""
        recorded = [j for j in jobs if j.record is not None]
        running = [j for j in recorded if j.status == "running"]
        pick = sorted(running or recorded, key=lambda j: -(j.record.start or 0))
        if pick:
            self.follow(pick[0].path, switch=False)

    @while_open
    def on_job_started(self, message: JobStarted) -> None:
        self.notify(f"{message.path.name}: started ({message.kind}); it runs on when the console quits")
        if message.kind == "export":
            self.main(ExportPane).started(message.path)
        self.follow(message.path, switch=message.switch)

    @while_open
    def on_job_events(self, message: JobEvents) -> None:
        pane = self.main(JobsPane)
        if pane.following == message.path:
            pane.query_one(JobView).apply(message.events)

    @while_open
    def on_datasets_loaded(self, message: DatasetsLoaded) -> None:
        self.main(ExportPane).show(message.datasets)

    @while_open
    def on_report_loaded(self, message: ReportLoaded) -> None:
        self.main(ReportsPane).show(message.view)


def run_app(**kw) -> None:
    NetdiffApp(**kw).run()


if __name__ == "__main__":
    run_app()

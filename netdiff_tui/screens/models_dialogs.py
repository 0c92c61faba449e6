"""The Models pane's dialogs: download by repo id (size first), delete confirmation, fine-tune form.

Each dialog only asks; what it returns (the argv of a job, a confirmed plan) is started by the
pane. Look-ups that touch the network or the disk (the download's dry run, checking the
fine-tune form) run in thread workers and come back as typed messages.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from engine.errors import one_line

from . import models_data as md


class JobRequest:
    """What a dialog asks the pane to start: ``netdiff ARGV`` as a detached job."""

    def __init__(self, kind: str, argv: list[str], request: dict, label: str, out=None,
                 resume_args: tuple[str, ...] | None = None, finetune: md.FineTune | None = None):
        self.kind, self.argv, self.request, self.label = kind, argv, request, label
        self.out, self.resume_args, self.finetune = out, resume_args, finetune


def _row(label: str, widget, **kw) -> Horizontal:
    return Horizontal(Label(label, classes="md-label"), widget, classes="md-row", **kw)


class ModelsDialog(ModalScreen):
    """Layout shared by the pane's dialogs; Escape closes without doing anything."""

    BINDINGS = [Binding("escape", "cancel", "Close", id="models-dialog-close")]
    DEFAULT_CSS = """
    ModelsDialog { align: center middle; }
    .md-box { width: 90%; max-width: 100; height: auto; max-height: 95%; padding: 0 1;
              border: thick $primary; background: $surface; }
    .md-row { height: auto; }
    .md-label { width: 14; padding: 1 1 0 0; text-align: right; }
    .md-row Input { width: 1fr; }
    .md-text { height: auto; margin: 1 0 0 0; }
    .md-text.error { color: $error; text-style: bold; }
    .md-buttons { height: auto; margin: 1 0 0 0; }
    .md-buttons Button { margin: 0 1 0 0; }
    """

    def action_cancel(self) -> None:
        self.dismiss(None)


class DownloadDialog(ModelsDialog):
    """Repo id (+ revision, include globs) -> the dry run's files and total size -> download job."""

    class Planned(Message):
        """The dry run finished: a plan, or the one-line reason there is none."""

        def __init__(self, plan, error: str = "") -> None:
            super().__init__()
            self.plan, self.error = plan, error

    def __init__(self, repo: str = "") -> None:
        super().__init__()
        self.repo = repo
        self.plan = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="md-box", id="dl-box"):
            yield Static("Download a model from the Hub (HF_ENDPOINT for a mirror)")
            yield _row("repo", Input(self.repo, placeholder="org/name", id="dl-repo"))
            yield _row("revision", Input(placeholder="main (a branch, tag or commit)", id="dl-revision"))
            yield _row("include", Input(placeholder="*.safetensors *.json *.md *.txt", id="dl-include"))
            yield Static("Enter a repo id, then Size shows what would be fetched.", id="dl-plan", classes="md-text",
                         markup=False)
            with Horizontal(classes="md-buttons"):
                yield Button("Size", id="dl-size", variant="primary")
                yield Button("Download", id="dl-start", variant="success", disabled=True)
                yield Button("Cancel", id="dl-cancel")

    def on_mount(self) -> None:
        self.query_one("#dl-repo", Input).focus()

    @on(Input.Changed)
    def _edited(self) -> None:
        # the size shown belongs to the fields it was asked for
        self.plan = None
        self.query_one("#dl-start", Button).disabled = True

    @on(Input.Submitted)
    @on(Button.Pressed, "#dl-size")
    def ask_size(self) -> None:
        repo = self.query_one("#dl-repo", Input).value.strip()
        if not repo:
            self._say("repo: give a Hub repository id (org/name)", error=True)
            return
        self._say("asking the Hub for the file list and sizes...")
        self.query_one("#dl-size", Button).disabled = True
        self.dry_run(repo, self.query_one("#dl-revision", Input).value.strip() or None,
                     md.split_globs(self.query_one("#dl-include", Input).value))

    @work(thread=True, group="models-plan", exclusive=True, description="download size", exit_on_error=False)
    def dry_run(self, repo: str, revision: str | None, include: list[str]) -> None:
        from engine.hub.download import plan_download
        try:
            self.post_message(self.Planned(plan_download(repo, revision, include or None)))
        except Exception as e:      # no network, no such repo, a pickle pattern: said in the dialog
            self.post_message(self.Planned(None, one_line(e)))

    def on_download_dialog_planned(self, message: Planned) -> None:
        self.query_one("#dl-size", Button).disabled = False
        if message.plan is None:
            self._say(message.error, error=True)
            return
        self.plan = message.plan
        self._say(md.plan_text(message.plan))
        start = self.query_one("#dl-start", Button)
        start.disabled = False
        start.focus()

    @on(Button.Pressed, "#dl-start")
    def start(self) -> None:
        p = self.plan
        if p is None:
            return
        include = md.split_globs(self.query_one("#dl-include", Input).value)
        argv = md.download_argv(p.ref.repo_id, p.commit, include)
        request = {"repo": p.ref.repo_id, "revision": p.commit, "include": include, "allow_pickle": False,
                   "dry_run": False}
        # download is resumable by running it again (huggingface_hub keeps finished files): resume_args=()
        self.dismiss(JobRequest("download", argv, request, p.ref.repo_id, resume_args=()))

    @on(Button.Pressed, "#dl-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    def _say(self, text: str, error: bool = False) -> None:
        w = self.query_one("#dl-plan", Static)
        w.update(text)
        w.set_class(error, "error")


class DeleteDialog(ModelsDialog):
    """The delete plan (revisions, bytes freed, recipes that use it); deletes only on "Delete"."""

    def __init__(self, plan) -> None:
        super().__init__()
        self.plan = plan

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="md-box", id="del-box"):
            yield Static("Delete from the Hub cache?")
            yield Static(md.delete_text(self.plan), id="del-plan", classes="md-text", markup=False)
            with Horizontal(classes="md-buttons"):
                yield Button("Keep", id="del-keep", variant="primary")
                yield Button(f"Delete ({md.human_size(self.plan.freed_bytes)})", id="del-confirm", variant="error")

    def on_mount(self) -> None:
        # the safe answer has the focus: Enter alone never deletes
        self.query_one("#del-keep", Button).focus()

    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#del-keep")
    def _keep(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#del-confirm")
    def _confirm(self) -> None:
        self.dismiss(True)


class FineTuneDialog(ModelsDialog):
    """Fine-tune the selected checkpoint: encoded dataset, classes, steps, output run directory."""

    class Checked(Message):
        """The form was checked: the run to start, or the one-line reason it cannot."""

        def __init__(self, plan: md.FineTune | None, error: str = "") -> None:
            super().__init__()
            self.plan, self.error = plan, error

    def __init__(self, row: md.PaneRow, out: str) -> None:
        super().__init__()
        self.row = row
        self.out = out

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="md-box", id="ft-box"):
            yield Static(f"Fine-tune {self.row.name} ({self.row.format})", markup=False)
            yield _row("data", Input(placeholder="encoded dataset directory (netdiff encode)", id="ft-data"))
            yield _row("classes", Input(placeholder="the checkpoint's classes + the data's new ones",
                                        id="ft-classes"))
            yield _row("steps", Input("1000", id="ft-steps", type="integer"))
            yield _row("time limit", Input(placeholder="none (e.g. 45m): stops there and exports the model",
                                           id="ft-time"))
            yield _row("output run", Input(self.out, id="ft-out"))
            yield Static("Runs as a detached job (netdiff train ... on the Jobs tab).", id="ft-msg",
                         classes="md-text", markup=False)
            with Horizontal(classes="md-buttons"):
                yield Button("Start", id="ft-start", variant="success")
                yield Button("Cancel", id="ft-cancel")

    def on_mount(self) -> None:
        self.query_one("#ft-data", Input).focus()

    @on(Button.Pressed, "#ft-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#ft-start")
    def start(self) -> None:
        v = {k: self.query_one(f"#ft-{k}", Input).value for k in ("data", "classes", "steps", "out", "time")}
        self.query_one("#ft-start", Button).disabled = True
        self.check(v["data"].strip(), v["classes"], v["steps"].strip(), v["out"].strip(), v["time"].strip())

    @work(thread=True, group="models-finetune-check", exclusive=True, description="check fine-tune form",
          exit_on_error=False)
    def check(self, data: str, classes: str, steps: str, out: str, time_limit: str = "") -> None:
        # reads the dataset manifest and the checkpoint's config: off the UI thread
        try:
            self.post_message(self.Checked(md.finetune_plan(self.row, data, classes, steps, out,
                                                            time_limit_text=time_limit)))
        except Exception as e:
            self.post_message(self.Checked(None, one_line(e)))

    def on_fine_tune_dialog_checked(self, message: Checked) -> None:
        self.query_one("#ft-start", Button).disabled = False
        msg = self.query_one("#ft-msg", Static)
        if message.plan is None:
            msg.update(message.error)
            msg.add_class("error")
            return
        ft = message.plan
        request = {"data": ft.argv[2], "out": str(ft.out), "from": self.row.ref, "config": ft.config or {}}
        self.dismiss(JobRequest("train", ft.argv, request, ft.out.name, out=ft.out, resume_args=("--resume",),
                                finetune=ft))

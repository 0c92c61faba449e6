"""A live view of one job: progress bar, loss sparkline, it/s and ETA from its events; status, device,
log tail and result from its record (:meth:`JobView.show_state`)."""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Log, ProgressBar, Sparkline, Static

from engine.progress import Event, Message, TaskFinished, TaskProgress, TaskStarted, TrainStep


def _eta(s: float) -> str:
    if s is None or s != s or s < 0:
        return "-"
    s = int(s)
    h, r = divmod(s, 3600)
    m, s = divmod(r, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class JobView(Vertical):
    """Shows the state of a job as its events arrive (call :meth:`apply`)."""

    DEFAULT_CSS = """
    JobView { height: auto; }
    /* as wide as the pane whatever the title: a new title then repaints without a new layout, so a
       dialog opened right after it shows the pane as it is (an auto width lagged under load) */
    JobView #job-title { text-style: bold; width: 1fr; height: 1; text-wrap: nowrap; text-overflow: clip; }
    JobView #job-status { height: 1; }
    JobView #job-meta { height: 1; color: $text-muted; }
    JobView #job-loss-row { height: 3; display: none; }
    JobView #job-loss-row.has-loss { display: block; }
    JobView #job-loss-label { width: 10; }
    JobView Sparkline { height: 3; width: 1fr; }
    JobView #job-result { height: auto; }
    JobView Log { height: 8; border: round $panel; }
    """

    def __init__(self, points: int = 120, lines: int = 200, **kw):
        super().__init__(**kw)
        self.losses: deque[float] = deque(maxlen=max(2, points))
        self.lines = lines
        self.task_name = ""
        self.step = 0
        self.total: float | None = None
        self.done: float = 0
        self.finished = False
        self.events_seen = 0
        self.state = None           # the last catalog.JobState shown
        self._tail: list[str] = []

    def compose(self) -> ComposeResult:
        yield Label("no job selected", id="job-title")
        yield Static("", id="job-status")
        yield Static("", id="job-meta", markup=False)
        yield ProgressBar(total=100, show_eta=False, id="job-progress")
        with Horizontal(id="job-loss-row"):
            yield Label("loss\n-", id="job-loss-label")
            yield Sparkline([], id="job-loss")
        yield Static("", id="job-result", markup=False)
        yield Log(max_lines=self.lines, id="job-log", auto_scroll=True)

    # -- state --------------------------------------------------------------------------

    def reset(self, title: str) -> None:
        self.losses.clear()
        self.task_name, self.step, self.total, self.done, self.finished, self.events_seen = "", 0, None, 0, False, 0
        self.state, self._tail, self._t0 = None, [], None
        self.query_one("#job-meta", Static).update("")
        self.query_one("#job-result", Static).update("")
        self.query_one("#job-title", Label).update(title)
        self.query_one("#job-status", Static).update("waiting for events...")
        self.query_one(ProgressBar).update(total=100, progress=0)
        self.query_one(Sparkline).data = []
        self.query_one("#job-loss-row").remove_class("has-loss")
        self.query_one("#job-loss-label", Label).update("loss\n-")
        self.query_one(Log).clear()

    def apply(self, events: list[Event]) -> None:
        """Fold new events into the view (one refresh per batch)."""
        if not events:
            return
        log = self.query_one(Log)
        status = None
        new_lines = []
        for ev in events:
            self.events_seen += 1
            if isinstance(ev, TrainStep):
                self.task_name, self.step = "train", ev.step
                self.total, self.done = ev.total_steps, ev.step
                self.losses.append(ev.loss)
                status = (f"train step {ev.step}/{ev.total_steps}  loss {ev.loss:.4f}  lr {ev.lr:.2e}  "
                          f"{ev.it_per_s:.1f} it/s  eta {_eta(ev.eta_s)}"
                          + (f"  mem {ev.device_mem_mb:.0f} MB" if ev.device_mem_mb else ""))
            elif isinstance(ev, TaskStarted):
                self.task_name, self.total, self.done, self.finished = ev.task, ev.total, 0, False
                self._t0 = ev.time
                status = f"{ev.task}: started" + (f" ({ev.total:g} {ev.unit})" if ev.total else "")
                new_lines.append(f"started {ev.task}")
            elif isinstance(ev, TaskProgress):
                self.task_name, self.done = ev.task, ev.done
                if ev.total is not None:
                    self.total = ev.total
                tot = f"/{self.total:g}" if self.total else ""
                status = f"{ev.task}: {ev.done:g}{tot} {ev.unit}" + self._rate(ev) + (f"  {ev.detail}" if ev.detail else "")
            elif isinstance(ev, TaskFinished):
                if self.total:
                    self.done = self.total
                short = ", ".join(f"{k}={v}" for k, v in list(ev.summary.items())[:6]
                                  if not isinstance(v, (dict, list)))
                new_lines.append(f"finished {ev.task}" + (f": {short}" if short else ""))
                status = f"{ev.task}: finished"
                self.finished = True
            elif isinstance(ev, Message):
                new_lines.append(f"{ev.level}: {ev.text}")
        bar = self.query_one(ProgressBar)
        bar.update(total=self.total if self.total else None, progress=self.done)
        if status:
            self.query_one("#job-status", Static).update(status)
        if self.losses:
            self.query_one("#job-loss-row").add_class("has-loss")
            self.query_one(Sparkline).data = list(self.losses)
            self.query_one("#job-loss-label", Label).update(f"loss\n{self.losses[-1]:.4f}")
        if new_lines and not self._tail:      # a job with a log shows its log instead
            log.write_lines(new_lines)

    def _rate(self, ev: TaskProgress) -> str:
        """Items per second since the task started, and the ETA at that rate (event times: any process's)."""
        t0 = getattr(self, "_t0", None)
        if t0 is None or ev.time <= t0 or ev.done <= 0:
            return ""
        rate = ev.done / (ev.time - t0)
        eta = f"  eta {_eta((self.total - ev.done) / rate)}" if self.total else ""
        return f"  {rate:.3g} {ev.unit or 'it'}/s{eta}"

    def show_state(self, state) -> None:
        """The job's record: status and device, its log tail, and its result once done."""
        self.state = state
        meta = [f"status: {state.status or 'unknown'}"]
        if state.reason:
            meta.append(state.reason)
        if state.device:
            meta.append(f"device: {state.device}")
        if getattr(state, "memory", ""):
            meta.append(f"memory: {state.memory}")
        self.query_one("#job-meta", Static).update("  ".join(meta))
        res = list(state.result)
        if res:
            keys = [k for k, ok in (("o report", state.report), ("v flows", state.dataset),
                                    ("e export", state.dataset)) if ok]
            if keys:
                res.append("keys: " + ", ".join(keys))
        elif state.status in ("failed", "cancelled") and state.tail:
            res = [f"last log line: {state.tail[-1]}"]
        self.query_one("#job-result", Static).update("\n".join(res))
        if state.status == "done" and not self.finished:
            self.finished = True
            if self.total:
                self.done = self.total
                self.query_one(ProgressBar).update(total=self.total, progress=self.total)
        if state.tail and state.tail != self._tail:
            self._tail = list(state.tail)
            log = self.query_one(Log)
            log.clear()
            log.write_lines(self._tail)

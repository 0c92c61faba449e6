"""Export tab: choose datasets (generations, exports, real ``<class>/*.pcap`` folders), classes and
flows per class, split, seed, pcapng and the output directory; Export starts ``netdiff export ...`` as a detached job and, once it
is done, shows the export's data card (its README.md). With "top up" filled, the one chosen real
``<class>/*.pcap`` folder is balanced instead (``netdiff balance``, optionally ``--filter``).
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, DataTable, Input, Label, Static

from engine.errors import InputError

from ..widgets.table import Table
from ..widgets.pathentry import PathEntry
from .catalog import DatasetInfo, dataset_info


def build_argv(inputs: list[Path], out: Path, split: str = "", seed: str = "", pcapng: bool = False,
               classes: str = "", max_per_class: str = "") -> list[str]:
    """The ``netdiff export`` arguments of the form (checked here so that a mistake is one line at once).

    ``classes``: comma- or space-separated class names (empty: every class).

    Raises:
        InputError: no dataset chosen, a split outside (0, 1), a seed or a per-class count that is
        not a whole number (>= 0, >= 1).
    """
    if not inputs:
        raise InputError(None, "choose at least one dataset (space marks the highlighted one)")
    argv = ["export"] + [str(p) for p in inputs] + ["-o", str(out)]
    return argv + _shared_options(split, seed, pcapng, classes, max_per_class)


def _shared_options(split: str, seed: str, pcapng: bool, classes: str, max_per_class: str = "") -> list[str]:
    """The options export and balance share (classes, split, seed, pcapng; export's flows per class), checked."""
    argv = []
    for c in classes.replace(",", " ").split():
        argv += ["--class", c]
    if max_per_class.strip():
        if not max_per_class.strip().isdigit() or int(max_per_class) < 1:
            raise InputError(None, f"flows per class: {max_per_class.strip()!r} is not a whole number >= 1")
        argv += ["--max-per-class", max_per_class.strip()]
    if split.strip():
        try:
            v = float(split)
        except ValueError:
            raise InputError(None, f"split: {split.strip()!r} is not a number") from None
        if not 0.0 < v < 1.0:
            raise InputError(None, f"split: must be between 0 and 1 (exclusive), got {split.strip()}")
        argv += ["--split", split.strip()]
    if seed.strip():
        if not seed.strip().isdigit():
            raise InputError(None, f"seed: {seed.strip()!r} is not a whole number >= 0")
        argv += ["--seed", seed.strip()]
    if pcapng:
        argv.append("--pcapng")
    return argv


def build_balance_argv(inputs: list[DatasetInfo], out: Path, target: str, min_prob: str = "", split: str = "",
                       seed: str = "", pcapng: bool = False, classes: str = "", max_per_class: str = "",
                       recipes: bool = False) -> list[str]:
    """The ``netdiff balance`` arguments of the form: top up the one chosen real capture folder
    (``recipes``: each class by its recipe, not as the model learned it).

    Raises:
        InputError: not exactly one real ``<class>/*.pcap`` folder chosen, a target that is neither a
        whole number >= 1 nor ``max``, a filter outside [0, 1), a flows-per-class limit (balance has
        none), or a split or seed :func:`build_argv` refuses too.
    """
    real = [d for d in inputs if d.kind == "captures"]
    if len(inputs) != 1 or len(real) != 1:
        raise InputError(None, "balancing tops up one real <class>/*.pcap folder: choose exactly that one")
    t = target.strip().lower()
    if t != "max" and (not t.isdigit() or int(t) < 1):
        raise InputError(None, f"top up: {target.strip()!r} is not a whole number >= 1 or 'max'")
    if max_per_class.strip():
        raise InputError(None, "flows per class: balancing sets them by 'top up'; leave max/cls empty")
    argv = ["balance", "--real", str(real[0].path.absolute()), "--target", t, "-o", str(out)]
    argv += _shared_options(split, seed, pcapng, classes)
    if min_prob.strip():
        try:
            v = float(min_prob)
        except ValueError:
            raise InputError(None, f"filter: {min_prob.strip()!r} is not a number") from None
        if not 0.0 <= v < 1.0:
            raise InputError(None, f"filter: a class probability in [0, 1), got {min_prob.strip()}")
        argv += ["--filter", min_prob.strip()]
    if recipes:
        argv.append("--recipes")
    return argv


def _classes(d: DatasetInfo) -> str:
    text = ", ".join(d.classes)
    return text if len(text) <= 24 else text[:23] + "…"


class ExportPane(Horizontal):
    """Datasets to choose from, the export's options, and the last export job's data card."""

    BINDINGS = [
        Binding("space", "toggle", "Choose", id="export-toggle"),
        Binding("ctrl+g", "start", "Export", id="export-start"),
    ]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.datasets: list[DatasetInfo] = []
        self.chosen: set[Path] = set()
        self.job: Path | None = None            # the job directory of the last export started here

    def compose(self) -> ComposeResult:
        with Vertical(id="export-left"):
            t = Table(id="export-table", cursor_type="row", zebra_stripes=True)
            t.add_columns(" ", "dataset", "kind", "classes", "flows")
            yield t
            yield PathEntry("export", "Add", "another dataset or <class>/*.pcap folder")
            with Horizontal(classes="form-row"):
                yield Label("split", classes="form-label")
                yield Input(placeholder="none (e.g. 0.2)", id="export-split", compact=True)
                yield Label("seed", classes="form-label")
                yield Input(placeholder="0", id="export-seed", type="integer", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("classes", classes="form-label")
                yield Input(placeholder="all (zoom dns ...)", id="export-classes", compact=True)
                yield Label("max/cls", classes="form-label")
                yield Input(placeholder="all", id="export-max", type="integer", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("top up", classes="form-label")
                yield Input(placeholder="no (e.g. 100: balance)", id="export-target", compact=True)
                yield Label("filter", classes="form-label")
                yield Input(placeholder="off (e.g. 0.4)", id="export-filter", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("output", classes="form-label")
                yield Input(placeholder=f"{self.app.settings.output_dir}/export", id="export-out", compact=True)
            with Horizontal(classes="buttons"):
                yield Checkbox("pcapng per class", id="export-pcapng", compact=True)
                yield Checkbox("by recipes", id="export-recipes", compact=True)
                yield Button("Export (ctrl+g)", variant="primary", id="export-run", compact=True)
        with VerticalScroll(id="export-right"):
            yield Static("Mark datasets with space, then Export. The export runs as a job (see Jobs); "
                         "its data card shows here when it is done. With 'top up' filled, the one "
                         "marked real <class>/*.pcap folder is balanced instead (netdiff balance).",
                         id="export-status", markup=False)
            yield Static("", id="export-card", markup=False)

    # -- datasets --------------------------------------------------------------------------

    def show(self, datasets: list[DatasetInfo]) -> None:
        """The scanned datasets, plus those added by hand or chosen elsewhere (kept across scans)."""
        known = {d.path for d in datasets}
        extra = [d for d in self.datasets if d.path not in known]
        self.datasets = datasets + extra
        self._redraw()

    def add(self, d: DatasetInfo, choose: bool = True) -> None:
        if d.path not in {x.path for x in self.datasets}:
            self.datasets.append(d)
        if choose:
            self.chosen.add(d.path)
        self._redraw()

    def _redraw(self) -> None:
        t = self.query_one(DataTable)
        row = t.cursor_row
        t.clear()
        for d in self.datasets:
            flows = str(d.flows) if d.kind != "captures" else "-"
            t.add_row("x" if d.path in self.chosen else " ", d.path.name, d.kind, _classes(d), flows, key=str(d.path))
        if self.datasets:
            t.move_cursor(row=min(max(row, 0), len(self.datasets) - 1), animate=False)

    def action_toggle(self) -> None:
        t = self.query_one(DataTable)
        if not self.datasets or not 0 <= t.cursor_row < len(self.datasets):
            return
        p = self.datasets[t.cursor_row].path
        self.chosen.symmetric_difference_update({p})
        t.update_cell(str(p), next(iter(t.columns)), "x" if p in self.chosen else " ")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "export-table":
            self.action_toggle()

    def on_path_entry_chosen(self, event: PathEntry.Chosen) -> None:
        try:
            self.add(dataset_info(event.path))
        except InputError as e:
            self.app.notify(str(e), title="export", severity="error")

    # -- the job ---------------------------------------------------------------------------

    def argv(self) -> tuple[list[str], Path]:
        text = self.query_one("#export-out", Input).value.strip()
        out = (Path(text).expanduser() if text else self.app.settings.expanded("output_dir") / "export").absolute()
        chosen = [d for d in self.datasets if d.path in self.chosen]
        target = self.query_one("#export-target", Input).value
        recipes = self.query_one("#export-recipes", Checkbox).value
        if target.strip() or self.query_one("#export-filter", Input).value.strip() or recipes:
            return build_balance_argv(chosen, out, target, self.query_one("#export-filter", Input).value,
                                      self.query_one("#export-split", Input).value,
                                      self.query_one("#export-seed", Input).value,
                                      self.query_one("#export-pcapng", Checkbox).value,
                                      self.query_one("#export-classes", Input).value,
                                      self.query_one("#export-max", Input).value, recipes), out
        inputs = [d.path.absolute() for d in chosen]
        return build_argv(inputs, out, self.query_one("#export-split", Input).value,
                          self.query_one("#export-seed", Input).value,
                          self.query_one("#export-pcapng", Checkbox).value,
                          self.query_one("#export-classes", Input).value,
                          self.query_one("#export-max", Input).value), out

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-run":
            self.action_start()

    def action_start(self) -> None:
        try:
            argv, out = self.argv()
        except InputError as e:
            self.app.notify(str(e), title="export", severity="error")
            return
        kind = argv[0]
        self.query_one("#export-card", Static).update("")
        self.query_one("#export-status", Static).update(f"starting {kind} -> {out}")
        self.app.start_job(kind, argv, out=out, label=out.name, switch=False)

    def started(self, job: Path) -> None:
        self.job = job
        self.query_one("#export-status", Static).update(f"{job.name}: running")

    def show_state(self, state) -> None:
        """The export job's record: its status, and its data card once done."""
        if self.job is None or state.path != self.job:
            return
        line = f"{state.path.name}: {state.status or 'unknown'}" + (f" ({state.reason})" if state.reason else "")
        if state.result:
            line += "\n" + "\n".join(state.result)
        self.query_one("#export-status", Static).update(line)
        if state.data_card:
            self.query_one("#export-card", Static).update(state.data_card)

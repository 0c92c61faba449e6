"""Flow viewer: a dataset's flows, the chosen flow's bit image (half blocks, the paper's colours) and
its decoded packet list. Decoding runs in a thread worker; the image scrolls with the arrow keys
(``i`` focuses it) and ``z`` switches between whole rows (bits averaged per cell) and one bit per cell."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label

from ..widgets.table import Table
from ..widgets.bitimage import BitImage
from .flowdata import FlowView, flow_files, read_flow


class FlowViewerScreen(Screen[None]):
    """Left: flows of the dataset; middle: the bit image; right: packets."""

    BINDINGS = [
        Binding("escape,q", "close", "Back", id="flows-close"),
        Binding("n", "step(1)", "Next flow", id="flows-next"),
        Binding("p", "step(-1)", "Previous flow", id="flows-prev"),
        Binding("i", "focus_image", "Scroll image", id="flows-image"),
        Binding("z", "zoom", "Fit/1:1", id="flows-zoom"),
    ]
    DEFAULT_CSS = """
    #flows-table { width: 18; height: 1fr; }
    #flows-right { width: 1fr; height: 1fr; }
    #flows-title { height: 1; text-style: bold; }
    #flows-body { height: 1fr; }
    #flows-image { width: 1fr; min-width: 16; height: 1fr; border: round $panel; }
    #flows-packets { width: 50; max-width: 55%; height: 1fr; }
    """

    def __init__(self, dataset: str | Path):
        super().__init__()
        self.dataset = Path(dataset)
        self.files: list[Path] = []
        self.current: FlowView | None = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            t = Table(id="flows-table", cursor_type="row", zebra_stripes=True)
            t.add_columns("flow")
            yield t
            with Vertical(id="flows-right"):
                yield Label(f"flows of {self.dataset.name}", id="flows-title")
                with Horizontal(id="flows-body"):
                    yield BitImage(id="flows-image")
                    p = Table(id="flows-packets", cursor_type="row", zebra_stripes=True)
                    p.add_columns("time s", "dir", "proto", "ports", "len", "flags")
                    yield p
        yield Footer()

    def on_mount(self) -> None:
        self.list_flows()

    @work(thread=True, group="flows-list", exclusive=True, description="list flows", exit_on_error=False)
    def list_flows(self) -> None:
        files = flow_files(self.dataset)
        self.app.call_from_thread(self._listed, files)

    def _listed(self, files: list[Path]) -> None:
        self.files = files
        t = self.query_one("#flows-table", DataTable)
        t.clear()
        for i, f in enumerate(files):
            t.add_row(f.stem, key=str(i))
        t.focus()
        if files:
            self.load(0)

    def load(self, i: int) -> None:
        self.decode(self.files[i])

    @work(thread=True, group="flows-decode", exclusive=True, description="decode flow", exit_on_error=False)
    def decode(self, path: Path) -> None:
        view = read_flow(path)
        self.app.call_from_thread(self._shown, view)

    def _shown(self, view: FlowView) -> None:
        self.current = view
        rel = view.path.relative_to(self.dataset) if view.path.is_relative_to(self.dataset) else view.path.name
        n, w = view.matrix.shape
        self.query_one("#flows-title", Label).update(f"{rel}: {n} packets x {w} bits (red 1, green 0, blue absent)")
        self.query_one(BitImage).show(view.matrix)
        p = self.query_one("#flows-packets", DataTable)
        p.clear()
        for r in view.packets:
            p.add_row(r.time, r.dir, r.proto, r.ports, str(r.length), r.flags)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "flows-table" and event.row_key is not None and event.row_key.value is not None:
            i = int(event.row_key.value)
            if 0 <= i < len(self.files) and (self.current is None or self.current.path != self.files[i]):
                self.load(i)

    def action_step(self, d: int) -> None:
        t = self.query_one("#flows-table", DataTable)
        if self.files:
            t.move_cursor(row=max(0, min(len(self.files) - 1, t.cursor_row + d)))

    def action_focus_image(self) -> None:
        self.query_one(BitImage).focus()

    def action_zoom(self) -> None:
        self.query_one(BitImage).toggle_fit()

    def action_close(self) -> None:
        self.dismiss(None)

"""Models tab: local checkpoints (shipped default, models dir, training runs)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static

from .catalog import ModelInfo, human_size, model_details


class ModelsPane(Horizontal):
    """A table of checkpoints and the highlighted one's details."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.models: list[ModelInfo] = []

    def compose(self) -> ComposeResult:
        t = DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
        t.add_columns("name", "kind", "classes", "steps", "size", "layout", "status")
        yield t
        with VerticalScroll(id="models-details-box"):
            yield Static("scanning checkpoints...", id="models-details")

    def show(self, models: list[ModelInfo]) -> None:
        self.models = models
        t = self.query_one(DataTable)
        t.clear()
        for i, m in enumerate(models):
            t.add_row(m.name, m.kind, str(len(m.classes)) if m.classes else "-",
                      "-" if m.steps is None else str(m.steps), human_size(m.size), m.layout or "-",
                      "ready" if m.ready else m.status.split(" (")[0], key=str(i))
        det = self.query_one("#models-details", Static)
        if not models:
            s = self.app.settings
            det.update("No checkpoints found.\n\n"
                       "The shipped default model is not installed, and no checkpoint directories "
                       f"(model.safetensors + config.json) are in\n  {s.expanded('models_dir')}\n"
                       "or training runs in\n  " + "\n  ".join(map(str, s.expanded_runs())) +
                       "\n\nTrain one with `netdiff train --data DIR --out RUN`.")
        else:
            det.update(model_details(models[0]))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "models-table" and event.row_key is not None and event.row_key.value is not None:
            i = int(event.row_key.value)
            if 0 <= i < len(self.models):
                self.query_one("#models-details", Static).update(model_details(self.models[i]))

"""Generate tab: a form over ``engine.datasets.generate.generate`` with a live progress view and Cancel.

The form's fields are the request's declaration (``engine/datasets/request.py``): one
input per field, labelled, hinted and checked by it; the fields declared ``form="main"``
are always shown, the rest fold under "more request fields". An empty input keeps the
preset's value (or the default).
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Collapsible, Input, Label, Select

from engine.datasets import recipes as rp
from engine.datasets import request as rq
from engine.errors import InputError

from ..widgets.jobview import JobView

# short values share a row, two to a row; names and paths take a row each
_SHORT = (rq.Int, rq.Num, rq.Choice, rq.Bool, rq.PortRange)
_LABEL_WIDTH = 2 + max(len(rq.form_label(f.name)) for f in rq.FIELDS)


def widget_id(name: str) -> str:
    return "gen-" + name.replace("_", "-")


def _problem(p: rq.Problem) -> InputError:
    return InputError(None, f"{rq.form_label(p.field)}: {p.text_for(rq.form_label)}")


def build_request(preset: str | None, texts: dict[str, str]) -> rq.GenerationRequest:
    """The form's text by field -> a GenerationRequest (the preset's, with the fields typed on top)."""
    values = {}
    try:
        for name, text in texts.items():
            if text.strip():
                values[name] = rq.parse_text(name, text.strip())
    except rq.Problem as p:
        raise _problem(p) from None
    base = rp.load_preset(preset).request if preset else None
    if base is None and "label" not in values:
        raise InputError(None, "choose a preset or type a label")
    try:
        return rq.build(values, base)
    except rq.Problem as p:
        raise _problem(p) from None


def _label(text: str) -> Label:
    label = Label(text, classes="form-label")
    label.styles.width = _LABEL_WIDTH       # inline: the app's .form-label width fits shorter names
    return label


def _field_widget(name: str, initial: str = ""):
    s = rq.spec(name)
    k = s.kind
    tip = rq.help_text(name)
    if isinstance(k, (rq.Choice, rq.Bool)):
        shown = rq.to_text(name, rq.default(name))
        w = Select([(c, c) for c in k.choices], prompt=f"({shown})", id=widget_id(name), compact=True)
    else:
        hint = s.placeholder or rq.to_text(name, rq.default(name))
        kind = "integer" if isinstance(k, rq.Int) else "number" if isinstance(k, rq.Num) else "text"
        w = Input(initial, placeholder=hint, type=kind, id=widget_id(name), compact=True)
    w.tooltip = tip
    return w


def _rows(names: list[str]):
    """Form rows: (label, widget) pairs, short fields two to a row."""
    row: list[str] = []
    for name in names:
        short = isinstance(rq.spec(name).kind, _SHORT)
        if row and (not short or len(row) == 2):
            yield row
            row = []
        if not short:
            yield [name]
        else:
            row.append(name)
    if row:
        yield row


class GeneratePane(Vertical):
    """Preset, the request's fields, output dir; Generate runs the engine in a thread worker."""

    DEFAULT_CSS = "#gen-form { height: auto; max-height: 70%; }"

    BINDINGS = [
        Binding("ctrl+g", "start", "Generate", id="generate-start"),
        Binding("ctrl+x", "cancel", "Cancel generation", id="generate-cancel"),
    ]

    def compose(self) -> ComposeResult:
        s = self.app.settings
        initial = {"count": str(s.default_count), "seed": str(s.default_seed)}
        main = [f.name for f in rq.FIELDS if rq.spec(f.name).form == "main"]
        more = [f.name for f in rq.FIELDS if rq.spec(f.name).form == "more"]
        with VerticalScroll(id="gen-form"):
            with Horizontal(classes="form-row"):
                yield _label("preset")
                yield Select([(n, n) for n in rp.preset_names()], prompt="(none: use the label)", id="gen-preset",
                             compact=True)
            yield from self._compose_rows(main, initial)
            with Collapsible(title="more request fields", collapsed=True, id="gen-more"):
                yield from self._compose_rows(more, initial)
            with Horizontal(classes="form-row"):
                yield _label("output dir")
                yield Input(placeholder=f"{s.output_dir}/<label>", id="gen-out", compact=True)
        with Horizontal(classes="buttons"):
            yield Button("Generate", variant="primary", id="gen-start")
            yield Button("Cancel", variant="error", id="gen-cancel", disabled=True)
        yield JobView(points=s.sparkline_points, lines=s.message_lines, id="gen-view")

    def _compose_rows(self, names: list[str], initial: dict[str, str]) -> ComposeResult:
        for row in _rows(names):
            with Horizontal(classes="form-row"):
                for name in row:
                    yield _label(rq.form_label(name))
                    yield _field_widget(name, initial.get(name, ""))

    def texts(self) -> dict[str, str]:
        """What is typed or chosen, by request field (empty: keep the preset's or the default)."""
        out = {}
        for f in rq.FIELDS:
            if rq.spec(f.name).form not in ("main", "more"):
                continue
            w = self.query_one("#" + widget_id(f.name))
            v = w.value
            out[f.name] = v if isinstance(v, str) else ""      # Select.BLANK: nothing chosen
        return out

    def values(self) -> tuple[rq.GenerationRequest, Path]:
        sel = self.query_one("#gen-preset", Select).value
        preset = sel if isinstance(sel, str) else None
        req = build_request(preset, self.texts())
        out = self.query_one("#gen-out", Input).value.strip()
        return req, Path(out).expanduser() if out else self.app.settings.expanded("output_dir") / req.label

    def set_running(self, running: bool) -> None:
        self.query_one("#gen-start", Button).disabled = running
        self.query_one("#gen-cancel", Button).disabled = not running

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "gen-start":
            self.action_start()
        elif event.button.id == "gen-cancel":
            self.action_cancel()

    def action_start(self) -> None:
        try:
            req, out = self.values()
        except InputError as e:
            self.app.notify(str(e), title="generate", severity="error")
            return
        self.query_one(JobView).reset(f"generate {req.count} {req.label} flows -> {out}")
        self.app.start_generation(req, out)

    def action_cancel(self) -> None:
        self.app.cancel_generation()

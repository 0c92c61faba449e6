"""Generate tab: a form that starts ``netdiff generate ...`` as a detached job (the Jobs tab follows it).

The form's fields are the request's declaration (``engine/datasets/request.py``): one
input per field, labelled, hinted and checked by it; the fields declared ``form="main"``
are always shown, the rest fold under "more request fields". An empty input keeps the
preset's value (or the default). The form checks the request with the declaration (one-line
errors in place) and then runs the very command line the CLI would (:func:`build_argv`), so the
job outlives the console and is resumed, cancelled and listed like any other.
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


def build_argv(preset: str | None, texts: dict[str, str], out: Path) -> list[str]:
    """The ``netdiff generate`` arguments of the form: the preset, each typed field as its option, ``-o``."""
    argv = ["generate"] + (["--preset", preset] if preset else [])
    for name, text in texts.items():
        text = text.strip()
        if not text:
            continue
        flags = rq.cli_flags(name)
        if isinstance(rq.spec(name).kind, rq.Bool):
            on, off = flags[0].split("/")
            argv.append(on if rq.parse_text(name, text) else off)
        else:
            argv += [flags[0], text]
    return argv + ["-o", str(out)]


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
    """Preset, the request's fields, output dir; Generate starts a detached ``netdiff generate`` job."""

    DEFAULT_CSS = "#gen-form { height: 1fr; }"

    BINDINGS = [
        Binding("ctrl+g", "start", "Generate", id="generate-start"),
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
            yield Button("Generate (ctrl+g)", variant="primary", id="gen-start")
            yield Label("runs as a job: the Jobs tab follows it; it outlives this console", id="gen-note")

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

    def values(self) -> tuple[rq.GenerationRequest, Path, list[str]]:
        """The checked request, its output directory (absolute) and the command line that runs it.

        Raises:
            InputError: a bad field, or neither a preset nor a label.
        """
        sel = self.query_one("#gen-preset", Select).value
        preset = sel if isinstance(sel, str) else None
        texts = self.texts()
        req = build_request(preset, texts)
        text = self.query_one("#gen-out", Input).value.strip()
        out = Path(text).expanduser() if text else self.app.settings.expanded("output_dir") / req.label
        out = out.absolute()
        return req, out, build_argv(preset, texts, out)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "gen-start":
            self.action_start()

    def action_start(self) -> None:
        try:
            req, out, argv = self.values()
        except InputError as e:
            self.app.notify(str(e), title="generate", severity="error")
            return
        self.app.start_job("generate", argv, out=out, label=req.label, request=req)

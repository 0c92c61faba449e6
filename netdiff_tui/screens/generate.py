"""Generate tab: a form over ``engine.datasets.generate.generate`` with a live progress view and Cancel."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select

from engine.datasets import recipes as rp
from engine.errors import InputError
from engine.datasets.request import GenerationRequest

from ..widgets.jobview import JobView


def build_request(preset: str | None, label: str, count: str, seed: str, model: str,
                  like: str = "", strength: str = "") -> GenerationRequest:
    """The form's fields -> a GenerationRequest (the preset's, with the form's values on top)."""
    try:
        n = int(count)
    except ValueError:
        raise InputError(None, f"count: {count!r} is not a whole number") from None
    if not 1 <= n <= rp.MAX_COUNT:
        raise InputError(None, f"count: must be between 1 and {rp.MAX_COUNT}, got {n}")
    try:
        s = int(seed or 0)
    except ValueError:
        raise InputError(None, f"seed: {seed!r} is not a whole number") from None
    if not 0 <= s <= rp.MAX_SEED:
        raise InputError(None, f"seed: must be between 0 and {rp.MAX_SEED}, got {s}")
    label = label.strip()
    if label and not rp.LABEL_RE.match(label):
        raise InputError(None, f"label {label!r}: use lowercase letters, digits and '_'")
    if preset:
        req = rp.load_preset(preset).request
        req = replace(req, count=n, seed=s, **({"label": label} if label else {}))
    elif label:
        req = GenerationRequest(label=label, count=n, seed=s)
    else:
        raise InputError(None, "choose a preset or type a label")
    model = model.strip()
    if model and model != "default":
        req = replace(req, model=model)
    like = like.strip()
    if like:
        p = Path(like).expanduser()
        if not p.exists():
            raise InputError(p, "like: no such file or directory")
        req = replace(req, like=str(p))
    if strength.strip():
        try:
            st = float(strength)
        except ValueError:
            raise InputError(None, f"strength: {strength!r} is not a number") from None
        if not 0.0 < st <= 1.0:
            raise InputError(None, f"strength: must be in (0, 1], got {st:g}")
        req = replace(req, strength=st)
    return req


class GeneratePane(Vertical):
    """Preset or label, count, seed, model, guide flows, output dir; Generate runs the engine in a thread worker."""

    BINDINGS = [
        Binding("ctrl+g", "start", "Generate", id="generate-start"),
        Binding("ctrl+x", "cancel", "Cancel generation", id="generate-cancel"),
    ]

    def compose(self) -> ComposeResult:
        s = self.app.settings
        with Horizontal(classes="form-row"):
            yield Label("preset", classes="form-label")
            yield Select([(n, n) for n in rp.preset_names()], prompt="(none: use the label)", id="gen-preset", compact=True)
        with Horizontal(classes="form-row"):
            yield Label("label", classes="form-label")
            yield Input(placeholder="class label, e.g. zoom (overrides the preset's)", id="gen-label", compact=True)
        with Horizontal(classes="form-row"):
            yield Label("count", classes="form-label")
            yield Input(str(s.default_count), type="integer", id="gen-count", compact=True)
            yield Label("seed", classes="form-label")
            yield Input(str(s.default_seed), type="integer", id="gen-seed", compact=True)
        with Horizontal(classes="form-row"):
            yield Label("model", classes="form-label")
            yield Input(placeholder="default (or a checkpoint directory)", id="gen-model", compact=True)
        with Horizontal(classes="form-row"):
            yield Label("like", classes="form-label")
            yield Input(placeholder="(optional) real captures to start from", id="gen-like",
                        compact=True)
            yield Label("strength", classes="form-label")
            yield Input(placeholder="0.5", type="number", id="gen-strength", compact=True)
        with Horizontal(classes="form-row"):
            yield Label("output dir", classes="form-label")
            yield Input(placeholder=f"{s.output_dir}/<label>", id="gen-out", compact=True)
        with Horizontal(classes="buttons"):
            yield Button("Generate", variant="primary", id="gen-start")
            yield Button("Cancel", variant="error", id="gen-cancel", disabled=True)
        yield JobView(points=s.sparkline_points, lines=s.message_lines, id="gen-view")

    def values(self) -> tuple[GenerationRequest, Path]:
        sel = self.query_one("#gen-preset", Select).value
        preset = sel if isinstance(sel, str) else None
        req = build_request(preset, self.query_one("#gen-label", Input).value,
                            self.query_one("#gen-count", Input).value, self.query_one("#gen-seed", Input).value,
                            self.query_one("#gen-model", Input).value, self.query_one("#gen-like", Input).value,
                            self.query_one("#gen-strength", Input).value)
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

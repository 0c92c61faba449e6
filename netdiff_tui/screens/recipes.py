"""Recipes tab: presets and user recipes; view/edit the TOML, validate with the engine, new from preset."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static, TextArea
from ..widgets.table import Table

from engine.datasets import recipes as rp
from engine.errors import InputError


@dataclass
class RecipeEntry:
    name: str
    source: str          # "preset" or "user"
    path: Path
    label: str = "?"
    error: str = ""


def list_recipes() -> list[RecipeEntry]:
    """Presets then user recipes, each validated by the engine (errors kept as one line)."""
    out = []
    for src, d, names in (("preset", rp.presets_dir(), rp.preset_names()), ("user", rp.user_dir(), rp.user_names())):
        for n in names:
            e = RecipeEntry(n, src, d / f"{n}.toml")
            try:
                rc = rp.load_recipe(e.path, src)
                e.label = rc.request.label
            except InputError as err:
                e.error = str(err)
            out.append(e)
    return out


def validate_text(text: str, path: Path, source: str) -> rp.Recipe:
    """The engine's validation of (possibly unsaved) recipe text; raises InputError (one line)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(path, f"TOML syntax error: {str(e).splitlines()[0]}") from None
    return rp.parse_recipe(data, path, source)


def new_from_preset(preset: str, name: str) -> Path:
    """Write user recipe ``name`` copied from ``preset`` (validated first); returns its path."""
    from engine.outdir import atomic_write_bytes
    if not rp.NAME_RE.match(name):
        raise InputError(None, f"recipe name {name!r}: use 1-64 lowercase letters, digits, '_', '-' or '.'")
    dest = rp.user_dir() / f"{name}.toml"
    if dest.exists():
        raise InputError(dest, "a recipe with this name exists")
    src = rp.presets_dir() / f"{preset}.toml"
    text = rp.with_name(src.read_text(encoding="utf-8"), name)
    validate_text(text, dest, "user")
    atomic_write_bytes(dest, [text.encode()])
    return dest


class NewRecipeScreen(ModalScreen[tuple[str, str] | None]):
    """Ask for the new recipe's name (and which preset it starts from)."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="new-recipe-cancel")]

    def __init__(self, preset: str):
        super().__init__()
        self.preset = preset

    def compose(self) -> ComposeResult:
        with Vertical(id="new-recipe-dialog"):
            yield Label(f"New user recipe from preset [b]{self.preset}[/b]")
            yield Input(value=f"my_{self.preset}", placeholder="recipe name", id="new-recipe-name")
            with Horizontal(classes="buttons"):
                yield Button("Create", variant="primary", id="new-recipe-create")
                yield Button("Cancel", id="new-recipe-cancel-btn")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "new-recipe-create":
            self._done()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._done()

    def _done(self) -> None:
        name = self.query_one(Input).value.strip()
        if name:
            self.dismiss((self.preset, name))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class RecipesPane(Horizontal):
    """Recipe list on the left; the selected recipe's TOML, its validation line and actions on the right."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save recipe", id="recipe-save"),
        Binding("f2", "validate", "Validate", id="recipe-validate"),
        Binding("ctrl+n", "new", "New from preset", id="recipe-new"),
    ]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.entries: list[RecipeEntry] = []
        self.current: RecipeEntry | None = None

    def compose(self) -> ComposeResult:
        t = Table(id="recipes-table", cursor_type="row", zebra_stripes=True)
        t.add_columns("recipe", "source", "label", "valid")
        yield t
        with Vertical(id="recipes-right"):
            yield Label("", id="recipe-path")
            yield TextArea("", id="recipe-text", show_line_numbers=True, soft_wrap=False)
            yield Static("", id="recipe-status")
            with Horizontal(classes="buttons"):
                yield Button("Validate", id="recipe-validate-btn", compact=True)
                yield Button("Save", id="recipe-save-btn", compact=True)
                yield Button("New from preset", variant="primary", id="recipe-new-btn", compact=True)

    def on_mount(self) -> None:
        self.reload()

    def reload(self, select: str | None = None) -> None:
        self.entries = list_recipes()
        t = self.query_one(DataTable)
        t.clear()
        row = 0
        for i, e in enumerate(self.entries):
            t.add_row(e.name, e.source, e.label, "ok" if not e.error else "error", key=str(i))
            if select is not None and e.name == select and e.source == "user":
                row = i
        if self.entries:
            t.move_cursor(row=row)
            self.load(self.entries[row])

    def load(self, e: RecipeEntry) -> None:
        self.current = e
        try:
            text = e.path.read_text(encoding="utf-8")
        except OSError as err:
            text = f"# cannot read {e.path}: {err.strerror}"
        self.query_one("#recipe-path", Label).update(f"{e.source}: {e.path.name}"
                                                      + ("  (read-only preset)" if e.source == "preset" else ""))
        ta = self.query_one(TextArea)
        ta.load_text(text)
        ta.read_only = e.source == "preset"
        self.query_one("#recipe-save-btn", Button).disabled = e.source == "preset"
        self._status(e.error or f"valid: label {e.label}", ok=not e.error)

    def _status(self, text: str, ok: bool) -> None:
        st = self.query_one("#recipe-status", Static)
        st.set_class(not ok, "error")
        st.update(("[b]ok[/b] " if ok else "[b]error[/b] ") + text.replace("[", r"\["))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "recipes-table" and event.row_key is not None and event.row_key.value is not None:
            i = int(event.row_key.value)
            if 0 <= i < len(self.entries) and self.entries[i] is not self.current:
                self.load(self.entries[i])

    def on_button_pressed(self, event: Button.Pressed) -> None:
        {"recipe-validate-btn": self.action_validate, "recipe-save-btn": self.action_save,
         "recipe-new-btn": self.action_new}.get(event.button.id, lambda: None)()

    def action_validate(self) -> rp.Recipe | None:
        e = self.current
        if e is None:
            return None
        try:
            rc = validate_text(self.query_one(TextArea).text, e.path, e.source)
        except InputError as err:
            self._status(str(err), ok=False)
            return None
        self._status(f"valid: label {rc.request.label}, {rc.request.count} flows, seed {rc.request.seed}", ok=True)
        return rc

    def action_save(self) -> None:
        e = self.current
        if e is None or e.source != "user":
            self.app.notify("presets are read-only: make a user recipe with 'New from preset'", severity="warning")
            return
        if self.action_validate() is None:
            self.app.notify("not saved: the recipe is invalid", severity="error")
            return
        from engine.outdir import atomic_write_bytes
        atomic_write_bytes(e.path, [self.query_one(TextArea).text.encode()])
        self.app.notify(f"saved {e.path}")
        self.reload(select=e.name)

    def action_new(self, preset: str | None = None) -> None:
        if preset is None:
            cur = self.current
            if cur is not None and cur.source == "preset":
                preset = cur.name
            else:
                names = rp.preset_names()
                if not names:
                    self.app.notify("no presets installed", severity="error")
                    return
                preset = names[0]

        def created(result: tuple[str, str] | None) -> None:
            if result is None:
                return
            try:
                dest = new_from_preset(*result)
            except InputError as err:
                self.app.notify(str(err), severity="error")
                return
            self.app.notify(f"created {dest}")
            self.reload(select=result[1])

        self.app.push_screen(NewRecipeScreen(preset), created)

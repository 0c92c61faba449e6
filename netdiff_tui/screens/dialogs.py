"""Small modal screens: a yes/no confirmation and the help screen listing every binding by id."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static
from ..widgets.table import Table


class ConfirmScreen(ModalScreen[bool]):
    """Say what will happen; Enter/y confirms, Escape/n cancels."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm-yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm-no"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    #confirm-dialog { width: 70; max-width: 95%; height: auto; padding: 1 2; border: thick $primary;
                      background: $surface; }
    """

    def __init__(self, text: str, yes: str = "Yes", danger: bool = False):
        super().__init__()
        self.text, self.yes, self.danger = text, yes, danger

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(self.text, id="confirm-text", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", variant="error" if self.danger else "primary", id="confirm-yes-btn")
                yield Button("No (n)", id="confirm-no-btn")

    def on_mount(self) -> None:
        self.query_one("#confirm-yes-btn").focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes-btn")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def binding_classes(app) -> list[tuple[str, type]]:
    """(where, class) of every class of the console that declares key bindings: the app, its tabs,
    its screens and dialogs (found in the screen modules, so a new dialog is listed without a change here)."""
    import importlib
    import inspect
    import pkgutil

    from textual.dom import DOMNode
    from .. import screens
    out = [("everywhere", type(app))]
    for info in sorted(pkgutil.iter_modules(screens.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{screens.__name__}.{info.name}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == mod.__name__ and issubclass(cls, DOMNode) and cls.__dict__.get("BINDINGS"):
                where = cls.__name__.removesuffix("Pane").removesuffix("Screen")
                out.append((where, cls))
    return out


KEY_NAMES = {"question_mark": "?", "escape": "esc", "space": "space"}


def key_text(keys: str) -> str:
    """``"escape,q,question_mark"`` -> ``"esc q ?"``."""
    return " ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in keys.split(","))


def binding_rows(app) -> list[tuple[str, str, str, str]]:
    """(where, keys, description, id) of every binding with an id (keys as remapped in settings)."""
    keymap = app.settings.keymap
    rows = []
    for where, cls in binding_classes(app):
        for b in cls.BINDINGS:
            if isinstance(b, Binding) and b.id:
                rows.append((where, key_text(keymap.get(b.id, b.key)), b.description or b.action, b.id))
    return rows


class HelpScreen(ModalScreen[None]):
    """Every binding by id (remap any of them in settings.toml: ``keymap = { id = "keys" }``)."""

    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss_help", "Close help", id="help-close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help-box { width: 90%; height: 90%; border: thick $primary; background: $surface; padding: 0 1; }
    #help-title { height: auto; }
    #help-table { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Label("[b]Keys[/b] by binding id; remap in settings.toml: keymap = { show-jobs = \"j\" }  "
                        "(Esc closes)", id="help-title")
            t = Table(id="help-table", cursor_type="row", zebra_stripes=True)
            t.add_columns("where", "keys", "does", "id")
            for row in binding_rows(self.app):
                t.add_row(*row)
            yield t

    def action_dismiss_help(self) -> None:
        self.dismiss(None)

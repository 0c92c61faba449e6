"""Console settings: a typed dataclass, read from ``settings.toml`` when present.

The file lives in ``platformdirs.user_config_dir("netdiff")/settings.toml``;
every key is optional and named like a field below, e.g.::

    models_dir = "~/models/netdiff"
    runs_dirs = ["~/runs", "/scratch/netdiff"]
    poll_interval = 0.25

A bad file is reported as one line (file, key, problem) and the defaults are used.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path


def config_dir() -> Path:
    import platformdirs
    return Path(platformdirs.user_config_dir("netdiff"))


def data_dir() -> Path:
    import platformdirs
    return Path(platformdirs.user_data_dir("netdiff"))


def settings_path() -> Path:
    return config_dir() / "settings.toml"


@dataclass(frozen=True)
class Settings:
    """What the console looks at and how it behaves."""

    models_dir: str = field(default_factory=lambda: str(data_dir() / "models"))
    """Local checkpoints: each subdirectory holding ``model.safetensors`` + ``config.json`` is a model."""

    runs_dirs: tuple[str, ...] = field(default_factory=lambda: (str(data_dir() / "runs"), "runs"))
    """Where training runs live (``netdiff train --out``); every directory up to two levels down with an
    ``events.jsonl`` is a job, and every run directory (``train_config.json``) is listed as a model."""

    jobs_dir: str = field(default_factory=lambda: str(data_dir() / "jobs"))
    """Where jobs live (one directory each: job.json, events.jsonl, log.txt), the console's and
    ``--detach``'s alike; ``$NETDIFF_JOBS_DIR`` overrides it."""

    output_dir: str = "out"
    """Default parent of generation outputs in the Generate form (``<output_dir>/<label>``)."""

    default_count: int = 20
    """Default number of flows in the Generate form."""

    default_seed: int = 0
    """Default seed in the Generate form."""

    poll_interval: float = 0.5
    """Seconds between looks at a followed ``events.jsonl``."""

    refresh_interval: float = 2.0
    """Seconds between rescans of the jobs list and the followed job's record (status, log tail, result)."""

    system_interval: float = 2.0
    """Seconds between readings of the system panel (GPU, CPU, RAM, disk)."""

    sparkline_points: int = 120
    """How many recent loss values the Jobs view plots."""

    message_lines: int = 200
    """How many recent messages the Jobs view keeps."""

    theme: str = "textual-dark"
    """Textual theme name (any of the themes the command palette's "Change theme" lists)."""

    keymap: dict = field(default_factory=dict)
    """Rebind keys by binding id, e.g. ``{ show-models = "m", generate-start = "ctrl+g" }``
    (ids are listed in docs/tui.md)."""

    def expanded(self, name: str) -> Path:
        """A path-valued setting with ``~`` and variables expanded."""
        return Path(os.path.expandvars(os.path.expanduser(getattr(self, name))))

    def expanded_runs(self) -> list[Path]:
        return [Path(os.path.expandvars(os.path.expanduser(p))) for p in self.runs_dirs]


def field_docs() -> dict[str, str]:
    """Field name -> its docstring (read from this module's source), for help screens and docs."""
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(Settings))
    body = tree.body[0].body
    out = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr) \
                and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
            out[a.target.id] = " ".join(b.value.value.split())
    return out


class SettingsError(ValueError):
    """settings.toml is unreadable or has a bad key; the message is one line."""


def _coerce(path: Path, name: str, value, default):
    if isinstance(default, bool) or isinstance(value, bool) and not isinstance(default, bool):
        if not isinstance(value, bool):
            raise SettingsError(f"{path}: key '{name}': expected true or false, got {value!r}")
        return value
    if isinstance(default, dict):
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise SettingsError(f"{path}: key '{name}': expected a table of binding id = \"keys\", got {value!r}")
        return dict(value)
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{path}: key '{name}': expected a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SettingsError(f"{path}: key '{name}': expected a non-negative integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise SettingsError(f"{path}: key '{name}': expected a positive number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise SettingsError(f"{path}: key '{name}': expected a string, got {value!r}")
    return value


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Settings from ``path`` (default: the user's settings.toml); defaults when it does not exist.

    Raises :class:`SettingsError` (one line) for a file that exists but is wrong.
    """
    p = Path(path) if path is not None else settings_path()
    base = Settings()
    if not p.is_file():
        return base
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"{p}: cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{p}: TOML syntax error: {e}") from None
    known = {f.name for f in fields(Settings)}
    changes = {}
    for k, v in data.items():
        if k not in known:
            import difflib
            hint = difflib.get_close_matches(k, sorted(known), 1)
            raise SettingsError(f"{p}: unknown key '{k}'" + (f" (did you mean '{hint[0]}'?)" if hint else
                                                              f"; known: {', '.join(sorted(known))}"))
        changes[k] = _coerce(p, k, v, getattr(base, k))
    return replace(base, **changes)

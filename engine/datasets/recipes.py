"""Recipes: TOML files that describe one class's generation job.

A recipe parses into exactly one :class:`~engine.datasets.request.GenerationRequest`.
Its keys, their types, ranges, defaults and error wording all come from the request's
declaration (each field's ``spec.recipe`` names its key; ``engine/datasets/request.py``);
this module adds only what is a recipe's own: its ``name`` and ``description``, the
table layout, unknown-key hints, the check of the label against the model's classes,
and files and lookup. Every problem is an :class:`~engine.errors.InputError` naming the
file, the key and what is wrong, e.g.
``zoom.toml: key 'traffic.mtu': must be between 576 and 9216, got 100``.

File layout (every key but ``label`` is optional; see ``docs/recipes.md``)::

    name = "zoom"                       # defaults to the file name
    label = "zoom"                      # class the model is conditioned on
    description = "..."
    model = "default"                   # or a local directory, or hf://org/name@<40-hex commit>
    count = 20                          # flows
    seed = 0

    [traffic]
    transport = "udp"                   # tcp | udp | icmp | any
    service_ports = [8801, "3478-3481"] # responder (server) side; ranges allowed
    client_ports = "49152-65535"        # initiator's ephemeral range
    packets = [2, 256]                  # packets per flow, min and max
    start = 2024-01-01T00:00:00Z        # RFC 3339, with a time zone

    [addresses]
    client = ["10.0.0.0/16"]

    [sampling]
    steps = 50

    [repair]
    disable = []                        # repair rules switched off, by name

User recipes live in ``platformdirs.user_config_dir("netdiff")/recipes/``;
presets ship with the package (``presets/*.toml``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from engine.errors import InputError
from engine.datasets.request import FIELDS, GenerationRequest, Problem, build, parse_value, spec, to_raw, to_text
from engine.datasets.request_kinds import (  # noqa: F401  (compress_ports, format_time, known_repair_rules: callers' API)
    Ctx, compress_ports, format_time, known_repair_rules, tname,
)

# The classes of the real training data (and of the default model).
KNOWN_CLASSES = (
    "amazon", "bittorrent", "dns", "facebook", "google_meet", "http", "icmp", "instagram",
    "microsoft_teams", "netflix", "ntp", "quic", "rtp_voip_sip", "smtp_imap", "ssh", "tls_https",
    "tor", "twitch", "youtube", "zoom",
)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")

# A recipe's own top-level keys (no request field): name and description.
RECIPE_KEYS = ("name", "description")


def _key_fields() -> dict[str, tuple[str, ...]]:
    """recipe key -> the request fields it holds (two for a ``[part 0, part 1]`` key), in declaration order."""
    out: dict[str, list[str]] = {}
    for f in FIELDS:
        out.setdefault(f.metadata["spec"].recipe, []).append(f.name)
    return {k: tuple(sorted(v, key=lambda n: spec(n).part or 0)) for k, v in out.items()}


KEY_FIELDS = _key_fields()


def _schema() -> dict[str, tuple[str, ...]]:
    """section -> its keys; the top level is section ""."""
    out: dict[str, list[str]] = {"": list(RECIPE_KEYS)}
    for key in KEY_FIELDS:
        sec, _, k = key.rpartition(".")
        out.setdefault(sec, []).append(k)
    return {s: tuple(ks) for s, ks in out.items()}


SCHEMA = _schema()
SECTIONS = tuple(s for s in SCHEMA if s)


def recipe_key(field_name: str) -> str:
    return spec(field_name).recipe


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: its request plus what is not part of the request."""

    name: str
    request: GenerationRequest
    description: str = ""
    path: str | None = None
    source: str = ""          # "user", "preset" or "file"

    @property
    def sha256(self) -> str:
        return recipe_hash(self.request)


def _fail(path, key: str, problem: str):
    raise InputError(path, f"key '{key}': {problem}")


def _problem(path, p: Problem):
    _fail(path, recipe_key(p.field), p.text_for(recipe_key))


def _check_keys(path, data: dict) -> None:
    for k, val in data.items():
        if k in SECTIONS:
            if not isinstance(val, dict):
                _fail(path, k, f"expected a [{k}] table, got {tname(val)} {val!r}")
            for sk in val:
                if sk not in SCHEMA[k]:
                    hint = difflib.get_close_matches(sk, SCHEMA[k], 1)
                    other = [s for s in SECTIONS if sk in SCHEMA[s]] + (["top level"] if sk in SCHEMA[""] else [])
                    msg = f"unknown key in [{k}]"
                    if hint:
                        msg += f" (did you mean '{k}.{hint[0]}'?)"
                    elif other:
                        msg += f" (it belongs in {'[' + other[0] + ']' if other[0] != 'top level' else 'the top level'})"
                    else:
                        msg += f"; known: {', '.join(SCHEMA[k])}"
                    _fail(path, f"{k}.{sk}", msg)
        elif k not in SCHEMA[""]:
            allk = list(SCHEMA[""]) + list(SECTIONS)
            where = [s for s in SECTIONS if k in SCHEMA[s]]
            if where:
                _fail(path, k, f"unknown top-level key (it belongs in the [{where[0]}] table)")
            hint = difflib.get_close_matches(k, allk, 1)
            _fail(path, k, "unknown key" + (f" (did you mean '{hint[0]}'?)" if hint else f"; known: {', '.join(allk)}"))


def model_classes(model: str | None) -> tuple[str, ...] | None:
    """Class list of a checkpoint from its ``config.json``, without loading weights (else None)."""
    d = Path(__file__).resolve().parents[1] / "default_model" if model is None else Path(model)
    try:
        c = json.loads((d / "config.json").read_text()).get("classes")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(c, list) and c and all(isinstance(x, str) for x in c):
        return tuple(c)
    return None


_ABSENT = object()


def _lookup(data: dict, key: str):
    sec, _, k = key.rpartition(".")
    return (data.get(sec, {}) if sec else data).get(k, _ABSENT)


def _parse_key(key: str, names: tuple[str, ...], raw, ctx: Ctx) -> dict:
    """One recipe key -> {field: request value}; a two-part key takes [part 0, part 1] or one value for both."""
    if len(names) == 1:
        return {names[0]: parse_value(names[0], raw, ctx)}
    if isinstance(raw, list) and len(raw) == len(names):
        parts = raw
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        parts = [raw] * len(names)
    else:
        unit = spec(names[0]).unit
        raise Problem(names[0], f"expected [min, max] {unit} (or one number), got {tname(raw)} {raw!r}")
    return {n: parse_value(n, v, ctx) for n, v in zip(names, parts)}


def parse_recipe(data: dict, path: str | os.PathLike | None = None, source: str = "file",
                 check_label: bool = True) -> Recipe:
    """Validate a recipe's TOML table; raises InputError naming the file and key."""
    if not isinstance(data, dict):
        raise InputError(path, "a recipe is a TOML table")
    _check_keys(path, data)
    ctx = Ctx(base=Path(path).resolve().parent if path else None)
    stem = Path(path).stem if path else ""
    name = data.get("name", stem or "recipe")
    if not isinstance(name, str):
        _fail(path, "name", f"expected a string, got {tname(name)} {name!r}")
    if not NAME_RE.match(name):
        _fail(path, "name", f"{name!r} must be 1-64 lowercase letters, digits, '_', '-' or '.', "
                            f"starting with a letter or digit")
    description = data.get("description", "")
    if not isinstance(description, str):
        _fail(path, "description", f"expected a string, got {tname(description)} {description!r}")
    if "label" not in data:
        _fail(path, "label", "missing; every recipe names the class to generate, e.g. label = \"zoom\"")
    values = {}
    try:
        for key, names in KEY_FIELDS.items():
            raw = _lookup(data, key)
            if raw is not _ABSENT:
                values.update(_parse_key(key, names, raw, ctx))
        req = build({**values, "extra": {"recipe": name}})
    except Problem as p:
        _problem(path, p)
    if check_label:
        classes = model_classes(req.model) or (KNOWN_CLASSES if req.model is None else None)
        if classes is not None and req.label not in classes:
            hint = difflib.get_close_matches(req.label, classes, 1)
            _fail(path, "label", f"{req.label!r} is not a class of the {'default ' if req.model is None else ''}model"
                                 + (f" (did you mean {hint[0]!r}?)" if hint else f"; classes: {', '.join(classes)}"))
    req.extra["recipe_sha256"] = recipe_hash(req)
    return Recipe(name, req, description, None if path is None else os.fspath(path), source)


def request_to_recipe(req: GenerationRequest, name: str | None = None, description: str = "") -> dict:
    """A request as a TOML-ready recipe table (parses back to the same request)."""
    d: dict = {"name": name or req.extra.get("recipe") or req.label}
    for key, names in KEY_FIELDS.items():
        vals = [to_raw(n, getattr(req, n)) for n in names]
        if any(v is None for v in vals):
            continue
        sec, _, k = key.rpartition(".")
        (d.setdefault(sec, {}) if sec else d)[k] = vals[0] if len(vals) == 1 else vals
        if key == "label" and description:
            d["description"] = description
    return d


def recipe_hash(req: GenerationRequest) -> str:
    """sha256 of the request's canonical JSON (comments and formatting do not count)."""
    d = {f.name: getattr(req, f.name) for f in fields(req) if f.name != "extra"}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()

_ARRAY = re.compile(r'= \[\n((?:    (?:"[^"\n]*"|[-+0-9.eE]+|true|false),\n)+)\]')


def dumps(table: dict, header: str = "") -> str:
    """TOML text (tomli-w), with short arrays of scalars kept on one line."""
    import tomli_w
    body = tomli_w.dumps(table)
    body = _ARRAY.sub(lambda m: "= [" + ", ".join(x.strip().rstrip(",") for x in m.group(1).splitlines()) + "]", body)
    return (header.rstrip("\n") + "\n\n" if header else "") + body


# -- files and lookup ------------------------------------------------------------------

def read_toml(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(p, "no such recipe file") from None
    except IsADirectoryError:
        raise InputError(p, "is a directory, not a recipe file") from None
    except OSError as e:
        raise InputError(p, f"cannot read: {e.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(p, "not UTF-8 text (a recipe is a TOML file)") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(p, f"TOML syntax error: {e}") from None


def load_recipe(path: str | os.PathLike, source: str = "file") -> Recipe:
    return parse_recipe(read_toml(path), path, source)


def user_dir() -> Path:
    """Where user recipes live: ``user_config_dir("netdiff")/recipes``."""
    import platformdirs
    return Path(platformdirs.user_config_dir("netdiff")) / "recipes"


def presets_dir() -> Path:
    """Shipped presets: ``presets/`` next to the engine package (checkout or installed data)."""
    here = Path(__file__).resolve().parents[1]
    for cand in (here.parent / "presets", here / "presets"):
        if cand.is_dir():
            return cand
    try:
        from importlib.resources import files
        p = Path(str(files("presets")))
        if p.is_dir():
            return p
    except (ImportError, TypeError, ModuleNotFoundError):
        pass
    return here.parent / "presets"


def preset_names() -> list[str]:
    d = presets_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def user_names() -> list[str]:
    d = user_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def find(name_or_file: str | os.PathLike, recipes_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Resolve a recipe: an existing file, else ``recipes_dir``, user recipes, presets (in that order)."""
    s = os.fspath(name_or_file)
    p = Path(os.path.expanduser(s))
    if p.is_file() or s.endswith(".toml") or os.sep in s or "/" in s:
        if not p.exists():
            raise InputError(p, "no such recipe file")
        return p, "file"
    if not NAME_RE.match(s):
        raise InputError(None, f"{s!r} is neither a recipe file nor a recipe name")
    dirs = ([(Path(recipes_dir), "dir")] if recipes_dir else []) + [(user_dir(), "user"), (presets_dir(), "preset")]
    for d, src in dirs:
        f = d / f"{s}.toml"
        if f.is_file():
            return f, src
    known = sorted(set(user_names()) | set(preset_names()))
    hint = difflib.get_close_matches(s, known, 1)
    raise InputError(None, f"no recipe or preset named {s!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                     + f"; see `netdiff recipes list` (user recipes: {user_dir()})")


def resolve(name_or_file: str | os.PathLike, recipes_dir: str | os.PathLike | None = None) -> Recipe:
    path, src = find(name_or_file, recipes_dir)
    return load_recipe(path, src)


def load_preset(name: str) -> Recipe:
    f = presets_dir() / f"{name}.toml"
    if not f.is_file():
        hint = difflib.get_close_matches(name, preset_names(), 1)
        raise InputError(None, f"no preset named {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else
                                                              f"; presets: {', '.join(preset_names())}"))
    return load_recipe(f, "preset")


def recipes_for_label(label: str, recipes_dir: str | os.PathLike | None = None) -> Recipe | None:
    """First recipe whose label matches: ``recipes_dir``, then user recipes, then presets (sorted by name).

    A recipe named like the label wins over others in the same place.
    """
    for d, src in ([(Path(recipes_dir), "dir")] if recipes_dir else []) + [(user_dir(), "user"), (presets_dir(), "preset")]:
        if not d.is_dir():
            continue
        files = sorted(d.glob("*.toml"), key=lambda p: (p.stem != label, p.stem))
        for f in files:
            try:
                data = read_toml(f)
            except InputError:
                continue
            if data.get("label") == label:
                return load_recipe(f, src)
    return None


def template(name: str, label: str = "tls_https") -> str:
    """A commented new recipe built from the request defaults."""
    req = GenerationRequest(label=label)
    t = request_to_recipe(req, name)
    head = (f"# netdiff recipe {name!r}: one class's generation job (see docs/recipes.md).\n"
            "# Every key but 'label' is optional; `netdiff recipes validate " + name + "` checks it.")
    return dumps(t, head)


def with_name(text: str, name: str) -> str:
    """Recipe text with its top-level ``name = ...`` replaced (comments kept)."""
    line = f'name = "{name}"'
    new, n = re.subn(r'(?m)^name\s*=\s*"[^"\n]*"[ \t]*$', line, text, count=1)
    if n:
        return new
    # insert after the leading comment block
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines) and (lines[i].startswith("#") or not lines[i].strip()):
        i += 1
    return "".join(lines[:i]) + line + "\n" + "".join(lines[i:])

def summary(rc: Recipe) -> list[tuple[str, str]]:
    """Key facts of a recipe for `show` / `validate`: one row per request field, in declaration order."""
    q = rc.request
    rows = [("name", rc.name), ("source", f"{rc.source}: {rc.path}")]
    for f in FIELDS:
        v = getattr(q, f.name)
        rows.append((f.name, to_text(f.name, v) or spec(f.name).placeholder or "none"))
    return rows + [("recipe sha256", rc.sha256)]

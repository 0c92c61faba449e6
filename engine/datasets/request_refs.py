"""The request's reference kinds: a model (``default``, a checkpoint directory, a pinned Hub
reference) and a path; relative paths are relative to the recipe's folder."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.datasets.request_kinds import Bad, Ctx, Kind, string


def _local_path(s: str, ctx: Ctx) -> Path:
    p = Path(os.path.expanduser(s))
    if not p.is_absolute() and ctx.base is not None:
        p = ctx.base / p
    return p


@dataclass(frozen=True)
class ModelRef(Kind):
    """"default", a checkpoint directory, or a pinned Hugging Face reference.

    ``none_raw``: how a recipe spells None (``model = "default"``); None leaves the key out.
    """

    none_raw: str | None = None
    metavar = "MODEL"
    bounded = False

    def parse(self, raw, ctx):
        m = string(raw).strip()
        if m in ("", "default"):
            return None
        # One reference grammar for recipes, --model and the console (engine.hub.refs). A request
        # pins a Hub model to a commit; text typed now may name a branch (or a bare org/name when no
        # such local directory exists), which is resolved now and the commit is what runs.
        if m.startswith("hf://") or ctx.check_exists and not _local_path(m, ctx).exists():
            from engine.hub.refs import parse_ref, pin_ref
            try:
                ref = parse_ref(m, require_pinned=not ctx.check_exists, base=ctx.base)
                if ref.kind == "hub":
                    return m if ref.pinned else pin_ref(ref).uri
            except ValueError as e:
                raise Bad(getattr(e, "problem", str(e))) from None
        if "://" in m or re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", m):
            raise Bad(f"{m!r}: unknown scheme; use \"default\", a local directory or hf://org/name@<commit>")
        p = _local_path(m, ctx)
        if p.exists() and not p.is_dir():
            raise Bad(f"{m!r} is a file; a local model is a checkpoint directory")
        if ctx.check_exists and not p.exists():
            raise Bad(f"{m!r}: no such checkpoint directory")
        return str(p)

    def to_raw(self, value):
        return "default" if value is None else value

    def describe(self):
        return "\"default\", a checkpoint directory or hf://org/name@<40-hex commit>"


@dataclass(frozen=True)
class PathRef(Kind):
    """A file or directory; relative paths are relative to the recipe's folder."""

    metavar = "PATH"
    bounded = False

    def parse(self, raw, ctx):
        s = string(raw).strip()
        if s in ("", "."):
            raise Bad("expected a path")
        p = _local_path(s, ctx)
        if ctx.check_exists and not p.exists():
            raise Bad(f"{s!r}: no such file or directory")
        return str(p)

    def describe(self):
        return "a file or directory"

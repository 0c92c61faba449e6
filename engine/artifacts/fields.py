"""Checked reading of the JSON files the engine writes: they may be truncated, edited by hand or
hostile, so every value is taken through a getter that checks its type and range and names the
file and key in a one-line error."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import InputError

MAX_JSON_BYTES = 64 << 20       # a report or config larger than this is not one of ours
MAX_TEXT = 4096                 # longest string field kept (names, paths, reasons)


@contextmanager
def reading(path: Path, expected: str) -> Iterator[None]:
    """Turn what can go wrong reading ``path`` into one line naming it (``expected``: its format)."""
    try:
        yield
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory") from None
    except UnicodeDecodeError:
        raise InputError(path, f"not UTF-8 text (expected {expected})") from None
    except (OSError, RecursionError) as e:
        raise InputError(path, f"unreadable: {getattr(e, 'strerror', None) or e}") from None


def read_json_object(path: str | Path, what: str = "") -> dict:
    """The JSON object in ``path`` (``what`` it should be names it in the error when it is not an object).

    Raises:
        InputError: missing, unreadable, too large, not UTF-8, not JSON, or not an object.
    """
    p = Path(path)
    with reading(p, "JSON"):
        size = p.stat().st_size
        if size > MAX_JSON_BYTES:
            raise InputError(p, f"{size} bytes; too large for a {p.name}")
        try:
            d = json.loads(p.read_bytes().decode("utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(p, f"not JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(d, dict):
        raise InputError(p, f"{'not a ' + what + ': ' if what else ''}expected a JSON object, found {type(d).__name__}")
    return d


class Fields:
    """Typed, range-checked access to one JSON object of a file (``where`` names nested objects)."""

    def __init__(self, d: dict, path: str | Path, where: str = ""):
        self.d, self.path, self.where = d, Path(path), where

    def _bad(self, key: str, want: str, v) -> InputError:
        shown = repr(v)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return InputError(self.path, f"{self.where}{key}: expected {want}, found {shown}")

    def has(self, key: str) -> bool:
        return key in self.d and self.d[key] is not None

    def int_(self, key: str, lo: int = 0, hi: int = 2**63 - 1, default: int | None = None) -> int | None:
        v = self.d.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self._bad(key, f"an integer in [{lo}, {hi}]", v)
        return v

    def float_(self, key: str, lo: float = -math.inf, hi: float = math.inf,
               default: float | None = None) -> float | None:
        v = self.d.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
            raise self._bad(key, f"a number in [{lo}, {hi}]", v)
        return float(v)

    def bool_(self, key: str, default: bool | None = None) -> bool | None:
        v = self.d.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self._bad(key, "true or false", v)
        return v

    def str_(self, key: str, default: str = "", choices: tuple[str, ...] | None = None) -> str:
        v = self.d.get(key)
        if v is None:
            return default
        if not isinstance(v, str) or len(v) > MAX_TEXT or (choices is not None and v not in choices):
            raise self._bad(key, f"one of {', '.join(choices)}" if choices else f"text (at most {MAX_TEXT})", v)
        return v

    def str_list(self, key: str, limit: int = 100_000) -> tuple[str, ...]:
        v = self.d.get(key)
        if v is None:
            return ()
        if not isinstance(v, list) or len(v) > limit or not all(isinstance(x, str) and len(x) <= MAX_TEXT for x in v):
            raise self._bad(key, f"a list of at most {limit} strings", v)
        return tuple(v)

    def obj(self, key: str, required: bool = False) -> Fields:
        v = self.d.get(key)
        if v is None and not required:
            v = {}
        if not isinstance(v, dict):
            raise self._bad(key, "an object", v)
        return Fields(v, self.path, f"{self.where}{key}.")

    def objs(self, key: str, limit: int = 100_000) -> list[Fields]:
        v = self.d.get(key)
        if v is None:
            return []
        if not isinstance(v, list) or len(v) > limit or not all(isinstance(x, dict) for x in v):
            raise self._bad(key, f"a list of at most {limit} objects", v)
        return [Fields(x, self.path, f"{self.where}{key}[{i}].") for i, x in enumerate(v)]

    def scalars(self) -> dict:
        """The object's top-level numbers, strings and booleans (what a details pane shows as is)."""
        return {k: v for k, v in self.d.items()
                if isinstance(k, str) and isinstance(v, (int, float, str, bool)) and len(str(v)) <= MAX_TEXT}

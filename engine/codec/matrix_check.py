"""What a flow matrix read from a file (npz, png, nprint csv) may hold.

A flow is 1 to 1024 rows of ``LAYOUT.width`` columns, every value 1, 0 or -1.
Anything else -- floats between the three, NaN, other integers, object or
string arrays, no rows, too many rows, the wrong width -- is refused with one
line naming the file and the first bad cell; a matrix is rounded onto the
three values only when the user asks (``snap=True``, the CLI's ``--snap``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from engine.codec.layout import ABSENT, LAYOUT
from engine.constants import MAX_FLOW_PACKETS
from engine.errors import InputError


def column_name(c: int) -> str:
    """The field (and bit within it) of matrix column ``c``, e.g. ``tcp_syn`` or ``ipv4_tl bit 3``."""
    for f in LAYOUT.fields:
        if not f.in_image:
            continue
        s = LAYOUT.cols(f.qualname)
        if s.start <= c < s.stop:
            return f.qualname if f.width == 1 else f"{f.qualname} bit {c - s.start}"
    return "?"


def cell(r: int, c: int) -> str:
    return f"matrix[{r}, {c}] ({column_name(c)})"


def check_shape(path: str | os.PathLike, shape: tuple, widths: tuple[int, ...] = (LAYOUT.width,)) -> None:
    """Refuse a matrix that is not 2-D, has a width outside ``widths`` or 0 or too many rows."""
    if len(shape) != 2 or shape[1] not in widths:
        want = " or ".join(str(w) for w in widths)
        raise InputError(path, f"matrix has shape {tuple(shape)}, expected (packets, {want})")
    if shape[0] == 0:
        raise InputError(path, "matrix has no rows (a flow has at least one packet)")
    if shape[0] > MAX_FLOW_PACKETS:
        raise InputError(path, f"matrix has {shape[0]} rows, more than the {MAX_FLOW_PACKETS} packets a flow holds")


def flow_matrix(path: str | os.PathLike, m, snap: bool = False,
                where: Callable[[int, int], str] = cell, width: int = LAYOUT.width) -> np.ndarray:
    """Check a flow matrix read from ``path``; returns it as int8.

    Args:
        snap: round values onto 1, 0, -1 (nearest; outside values clipped, NaN
            becomes absent) instead of refusing them.
        where: names a bad cell ``(row, column)`` in the message.
        width: columns expected (an nprint CSV's bit block is narrower).
    Raises:
        InputError: one line naming the file, the problem and the first bad cell.
    """
    a = np.asarray(m)
    if a.dtype.kind not in "biuf":
        raise InputError(path, f"matrix has dtype {a.dtype}; expected integers (1, 0, -1)")
    check_shape(path, a.shape, (width,))
    if a.dtype.kind == "b":
        return a.astype(np.int8)
    if snap:
        if a.dtype.kind == "f":
            return np.where(np.isnan(a), ABSENT, np.clip(np.rint(np.nan_to_num(a, nan=ABSENT)), -1, 1)).astype(np.int8)
        return np.clip(a, -1, 1).astype(np.int8)
    # NaN fails every comparison, so it is caught with the other bad values
    bad = ~((a == 1) | (a == 0) | (a == -1))
    if bad.any():
        r, c = (int(x) for x in np.argwhere(bad)[0])
        v = a[r, c]
        shown = repr(float(v)) if a.dtype.kind == "f" else str(int(v))
        more = int(bad.sum()) - 1
        raise InputError(path, f"{where(r, c)} is {shown}, not 1, 0 or -1"
                               + (f" ({more} more bad values)" if more else "")
                               + " (decode and repair --snap round onto the nearest)")
    return a.astype(np.int8)

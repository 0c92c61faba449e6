"""A flow's bit image in the terminal, in the paper's colours (1 red, 0 green, -1/absent blue).

Two packet rows share one terminal line: ``▀`` with the upper row's colour as foreground and the
lower row's as background. Lines are built from numpy runs of equal colour pairs (one Segment per
run), cached, and cropped to the scroll window (Line API: nothing is a widget per cell).
Without colours (monochrome, NO_COLOR) each line is one packet row in characters instead.

A row is 1105 bits, wider than any terminal: ``fit`` (the default) gives each cell a run of bits and
the mean of their colours, so the whole header shows at once; ``fit = False`` draws one bit per cell
and scrolls sideways.
"""

from __future__ import annotations

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.codec.image import PALETTE

# PALETTE is indexed by value + 1 (-1 blue, 0 green, 1 red); index 3: below the last packet
_COLOURS = [f"rgb({r},{g},{b})" for r, g, b in PALETTE.tolist()] + ["rgb(0,0,0)"]
_RGB = np.concatenate([np.asarray(PALETTE, np.float32), np.zeros((1, 3), np.float32)])
_MONO = {-1: " ", 0: "·", 1: "█"}
_BLOCK = "▀"


class BitImage(ScrollView):
    """Scrolls over a ``(packets, bits)`` int8 matrix of 1/0/-1."""

    DEFAULT_CSS = "BitImage { height: 1fr; width: 1fr; }"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.matrix = np.zeros((0, 0), np.int8)
        self.fit = True
        self._cache: dict[tuple, Strip] = {}

    @property
    def monochrome(self) -> bool:
        return self.app.no_color or self.app.console.color_system is None

    def show(self, matrix: np.ndarray) -> None:
        self.matrix = np.asarray(matrix, np.int8)
        self._cache.clear()
        self._resize()
        self.scroll_to(0, 0, animate=False)
        self.refresh()

    @property
    def fitted(self) -> bool:
        """Whole rows in the width (colour only: characters cannot mix colours, so monochrome scrolls)."""
        return self.fit and not self.monochrome

    def toggle_fit(self) -> None:
        """Whole rows (bits averaged per cell) or one bit per cell (scroll sideways)."""
        self.fit = not self.fit
        self._cache.clear()
        self._resize()
        self.refresh()

    def _resize(self) -> None:
        n, w = self.matrix.shape
        self.virtual_size = Size(max(1, self.size.width) if self.fitted else w, n if self.monochrome else (n + 1) // 2)

    def on_resize(self) -> None:
        if self.fitted:
            self._cache.clear()
            self._resize()

    def _cells(self, row: np.ndarray, width: int) -> np.ndarray:
        """A row of bits -> ``width`` cells of RGB, each the mean colour of its run of bits."""
        edges = np.linspace(0, len(row), width + 1).astype(np.int64)
        rgb = _RGB[row.astype(np.int64) + 1]
        sums = np.add.reduceat(rgb, edges[:-1], axis=0)
        counts = np.maximum(np.diff(edges), 1)[:, None]
        return np.rint(sums / counts).astype(np.int64)

    def _line(self, y: int) -> Strip:
        width = max(1, self.size.width)
        key = (y, width) if self.fitted else (y, 0)
        strip = self._cache.get(key)
        if strip is not None:
            return strip
        m = self.matrix
        if self.fitted and m.shape[1] > width:
            strip = self._fit_line(y, width)
        elif self.monochrome:
            row = m[y]
            # a style is needed even without colour: Textual's line filters read it
            strip = Strip([Segment("".join(_MONO[int(v)] for v in row), Style())], len(row))
        else:
            top = m[2 * y].astype(np.int16) + 1
            bottom = m[2 * y + 1].astype(np.int16) + 1 if 2 * y + 1 < len(m) else np.full(m.shape[1], 3, np.int16)
            code = top * 4 + bottom
            cuts = np.flatnonzero(np.diff(code)) + 1
            starts = np.concatenate(([0], cuts))
            ends = np.concatenate((cuts, [len(code)]))
            segs = [Segment(_BLOCK * int(e - s), Style(color=_COLOURS[int(top[s])], bgcolor=_COLOURS[int(bottom[s])]))
                    for s, e in zip(starts, ends)]
            strip = Strip(segs, len(code))
        if len(self._cache) > 512:
            self._cache.clear()
        self._cache[key] = strip
        return strip

    def _fit_line(self, y: int, width: int) -> Strip:
        m = self.matrix
        top = self._cells(m[2 * y], width)
        bottom = self._cells(m[2 * y + 1], width) if 2 * y + 1 < len(m) else np.zeros_like(top)
        code = np.concatenate([top, bottom], axis=1)
        cuts = np.flatnonzero(np.any(np.diff(code, axis=0) != 0, axis=1)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [width]))
        segs = [Segment(_BLOCK * int(e - s), Style(color="rgb({},{},{})".format(*top[s]),
                                                   bgcolor="rgb({},{},{})".format(*bottom[s])))
                for s, e in zip(starts, ends)]
        return Strip(segs, width)

    def render_line(self, y: int) -> Strip:
        sx, sy = self.scroll_offset
        line = y + sy
        width = self.size.width
        rows = len(self.matrix) if self.monochrome else (len(self.matrix) + 1) // 2
        if line >= rows or not self.matrix.size:
            return Strip.blank(width, self.rich_style)
        x = 0 if self.fitted else sx
        return self._line(line).crop_extend(x, x + width, self.rich_style)

"""Flows <-> Stable Diffusion images on the exact bit grid.

One flow is one image: one packet per row, one column per layout column
(:data:`engine.codec.layout.LAYOUT`: the paper's 1088 header columns, then
direction and the 16 inter-arrival bits), each pixel one of the paper's
colours (1 red, 0 green, absent blue; :mod:`engine.codec.image`).

The VAE and the denoiser need both sides to be multiples of
``vae_scale_factor * denoiser downsampling`` (:func:`engine.model.sd.pipeline.pixel_multiple`).
The image is padded, never resized: extra rows are absent packets and extra
columns are filled with absent too (blue, ``FILLER``) -- the colour the paper
already pads rows with, so the model sees one padding colour. Decoding crops
the padding off, then snaps each pixel to the nearest colour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from engine.codec.image import PALETTE, snap_rgb
from engine.codec.layout import ABSENT, LAYOUT

FILLER = ABSENT


@dataclass(frozen=True)
class Geometry:
    """Image geometry of a run: ``rows`` packets by ``LAYOUT.width`` columns, padded to ``multiple``."""

    rows: int
    multiple: int
    columns: int = LAYOUT.width
    filler: str = "absent (blue)"

    def __post_init__(self):
        if self.rows < 1 or self.multiple < 1:
            raise ValueError(f"geometry rows={self.rows} multiple={self.multiple}: both must be >= 1")

    @property
    def height(self) -> int:
        return -(-self.rows // self.multiple) * self.multiple

    @property
    def width(self) -> int:
        return -(-self.columns // self.multiple) * self.multiple

    def to_dict(self) -> dict:
        return {**asdict(self), "height": self.height, "width": self.width}

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        g = cls(int(d["rows"]), int(d["multiple"]), int(d.get("columns", LAYOUT.width)))
        if g.columns != LAYOUT.width:
            raise ValueError(f"images have {g.columns} columns; this build's layout has {LAYOUT.width}")
        return g


# channel value in [-1, 1] per cell value -1, 0, 1 (rows of PALETTE are blue, green, red)
_LEVELS = torch.from_numpy(PALETTE.astype(np.float32) / 127.5 - 1.0)


def flows_to_pixels(mats: torch.Tensor | np.ndarray, geom: Geometry) -> torch.Tensor:
    """``(B, n <= rows, columns)`` cells in {-1, 0, 1} -> ``(B, 3, height, width)`` float in [-1, 1]."""
    x = torch.as_tensor(np.asarray(mats) if not isinstance(mats, torch.Tensor) else mats)
    b, n, w = x.shape
    if n > geom.rows or w != geom.columns:
        raise ValueError(f"flows of shape {tuple(x.shape[1:])} do not fit a {geom.rows} x {geom.columns} grid")
    full = torch.full((b, geom.height, geom.width), FILLER, dtype=torch.long)
    full[:, :n, :w] = x.round().long()
    return _LEVELS[full + 1].permute(0, 3, 1, 2).contiguous()


def pixels_to_flows(images: np.ndarray | torch.Tensor, geom: Geometry) -> list[np.ndarray]:
    """Generated images -> ``rows x columns`` int8 matrices (padding cropped, nearest colour).

    ``images``: ``(B, H, W, 3)`` floats in [0, 1] (diffusers' ``output_type="np"``) or uint8,
    or ``(B, 3, H, W)`` tensors in [-1, 1].
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    images = np.asarray(images)
    if images.shape[1] < geom.rows or images.shape[2] < geom.columns:
        raise ValueError(f"images of {images.shape[1]} x {images.shape[2]} are smaller than the "
                         f"{geom.rows} x {geom.columns} grid")
    # the nearest pure colour is the largest channel whatever the value range, so no rescaling
    return [snap_rgb(im[:geom.rows, :geom.columns, :3]) for im in images]


def to_uint8(images: np.ndarray, geom: Geometry | None = None) -> np.ndarray:
    """``(B, H, W, 3)`` floats in [0, 1] -> uint8, cropped to the grid when ``geom`` is given."""
    if geom is not None:
        images = images[:, :geom.rows, :geom.columns]
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

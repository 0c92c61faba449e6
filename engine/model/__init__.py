"""The native class-conditional packet diffusion model.

* :mod:`.denoiser`   -- :class:`PacketDenoiser`, a small transformer over packets as tokens.
* :mod:`.diffusion`  -- schedulers (training / fast sampling), snapping, trimming.
* :mod:`.checkpoint` -- safetensors + ``config.json`` on disk, the shipped default.
* :mod:`.data`       -- encoded datasets -> fixed-length float batches, splits.
"""

from .denoiser import PacketDenoiser

__all__ = ["PacketDenoiser"]

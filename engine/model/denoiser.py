"""PacketDenoiser: a DiT-style transformer over the packets of one flow.

Each packet row (``LAYOUT.width`` = 1105 values in {-1, 0, 1}) is one token;
a flow is a sequence of ``max_packets`` tokens (padding rows are all -1, so
the model learns flow length). Conditioning (timestep + class) modulates every
block through adaptive LayerNorm (shift, scale, gate), as in DiT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from engine.codec.layout import LAYOUT


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def _sincos(n: int, d: int) -> torch.Tensor:
    """``(n, d)`` sinusoidal position table (first half sin, second half cos)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(-torch.arange(d // 2, dtype=torch.float32) * (torch.log(torch.tensor(10000.0)) / (d // 2)))
    ang = pos * freq[None]
    out = torch.zeros(n, d)
    out[:, : d // 2], out[:, d // 2: 2 * (d // 2)] = torch.sin(ang), torch.cos(ang)
    return out


def _gelu_form(h: torch.Tensor) -> str:
    """The model trains with tanh-GELU; a CPU computing in bf16 takes the erf form instead: there
    torch's tanh-GELU kernel is 4x slower (3.3 vs 0.85 ms for ``(16, 128, 512)``, a quarter of a
    sampling step), and the two differ by under 5e-4, below bf16's step of 4e-3 at 1."""
    return "none" if h.dtype == torch.bfloat16 and h.device.type == "cpu" else "tanh"


class _GELU(nn.GELU):
    """tanh-GELU, in the form :func:`_gelu_form` picks for its input."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.gelu(h, approximate=_gelu_form(h))


class Block(nn.Module):
    """Pre-norm transformer block with adaLN-zero conditioning.

    ``x``: ``(B, L, d)``; ``c``: ``(B, d)`` conditioning vector.
    """

    def __init__(self, d: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        h = int(d * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, h), _GELU(approximate="tanh"), nn.Linear(h, d))
        self.ada = nn.Linear(d, 6 * d)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        s1, sc1, g1, s2, sc2, g2 = self.ada(F.silu(c)).chunk(6, dim=-1)
        h = _modulate(self.norm1(x), s1, sc1)
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + g1[:, None] * self.proj(a)
        x = x + g2[:, None] * self.mlp(_modulate(self.norm2(x), s2, sc2))
        return x


class PacketDenoiser(ModelMixin, ConfigMixin):
    """Predicts noise (or v) for a batch of noisy flow matrices.

    Args:
        num_classes: number of class labels; index ``num_classes`` is the null
            class used for classifier-free guidance.
        width: values per packet row (``LAYOUT.width``).
        max_packets: tokens per flow ``L``.
        d_model, layers, heads, mlp_ratio: transformer size.
        input_skip: add a per-column gain (a function of timestep and class) times
            the noisy input to the output. Each token squeezes 1105 values
            through ``d_model`` channels; the skip lets every bit see its own
            noisy value (see docs/model.md, "prediction type").
        presence_input: the model is told which rows are packets (``rows``): the
            flow length is drawn before sampling (:mod:`engine.model.lengths`)
            and the model spends its capacity on the packets, not on guessing
            where the flow ends.
        self_condition: the model also sees its own previous estimate of the
            clean flow (``x0_prev``; self-conditioning, Chen et al. 2023, "Analog
            Bits"), which lets the bits of a field agree with each other across
            steps instead of each drifting to its own mean.

    Shapes:
        ``sample``: ``(B, L, width)`` float; ``timestep``: ``(B,)`` or scalar;
        ``class_labels``: ``(B,)`` long in ``[0, num_classes]``.
        Returns ``(B, L, width)`` float.
    """

    @register_to_config
    def __init__(self, num_classes: int = 20, width: int = LAYOUT.width, max_packets: int = 128,
                 d_model: int = 128, layers: int = 4, heads: int = 4, mlp_ratio: float = 4.0,
                 input_skip: bool = True, presence_input: bool = False, self_condition: bool = False):
        super().__init__()
        self.inp = nn.Linear(width, d_model)
        # both start at zero, so a checkpoint without them loads and behaves as before (fine-tuning)
        self.row_emb = nn.Embedding(2, d_model) if presence_input else None
        self.sc_inp = nn.Linear(width, d_model) if self_condition else None
        # sin-cos start at unit scale: a small random init is drowned by the projected noise
        # (std ~0.6), and the model then cannot tell row 0 (always a packet) from padding rows
        self.pos = nn.Parameter(_sincos(max_packets, d_model)[None])
        self.t_proj = Timesteps(d_model, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.t_emb = TimestepEmbedding(d_model, d_model)
        # unit-scale init (nn.Embedding's default): at std 0.02 the class signal is drowned by the
        # timestep embedding and samples barely depend on the label
        self.c_emb = nn.Embedding(num_classes + 1, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads, mlp_ratio) for _ in range(layers))
        self.norm_out = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, width)
        self.skip = nn.Linear(d_model, width) if input_skip else None
        for m in (self.ada_out, self.out, self.skip, self.sc_inp, self.row_emb):
            if m is None:
                continue
            nn.init.zeros_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor,
                rows: torch.Tensor | None = None, x0_prev: torch.Tensor | None = None) -> torch.Tensor:
        """``rows``: ``(B, L)`` bool, packet rows (presence_input models); ``x0_prev``:
        ``(B, L, width)`` previous clean estimate, or ``None`` (= zeros) (self_condition models)."""
        b, n, _ = sample.shape
        t = torch.as_tensor(timestep, device=sample.device)
        if t.ndim == 0:
            t = t.expand(b)
        c = self.t_emb(self.t_proj(t).to(sample.dtype)) + self.c_emb(class_labels)
        x = self.inp(sample) + self.pos[:, :n]
        if self.row_emb is not None:
            if rows is None:
                raise ValueError("this model needs the packet rows (rows=...)")
            x = x + self.row_emb(rows.long())
        if self.sc_inp is not None:
            x = x + (self.sc_inp(x0_prev) if x0_prev is not None else self.sc_inp.bias)
        for blk in self.blocks:
            x = blk(x, c)
        shift, scale = self.ada_out(F.silu(c)).chunk(2, dim=-1)
        # in the input's dtype (fp32 under autocast), in place: torch.addcmul of bf16 and fp32 operands
        # promoted both to new fp32 tensors first, a fifth of a CPU bf16 forward; same values
        out = self.out(_modulate(self.norm_out(x), shift, scale)).to(sample.dtype)
        if self.skip is not None:
            out = out.addcmul_(self.skip(F.silu(c)).to(sample.dtype)[:, None, :], sample)   # one pass over (B, L, width)
        return out

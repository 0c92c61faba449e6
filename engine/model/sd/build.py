"""Random-initialised Stable Diffusion pipelines from component configs.

For benchmarks and offline tests: a pipeline directory that diffusers loads
like a downloaded one, built without any network access. The text side uses
a CLIP tokenizer written here from a byte-level vocabulary (the 256 byte
characters, each also with the end-of-word marker, plus the start and end
tokens) and no merges, so every prompt tokenises to its characters.

``family`` "sd" builds the SD 1.5 layout (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, DDPMScheduler); "sd3" builds the SD3 layout
(SD3Transformer2DModel, two CLIP text encoders with projection, no T5 -- the
SD3 pipeline feeds zeros in its place when ``text_encoder_3`` is None --,
FlowMatchEulerDiscreteScheduler).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_clip_tokenizer(out: str | os.PathLike, max_length: int = 77) -> Path:
    """A CLIPTokenizer directory (vocab.json, merges.txt, configs) with a byte-level vocabulary.

    Its vocabulary has 514 entries: the text encoder's ``vocab_size`` must be at least that.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
    (out / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>"}))
    return out


def build_pipeline(out: str | os.PathLike, configs: dict, family: str = "sd",
                   controlnet: str | os.PathLike | None = None, seed: int = 0,
                   dtype: torch.dtype = torch.float32) -> Path:
    """Write a random-initialised pipeline directory from ``configs``.

    ``configs`` holds the keyword arguments of each component: ``unet`` or ``transformer``,
    ``vae``, ``text_encoder`` (CLIPTextConfig fields; SD3 uses it for both encoders) and
    optionally ``scheduler``. With ``controlnet`` a ControlNet made from the denoiser
    (``from_unet`` / ``from_transformer``) is saved there too.
    """
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTokenizer

    out = Path(out)
    torch.manual_seed(seed)
    tok_dir = write_clip_tokenizer(out / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    vae = AutoencoderKL(**configs["vae"]).to(dtype)
    te_cfg = CLIPTextConfig(**{"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
                               "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
                               **configs["text_encoder"]})
    if family == "sd":
        from diffusers import ControlNetModel, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
        from transformers import CLIPTextModel
        unet = UNet2DConditionModel(**configs["unet"]).to(dtype)
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=CLIPTextModel(te_cfg).to(dtype), tokenizer=tokenizer,
                                       unet=unet, scheduler=DDPMScheduler(**configs.get("scheduler", {})),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(out, safe_serialization=True)
        if controlnet is not None:
            ControlNetModel.from_unet(unet).save_pretrained(controlnet, safe_serialization=True)
    elif family == "sd3":
        from diffusers import (FlowMatchEulerDiscreteScheduler, SD3ControlNetModel, SD3Transformer2DModel,
                               StableDiffusion3Pipeline)
        from transformers import CLIPTextModelWithProjection
        tr = SD3Transformer2DModel(**configs["transformer"]).to(dtype)
        write_clip_tokenizer(out / "tokenizer_2")
        pipe = StableDiffusion3Pipeline(
            transformer=tr, scheduler=FlowMatchEulerDiscreteScheduler(**configs.get("scheduler", {})), vae=vae,
            text_encoder=CLIPTextModelWithProjection(te_cfg).to(dtype), tokenizer=tokenizer,
            text_encoder_2=CLIPTextModelWithProjection(te_cfg).to(dtype),
            tokenizer_2=CLIPTokenizer.from_pretrained(tok_dir),
            text_encoder_3=None, tokenizer_3=None)
        pipe.save_pretrained(out, safe_serialization=True)
        if controlnet is not None:
            n = max(1, tr.config.num_layers // 2)
            cn = SD3ControlNetModel.from_transformer(tr, num_layers=n, num_extra_conditioning_channels=0)
            cn.save_pretrained(controlnet, safe_serialization=True)
    else:
        raise ValueError(f"family {family!r}: choose sd or sd3")
    return out

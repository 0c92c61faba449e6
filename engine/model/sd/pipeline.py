"""Base pipelines: where they come from, which family they are, how they are loaded.

A base reference is a local diffusers pipeline directory (``model_index.json``
at its top) or a Hub reference resolved to its local snapshot by
:mod:`engine.hub.refs` (pinned, offline-capable).

Families (from ``model_index.json``'s ``_class_name``):

- ``sd``: the SD 1.5 layout -- UNet2DConditionModel, one CLIP text encoder.
  The paper's model.
- ``sd3``: SD3's MMDiT -- SD3Transformer2DModel, two CLIP encoders and an
  optional T5 (left out when the directory has none: the pipeline then
  feeds zeros in its place).

Both share one path: the pipeline's own ``encode_prompt`` makes the text
conditioning, LoRA goes on the denoiser's attention projections, sampling
goes through the matching text-to-image, img2img or ControlNet pipeline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from engine.errors import InputError

FAMILIES = {"StableDiffusionPipeline": "sd", "StableDiffusion3Pipeline": "sd3"}
LORA_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")
PROMPT_TEMPLATE = "pixelated network data, type-{label}"


def resolve_base(ref: str | os.PathLike) -> tuple[Path, str | None]:
    """A base model reference -> ``(pipeline directory, commit or None)``."""
    s = str(ref)
    try:
        from engine.hub.refs import commit_of, resolve_ref
    except ImportError:       # the checkpoint manager is not in this build: local directories only
        if s.startswith("hf://") or (not Path(s).expanduser().exists() and s.count("/") == 1):
            raise InputError(None, f"{s}: Hub references need the checkpoint manager (engine.hub); "
                                   "pass a local diffusers pipeline directory") from None
        d = Path(s).expanduser()
        if not d.exists():
            raise InputError(d, "no such base model directory") from None
        commit = None
    else:
        if s in ("", "default"):
            raise InputError(None, "--base: name a diffusers pipeline (a directory or a Hub repository); "
                                   "the default model is the native one")
        d = Path(resolve_ref(s))
        commit = commit_of(d)
    if not (d / "model_index.json").is_file():
        raise InputError(d, "not a diffusers pipeline directory (no model_index.json)")
    return d, commit


def family_of(d: Path) -> str:
    try:
        idx = json.loads((d / "model_index.json").read_text())
        name = idx["_class_name"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(d / "model_index.json", f"unreadable: {e}") from None
    if name not in FAMILIES:
        raise InputError(d / "model_index.json", f"pipeline class {name!r} is not supported "
                                                 f"(supported: {', '.join(FAMILIES)})")
    return FAMILIES[name]


def load_pipeline(d: Path, family: str, dtype: torch.dtype = torch.float32, kind: str = "text2img",
                  controlnet: str | os.PathLike | None = None):
    """Load the base pipeline of ``family`` from ``d`` as the ``kind`` of pipeline
    ("text2img", "img2img", "controlnet" -- the last with the ControlNet at ``controlnet``)."""
    import diffusers
    names = {"sd": {"text2img": "StableDiffusionPipeline", "img2img": "StableDiffusionImg2ImgPipeline",
                    "controlnet": "StableDiffusionControlNetPipeline"},
             "sd3": {"text2img": "StableDiffusion3Pipeline", "img2img": "StableDiffusion3Img2ImgPipeline",
                     "controlnet": "StableDiffusion3ControlNetPipeline"}}
    cls = getattr(diffusers, names[family][kind])
    kw: dict = {"dtype": dtype}
    if family == "sd":
        kw.update(safety_checker=None, requires_safety_checker=False)
    else:
        idx = json.loads((d / "model_index.json").read_text())
        for k in ("text_encoder_3", "tokenizer_3"):
            if not (idx.get(k) and idx[k][0]):
                kw[k] = None
    if kind == "controlnet":
        kw["controlnet"] = load_controlnet(controlnet, family, dtype)
    try:
        pipe = cls.from_pretrained(d, use_safetensors=True, **kw)
    except (OSError, ValueError, EnvironmentError) as e:
        raise InputError(d, f"cannot load the {family} pipeline: {str(e).splitlines()[0]}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_controlnet(ref, family: str, dtype: torch.dtype):
    from diffusers import ControlNetModel, SD3ControlNetModel
    d, _ = resolve_component(ref)
    cls = ControlNetModel if family == "sd" else SD3ControlNetModel
    try:
        return cls.from_pretrained(d, dtype=dtype, use_safetensors=True)
    except (OSError, ValueError, EnvironmentError) as e:
        raise InputError(d, f"cannot load a {cls.__name__}: {str(e).splitlines()[0]}") from None


def resolve_component(ref) -> tuple[Path, str | None]:
    """A single model (a ControlNet): local directory with config.json, or a Hub reference."""
    s = str(ref)
    try:
        from engine.hub.refs import commit_of, resolve_ref
        d = Path(resolve_ref(s))
        commit = commit_of(d)
    except ImportError:
        d, commit = Path(s).expanduser(), None
        if not d.exists():
            raise InputError(d, "no such directory (Hub references need the checkpoint manager)") from None
    if not (d / "config.json").is_file():
        raise InputError(d, "not a diffusers model directory (no config.json)")
    return d, commit


def denoiser(pipe):
    """The pipeline's denoising network: the UNet (sd) or the transformer (sd3)."""
    return pipe.unet if hasattr(pipe, "unet") and pipe.unet is not None else pipe.transformer


def pixel_multiple(pipe) -> int:
    """What both image sides must be multiples of: the VAE's downsampling times the
    denoiser's (2 per UNet down block after the first; the patch size of a transformer)."""
    vae = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    net = denoiser(pipe)
    if hasattr(net.config, "down_block_types"):
        return vae * 2 ** (len(net.config.down_block_types) - 1)
    return vae * int(net.config.patch_size)


@torch.no_grad()
def encode_prompts(pipe, family: str, prompts: list[str], device) -> dict[str, torch.Tensor]:
    """Text conditioning for ``prompts`` (one row each) through the pipeline's own encoder:
    ``prompt_embeds`` (and ``pooled_prompt_embeds`` for sd3)."""
    if family == "sd":
        emb, _ = pipe.encode_prompt(prompts, device, 1, False)
        return {"prompt_embeds": emb}
    emb, _, pooled, _ = pipe.encode_prompt(prompts, prompts, prompts, device=device,
                                           do_classifier_free_guidance=False)
    return {"prompt_embeds": emb, "pooled_prompt_embeds": pooled}


def class_prompts(classes: list[str], template: str = PROMPT_TEMPLATE, overrides: dict | None = None) -> dict[str, str]:
    """One caption per class: ``overrides[c]`` or the template with the class's name."""
    if "{label}" not in template:
        raise InputError(None, f"prompt template {template!r} must contain {{label}}")
    over = overrides or {}
    return {c: str(over.get(c) or template.format(label=c)) for c in classes}

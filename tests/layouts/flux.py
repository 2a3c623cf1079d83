"""Flux.1 transformer files in the original (Black Forest Labs / ComfyUI) layout.

``flux_to_original`` is the inverse of the diffusers → original direction,
written independently of ``core.checkpoints.flux_convert`` (rule by rule, from
diffusers' ``convert_flux_transformer_checkpoint_to_diffusers``) so a round trip
through both tests something:

- ``double_blocks.N.{img,txt}_attn.qkv`` = cat(q, k, v) rows (``to_q/k/v`` for img,
  ``add_{q,k,v}_proj`` for txt); ``single_blocks.N.linear1`` = cat(q, k, v, proj_mlp)
  rows; ``linear2`` = ``proj_out``; RMS-norm weights are ``….norm.{query,key}_norm.scale``.
- ``final_layer.adaLN_modulation.1`` = diffusers ``norm_out.linear`` with its two
  halves swapped (original (shift, scale), diffusers (scale, shift)).
- ``guidance_in`` exists only in dev. ComfyUI writes everything under
  ``model.diffusion_model.`` (``comfy_prefix=True``); BFL's files have no prefix.

API:
``tiny_flux_transformer(path, variant="dev"|"schnell", comfy_prefix=False, seed=0,
dtype=torch.float32) -> TinyFile`` (component ``transformer``, see ``t5.TinyFile``;
the tiny ``FluxTransformer2DModel``: 2 double + 2 single blocks, 2 heads × 16,
rotary axes (4, 6, 6), in_channels 64, joint 96 = tiny T5, pooled 32 = tiny CLIP-L);
``tiny_flux_config(variant)``; ``flux_to_original(state_dict, prefix="")``;
``full_size_flux_shapes(variant, prefix="")`` (real names and shapes via the meta device);
``sparse_flux_file(path, variant)`` (bf16, transformer-only, data region a hole);
``tiny_flux_checkpoint(path, variant="dev", seed=0, dtype=torch.float32) -> TinyFile``: a
ComfyUI all-in-one (``model.diffusion_model.``, ``vae.`` with LDM names,
``text_encoders.clip_l.transformer.text_model.…``, ``text_encoders.t5xxl.transformer.…``),
components transformer, vae, text_encoder (``CLIPTextModel``), text_encoder_2 (T5).
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from tests.layouts import randomize_
from tests.layouts import t5 as text
from tests.layouts.t5 import (TINY_CLIP_L, TINY_T5, TinyFile, load_config, with_dtype,
                              write_safetensors, write_sparse_safetensors)

COMFY_PREFIX = "model.diffusion_model."
COMFY_VAE_PREFIX = "vae."  # ComfyUI's Flux class; SD3 uses first_stage_model.
CLIP_L_PREFIX = "text_encoders.clip_l.transformer."
T5_PREFIX = "text_encoders.t5xxl.transformer."
VARIANTS = ("dev", "schnell")

_RENAMES = {  # diffusers module → original module (weight and bias alike)
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "proj_out": "final_layer.linear",
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
}
_SINGLE_RENAMES = {"norm.linear": "modulation.lin", "proj_out": "linear2",
                   "attn.norm_q": "norm.query_norm", "attn.norm_k": "norm.key_norm"}
_DOUBLE_STACKS = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
                  "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}
_SINGLE_STACK = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")


def tiny_flux_config(variant: str = "dev") -> dict:
    """Kwargs of the tiny ``FluxTransformer2DModel`` for ``variant`` (dev has guidance)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    return dict(patch_size=1, in_channels=64, out_channels=None, num_layers=2, num_single_layers=2,
                attention_head_dim=16, num_attention_heads=2, joint_attention_dim=TINY_T5["d_model"],
                pooled_projection_dim=TINY_CLIP_L["hidden_size"], guidance_embeds=variant == "dev",
                axes_dims_rope=[4, 6, 6])


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _rename(module: str) -> str:
    """Original name of one diffusers module path (block index included)."""
    if match := re.fullmatch(r"transformer_blocks\.(\d+)\.(.+)", module):
        return f"double_blocks.{match[1]}.{_RENAMES[match[2]]}"
    if match := re.fullmatch(r"single_transformer_blocks\.(\d+)\.(.+)", module):
        return f"single_blocks.{match[1]}.{_SINGLE_RENAMES[match[2]]}"
    return _RENAMES[module]


def _stacked(sd: Mapping[str, torch.Tensor], result: dict) -> set[str]:
    """Write the stacked qkv / linear1 tensors; return the diffusers keys consumed."""
    used = set()
    block = re.compile(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.")
    blocks = {(m[1], int(m[2])) for k in sd if (m := block.match(k))}
    for kind, i in sorted(blocks):
        if kind == "transformer_blocks":
            stacks = {f"double_blocks.{i}.{o}": [f"{kind}.{i}.{p}" for p in parts]
                      for o, parts in _DOUBLE_STACKS.items()}
        else:
            stacks = {f"single_blocks.{i}.linear1": [f"{kind}.{i}.{p}" for p in _SINGLE_STACK]}
        for original, parts in stacks.items():
            for suffix in ("weight", "bias"):
                names = [f"{p}.{suffix}" for p in parts]
                result[f"{original}.{suffix}"] = torch.cat([sd[n] for n in names], dim=0)
                used.update(names)
    return used


def flux_to_original(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers ``FluxTransformer2DModel`` state dict under the original names."""
    result: dict[str, torch.Tensor] = {}
    used = _stacked(state_dict, result)
    for key, tensor in state_dict.items():
        if key in used:
            continue
        module, suffix = key.rsplit(".", 1)
        if module == "norm_out.linear":
            result[f"final_layer.adaLN_modulation.1.{suffix}"] = _swap_halves(tensor)
            continue
        original = _rename(module)
        result[f"{original}.{'scale' if original.endswith('_norm') else suffix}"] = tensor
    return {prefix + k: v for k, v in result.items()}


def _tiny_transformer(variant: str, seed: int, dtype: torch.dtype):
    from diffusers import FluxTransformer2DModel

    config = tiny_flux_config(variant)
    model = randomize_(FluxTransformer2DModel(**config), seed)
    if dtype != torch.float32:
        model = model.to(dtype)
    return model, {"_class_name": "FluxTransformer2DModel", **config}


def tiny_flux_transformer(path, variant: str = "dev", comfy_prefix: bool = False, seed: int = 0,
                          dtype: torch.dtype = torch.float32) -> TinyFile:
    """Write a tiny random-weight Flux.1 transformer file in the original layout."""
    model, config = _tiny_transformer(variant, seed, dtype)
    tensors = flux_to_original(model.state_dict(), COMFY_PREFIX if comfy_prefix else "")
    return TinyFile(write_safetensors(path, tensors), {"transformer": model}, {"transformer": config}, tensors)


def tiny_flux_checkpoint(path, variant: str = "dev", seed: int = 0,
                         dtype: torch.dtype = torch.float32) -> TinyFile:
    """Write a tiny ComfyUI-style all-in-one Flux.1 checkpoint (see module doc)."""
    from tests.layouts import sd3
    from tests.layouts.vae_ldm import vae_to_ldm

    models, configs = {}, {}
    models["transformer"], configs["transformer"] = _tiny_transformer(variant, seed, dtype)
    vae_config = sd3.tiny_vae16_config("flux")
    models["vae"], configs["vae"] = sd3.make_tiny_vae16("flux", seed + 4, dtype), vae_config
    models["text_encoder"] = text.make_tiny_clip_l(seed + 1, dtype=dtype)
    models["text_encoder_2"] = text.make_tiny_t5(seed + 3, dtype)
    configs["text_encoder"] = text.clip_config(TINY_CLIP_L, with_projection=False)
    configs["text_encoder_2"] = text.t5_config()
    tensors = {**flux_to_original(models["transformer"].state_dict(), COMFY_PREFIX),
               **vae_to_ldm(models["vae"].state_dict(), vae_config, prefix=COMFY_VAE_PREFIX),
               **text.clip_to_file_keys(models["text_encoder"].state_dict(), CLIP_L_PREFIX),
               **text.t5_to_file_keys(models["text_encoder_2"].state_dict(), T5_PREFIX)}
    return TinyFile(write_safetensors(path, tensors), models, configs, tensors)


def full_size_flux_shapes(variant: str = "dev", prefix: str = "") -> dict[str, tuple[int, ...]]:
    """Original key names and shapes of the real Flux.1 ``variant`` transformer."""
    from diffusers import FluxTransformer2DModel

    config = load_config(f"flux_{variant}", "transformer")
    with torch.device("meta"):
        model = FluxTransformer2DModel.from_config(config)
        original = flux_to_original(model.state_dict(), prefix)
    return {k: tuple(v.shape) for k, v in original.items()}


def sparse_flux_file(path, variant: str = "dev", prefix: str = ""):
    """Full-size bf16 transformer-only Flux.1 file (as BFL ships it), data region a hole."""
    return write_sparse_safetensors(path, with_dtype(full_size_flux_shapes(variant, prefix), torch.bfloat16))

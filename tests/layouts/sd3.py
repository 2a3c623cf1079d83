"""SD3 / SD3.5 files in the original (Stability / ComfyUI) layout, and 16-channel VAE files.

``sd3_to_original`` is the inverse of diffusers'
``convert_sd3_transformer_checkpoint_to_diffusers`` (which loads these files
exactly, see ``tests/test_layouts_transformer.py``):

- ``pos_embed`` (1, max², width), ``x_embedder.proj``, ``t_embedder.mlp.{0,2}``,
  ``y_embedder.mlp.{0,2}``, ``context_embedder``, ``final_layer.linear``,
  ``final_layer.adaLN_modulation.1`` (halves swapped against diffusers' ``norm_out``);
- ``joint_blocks.N.{x_block,context_block}.attn.qkv`` = cat(q, k, v) rows, ``attn.proj``,
  ``attn.ln_q/ln_k`` (qk-norm, SD3.5), ``mlp.fc1/fc2``, ``adaLN_modulation.1``;
  SD3.5-medium adds ``x_block.attn2.{qkv,proj,ln_q,ln_k}`` (dual attention) in its
  first 13 blocks. The last block's context side has only ``attn.qkv`` (+ ln),
  ``adaLN_modulation.1`` (halves swapped) — no ``attn.proj`` and no ``mlp``.

All-in-one files: ``model.diffusion_model.`` (transformer), ``first_stage_model.`` (VAE,
LDM names, no quant convs), ``text_encoders.clip_l.transformer.text_model.…`` (no
projection: SD3 uses CLIP-L's pooled output unprojected, diffusers sets ``torch.eye``),
``text_encoders.clip_g.transformer.{text_model.…,text_projection.weight}`` and
``text_encoders.t5xxl.transformer.{shared.weight,encoder.…}``. Transformer-only
files keep ``model.diffusion_model.`` (``prefix=""`` drops it).

API:
``tiny_sd3_checkpoint(path, variant="sd3_medium"|"sd35_medium"|"sd35_large",
with_text_encoders=True, seed=0, dtype=torch.float32, prefix=TRANSFORMER_PREFIX,
with_vae=True) -> TinyFile`` (components transformer, vae, text_encoder (CLIP-L with
identity projection), text_encoder_2 (CLIP-G), text_encoder_3 (T5));
``tiny_sd3_config(variant)``, ``tiny_vae16_config(family)``;
``make_tiny_vae16(family, seed)``; ``tiny_vae16_file(path, family="sd3"|"flux", seed=0) -> TinyFile``
(component ``vae``, original names, no prefix, as ``ae.safetensors``);
``full_size_specs(family)`` / ``sparse_full_size_file(path, family)`` for
``SPARSE_FAMILIES``. Tiny variants keep each variant's structure: sd35_medium has
dual attention in blocks 0–1 of 3 and qk-norm; sd35_large has qk-norm; pos_embed
max size 16 (24 for sd35_medium, as 384 vs 192 in the real ones).
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from tests.layouts import randomize_
from tests.layouts import t5 as text
from tests.layouts.t5 import TinyFile, load_config, with_dtype, write_safetensors
from tests.layouts.vae_ldm import vae_to_ldm

TRANSFORMER_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_L_PREFIX = "text_encoders.clip_l.transformer."
CLIP_G_PREFIX = "text_encoders.clip_g.transformer."
T5_PREFIX = "text_encoders.t5xxl.transformer."
VARIANTS = ("sd3_medium", "sd35_medium", "sd35_large")
VAE_FACTORS = {"sd3": (1.5305, 0.0609), "flux": (0.3611, 0.1159)}

_RENAMES = {  # diffusers module → original module (outside the joint blocks)
    "pos_embed.proj": "x_embedder.proj",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
    "context_embedder": "context_embedder",
    "proj_out": "final_layer.linear",
}
_BLOCK_RENAMES = {  # inside transformer_blocks.N → inside joint_blocks.N
    "attn.to_out.0": "x_block.attn.proj",
    "attn.to_add_out": "context_block.attn.proj",
    "attn.norm_q": "x_block.attn.ln_q",
    "attn.norm_k": "x_block.attn.ln_k",
    "attn.norm_added_q": "context_block.attn.ln_q",
    "attn.norm_added_k": "context_block.attn.ln_k",
    "attn2.to_out.0": "x_block.attn2.proj",
    "attn2.norm_q": "x_block.attn2.ln_q",
    "attn2.norm_k": "x_block.attn2.ln_k",
    "norm1.linear": "x_block.adaLN_modulation.1",
    "norm1_context.linear": "context_block.adaLN_modulation.1",
    "ff.net.0.proj": "x_block.mlp.fc1",
    "ff.net.2": "x_block.mlp.fc2",
    "ff_context.net.0.proj": "context_block.mlp.fc1",
    "ff_context.net.2": "context_block.mlp.fc2",
}
_STACKS = {  # original qkv ← three diffusers projections
    "x_block.attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "context_block.attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "x_block.attn2.qkv": ("attn2.to_q", "attn2.to_k", "attn2.to_v"),
}


def tiny_sd3_config(variant: str = "sd3_medium") -> dict:
    """Kwargs of the tiny ``SD3Transformer2DModel`` for ``variant``."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    config = dict(sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=2,
                  attention_head_dim=16, num_attention_heads=2, caption_projection_dim=32,
                  joint_attention_dim=text.TINY_T5["d_model"],
                  pooled_projection_dim=text.TINY_CLIP_L["projection_dim"] + text.TINY_CLIP_G["projection_dim"],
                  pos_embed_max_size=16, dual_attention_layers=(), qk_norm=None)
    if variant == "sd35_medium":
        config.update(num_layers=3, pos_embed_max_size=24, dual_attention_layers=(0, 1), qk_norm="rms_norm")
    elif variant == "sd35_large":
        config.update(qk_norm="rms_norm")
    return config


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _original_name(module: str, last_block: int) -> tuple[str, bool]:
    """(original module, whether its rows are swapped) for one diffusers module path."""
    if module == "norm_out.linear":
        return "final_layer.adaLN_modulation.1", True
    if match := re.fullmatch(r"transformer_blocks\.(\d+)\.(.+)", module):
        index, inner = int(match[1]), match[2]
        swapped = inner == "norm1_context.linear" and index == last_block
        return f"joint_blocks.{index}.{_BLOCK_RENAMES[inner]}", swapped
    return _RENAMES[module], False


def sd3_to_original(state_dict: Mapping[str, torch.Tensor], prefix: str = TRANSFORMER_PREFIX
                    ) -> dict[str, torch.Tensor]:
    """A diffusers ``SD3Transformer2DModel`` state dict under the original names."""
    blocks = sorted({int(m[1]) for k in state_dict if (m := re.match(r"transformer_blocks\.(\d+)\.", k))})
    result, used = {"pos_embed": state_dict["pos_embed.pos_embed"]}, {"pos_embed.pos_embed"}
    for i in blocks:
        for original, parts in _STACKS.items():
            for suffix in ("weight", "bias"):
                names = [f"transformer_blocks.{i}.{p}.{suffix}" for p in parts]
                if names[0] in state_dict:
                    result[f"joint_blocks.{i}.{original}.{suffix}"] = torch.cat([state_dict[n] for n in names])
                    used.update(names)
    for key, tensor in state_dict.items():
        if key in used:
            continue
        module, suffix = key.rsplit(".", 1)
        original, swapped = _original_name(module, blocks[-1])
        result[f"{original}.{suffix}"] = _swap_halves(tensor) if swapped else tensor
    return {prefix + k: v for k, v in result.items()}


def tiny_vae16_config(family: str = "sd3") -> dict:
    """JSON-ready config of a tiny 16-channel ``AutoencoderKL`` (no quant convs)."""
    scaling, shift = VAE_FACTORS[family]
    return {"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
            "block_out_channels": [16, 32], "layers_per_block": 1, "latent_channels": 16,
            "norm_num_groups": 8, "sample_size": 32, "scaling_factor": scaling, "shift_factor": shift,
            "use_quant_conv": False, "use_post_quant_conv": False}


def make_tiny_vae16(family: str = "sd3", seed: int = 0, dtype: torch.dtype = torch.float32):
    """The tiny 16-channel ``AutoencoderKL`` of ``tiny_vae16_config(family)``."""
    from diffusers import AutoencoderKL

    model = randomize_(AutoencoderKL.from_config(tiny_vae16_config(family)), seed)
    return model if dtype == torch.float32 else model.to(dtype)


def tiny_vae16_file(path, family: str = "sd3", seed: int = 0, dtype: torch.dtype = torch.float32) -> TinyFile:
    """A standalone 16-channel VAE file: LDM names, no prefix (like Flux's ``ae.safetensors``)."""
    model, config = make_tiny_vae16(family, seed, dtype), tiny_vae16_config(family)
    tensors = vae_to_ldm(model.state_dict(), config, prefix="")
    return TinyFile(write_safetensors(path, tensors), {"vae": model}, {"vae": config}, tensors)


def _tiny_transformer(variant: str, seed: int, dtype: torch.dtype):
    from diffusers import SD3Transformer2DModel

    config = tiny_sd3_config(variant)
    model = randomize_(SD3Transformer2DModel(**config), seed)
    json_config = {"_class_name": "SD3Transformer2DModel", **config,
                   "dual_attention_layers": list(config["dual_attention_layers"])}
    return (model if dtype == torch.float32 else model.to(dtype)), json_config


def tiny_sd3_checkpoint(path, variant: str = "sd3_medium", with_text_encoders: bool = True, seed: int = 0,
                        dtype: torch.dtype = torch.float32, prefix: str = TRANSFORMER_PREFIX,
                        with_vae: bool = True) -> TinyFile:
    """Write a tiny SD3/SD3.5 checkpoint; ``with_text_encoders=False, with_vae=False`` is transformer-only."""
    models, configs, tensors = {}, {}, {}
    models["transformer"], configs["transformer"] = _tiny_transformer(variant, seed, dtype)
    tensors.update(sd3_to_original(models["transformer"].state_dict(), prefix))
    if with_vae:
        models["vae"], configs["vae"] = make_tiny_vae16("sd3", seed + 4, dtype), tiny_vae16_config("sd3")
        tensors.update(vae_to_ldm(models["vae"].state_dict(), configs["vae"], prefix=VAE_PREFIX))
    if with_text_encoders:
        models["text_encoder"] = text.make_tiny_clip_l(seed + 1, with_projection=True, dtype=dtype)
        models["text_encoder_2"] = text.make_tiny_clip_g(seed + 2, dtype)
        models["text_encoder_3"] = text.make_tiny_t5(seed + 3, dtype)
        configs["text_encoder"] = text.clip_config(text.TINY_CLIP_L, with_projection=True)
        configs["text_encoder_2"] = text.clip_config(text.TINY_CLIP_G, with_projection=True)
        configs["text_encoder_3"] = text.t5_config()
        tensors.update(text.clip_to_file_keys(models["text_encoder"].state_dict(), CLIP_L_PREFIX,
                                              keep_projection=False))
        tensors.update(text.clip_to_file_keys(models["text_encoder_2"].state_dict(), CLIP_G_PREFIX))
        tensors.update(text.t5_to_file_keys(models["text_encoder_3"].state_dict(), T5_PREFIX))
    return TinyFile(write_safetensors(path, tensors), models, configs, tensors)


# ---------------------------------------------------------- full-size sparse

SPARSE_FAMILIES = ("sd3_medium", "sd35_medium", "sd35_large", "flux_dev", "flux_schnell", "t5xxl", "vae16",
                   "clip_l", "clip_g")


def _shapes(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in tensors.items()}


def full_size_sd3_shapes(variant: str = "sd3_medium", prefix: str = TRANSFORMER_PREFIX) -> dict:
    """Original key names and shapes of the real SD3/SD3.5 ``variant`` transformer."""
    from diffusers import SD3Transformer2DModel

    with torch.device("meta"):
        model = SD3Transformer2DModel.from_config(load_config(variant, "transformer"))
        return _shapes(sd3_to_original(model.state_dict(), prefix))


def full_size_vae16_shapes(prefix: str = "") -> dict:
    """LDM key names and shapes of the real 16-channel VAE (SD3 and Flux share them)."""
    from diffusers import AutoencoderKL

    config = load_config("sd3_medium", "vae")
    with torch.device("meta"):
        model = AutoencoderKL.from_config(config)
        return _shapes(vae_to_ldm(model.state_dict(), config, prefix=prefix))


def full_size_specs(family: str) -> tuple[dict, dict]:
    """(key → (shape, dtype), metadata) of a real file of ``family`` (see ``SPARSE_FAMILIES``).

    sd3_medium: all-in-one fp16 with CLIP-L, CLIP-G and T5 (``sd3_medium_incl_clips_t5xxlfp16``);
    sd35_medium, sd35_large: transformer-only fp16 under ``model.diffusion_model.``; flux_dev/flux_schnell:
    transformer-only bf16 without prefix (BFL's files); t5xxl, clip_l, clip_g: ComfyUI's fp16
    text-encoder files; vae16: fp32 16-channel VAE without prefix (``ae.safetensors``).
    """
    from tests.layouts import flux

    if family == "sd3_medium":
        shapes = {**full_size_sd3_shapes("sd3_medium"), **full_size_vae16_shapes(VAE_PREFIX),
                  **text.full_size_clip_shapes("clip_l", CLIP_L_PREFIX),
                  **text.full_size_clip_shapes("clip_g", CLIP_G_PREFIX),
                  **text.full_size_t5_shapes(T5_PREFIX)}
        return with_dtype(shapes, torch.float16), {}
    if family in ("sd35_medium", "sd35_large"):
        return with_dtype(full_size_sd3_shapes(family), torch.float16), {}
    if family in ("flux_dev", "flux_schnell"):
        return with_dtype(flux.full_size_flux_shapes(family.removeprefix("flux_")), torch.bfloat16), {}
    if family == "t5xxl":
        return with_dtype(text.full_size_t5_shapes(), torch.float16), {}
    if family in ("clip_l", "clip_g"):
        return with_dtype(text.full_size_clip_shapes(family), torch.float16), {}
    if family == "vae16":
        return with_dtype(full_size_vae16_shapes(), torch.float32), {}
    raise ValueError(f"unknown family {family!r}; choose from {SPARSE_FAMILIES}")


def sparse_full_size_file(path, family: str):
    """Real key names and full shapes of ``family``, data region a hole (a few hundred kB on disk)."""
    specs, _ = full_size_specs(family)
    return text.write_sparse_safetensors(path, specs)

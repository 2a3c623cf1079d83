"""diffusers ``UNet2DConditionModel`` keys -> original LDM/SGM U-Net keys.

The inverse of ``convert_ldm_unet_checkpoint`` (diffusers single_file_utils).
The original U-Net is a flat list of blocks: ``input_blocks.0`` is conv_in,
then each down block contributes ``layers_per_block`` resnet(+attention) slots
and one downsample slot; ``output_blocks`` likewise with one more layer per up
block; ``middle_block.0/1/2`` is resnet, attention, resnet. Tensors keep their
shapes (attention projections are already 1x1 convs or linears on both sides).

SD 1.x/2.x files also hold tensors of the LatentDiffusion wrapper around the
U-Net: its schedule tables and EMA counters (``ldm_schedule_buffers``,
``LDM_EMA_SCALARS``), which a loader must ignore.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

UNET_PREFIX = "model.diffusion_model."

TOP_LEVEL = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "class_embedding.linear_1.": "label_emb.0.0.",
    "class_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}

RESNET_PARTS = {
    "norm1.": "in_layers.0.",
    "conv1.": "in_layers.2.",
    "time_emb_proj.": "emb_layers.1.",
    "norm2.": "out_layers.0.",
    "conv2.": "out_layers.3.",
    "conv_shortcut.": "skip_connection.",
}

_DOWN = re.compile(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.*)")
_UP = re.compile(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.*)")
_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)")


def _resnet(rest: str) -> str:
    for new, old in RESNET_PARTS.items():
        if rest.startswith(new):
            return old + rest[len(new):]
    raise KeyError(f"unknown resnet tensor {rest!r}")


def _layers_per_block(config: Mapping) -> int:
    layers = config.get("layers_per_block", 2)
    if not isinstance(layers, int):
        raise ValueError("per-block layer counts are not used by the SD families")
    return layers


def down_block_key(key: str, layers: int) -> str | None:
    """``down_blocks.b.…`` -> ``input_blocks.i.…`` (None when ``key`` is elsewhere)."""
    match = _DOWN.fullmatch(key)
    if not match:
        return None
    block, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
    first = 1 + block * (layers + 1)
    if kind == "resnets":
        return f"input_blocks.{first + index}.0.{_resnet(rest)}"
    if kind == "attentions":
        return f"input_blocks.{first + index}.1.{rest}"
    return f"input_blocks.{first + layers}.0.op.{rest.removeprefix('conv.')}"


def mid_block_key(key: str) -> str | None:
    """``mid_block.…`` -> ``middle_block.0/1/2.…``."""
    match = _MID.fullmatch(key)
    if not match:
        return None
    kind, index, rest = match[1], int(match[2]), match[3]
    if kind == "resnets":
        return f"middle_block.{2 * index}.{_resnet(rest)}"
    return f"middle_block.1.{rest}"


def up_block_key(key: str, layers: int, attention_up_blocks: set[int]) -> str | None:
    """``up_blocks.b.…`` -> ``output_blocks.i.…``; the upsampler follows the attention if any."""
    match = _UP.fullmatch(key)
    if not match:
        return None
    block, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
    first = block * (layers + 1)
    if kind == "resnets":
        return f"output_blocks.{first + index}.0.{_resnet(rest)}"
    if kind == "attentions":
        return f"output_blocks.{first + index}.1.{rest}"
    slot = 2 if block in attention_up_blocks else 1
    return f"output_blocks.{first + layers}.{slot}.{rest}"


def top_level_key(key: str) -> str | None:
    for new, old in TOP_LEVEL.items():
        if key.startswith(new):
            return old + key[len(new):]
    return None


def unet_key_to_ldm(key: str, layers: int, attention_up_blocks: set[int]) -> str:
    """One diffusers U-Net key in the original layout (KeyError if it has none)."""
    for mapped in (top_level_key(key), down_block_key(key, layers), mid_block_key(key),
                   up_block_key(key, layers, attention_up_blocks)):
        if mapped is not None:
            return mapped
    raise KeyError(f"no original name for U-Net tensor {key!r}")


def attention_up_blocks(config: Mapping) -> set[int]:
    """Indices of the up blocks that hold cross-attention transformers."""
    return {i for i, kind in enumerate(config["up_block_types"]) if "CrossAttn" in kind}


def unet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping,
                prefix: str = UNET_PREFIX) -> dict[str, torch.Tensor]:
    """A diffusers U-Net state dict under its original names (same tensor objects)."""
    layers = _layers_per_block(config)
    with_attention = attention_up_blocks(config)
    return {prefix + unet_key_to_ldm(k, layers, with_attention): v for k, v in state_dict.items()}


# The LatentDiffusion wrapper's own tensors, saved beside the U-Net in SD 1.x/2.x files.

def ldm_schedule_buffers() -> dict[str, torch.Tensor]:
    """The 12 (1000,) schedule tables LDM's ``register_schedule`` saves in SD 1.x/2.x files.

    scaled_linear betas (√β linear from 0.00085 to 0.012), computed in float64
    as LDM does and stored as float32.
    """
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas = 1.0 - betas
    cumprod = torch.cumprod(alphas, 0)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), cumprod[:-1]])
    variance = betas * (1.0 - previous) / (1.0 - cumprod)
    tables = {
        "betas": betas, "alphas_cumprod": cumprod, "alphas_cumprod_prev": previous,
        "sqrt_alphas_cumprod": cumprod.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1 / cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / cumprod - 1).sqrt(),
        "posterior_variance": variance,
        "posterior_log_variance_clipped": variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * previous.sqrt() / (1.0 - cumprod),
        "posterior_mean_coef2": (1.0 - previous) * alphas.sqrt() / (1.0 - cumprod),
    }
    return {k: v.float() for k, v in tables.items()}


# LDM's EMA bookkeeping, left in the "ema-pruned" SD 1.x/2.x releases. With
# these, the schedule buffers and position_ids, a full-size fp32 SD 1.5 layout
# comes within 30 bytes of v1-5-pruned-emaonly.safetensors' size as recalled
# (4,265,146,304 bytes; not checkable offline), 212 bytes short without them.
LDM_EMA_SCALARS = {"model_ema.decay": torch.tensor(0.9999, dtype=torch.float32),
                   "model_ema.num_updates": torch.tensor(0, dtype=torch.int32)}


# Tiny U-Nets that keep each family's real structure: SD 1.x counts heads
# (8), SD 2.x / SDXL use 64-wide heads and linear projections, SDXL adds the
# text_time embedding (pooled bigG width + 6 x time-id embedding; the refiner
# 5 x, for the aesthetic score) and per-block transformer depths. The
# cross-attention width is the tiny text encoders' (SDXL: CLIP-L 32 + bigG 64).
_CROSS, _PLAIN = "CrossAttnDownBlock2D", "DownBlock2D"
_CROSS_UP, _PLAIN_UP = "CrossAttnUpBlock2D", "UpBlock2D"

TINY_UNET_CONFIGS = {
    "sd1": dict(
        sample_size=8, block_out_channels=[32, 64, 64], layers_per_block=2,
        down_block_types=[_CROSS, _CROSS, _PLAIN], up_block_types=[_PLAIN_UP, _CROSS_UP, _CROSS_UP],
        attention_head_dim=8, cross_attention_dim=32,
    ),
    "sd2": dict(
        sample_size=8, block_out_channels=[64, 128, 128], layers_per_block=2,
        down_block_types=[_CROSS, _CROSS, _PLAIN], up_block_types=[_PLAIN_UP, _CROSS_UP, _CROSS_UP],
        attention_head_dim=[1, 2, 2], cross_attention_dim=64, use_linear_projection=True,
        upcast_attention=True,
    ),
    "sdxl": dict(
        sample_size=16, block_out_channels=[32, 64, 128], layers_per_block=2,
        down_block_types=[_PLAIN, _CROSS, _CROSS], up_block_types=[_CROSS_UP, _CROSS_UP, _PLAIN_UP],
        attention_head_dim=[1, 1, 2], transformer_layers_per_block=[1, 1, 2],
        cross_attention_dim=96, use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=64 + 6 * 8,
    ),
    "sdxl_refiner": dict(
        sample_size=16, block_out_channels=[32, 64, 128, 128], layers_per_block=2,
        down_block_types=[_PLAIN, _CROSS, _CROSS, _PLAIN],
        up_block_types=[_PLAIN_UP, _CROSS_UP, _CROSS_UP, _PLAIN_UP],
        attention_head_dim=[1, 1, 2, 2], transformer_layers_per_block=2,
        cross_attention_dim=64, use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=64 + 5 * 8,
    ),
}

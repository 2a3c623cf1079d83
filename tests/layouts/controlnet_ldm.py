"""diffusers ``ControlNetModel`` keys -> the original ControlNet layout.

The inverse of ``convert_controlnet_checkpoint``. The original ControlNet is
the U-Net's encoder half (``input_blocks``, ``middle_block``, ``time_embed``,
``label_emb``; names as in ``unet_ldm``) plus:

- ``input_hint_block.{0,2,…,14}``: the conditioning embedding, convs at even
  indices (SiLU between them); diffusers' ``conv_in`` is 0, ``blocks.j`` is
  2(j+1), ``conv_out`` is 14 -- a fixed index, so the embedding must have
  four ``conditioning_embedding_out_channels`` entries;
- ``zero_convs.i.0``: one 1x1 conv per input block (``controlnet_down_blocks.i``);
- ``middle_block_out.0``: ``controlnet_mid_block``.

Files made by the ControlNet authors (v1.0) put all this under
``control_model.``; the v1.1 releases and their fp16 conversions have no prefix.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from tests.layouts.unet_ldm import down_block_key, mid_block_key, top_level_key

CONTROLNET_PREFIX = "control_model."
LAYOUTS = ("original", "original_bare", "diffusers")

_HINT_BLOCK = re.compile(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.*)")
_ZERO_CONV = re.compile(r"controlnet_down_blocks\.(\d+)\.(.*)")


def _controlnet_part_key(key: str) -> str | None:
    if key.startswith("controlnet_cond_embedding.conv_in."):
        return "input_hint_block.0." + key.rsplit(".", 1)[1]
    if key.startswith("controlnet_cond_embedding.conv_out."):
        return "input_hint_block.14." + key.rsplit(".", 1)[1]
    if match := _HINT_BLOCK.fullmatch(key):
        return f"input_hint_block.{2 * (int(match[1]) + 1)}.{match[2]}"
    if match := _ZERO_CONV.fullmatch(key):
        return f"zero_convs.{match[1]}.0.{match[2]}"
    if key.startswith("controlnet_mid_block."):
        return "middle_block_out.0." + key.rsplit(".", 1)[1]
    return None


def controlnet_key_to_ldm(key: str, layers: int) -> str:
    """One diffusers ControlNet key in the original layout (KeyError if it has none)."""
    for mapped in (_controlnet_part_key(key), top_level_key(key), down_block_key(key, layers),
                   mid_block_key(key)):
        if mapped is not None:
            return mapped
    raise KeyError(f"no original name for ControlNet tensor {key!r}")


def controlnet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping,
                      prefix: str = CONTROLNET_PREFIX) -> dict[str, torch.Tensor]:
    """A diffusers ControlNet state dict under its original names (same tensors)."""
    layers = config.get("layers_per_block", 2)
    return {prefix + controlnet_key_to_ldm(k, layers): v for k, v in state_dict.items()}


def controlnet_file_layout(state_dict: Mapping[str, torch.Tensor], config: Mapping,
                           layout: str = "original") -> dict[str, torch.Tensor]:
    """The tensors of a ControlNet file in ``layout`` (one of ``LAYOUTS``)."""
    if layout == "diffusers":
        return dict(state_dict)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown ControlNet layout {layout!r}; choose from {LAYOUTS}")
    return controlnet_to_ldm(state_dict, config, CONTROLNET_PREFIX if layout == "original" else "")


# A tiny SD 1.x ControlNet (matches the tiny SD 1.x U-Net: 8 heads, 32-wide
# cross-attention) with the real four-stage hint embedding.
TINY_CONTROLNET_CONFIG = dict(
    block_out_channels=[32, 64, 64], layers_per_block=2,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    attention_head_dim=8, cross_attention_dim=32,
    conditioning_embedding_out_channels=[8, 8, 16, 16],
)

# A tiny SDXL ControlNet matching the tiny SDXL U-Net (text_time embedding,
# 96-wide cross-attention = CLIP-L 32 + bigG 64). SDXL ControlNets are
# published in the diffusers layout only (diffusers' original-layout
# converter has no ``label_emb`` mapping), so only that layout is made.
TINY_CONTROLNET_SDXL_CONFIG = dict(
    block_out_channels=[32, 64, 128], layers_per_block=2,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    attention_head_dim=[1, 1, 2], transformer_layers_per_block=[1, 1, 2], cross_attention_dim=96,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=64 + 6 * 8, conditioning_embedding_out_channels=[8, 8, 16, 16],
)

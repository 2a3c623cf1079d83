"""diffusers ``AutoencoderKL`` keys -> original LDM VAE keys.

The inverse of ``convert_ldm_vae_checkpoint``. Three things differ from the
diffusers layout: block names (``down.i.block.j`` / ``up.i.block.j`` with the
decoder's up blocks numbered in reverse, ``mid.block_1/2``, ``mid.attn_1``),
resnet/attention part names (``nin_shortcut``; ``norm``, ``q``, ``k``, ``v``,
``proj_out``), and the mid attention projections, which the original stores
as 1x1 convolutions: weight shape (C, C, 1, 1) where diffusers has (C, C).
An all-in-one checkpoint puts the VAE under ``first_stage_model.``; a
standalone VAE file has no prefix.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

VAE_PREFIX = "first_stage_model."

TOP_LEVEL = {
    "encoder.conv_norm_out.": "encoder.norm_out.",
    "decoder.conv_norm_out.": "decoder.norm_out.",
}

ATTENTION_PARTS = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}

_BLOCK = re.compile(r"(encoder|decoder)\.(down_blocks|up_blocks)\.(\d+)\."
                    r"(resnets|downsamplers|upsamplers)\.(\d+)\.(.*)")
_MID = re.compile(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.*)")


def _resnet(rest: str) -> str:
    return "nin_shortcut." + rest[len("conv_shortcut."):] if rest.startswith("conv_shortcut.") else rest


def _attention(rest: str) -> str:
    for new, old in ATTENTION_PARTS.items():
        if rest.startswith(new):
            return old + rest[len(new):]
    raise KeyError(f"unknown VAE attention tensor {rest!r}")


def _block_key(match: re.Match, num_up_blocks: int) -> str:
    side, blocks, index, kind, _, rest = match.groups()
    index = int(index)
    if blocks == "down_blocks":
        if kind == "resnets":
            return f"{side}.down.{index}.block.{match[5]}.{_resnet(rest)}"
        return f"{side}.down.{index}.downsample.{rest}"
    original = num_up_blocks - 1 - index
    if kind == "resnets":
        return f"{side}.up.{original}.block.{match[5]}.{_resnet(rest)}"
    return f"{side}.up.{original}.upsample.{rest}"


def vae_key_to_ldm(key: str, num_up_blocks: int) -> str:
    """One diffusers VAE key in the original layout (KeyError if it has none)."""
    for new, old in TOP_LEVEL.items():
        if key.startswith(new):
            return old + key[len(new):]
    if match := _BLOCK.fullmatch(key):
        return _block_key(match, num_up_blocks)
    if match := _MID.fullmatch(key):
        side, kind, index, rest = match.groups()
        if kind == "resnets":
            return f"{side}.mid.block_{int(index) + 1}.{_resnet(rest)}"
        return f"{side}.mid.attn_1.{_attention(rest)}"
    if key.split(".")[0] in {"encoder", "decoder", "quant_conv", "post_quant_conv"}:
        return key  # conv_in, conv_out, quant_conv, post_quant_conv keep their names
    raise KeyError(f"no original name for VAE tensor {key!r}")


def _as_original_shape(original_key: str, tensor: torch.Tensor) -> torch.Tensor:
    """Mid-attention q/k/v/proj_out weights are 1x1 convs in the original."""
    if ".mid.attn_1." in original_key and original_key.endswith(("q.weight", "k.weight", "v.weight",
                                                                  "proj_out.weight")):
        return tensor.reshape(*tensor.shape, 1, 1)  # (C, C) -> (C, C, 1, 1)
    return tensor


def vae_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping,
               prefix: str = VAE_PREFIX) -> dict[str, torch.Tensor]:
    """A diffusers VAE state dict under its original names and shapes."""
    num_up_blocks = len(config["up_block_types"])
    result = {}
    for key, tensor in state_dict.items():
        original = vae_key_to_ldm(key, num_up_blocks)
        result[prefix + original] = _as_original_shape(original, tensor)
    return result


# A tiny VAE with the real structure: channel change (nin_shortcut), one
# down/up-sampler, mid attention; 4 latent channels.
TINY_VAE_CONFIG = dict(
    sample_size=32, block_out_channels=[32, 64], layers_per_block=1,
    down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    latent_channels=4,
)

"""The U-Net of SD 1.x / 2.x / SDXL / SDXL refiner from the files users hold.

Layouts read: the original CompVis / SGM names (``input_blocks``,
``middle_block``, ``output_blocks``, ``label_emb`` …), under
``model.diffusion_model.`` in all-in-one files or bare in U-Net-only files,
converted by diffusers' own ``convert_ldm_unet_checkpoint``; and diffusers'
``UNet2DConditionModel`` names as they are.

The config comes from the tensor shapes (what a real file and a tiny test
file share): widths, depth, block kinds, transformer depths, context width,
linear or convolutional projections. What shapes cannot tell comes from
rules of the published models (:func:`~core.models.families.controlnet.
attention_heads`: SD 1.x 8 heads, SD 2.x/SDXL 64-wide heads) or from the
family's published config (``sample_size``, ``upcast_attention``); SDXL's
time-id embedding width from the pooled text width (``projection_class_
embeddings_input_dim`` = pooled + k · time width, k = 6 base, 5 refiner;
diffusers' ``StableDiffusionXLPipeline._get_add_time_ids``).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from core.checkpoints import CheckpointError
from core.models.families.controlnet import attention_heads
from core.models.families.text_files import published_config
from core.models.families.weights import (
    assign_weights,
    empty_parameters,
    finish,
    loading_errors,
    offline,
    under_prefix,
)

LDM_PREFIX = "model.diffusion_model."
TIME_IDS = {"sdxl": 6, "sdxl_refiner": 5}  # time ids per sample: sizes and crops (+ aesthetic score)
PUBLISHED_TIME_EMBED = 256  # addition_time_embed_dim of every published SDXL U-Net


def unet_weights(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The U-Net's tensors under diffusers' names (original layout converted), or None."""
    for prefix in (LDM_PREFIX, ""):
        found = under_prefix(tensors, prefix)
        if "input_blocks.0.0.weight" in found and "out.2.weight" in found:
            return _from_ldm(found)
    if "conv_in.weight" in tensors and "down_blocks.0.resnets.0.conv1.weight" in tensors:
        return {k: v for k, v in tensors.items() if not k.startswith(("first_stage_model.",
                                                                       "cond_stage_model."))}
    return None


def _from_ldm(found: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original names → diffusers' with diffusers' converter. It reads
    ``model.diffusion_model.`` keys and needs ``layers_per_block`` (from the
    number of input blocks and downsamplers) and whether SDXL's ``label_emb``
    is there; slots it finds empty come back as None and are dropped, so a
    missing tensor is reported by :func:`~core.models.families.weights.assign_weights`."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    blocks = {int(m[1]) for k in found if (m := re.match(r"input_blocks\.(\d+)\.", k))}
    levels = 1 + sum(1 for k in found if re.fullmatch(r"input_blocks\.\d+\.0\.op\.weight", k))
    layers = (len(blocks) - 1 - (levels - 1)) // levels
    config = {"layers_per_block": layers, "class_embed_type": None,
              "addition_embed_type": "text_time" if "label_emb.0.0.weight" in found else None}
    source = {LDM_PREFIX + k: v for k, v in found.items()}  # a copy: the converter reads only
    converted = convert_ldm_unet_checkpoint(source, config)
    return {k: v for k, v in converted.items() if v is not None}


def _count(weights: Mapping[str, Any], prefix: str) -> int:
    """How many numbered children ``prefix{i}.`` exist."""
    return len({k[len(prefix):].split(".")[0] for k in weights if k.startswith(prefix)})


def unet_config(weights: Mapping[str, torch.Tensor], family: str, pooled_width: int | None = None,
                overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``UNet2DConditionModel`` config from diffusers-named tensors' shapes.

    ``pooled_width`` (SDXL: the bigG projection width) tells the time-id
    embedding width; without it the published 256 is assumed when it fits."""
    config = published_config(family, "unet")
    levels = _count(weights, "down_blocks.")
    channels = [weights[f"down_blocks.{b}.resnets.0.conv1.weight"].shape[0] for b in range(levels)]
    cross = [f"down_blocks.{b}.attentions.0.proj_in.weight" in weights for b in range(levels)]
    up_cross = [f"up_blocks.{b}.attentions.0.proj_in.weight" in weights for b in range(levels)]
    depth = [_count(weights, f"down_blocks.{b}.attentions.0.transformer_blocks.") if c else 1
             for b, c in enumerate(cross)]
    attention = next((k for k in weights if k.endswith("attn2.to_k.weight")), None)
    linear = any(v.ndim == 2 for k, v in weights.items() if k.endswith("proj_in.weight"))
    heads = [attention_heads(c, linear) for c in channels]
    mid_attention = "mid_block.attentions.0.proj_in.weight" in weights
    deep = {d for d, c in zip(depth, cross) if c}
    config.update(
        in_channels=weights["conv_in.weight"].shape[1], out_channels=weights["conv_out.weight"].shape[0],
        block_out_channels=channels, layers_per_block=_count(weights, "down_blocks.0.resnets."),
        down_block_types=["CrossAttnDownBlock2D" if c else "DownBlock2D" for c in cross],
        up_block_types=["CrossAttnUpBlock2D" if c else "UpBlock2D" for c in up_cross],
        mid_block_type="UNetMidBlock2DCrossAttn" if mid_attention else None,
        transformer_layers_per_block=deep.pop() if len(deep) == 1 else depth,
        cross_attention_dim=weights[attention].shape[1] if attention else channels[-1],
        use_linear_projection=linear,
        attention_head_dim=heads[0] if len(set(heads)) == 1 else heads,
    )
    if "add_embedding.linear_1.weight" in weights:
        projection = weights["add_embedding.linear_1.weight"].shape[1]
        config.update(addition_embed_type="text_time", projection_class_embeddings_input_dim=projection,
                      addition_time_embed_dim=_time_embed_width(projection, family, pooled_width))
    config.update(overrides or {})
    return config


def _time_embed_width(projection: int, family: str, pooled_width: int | None) -> int | None:
    """The width of each time id's sinusoidal embedding: (projection − pooled) / k."""
    count = TIME_IDS.get(family, 6)
    if pooled_width is not None and (projection - pooled_width) % count == 0:
        return (projection - pooled_width) // count
    if projection > PUBLISHED_TIME_EMBED * count:
        return PUBLISHED_TIME_EMBED
    return None


def build_unet(weights: Mapping[str, torch.Tensor], path, family: str, dtype: torch.dtype,
               device: Any = "cpu", pooled_width: int | None = None,
               overrides: Mapping[str, Any] | None = None):
    """diffusers' ``UNet2DConditionModel`` holding ``weights`` (built on the
    meta device, the file's tensors assigned, cast one at a time if needed)."""
    import inspect

    from diffusers import UNet2DConditionModel

    offline()
    with loading_errors(path, "U-Net"):
        config = unet_config(weights, family, pooled_width, overrides)
        sdxl_style = config.get("addition_embed_type") == "text_time"
        if sdxl_style and not config.get("addition_time_embed_dim"):
            raise CheckpointError(f"{path}: an SDXL U-Net of unusual size: give "
                                  "addition_time_embed_dim in the U-Net overrides")
        accepted = set(inspect.signature(UNet2DConditionModel.__init__).parameters) - {"self"}
        with empty_parameters():
            unet = UNet2DConditionModel(**{k: v for k, v in config.items() if k in accepted})
        assign_weights(unet, weights, path, "U-Net", dtype)
    return finish(unet, path, "U-Net", device)

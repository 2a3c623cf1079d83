"""Flux.1 transformer weights: original (Black Forest Labs / ComfyUI) keys → diffusers keys.

Why our own converter: diffusers' ``convert_flux_transformer_checkpoint_to_diffusers``
hard-codes the full width (3072) and MLP ratio, so any other width fails, and it
empties the dict it is given. This one reads every width from the tensors, never
mutates its input, names the offending key in a :class:`CheckpointError`, and
works on meta tensors (shapes only) as well as real ones. It maps tensors only;
building and loading the module is the loader's job.

Original layout (optionally under ``model.diffusion_model.``, as ComfyUI writes):
``img_in``, ``txt_in``, ``time_in.{in,out}_layer``, ``vector_in.{in,out}_layer``,
``guidance_in.{in,out}_layer`` (dev only), ``double_blocks.N.{img,txt}_{mod.lin,
attn.qkv,attn.proj,attn.norm.{query,key}_norm.scale,mlp.0,mlp.2}``,
``single_blocks.N.{modulation.lin,linear1,linear2,norm.{query,key}_norm.scale}``,
``final_layer.{linear,adaLN_modulation.1}``. ``linear1`` stacks q, k, v and the
MLP input rows; ``final_layer.adaLN_modulation.1`` holds (shift, scale) where
diffusers' ``norm_out`` wants (scale, shift).

Config rule (:func:`flux_config_from_state_dict`): everything comes from shapes.
The head dimension is the length of ``…query_norm.scale`` (RMS norm over one
head), so heads = width / head dim — nothing is guessed. Only what has no weights
is taken from the shipped ``configs/flux_dev/transformer.json``: ``patch_size``
and, for head dim 128, ``axes_dims_rope`` (16, 56, 56); another head dim d gets
even rotary axes in the same proportion (see :func:`flux_rope_axes`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

import torch

from core.checkpoints.safetensors_io import CheckpointError

COMFY_PREFIX = "model.diffusion_model."
FLUX_CONFIG_DIR = Path(__file__).resolve().parents[1] / "models" / "configs" / "flux_dev"
TIMESTEP_CHANNELS = 256  # sinusoidal embedding width, fixed in Flux and in diffusers
MLP_RATIO = 4  # the only ratio diffusers' FluxTransformer2DModel can build

# original module → diffusers module, weight and bias alike
_TOP_LEVEL = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "final_layer.linear": "proj_out",
}
_GUIDANCE = {
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
}
_DOUBLE_LINEAR = {
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
}
_DOUBLE_NORMS = {
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
}
_DOUBLE_QKV = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
_SINGLE_LINEAR = {"modulation.lin": "norm.linear", "linear2": "proj_out"}
_SINGLE_NORMS = {"norm.query_norm.scale": "attn.norm_q.weight", "norm.key_norm.scale": "attn.norm_k.weight"}
_SINGLE_SPLIT = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")


class _Source:
    """The original tensors with their prefix removed; remembers what was read."""

    def __init__(self, state_dict: Mapping[str, torch.Tensor]):
        self.prefix = COMFY_PREFIX if any(k.startswith(COMFY_PREFIX) for k in state_dict) else ""
        cut = len(self.prefix)
        self.tensors = {k[cut:]: v for k, v in state_dict.items() if k.startswith(self.prefix)}
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.tensors

    def take(self, key: str, *shape: int) -> torch.Tensor:
        """The tensor ``key``; CheckpointError if missing or not of ``shape``."""
        if key not in self.tensors:
            raise CheckpointError(f"Flux transformer: missing tensor '{self.prefix}{key}'")
        tensor = self.tensors[key]
        if shape and tuple(tensor.shape) != shape:
            raise CheckpointError(
                f"Flux transformer: tensor '{self.prefix}{key}' has shape {tuple(tensor.shape)}, "
                f"expected {shape}")
        self.used.add(key)
        return tensor

    def block_count(self, kind: str) -> int:
        """How many ``kind.N`` blocks there are; CheckpointError if numbering has a gap."""
        found = {int(m.group(1)) for k in self.tensors if (m := re.match(rf"{kind}\.(\d+)\.", k))}
        if found and found != set(range(max(found) + 1)):
            missing = sorted(set(range(max(found) + 1)) - found)
            raise CheckpointError(f"Flux transformer: missing tensors of '{self.prefix}{kind}.{missing[0]}'")
        return len(found)

    def unused(self) -> list[str]:
        return sorted(self.prefix + k for k in self.tensors.keys() - self.used)


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    """(shift, scale) rows → (scale, shift): original final layer → diffusers norm_out."""
    shift, scale = tensor.chunk(2, dim=0)
    return torch.cat([scale, shift], dim=0)


def _linear(src: _Source, old: str, new: str, out: dict, rows: int | None = None,
            cols: int | None = None) -> None:
    """Copy ``old.weight``/``old.bias`` to ``new.…``, checking their shapes when given."""
    weight = src.take(f"{old}.weight")
    if weight.dim() != 2 or (rows is not None and weight.shape[0] != rows) or (
            cols is not None and weight.shape[1] != cols):
        want = (rows if rows is not None else "any", cols if cols is not None else "any")
        raise CheckpointError(
            f"Flux transformer: tensor '{src.prefix}{old}.weight' has shape {tuple(weight.shape)}, "
            f"expected ({want[0]}, {want[1]})")
    out[f"{new}.weight"] = weight
    out[f"{new}.bias"] = src.take(f"{old}.bias", weight.shape[0])


def _split_rows(src: _Source, old: str, sizes: tuple[int, ...], names: tuple[str, ...],
                out: dict, width: int) -> None:
    """Split the stacked rows of ``old`` (weight and bias) into ``names`` of ``sizes`` rows."""
    weight = src.take(f"{old}.weight", sum(sizes), width)
    bias = src.take(f"{old}.bias", sum(sizes))
    for name, part_w, part_b in zip(names, weight.split(sizes, dim=0), bias.split(sizes, dim=0)):
        out[f"{name}.weight"] = part_w
        out[f"{name}.bias"] = part_b


def _convert_double_block(src: _Source, i: int, width: int, head_dim: int, out: dict) -> None:
    old, new = f"double_blocks.{i}.", f"transformer_blocks.{i}."
    mlp = MLP_RATIO * width
    rows = {"img_mod.lin": 6 * width, "txt_mod.lin": 6 * width, "img_mlp.0": mlp, "txt_mlp.0": mlp}
    cols = {"img_mlp.2": mlp, "txt_mlp.2": mlp}
    for o, n in _DOUBLE_LINEAR.items():
        _linear(src, old + o, new + n, out, rows.get(o, width), cols.get(o, width))
    for o, names in _DOUBLE_QKV.items():
        _split_rows(src, old + o, (width,) * 3, tuple(new + n for n in names), out, width)
    for o, n in _DOUBLE_NORMS.items():
        out[new + n] = src.take(old + o, head_dim)


def _convert_single_block(src: _Source, i: int, width: int, head_dim: int, out: dict) -> None:
    old, new = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
    mlp = MLP_RATIO * width
    _linear(src, old + "modulation.lin", new + "norm.linear", out, 3 * width, width)
    _linear(src, old + "linear2", new + "proj_out", out, width, width + mlp)
    _split_rows(src, old + "linear1", (width, width, width, mlp), tuple(new + n for n in _SINGLE_SPLIT),
                out, width)
    for o, n in _SINGLE_NORMS.items():
        out[new + n] = src.take(old + o, head_dim)


def _width_and_head_dim(src: _Source) -> tuple[int, int]:
    width = src.take("img_in.weight").shape[0]
    norm = ("double_blocks.0.img_attn.norm.query_norm.scale" if src.has("double_blocks.0.img_attn.qkv.weight")
            else "single_blocks.0.norm.query_norm.scale")
    head_dim = src.take(norm).shape[0]
    if width % head_dim:
        raise CheckpointError(
            f"Flux transformer: width {width} (from '{src.prefix}img_in.weight') is not a multiple of the "
            f"head dim {head_dim} (from '{src.prefix}{norm}')")
    return width, head_dim


def _check_mlp_ratio(src: _Source, width: int) -> None:
    """diffusers builds only ratio-4 MLPs: say so, naming the key, instead of a size mismatch later."""
    key = ("double_blocks.0.img_mlp.0.weight" if src.has("double_blocks.0.img_mlp.0.weight")
           else "single_blocks.0.linear1.weight")
    if not src.has(key):
        return
    rows = src.take(key).shape[0] - (0 if key.startswith("double") else 3 * width)
    if rows != MLP_RATIO * width:
        raise CheckpointError(
            f"Flux transformer: tensor '{src.prefix}{key}' implies an MLP ratio of {rows / width:g}; "
            f"diffusers' FluxTransformer2DModel supports only {MLP_RATIO}")


def convert_flux_transformer(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``FluxTransformer2DModel`` state dict from an original-layout one.

    Keys outside ``model.diffusion_model.`` are ignored when that prefix is used
    (all-in-one files); any other tensor the mapping does not consume is an error,
    because a tensor we do not understand (e.g. fp8 scales) would be silently lost.
    Split parts are views of the input (no copy) except the swapped final modulation.
    """
    src = _Source(state_dict)
    width, head_dim = _width_and_head_dim(src)
    _check_mlp_ratio(src, width)
    out: dict[str, torch.Tensor] = {}
    top_level = {**_TOP_LEVEL, **(_GUIDANCE if src.has("guidance_in.in_layer.weight") else {})}
    for old, new in top_level.items():
        is_output = old == "final_layer.linear"
        _linear(src, old, new, out, rows=None if is_output else width,
                cols=width if is_output or old.endswith("out_layer") else None)
    for i in range(src.block_count("double_blocks")):
        _convert_double_block(src, i, width, head_dim, out)
    for i in range(src.block_count("single_blocks")):
        _convert_single_block(src, i, width, head_dim, out)
    final = "final_layer.adaLN_modulation.1"
    out["norm_out.linear.weight"] = _swap_halves(src.take(f"{final}.weight", 2 * width, width))
    out["norm_out.linear.bias"] = _swap_halves(src.take(f"{final}.bias", 2 * width))
    leftover = src.unused()
    if leftover:
        raise CheckpointError(
            f"Flux transformer: {len(leftover)} tensor(s) not understood, first '{leftover[0]}'")
    return out


def flux_rope_axes(head_dim: int) -> list[int]:
    """Rotary axes (id, height, width) for ``head_dim``: the real (16, 56, 56) for 128.

    The axes hold no weights, so a file cannot tell them. For another head dim d
    each spatial axis gets the largest even number ≤ 7d/16 and the id axis the
    rest; all three are even, as rotary pairs need (d = 16 → 4, 6, 6).
    """
    if head_dim == 128:
        return list(_default_config()["axes_dims_rope"])
    if head_dim % 2 or head_dim < 6:
        raise CheckpointError(f"Flux transformer: head dim {head_dim} cannot be split into rotary axes")
    spatial = (7 * head_dim // 16) // 2 * 2
    return [head_dim - 2 * spatial, spatial, spatial]


def _default_config() -> dict:
    with open(FLUX_CONFIG_DIR / "transformer.json", encoding="utf-8") as handle:
        return json.load(handle)


def flux_config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Keyword arguments for ``FluxTransformer2DModel`` read from an original-layout state dict.

    Accepts both prefixes and meta tensors. ``out_channels`` is None unless the
    output width differs from the input (Fill/Depth-style files).
    """
    src = _Source(state_dict)
    width, head_dim = _width_and_head_dim(src)
    _check_mlp_ratio(src, width)
    img_in = src.take("img_in.weight")
    out_channels = src.take("final_layer.linear.weight").shape[0]
    src.take("time_in.in_layer.weight", width, TIMESTEP_CHANNELS)
    return {
        "patch_size": _default_config()["patch_size"],
        "in_channels": img_in.shape[1],
        "out_channels": None if out_channels == img_in.shape[1] else out_channels,
        "num_layers": src.block_count("double_blocks"),
        "num_single_layers": src.block_count("single_blocks"),
        "attention_head_dim": head_dim,
        "num_attention_heads": width // head_dim,
        "joint_attention_dim": src.take("txt_in.weight").shape[1],
        "pooled_projection_dim": src.take("vector_in.in_layer.weight").shape[1],
        "guidance_embeds": src.has("guidance_in.in_layer.weight"),
        "axes_dims_rope": flux_rope_axes(head_dim),
    }

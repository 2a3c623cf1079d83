"""Kohya (sd-scripts / A1111) LoRA files for the SD 1.x and SDXL U-Nets and CLIP encoders.

Each patched module ``M`` (weight (out, in[, 1, 1])) gets three tensors:
``<name>.lora_down.weight`` (rank, in[, 1, 1]), ``<name>.lora_up.weight``
(out, rank[, 1, 1]) and ``<name>.alpha`` (a scalar); the merge is
W + (alpha / rank) · up @ down. ``<name>`` is the module path with ``_`` for ``.``:

- SD 1.x U-Net: ``lora_unet_`` + the diffusers path
  (``lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q``);
- SDXL U-Net: ``lora_unet_`` + the ORIGINAL (SGM) path, since sd-scripts
  trains SDXL on its own copy of the original U-Net
  (``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``);
- text encoders: ``lora_te_`` (SD 1.x), ``lora_te1_`` / ``lora_te2_`` (SDXL) +
  the transformers path (``lora_te1_text_model_encoder_layers_0_self_attn_q_proj``).

Targets are sd-scripts' defaults: every Linear / 1x1 Conv inside a
Transformer2DModel (proj_in, proj_out, attn1/attn2 to_q/to_k/to_v/to_out.0,
ff.net.0.proj, ff.net.2) and in CLIPAttention / CLIPMLP (q/k/v/out_proj,
fc1, fc2). The file's metadata carries ``ss_network_dim`` / ``ss_network_alpha``.
"""
from __future__ import annotations

import re
from typing import Mapping, NamedTuple

import torch

from tests.layouts.unet_ldm import attention_up_blocks, unet_key_to_ldm

_UNET_TARGET = re.compile(
    r".*attentions\.\d+\.(proj_in|proj_out|transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)"
    r"|ff\.net\.0\.proj|ff\.net\.2))\.weight")
_TEXT_TARGET = re.compile(r"encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])\.weight")
TEXT_PREFIXES = {"sd1": {"text_encoder": "lora_te_"},
                 "sdxl": {"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}}
BASE_MODEL_VERSIONS = {"sd1": "sd_v1", "sdxl": "sdxl_base_v1-0"}


class Target(NamedTuple):
    """A module a LoRA patches: its pipeline component, diffusers module path and weight."""

    component: str
    module: str
    weight: torch.Tensor


def unet_lora_targets(family: str, state_dict: Mapping[str, torch.Tensor],
                      config: Mapping) -> dict[str, Target]:
    """kohya module name -> the U-Net module it patches."""
    targets = {}
    for key, weight in state_dict.items():
        if not _UNET_TARGET.fullmatch(key):
            continue
        named = key
        if family == "sdxl":
            named = unet_key_to_ldm(key, config["layers_per_block"], attention_up_blocks(config))
        name = "lora_unet_" + named.removesuffix(".weight").replace(".", "_")
        targets[name] = Target("unet", key.removesuffix(".weight"), weight)
    return targets


def text_lora_targets(component: str, prefix: str,
                      state_dict: Mapping[str, torch.Tensor]) -> dict[str, Target]:
    """kohya module name -> the text-encoder module it patches."""
    targets = {}
    for key, weight in state_dict.items():
        plain = key.removeprefix("text_model.")
        if _TEXT_TARGET.fullmatch(plain):
            module = key.removesuffix(".weight")
            name = prefix + ("text_model." + plain.removesuffix(".weight")).replace(".", "_")
            targets[name] = Target(component, module, weight)
    return targets


def lora_triple(name: str, weight: torch.Tensor, rank: int, alpha: float, make) -> dict[str, torch.Tensor]:
    """down (rank, in[,1,1]), up (out, rank[,1,1]) and alpha for one module."""
    kernel = tuple(weight.shape[2:])  # () for Linear, (1, 1) for a 1x1 conv
    out_features, in_features = weight.shape[:2]
    ones = (1,) * len(kernel)
    like = {"dtype": weight.dtype, "device": weight.device}
    return {
        f"{name}.lora_down.weight": make((rank, in_features, *kernel), **like),
        f"{name}.lora_up.weight": make((out_features, rank, *ones), **like),
        f"{name}.alpha": torch.tensor(float(alpha), dtype=weight.dtype),
    }


def lora_targets(family: str, models: Mapping[str, torch.nn.Module],
                 configs: Mapping[str, Mapping]) -> dict[str, Target]:
    """Every kohya module name of ``family`` ("sd1" | "sdxl") -> the module it patches."""
    targets = unet_lora_targets(family, models["unet"].state_dict(), configs["unet"])
    for component, prefix in TEXT_PREFIXES[family].items():
        targets.update(text_lora_targets(component, prefix, models[component].state_dict()))
    return targets


def kohya_lora(family: str, models: Mapping[str, torch.nn.Module], configs: Mapping[str, Mapping],
               rank: int, alpha: float, make) -> dict[str, torch.Tensor]:
    """The tensors of a kohya LoRA file for ``models``; ``make(shape, dtype=, device=)`` fills them."""
    tensors: dict[str, torch.Tensor] = {}
    for name, target in lora_targets(family, models, configs).items():
        tensors.update(lora_triple(name, target.weight, rank, alpha, make))
    return tensors


def kohya_metadata(family: str, rank: int, alpha: float) -> dict[str, str]:
    """The sd-scripts metadata keys a detector may read."""
    return {"ss_network_module": "networks.lora", "ss_network_dim": str(rank),
            "ss_network_alpha": str(float(alpha)), "ss_base_model_version": BASE_MODEL_VERSIONS[family],
            "ss_v2": "False"}

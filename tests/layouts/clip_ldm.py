"""transformers CLIP text encoders -> the keys of original single files.

Two layouts exist:

- **CLIP ViT-L/14** (SD 1.x ``cond_stage_model.transformer.``, SDXL base
  ``conditioner.embedders.0.transformer.``): the transformers model's own keys
  under ``text_model.`` (the transformers 4.x naming the files were saved
  with). SD 1.x files also hold the ``position_ids`` buffer (int64, (1, 77)).
  Inverse of ``convert_ldm_clip_checkpoint``.
- **OpenCLIP** (SD 2.x ViT-H ``cond_stage_model.model.``, SDXL bigG
  ``conditioner.embedders.1.model.``, refiner ``conditioner.embedders.0.model.``):
  ``transformer.resblocks.i`` with q/k/v fused into ``attn.in_proj_weight``
  (3W, W) and ``in_proj_bias``, ``mlp.c_fc``/``c_proj``, ``ln_1``/``ln_2``,
  ``positional_embedding`` (a bare tensor), ``text_projection`` stored as
  (width, projection) -- the transpose of transformers' Linear weight -- and a
  scalar ``logit_scale``. Inverse of ``convert_open_clip_checkpoint``.

SD 2.x uses the penultimate layer of a 24-layer ViT-H: its transformers model
has 23 layers, yet the file holds all 24 (diffusers drops ``resblocks.23`` by
name) and a ``text_projection`` no SD 2.x model uses. ``open_clip_extras``
makes those unused tensors.
"""
from __future__ import annotations

from typing import Mapping

import torch

SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
SD2_OPEN_CLIP_PREFIX = "cond_stage_model.model."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
REFINER_OPEN_CLIP_PREFIX = "conditioner.embedders.0.model."

OPEN_CLIP_TOP_LEVEL = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}

OPEN_CLIP_LAYER_PARTS = {
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
    "self_attn.out_proj.": "attn.out_proj.",
}


def _without_text_model(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5 ``CLIPTextModel`` keys have no ``text_model.``; WithProjection's do."""
    return {k.removeprefix("text_model."): v for k, v in state_dict.items()}


def clip_l_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str = SD1_CLIP_PREFIX,
                  position_ids: bool = True) -> dict[str, torch.Tensor]:
    """A transformers CLIPTextModel state dict in the original CLIP-L layout."""
    plain = _without_text_model(state_dict)
    result = {prefix + "text_model." + k: v for k, v in plain.items()}
    if position_ids:
        positions = plain["embeddings.position_embedding.weight"].shape[0]
        device = plain["embeddings.position_embedding.weight"].device
        result[prefix + "text_model.embeddings.position_ids"] = torch.arange(
            positions, dtype=torch.int64, device=device)[None]  # (1, 77)
    return result


def _open_clip_layer_key(rest: str) -> str:
    for new, old in OPEN_CLIP_LAYER_PARTS.items():
        if rest.startswith(new):
            return old + rest[len(new):]
    raise KeyError(f"no OpenCLIP name for text-encoder tensor {rest!r}")


def _fused_in_proj(plain: Mapping[str, torch.Tensor], layer: str) -> dict[str, torch.Tensor]:
    """q, k, v projections stacked on dim 0 as OpenCLIP's ``nn.MultiheadAttention`` holds them."""
    parts = [f"{layer}self_attn.{name}_proj." for name in ("q", "k", "v")]
    return {
        "attn.in_proj_weight": torch.cat([plain[p + "weight"] for p in parts]),  # (3W, W)
        "attn.in_proj_bias": torch.cat([plain[p + "bias"] for p in parts]),  # (3W,)
    }


def open_clip_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str,
                     extras: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """A transformers CLIP text model (with or without projection) in the OpenCLIP layout.

    ``extras`` are tensors already under OpenCLIP names (without ``prefix``) that
    the transformers model lacks: see ``open_clip_extras``.
    """
    plain = _without_text_model(state_dict)
    result: dict[str, torch.Tensor] = {}
    layers = sorted({int(k.split(".")[2]) for k in plain if k.startswith("encoder.layers.")})
    for key, tensor in plain.items():
        if key in OPEN_CLIP_TOP_LEVEL:
            result[prefix + OPEN_CLIP_TOP_LEVEL[key]] = tensor
        elif key == "text_projection.weight":
            result[prefix + "text_projection"] = tensor.T  # (projection, W) -> (W, projection)
        elif key.startswith("encoder.layers."):
            index, rest = key.split(".", 3)[2:]
            if rest.startswith(("self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj.")):
                continue  # fused into in_proj below
            result[f"{prefix}transformer.resblocks.{index}.{_open_clip_layer_key(rest)}"] = tensor
        else:
            raise KeyError(f"no OpenCLIP name for text-encoder tensor {key!r}")
    for index in layers:
        fused = _fused_in_proj(plain, f"encoder.layers.{index}.")
        result.update({f"{prefix}transformer.resblocks.{index}.{k}": v for k, v in fused.items()})
    result.update({prefix + k: v for k, v in (extras or {}).items()})
    return result


def open_clip_extras(width: int, mlp_width: int, *, projection_dim: int | None,
                     unused_layer: int | None, make=torch.empty, dtype=torch.float32,
                     device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Tensors an OpenCLIP file holds that a transformers model has no place for.

    Always the scalar ``logit_scale``; ``text_projection`` (W, projection_dim)
    when the transformers model has none (SD 2.x); with ``unused_layer``
    (SD 2.x: 23) that whole final resblock. ``make(shape, dtype=, device=)``
    fills them (``torch.empty`` for sparse layouts, seeded noise for tiny files).
    """
    def tensor(*shape):
        return make(shape, dtype=dtype, device=device)

    extras = {"logit_scale": tensor()}
    if projection_dim is not None:
        extras["text_projection"] = tensor(width, projection_dim)
    if unused_layer is not None:
        block = f"transformer.resblocks.{unused_layer}."
        extras.update({
            block + "attn.in_proj_weight": tensor(3 * width, width),
            block + "attn.in_proj_bias": tensor(3 * width),
            block + "attn.out_proj.weight": tensor(width, width),
            block + "attn.out_proj.bias": tensor(width),
            block + "ln_1.weight": tensor(width), block + "ln_1.bias": tensor(width),
            block + "ln_2.weight": tensor(width), block + "ln_2.bias": tensor(width),
            block + "mlp.c_fc.weight": tensor(mlp_width, width), block + "mlp.c_fc.bias": tensor(mlp_width),
            block + "mlp.c_proj.weight": tensor(width, mlp_width), block + "mlp.c_proj.bias": tensor(width),
        })
    return extras


# Tiny text encoders. The vocabulary (49408) and the 77 positions stay real
# so the real CLIP tokenizer's ids fit; only the widths shrink. CLIP-L and
# bigG get DIFFERENT widths (32 vs 64): with equal widths diffusers cannot tell
# SDXL's two encoders apart. OpenCLIP keeps 64-wide heads and gelu.
_CLIP_COMMON = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=0, eos_token_id=2,
                    pad_token_id=1, layer_norm_eps=1e-5, num_hidden_layers=2)
TINY_CLIP_L_CONFIG = dict(_CLIP_COMMON, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                          projection_dim=32, hidden_act="quick_gelu")
TINY_OPEN_CLIP_H_CONFIG = dict(_CLIP_COMMON, hidden_size=64, intermediate_size=128,
                               num_attention_heads=1, projection_dim=64, hidden_act="gelu")
TINY_OPEN_CLIP_G_CONFIG = dict(TINY_OPEN_CLIP_H_CONFIG)

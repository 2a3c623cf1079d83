"""Text encoders from the files users hold: standalone ``clip_l``, ``clip_g``
and ``t5xxl`` files (ComfyUI's ``text_encoders/`` folder) and the same
encoders inside an SD3 all-in-one checkpoint.

Layouts read:

- CLIP (L and bigG): transformers' keys, ``text_model.…`` (older naming,
  still what files hold) or flattened, plus ``text_projection.weight`` (a
  Linear weight, (projection, width)) when the file has one; under
  ``text_encoders.clip_{l,g}.transformer.`` in SD3 files. OpenCLIP's own
  layout (``transformer.resblocks.N.attn.in_proj_weight`` …) is converted.
- T5 v1.1 XXL encoder: transformers' ``T5EncoderModel`` keys (``shared.weight``,
  ``encoder.block.N.layer.…``), usually without the tied copy
  ``encoder.embed_tokens.weight``; under ``text_encoders.t5xxl.transformer.``
  in SD3 files.

Configs come from the tensors' shapes (width, depth, MLP width, vocabulary,
positions, projection; T5's heads from its relative-position table); only
what shapes cannot tell comes from the shipped JSON (activation, CLIP's head
count at the published width, else width / 64). ``overrides`` set any config
value explicitly (a model with another head size).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from core.checkpoints.boundary import CheckpointError, ChoiceError, checkpoint_boundary
from core.models.families.weights import (
    assign_weights,
    empty_parameters,
    finish,
    first_prefix,
    loading_errors,
    offline,
    open_tensors,
    under_prefix,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ROLES = ("clip_l", "clip_g", "t5xxl")
ROLE_CONFIGS = {"clip_l": ("sd3_medium", "text_encoder"), "clip_g": ("sd3_medium", "text_encoder_2"),
                "t5xxl": ("sd3_medium", "text_encoder_3")}
PREFIXES = {  # where each encoder sits in the files users hold, most specific first
    "clip_l": ("text_encoders.clip_l.transformer.", "cond_stage_model.transformer.",
               "conditioner.embedders.0.transformer.", ""),
    "clip_g": ("text_encoders.clip_g.transformer.", "conditioner.embedders.1.model.", ""),
    "t5xxl": ("text_encoders.t5xxl.transformer.", ""),
}
CLIP_MARKERS = ("text_model.embeddings.token_embedding.weight", "embeddings.token_embedding.weight",
                "token_embedding.weight")
T5_MARKER = "shared.weight"
T5_TIED_KEY = "encoder.embed_tokens.weight"
HEAD_DIM = 64  # every published CLIP and T5 v1.1 uses 64-wide heads


def published_config(family: str, component: str) -> dict[str, Any]:
    """A shipped full-size config without its bookkeeping keys."""
    path = CONFIGS / family / f"{component}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in raw.items() if not k.startswith("_") and k != "architectures"}


def find_encoder(tensors: Mapping[str, torch.Tensor], role: str) -> dict[str, torch.Tensor] | None:
    """The tensors of the ``role`` encoder (prefix removed), or None when absent."""
    if role == "t5xxl":
        prefix = first_prefix(tensors, PREFIXES[role], T5_MARKER)
    else:
        prefix = next((p for p in PREFIXES[role] for m in CLIP_MARKERS if p + m in tensors), None)
    return None if prefix is None else under_prefix(tensors, prefix)


@checkpoint_boundary("text encoder file")
def load_text_encoder_file(path, role: str, dtype: torch.dtype = torch.float32, device: Any = "cpu",
                           projection: str = "file", overrides: Mapping[str, Any] | None = None):
    """One standalone text-encoder file as a transformers module (see :func:`build_clip`)."""
    if role not in ROLES:
        raise ChoiceError(f"the text encoder role must be one of {ROLES}, not {role!r}")
    tensors = open_tensors(path)
    weights = find_encoder(tensors, role)
    if weights is None:
        raise CheckpointError(f"{path}: no {role} text encoder in this file "
                              f"({len(tensors)} tensors, e.g. {next(iter(tensors), 'none')})")
    if role == "t5xxl":
        return build_t5(weights, path, dtype, device, overrides)
    return build_clip(weights, path, role, dtype, device, projection, overrides)


def encoder_from(tensors: Mapping[str, torch.Tensor], path, separate, role: str, dtype: torch.dtype,
                 device: Any, overrides: Mapping[str, Mapping[str, Any]], projection: str = "file"):
    """The ``role`` encoder inside ``tensors`` (an all-in-one file at ``path``),
    else from the ``separate`` file, else None."""
    inside = find_encoder(tensors, role)
    if inside is not None:
        if role == "t5xxl":
            return build_t5(inside, path, dtype, device, overrides.get(role))
        return build_clip(inside, path, role, dtype, device, projection, overrides.get(role))
    if separate is None:
        return None
    return load_text_encoder_file(separate, role, dtype, device, projection, overrides.get(role))


# --- CLIP -------------------------------------------------------------------------------------

def clip_weights(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP tensors keyed without ``text_model.`` (OpenCLIP's layout converted)."""
    if "transformer.resblocks.0.attn.in_proj_weight" in weights:
        weights = _from_open_clip(weights)
    return {k.removeprefix("text_model."): v for k, v in weights.items()}


def _from_open_clip(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP text tower → transformers names (q, k, v split from ``in_proj``)."""
    renames = {"token_embedding.weight": "embeddings.token_embedding.weight",
               "positional_embedding": "embeddings.position_embedding.weight",
               "ln_final.weight": "final_layer_norm.weight", "ln_final.bias": "final_layer_norm.bias"}
    parts = {"ln_1.": "layer_norm1.", "ln_2.": "layer_norm2.", "mlp.c_fc.": "mlp.fc1.",
             "mlp.c_proj.": "mlp.fc2.", "attn.out_proj.": "self_attn.out_proj."}
    out = {new: weights[old] for old, new in renames.items() if old in weights}
    if "text_projection" in weights:
        out["text_projection.weight"] = weights["text_projection"].T  # stored (width, projection)
    for key, tensor in weights.items():
        match = re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)", key)
        if not match:
            continue
        layer, rest = f"encoder.layers.{match[1]}.", match[2]
        if rest.startswith("attn.in_proj_"):
            suffix = rest.removeprefix("attn.in_proj_")
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                out[f"{layer}self_attn.{name}.{suffix}"] = chunk
            continue
        for old, new in parts.items():
            if rest.startswith(old):
                out[layer + new + rest.removeprefix(old)] = tensor
    return out


def clip_config(weights: Mapping[str, torch.Tensor], role: str,
                overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``CLIPTextConfig`` values from the tensors' shapes (keys as :func:`clip_weights` gives)."""
    config = published_config(*ROLE_CONFIGS[role]) if role != "t5xxl" else {}
    vocab, width = weights["embeddings.token_embedding.weight"].shape
    layers = {int(m[1]) for k in weights if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    projection = weights.get("text_projection.weight")
    published = width == config["hidden_size"]
    heads = config["num_attention_heads"] if published else max(1, width // HEAD_DIM)
    config.update(
        vocab_size=vocab, hidden_size=width, num_hidden_layers=len(layers), num_attention_heads=heads,
        intermediate_size=weights["encoder.layers.0.mlp.fc1.weight"].shape[0],
        max_position_embeddings=weights["embeddings.position_embedding.weight"].shape[0],
        projection_dim=width if projection is None else projection.shape[0],
    )
    config.update(overrides or {})
    return config


def build_clip(weights: Mapping[str, torch.Tensor], path, role: str, dtype: torch.dtype,
               device: Any = "cpu", projection: str = "file",
               overrides: Mapping[str, Any] | None = None):
    """A transformers CLIP text model holding ``weights``.

    ``projection``: ``"file"`` gives ``CLIPTextModelWithProjection`` with the
    file's projection (required); ``"identity"`` the same class with an
    identity projection whatever the file holds (SD3's CLIP-L: its pooled
    output enters unprojected, as in SD3's reference code, ComfyUI and
    diffusers' single-file loader); ``"none"`` a plain ``CLIPTextModel`` (Flux)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    offline()
    what = f"{role} text encoder"
    with loading_errors(path, what):
        weights = clip_weights(weights)
        config = CLIPTextConfig(**clip_config(weights, role, overrides))
        if projection == "identity":
            weights = {**weights, "text_projection.weight": torch.eye(config.hidden_size)}
            config.projection_dim = config.hidden_size
        cls = CLIPTextModel if projection == "none" else CLIPTextModelWithProjection
        with empty_parameters():
            model = cls(config)
        wrapped = any(k.startswith("text_model.") for k in model.state_dict())
        keyed = {(f"text_model.{k}" if wrapped and k != "text_projection.weight" else k): v
                 for k, v in weights.items()}
        assign_weights(model, keyed, path, what, dtype)
    return finish(model, path, what, device)


# --- T5 ---------------------------------------------------------------------------------------

def t5_config(weights: Mapping[str, torch.Tensor],
              overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``T5Config`` values from the tensors: width, depth, heads (relative
    position table), head width, MLP width and gating."""
    config = published_config(*ROLE_CONFIGS["t5xxl"])
    vocab, width = weights["shared.weight"].shape
    blocks = {int(m[1]) for k in weights if (m := re.match(r"encoder\.block\.(\d+)\.", k))}
    first = "encoder.block.0.layer."
    buckets, heads = weights[first + "0.SelfAttention.relative_attention_bias.weight"].shape
    inner = weights[first + "0.SelfAttention.q.weight"].shape[0]
    gated = first + "1.DenseReluDense.wi_0.weight" in weights
    d_ff = weights[first + "1.DenseReluDense." + ("wi_0.weight" if gated else "wi.weight")]
    config.update(
        vocab_size=vocab, d_model=width, num_layers=len(blocks), num_decoder_layers=len(blocks),
        num_heads=heads, d_kv=inner // heads, d_ff=d_ff.shape[0],
        relative_attention_num_buckets=buckets,
        feed_forward_proj="gated-gelu" if gated else "relu", is_gated_act=gated,
    )
    config.update(overrides or {})
    return config


def build_t5(weights: Mapping[str, torch.Tensor], path, dtype: torch.dtype, device: Any = "cpu",
             overrides: Mapping[str, Any] | None = None):
    """A transformers ``T5EncoderModel`` holding ``weights``, its embedding
    tied to ``shared`` and in eval mode (dropout off). Under fp16 the ``wo``
    projections stay fp32, as transformers keeps them (they overflow)."""
    from transformers import T5Config, T5EncoderModel

    offline()
    what = "t5xxl text encoder"
    with loading_errors(path, what):
        config = T5Config(**t5_config(weights, overrides))
        with empty_parameters():
            model = T5EncoderModel(config)
        assign_weights(model, weights, path, what, dtype, optional=(T5_TIED_KEY,),
                       keep_fp32=lambda key: "wo" in key.split("."))
        if T5_TIED_KEY not in weights:
            model.encoder.embed_tokens.weight = model.shared.weight
        model.tie_weights()
    return finish(model, path, what, device)

"""Text-encoder files of SD3 and Flux: T5 v1.1 XXL and standalone CLIP-L / CLIP-G.

Layouts (what ComfyUI's ``text_encoders/`` files and the SD3 all-in-one hold):

- ``t5xxl_fp16.safetensors``: transformers' ``T5EncoderModel`` keys as they are
  (``shared.weight``, ``encoder.block.N.layer.0.SelfAttention.q.weight``,
  ``encoder.block.N.layer.1.DenseReluDense.wi_0.weight``, ``encoder.final_layer_norm.weight``)
  WITHOUT the tied duplicate ``encoder.embed_tokens.weight``: a loader must call
  ``tie_weights()`` (else ``embed_tokens`` stays on the meta device) and ``eval()``
  (T5's dropout is 0.1). In an SD3 all-in-one file the same keys sit under
  ``text_encoders.t5xxl.transformer.``.
- ``clip_l.safetensors``: the older transformers layout ``text_model.…`` with no
  ``text_projection.weight`` (ComfyUI reports it "missing" and uses identity;
  diffusers' SD3 path sets ``torch.eye``). Under ``text_encoders.clip_l.transformer.``
  in SD3 files.
- ``clip_g.safetensors``: ``text_model.…`` plus ``text_projection.weight`` (a Linear
  weight, (proj, hidden), NOT OpenCLIP's transposed ``text_projection``). Under
  ``text_encoders.clip_g.transformer.`` in SD3 files.

API (all return a :class:`TinyFile`; ``seed`` makes the weights reproducible):
``tiny_t5_file(path)``, ``tiny_clip_l_file(path)``, ``tiny_clip_g_file(path)``;
``make_tiny_clip_l(seed, with_projection)``, ``make_tiny_clip_g(seed)``, ``make_tiny_t5(seed)``;
layout maps ``clip_to_file_keys`` and ``t5_to_file_keys``; full-size shapes
``full_size_t5_shapes()``, ``full_size_clip_shapes(which)``; the writers
``write_safetensors`` and ``write_sparse_safetensors(path, {key: (shape, dtype)})``
(header of real names and shapes, data region a hole) and ``TinyFile``, used by
``sd3.py`` and ``flux.py`` too (same interface as ``tests.layouts.files``).
Tiny CLIP-L (32) and CLIP-G (48) have different widths on purpose: diffusers picks
the SDXL/SD3 second encoder by width. Tiny T5's d_model (96) is ≥ 32 + 48 because
SD3 pads the concatenated CLIP states to T5's width.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch

from tests.layouts import randomize_
from tests.layouts.files import TinyFile, write_safetensors, write_sparse_safetensors  # noqa: F401

CONFIGS = Path(__file__).resolve().parents[2] / "core" / "models" / "configs"
CLIP_VOCAB = 49408  # the real vocabulary, so the real tokenizer's ids fit
TINY_CLIP_L = dict(vocab_size=CLIP_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, max_position_embeddings=77, projection_dim=32,
                   hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1)
TINY_CLIP_G = dict(vocab_size=CLIP_VOCAB, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                   num_attention_heads=3, max_position_embeddings=77, projection_dim=48,
                   hidden_act="gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1)
TINY_T5 = dict(vocab_size=32128, d_model=96, d_kv=8, d_ff=128, num_layers=2, num_heads=4,
               relative_attention_num_buckets=32, relative_attention_max_distance=128,
               feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
               dropout_rate=0.1, layer_norm_epsilon=1e-6, tie_word_embeddings=False,
               pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
T5_TIED_KEY = "encoder.embed_tokens.weight"


# TinyFile (tests.layouts.files): all-in-one files use diffusers pipeline names (SD3:
# transformer, vae, text_encoder = CLIP-L, text_encoder_2 = CLIP-G, text_encoder_3 = T5;
# Flux: transformer, text_encoder = CLIP-L, text_encoder_2 = T5); standalone
# text-encoder files use their role: clip_l, clip_g, t5xxl.


def load_config(folder: str, name: str) -> dict:
    """A shipped full-size config (``core/models/configs/<folder>/<name>.json``)."""
    with open(CONFIGS / folder / f"{name}.json", encoding="utf-8") as handle:
        return json.load(handle)


def with_dtype(shapes: Mapping[str, tuple[int, ...]], dtype: torch.dtype) -> dict:
    """key → shape as the key → (shape, dtype) specs the sparse writer takes."""
    return {k: (tuple(v), dtype) for k, v in shapes.items()}


def clip_file_key(key: str, prefix: str = "") -> str:
    """One transformers CLIP key as a file key: ``prefix + text_model.…`` or ``prefix + text_projection.weight``.

    transformers ≥ 5.6 flattens ``CLIPTextModel`` (no ``text_model.``); files keep it.
    """
    if key == "text_projection.weight" or key.startswith("text_model."):
        return prefix + key
    return prefix + "text_model." + key


def clip_to_file_keys(state_dict: Mapping[str, torch.Tensor], prefix: str = "",
                      keep_projection: bool = True) -> dict[str, torch.Tensor]:
    """transformers CLIP state dict → file keys; ``keep_projection=False`` drops CLIP-L's identity."""
    return {clip_file_key(k, prefix): v for k, v in state_dict.items()
            if keep_projection or k != "text_projection.weight"}


def t5_to_file_keys(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """transformers ``T5EncoderModel`` keys → file keys: the same names, tied duplicate dropped."""
    return {prefix + k: v for k, v in state_dict.items() if k != T5_TIED_KEY}


def clip_config(tiny: Mapping, with_projection: bool) -> dict:
    """JSON-ready transformers config of a tiny CLIP text model."""
    cls = "CLIPTextModelWithProjection" if with_projection else "CLIPTextModel"
    return {"architectures": [cls], "model_type": "clip_text_model", **tiny}


def t5_config() -> dict:
    return {"architectures": ["T5EncoderModel"], "model_type": "t5", **TINY_T5}


def make_tiny_clip_l(seed: int = 0, with_projection: bool = False, dtype: torch.dtype = torch.float32):
    """Tiny CLIP-L; ``with_projection`` gives SD3's form: identity ``text_projection``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    model = randomize_(cls(CLIPTextConfig(**TINY_CLIP_L)), seed)
    if with_projection:
        with torch.no_grad():
            model.text_projection.weight.copy_(torch.eye(TINY_CLIP_L["hidden_size"]))
    return model.to(dtype)


def make_tiny_clip_g(seed: int = 0, dtype: torch.dtype = torch.float32):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    return randomize_(CLIPTextModelWithProjection(CLIPTextConfig(**TINY_CLIP_G)), seed).to(dtype)


def make_tiny_t5(seed: int = 0, dtype: torch.dtype = torch.float32):
    """Tiny T5 encoder, tied and in eval mode (what a correct loader returns)."""
    from transformers import T5Config, T5EncoderModel

    model = randomize_(T5EncoderModel(T5Config(**TINY_T5)), seed)
    model.tie_weights()
    return model.to(dtype)


def tiny_t5_file(path, seed: int = 0, dtype: torch.dtype = torch.float32) -> TinyFile:
    """ComfyUI-style ``t5xxl`` file (no tied duplicate); component ``t5xxl``."""
    model = make_tiny_t5(seed + 3, dtype)
    tensors = t5_to_file_keys(model.state_dict())
    return TinyFile(write_safetensors(path, tensors), {"t5xxl": model}, {"t5xxl": t5_config()}, tensors)


def tiny_clip_l_file(path, seed: int = 0, dtype: torch.dtype = torch.float32) -> TinyFile:
    """ComfyUI-style ``clip_l`` file (no projection); component ``clip_l``, a ``CLIPTextModel``."""
    model = make_tiny_clip_l(seed + 1, dtype=dtype)
    tensors = clip_to_file_keys(model.state_dict())
    config = clip_config(TINY_CLIP_L, with_projection=False)
    return TinyFile(write_safetensors(path, tensors), {"clip_l": model}, {"clip_l": config}, tensors)


def tiny_clip_g_file(path, seed: int = 0, dtype: torch.dtype = torch.float32) -> TinyFile:
    """ComfyUI-style ``clip_g`` file; component ``clip_g``, a ``CLIPTextModelWithProjection``."""
    model = make_tiny_clip_g(seed + 2, dtype)
    tensors = clip_to_file_keys(model.state_dict())
    config = clip_config(TINY_CLIP_G, with_projection=True)
    return TinyFile(write_safetensors(path, tensors), {"clip_g": model}, {"clip_g": config}, tensors)


def _meta_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def full_size_t5_shapes(prefix: str = "") -> dict[str, tuple[int, ...]]:
    """File keys and shapes of the real T5 v1.1 XXL encoder (meta device, no memory)."""
    from transformers import T5Config, T5EncoderModel

    with torch.device("meta"):
        model = T5EncoderModel(T5Config(**load_config("sd3_medium", "text_encoder_3")))
    return {prefix + k: v for k, v in _meta_shapes(model).items() if k != T5_TIED_KEY}


def full_size_clip_shapes(which: str, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """File keys and shapes of real CLIP-L (``"clip_l"``, no projection) or bigG (``"clip_g"``)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    name = {"clip_l": "text_encoder", "clip_g": "text_encoder_2"}[which]
    with torch.device("meta"):
        model = CLIPTextModelWithProjection(CLIPTextConfig(**load_config("sd3_medium", name)))
    return {clip_file_key(k, prefix): shape for k, shape in _meta_shapes(model).items()
            if which == "clip_g" or k != "text_projection.weight"}

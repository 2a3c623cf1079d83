"""Stable Diffusion 3 / 3.5 (medium, large): MMDiT, three text encoders and a
16-channel VAE, from the files users hold.

Sources: an all-in-one original-layout file (``model.diffusion_model.``,
``first_stage_model.``, ``text_encoders.{clip_l,clip_g,t5xxl}.transformer.``),
a transformer-only file with separate ``clip_l`` / ``clip_g`` / ``t5xxl`` and
VAE files, or a diffusers folder (``model_index.json``).

Conditioning (Esser et al. 2024, §5.1; diffusers' ``StableDiffusion3Pipeline.
encode_prompt``): CLIP-L's and CLIP-G's penultimate hidden states side by
side (768 + 1280), zero-padded to T5's width (4096) and followed along the
sequence by T5's last hidden state: 77 + 256 tokens. The pooled vector is
CLIP-L's ⊕ CLIP-G's projected pooled output (768 + 1280 = 2048). Without a
T5 file SD3 still runs: T5's part is zeros, as diffusers does.

Sampling: flow matching, x = (1 − t) x_0 + t ε, the network sees t·1000.
Use the ``flow`` schedule with shift 3.0 (every SD3/3.5 scheduler config).
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from core.checkpoints.boundary import CheckpointError, ChoiceError, checkpoint_boundary
from core.models.families import text_files
from core.models.families.folders import folder_tokenizer, is_diffusers_folder, load_folder_component
from core.models.families.vae16 import (
    LATENT_RGB,
    ShiftedVAEHandle,
    build_vae16,
    handle_for,
    load_vae16_file,
    vae_weights,
)
from core.models.families.weights import (
    assign_weights,
    empty_parameters,
    finish,
    loading_errors,
    offline,
    open_tensors,
    under_prefix,
)

log = logging.getLogger(__name__)

VARIANTS = ("sd3_medium", "sd35_medium", "sd35_large")
TRANSFORMER_PREFIX = "model.diffusion_model."
CLIP_TOKENS = 77
T5_TOKENS = 256
SCHEDULE_SHIFT = 3.0
Tokenize = Callable[[Sequence[str]], torch.Tensor]


class SD3TextEncoders:
    """CLIP-L, CLIP-G and optionally T5-XXL → SD3's (hidden, pooled)."""

    def __init__(self, clip_l, clip_g, t5, tokenizers: tuple[Tokenize, Tokenize, Tokenize],
                 joint_width: int = 4096, t5_tokens: int = T5_TOKENS) -> None:
        self.clip_l, self.clip_g, self.t5 = clip_l, clip_g, t5
        self.tokenize_l, self.tokenize_g, self.tokenize_t5 = tokenizers
        self.joint_width = joint_width if t5 is None else t5.config.d_model
        self.t5_tokens = t5_tokens

    @property
    def description(self) -> str:
        return "CLIP-L + CLIP-G + T5-XXL" if self.t5 is not None else \
            "CLIP-L + CLIP-G (no T5: its tokens are zeros, as diffusers runs SD3 without it)"

    def encode(self, texts: Sequence[str], device: Any = "cpu") -> torch.Tensor:
        return self.encode_pooled(texts, device)[0]

    @torch.no_grad()
    def encode_pooled(self, texts: Sequence[str], device: Any = "cpu"):
        """(hidden (B, 77 + 256, joint width), pooled (B, 2048)) in float32."""
        hidden_l, pooled_l = _clip_penultimate(self.clip_l, self.tokenize_l(texts))
        hidden_g, pooled_g = _clip_penultimate(self.clip_g, self.tokenize_g(texts))
        clip = torch.cat([hidden_l, hidden_g], dim=-1)  # (B, 77, 768 + 1280)
        t5 = self._t5_hidden(texts, clip.shape[0])  # (B, 256, 4096)
        clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))  # (B, 77, 4096)
        hidden = torch.cat([clip, t5], dim=-2)  # (B, 77 + 256, 4096)
        pooled = torch.cat([pooled_l, pooled_g], dim=-1)  # (B, 2048)
        return hidden.to(device), pooled.to(device)

    def _t5_hidden(self, texts: Sequence[str], batch: int) -> torch.Tensor:
        if self.t5 is None:
            return torch.zeros(batch, self.t5_tokens, self.joint_width)
        ids = self.tokenize_t5(texts).to(next(self.t5.parameters()).device)
        return self.t5(input_ids=ids).last_hidden_state.float()


def _clip_penultimate(model, ids: torch.Tensor):
    """(penultimate hidden states, projected pooled output), float32."""
    out = model(input_ids=ids.to(next(model.parameters()).device), output_hidden_states=True)
    return out.hidden_states[-2].float(), out.text_embeds.float()


def default_tokenizers(t5_tokens: int = T5_TOKENS) -> tuple[Tokenize, Tokenize, Tokenize]:
    """SD3's tokenizers: CLIP-L pads with <|endoftext|>, CLIP-G with '!' (id 0), T5 to 256."""
    from core.models.t5_tokenizer import T5Tokenizer
    from core.models.tokenizers import END, clip_token_ids

    return (lambda texts: clip_token_ids(list(texts), END),
            lambda texts: clip_token_ids(list(texts), "!"), T5Tokenizer(t5_tokens))


# --- the MMDiT ------------------------------------------------------------------------------

def transformer_weights(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The MMDiT's tensors in diffusers' names (original layout converted), or None."""
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    for prefix in (TRANSFORMER_PREFIX, ""):
        found = under_prefix(tensors, prefix)
        if "joint_blocks.0.x_block.attn.qkv.weight" in found:
            keep = ("joint_blocks.", "pos_embed", "x_embedder.", "t_embedder.", "y_embedder.",
                    "context_embedder.", "final_layer.")
            # the converter empties the dict it is given: hand it a copy
            return convert_sd3_transformer_checkpoint_to_diffusers(
                {k: v for k, v in found.items() if k.startswith(keep)})
        if "transformer_blocks.0.attn.to_q.weight" in found and "pos_embed.pos_embed" in found:
            return found
    return None


def sd3_config(weights: Mapping[str, torch.Tensor], variant: str,
               overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``SD3Transformer2DModel`` config from the shapes. The head width comes
    from the qk-norm weights when present (SD3.5), else from the published
    config (64); ``sample_size`` (unused with a positional-embedding table) too."""
    config = text_files.published_config(variant, "transformer")
    overrides = dict(overrides or {})
    proj = weights["pos_embed.proj.weight"]  # (width, in, p, p)
    width, in_channels, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    norm_q = weights.get("transformer_blocks.0.attn.norm_q.weight")
    head_dim = overrides.pop("attention_head_dim", norm_q.shape[0] if norm_q is not None
                             else config["attention_head_dim"])
    blocks = {int(m[1]) for k in weights if (m := re.match(r"transformer_blocks\.(\d+)\.", k))}
    dual = sorted({int(m[1]) for k in weights
                   if (m := re.match(r"transformer_blocks\.(\d+)\.attn2\.", k))})
    qk_norm = None if norm_q is None else (
        "layer_norm" if "transformer_blocks.0.attn.norm_q.bias" in weights else "rms_norm")
    config.update(
        patch_size=patch, in_channels=in_channels, num_layers=len(blocks),
        attention_head_dim=head_dim, num_attention_heads=width // head_dim,
        joint_attention_dim=weights["context_embedder.weight"].shape[1],
        caption_projection_dim=weights["context_embedder.weight"].shape[0],
        pooled_projection_dim=weights["time_text_embed.text_embedder.linear_1.weight"].shape[1],
        out_channels=weights["proj_out.weight"].shape[0] // (patch * patch),
        pos_embed_max_size=math.isqrt(weights["pos_embed.pos_embed"].shape[1]),
        dual_attention_layers=tuple(dual), qk_norm=qk_norm,
    )
    config.update(overrides)
    return config


def build_transformer(weights, path, variant: str, dtype: torch.dtype, device: Any = "cpu",
                      overrides: Mapping[str, Any] | None = None):
    from diffusers import SD3Transformer2DModel

    offline()
    with loading_errors(path, "SD3 transformer"):
        config = sd3_config(weights, variant, overrides)
        with empty_parameters():
            transformer = SD3Transformer2DModel(**config)
        assign_weights(transformer, weights, path, "SD3 transformer", dtype)
    return finish(transformer, path, "SD3 transformer", device)


# --- loaders --------------------------------------------------------------------------------

@checkpoint_boundary("SD3 checkpoint")
def load_sd3(path, variant: str = "sd3_medium", *, clip_l=None, clip_g=None, t5xxl=None, vae=None,
             device: Any = "cpu", dtype: torch.dtype = torch.float32,
             overrides: Mapping[str, Mapping[str, Any]] | None = None):
    """SD3/SD3.5 as MODEL, CLIP and VAE (a ``LoadedCheckpoint``).

    ``path`` is an all-in-one file, a transformer-only file or a diffusers
    folder. Parts the file lacks come from the separate files ``clip_l``,
    ``clip_g``, ``t5xxl`` (optional: zeros without it) and ``vae``.
    ``overrides`` maps a component (``transformer``, ``clip_l``, ``clip_g``,
    ``t5xxl``, ``vae``) to config values shapes cannot tell."""
    if variant not in VARIANTS:
        raise ChoiceError(f"the SD3 variant must be one of {VARIANTS}, not {variant!r}")
    overrides = overrides or {}
    if is_diffusers_folder(path):
        return _from_folder(Path(path), variant, device, dtype)
    tensors = open_tensors(path)
    with loading_errors(path, "SD3 transformer"):
        weights = transformer_weights(tensors)
    if weights is None:
        raise CheckpointError(f"{path}: no SD3 transformer in this file "
                              "(neither joint_blocks.… nor transformer_blocks.… keys)")
    transformer = build_transformer(weights, path, variant, dtype, device,
                                    overrides.get("transformer"))
    texts = _text_encoders(path, tensors, clip_l, clip_g, t5xxl, device, dtype, overrides,
                           transformer.config.joint_attention_dim)
    handle = _vae(path, tensors, vae, device, dtype, overrides.get("vae"))
    return assemble(transformer, texts, handle, variant)


def load_sd3_text_encoders(clip_l, clip_g, t5xxl=None, device: Any = "cpu",
                           dtype: torch.dtype = torch.float32,
                           overrides: Mapping[str, Mapping[str, Any]] | None = None
                           ) -> SD3TextEncoders:
    """SD3's CLIP value from separate ``clip_l``, ``clip_g`` and (optional) ``t5xxl`` files."""
    overrides = overrides or {}
    return _text_encoders(None, {}, clip_l, clip_g, t5xxl, device, dtype, overrides,
                          overrides.get("transformer", {}).get("joint_attention_dim", 4096))


def _text_encoders(path, tensors, clip_l, clip_g, t5xxl, device, dtype, overrides, joint_width):
    def encoder(role, separate, projection="file"):
        return text_files.encoder_from(tensors, path, separate, role, dtype, device, overrides, projection)

    clip_l_model = encoder("clip_l", clip_l, projection="identity")
    clip_g_model = encoder("clip_g", clip_g, projection="file")
    missing = [r for r, m in (("clip_l", clip_l_model), ("clip_g", clip_g_model)) if m is None]
    if missing:
        raise CheckpointError(f"{path or 'SD3'}: SD3 needs its {' and '.join(missing)} text "
                              f"encoder(s): choose the {' and '.join(missing)} file(s)")
    t5 = encoder("t5xxl", t5xxl)
    if t5 is None:
        log.info("SD3 without a T5-XXL file: its 256 text tokens are zeros")
    return SD3TextEncoders(clip_l_model, clip_g_model, t5, default_tokenizers(), joint_width)


def _vae(path, tensors, vae, device, dtype, overrides) -> ShiftedVAEHandle:
    inside = vae_weights(tensors)
    if inside is not None:
        return build_vae16(inside, path, "sd3", dtype, device, overrides)
    if vae is None:
        raise CheckpointError(f"{path}: this file holds no VAE: choose SD3's VAE file")
    return load_vae16_file(vae, "sd3", dtype, device, overrides)


def _from_folder(folder: Path, variant: str, device, dtype):
    """A diffusers SD3 folder, each component by its own config, tokenizers from the folder."""
    transformer = load_folder_component(folder, "transformer", device, dtype)
    clips = [load_folder_component(folder, name, device, dtype)
             for name in ("text_encoder", "text_encoder_2")]
    t5 = load_folder_component(folder, "text_encoder_3", device, dtype, required=False)
    handle = handle_for(load_folder_component(folder, "vae", device, dtype), folder / "vae")
    tokenizers = tuple(folder_tokenizer(folder, name, length) or fallback for name, length, fallback
                       in zip(("tokenizer", "tokenizer_2", "tokenizer_3"),
                              (CLIP_TOKENS, CLIP_TOKENS, T5_TOKENS), default_tokenizers()))
    texts = SD3TextEncoders(*clips, t5, tokenizers, transformer.config.joint_attention_dim)
    return assemble(transformer, texts, handle, variant)


def assemble(transformer, texts: SD3TextEncoders, vae: ShiftedVAEHandle, variant: str):
    """The three handles, the MMDiT wrapped as a flow denoiser (t·1000)."""
    from core.diffusion.denoisers import FlowDenoiser
    from core.latent_sizes import patch_transformer_sizes
    from core.models.builtin import LoadedCheckpoint
    from core.models.conditioned import ConditionedTransformer
    from core.values import DiffusionModel

    model = DiffusionModel(
        name=variant, denoiser=FlowDenoiser(ConditionedTransformer(transformer, texts), 1000.0),
        parameterization="flow", latent_channels=transformer.config.in_channels,
        downscale=vae.downscale, decoder=vae, batched_cfg=True, latent_rgb=LATENT_RGB["sd3"],
        latent_sizes=patch_transformer_sizes(transformer.config.patch_size,
                                             transformer.config.pos_embed_max_size),
        description=f"{variant}: MMDiT flow matching ({texts.description}); "
                    f"use the flow schedule with shift {SCHEDULE_SHIFT:g}",
    )
    return LoadedCheckpoint(model, texts, vae)

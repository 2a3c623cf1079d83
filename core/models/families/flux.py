"""Flux.1 dev / schnell: a rectified-flow transformer over 2×2 latent patches,
CLIP-L and T5-XXL text encoders and a 16-channel VAE.

Sources: a transformer file in the original (Black Forest Labs / ComfyUI)
layout, converted with widths read from the tensors
(``core.checkpoints.flux_convert``), or in diffusers' layout; separate
``clip_l``, ``t5xxl`` and VAE (``ae``) files, or the parts an all-in-one file
holds; or a diffusers folder.

What the network sees (diffusers' ``FluxPipeline``): latents (B, 16, h, w)
packed 2×2 into (B, h/2·w/2, 64) tokens with position ids (0, row, column);
T5's last hidden state as text tokens (ids all 0); CLIP-L's pooled output;
the time t ∈ [0, 1]. Flux-dev was distilled from classifier-free guidance:
the guidance strength is an *input* (``guidance``; 3.5 by default, set by the
"Flux guidance" node as ``extras["flux_guidance"]`` on the conditioning), and
true CFG stays off (sampler guidance 1). Schnell has no guidance input.

Schedule: Flux-dev's scheduler shifts time by a resolution-dependent μ
(``flux_shift``): use the ``flow`` schedule with ``shift = flux_shift(height,
width)`` (≈ 3.16 at 1024², 1.82 at 512²). Schnell uses shift 1.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from core.checkpoints.boundary import CheckpointError, ChoiceError, checkpoint_boundary
from core.models.conditioned import inference
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

VARIANTS = ("dev", "schnell")
T5_TOKENS = {"dev": 512, "schnell": 256}
CLIP_TOKENS = 77
GUIDANCE_KEY = "flux_guidance"
DEFAULT_GUIDANCE = 3.5
COMFY_PREFIX = "model.diffusion_model."
Tokenize = Callable[[Sequence[str]], torch.Tensor]


def flux_shift(height: int, width: int, downscale: int = 8, base_seq_len: int = 256,
               max_seq_len: int = 4096, base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """The time shift s of Flux-dev's scheduler for an image of height × width pixels.

    diffusers' ``calculate_shift``: μ grows linearly with the number of image
    tokens n = (h/2)(w/2) from 0.5 at 256 tokens to 1.15 at 4096, and the
    scheduler's ``time_shift`` t' = e^μ t / (1 + (e^μ − 1) t) is the SD3 shift
    of :func:`~core.diffusion.timesteps.shift_flow_time` with s = e^μ.
    Pass s as the ``flow`` schedule's ``shift``."""
    tokens = (height // (2 * downscale)) * (width // (2 * downscale))
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    mu = tokens * slope + base_shift - slope * base_seq_len
    return math.exp(mu)


class FluxTextEncoders:
    """CLIP-L (pooled) and T5-XXL (tokens) → Flux's (hidden, pooled)."""

    def __init__(self, clip_l, t5, tokenizers: tuple[Tokenize, Tokenize]) -> None:
        self.clip_l, self.t5 = clip_l, t5
        self.tokenize_clip, self.tokenize_t5 = tokenizers
        self.description = "CLIP-L + T5-XXL"

    def encode(self, texts: Sequence[str], device: Any = "cpu") -> torch.Tensor:
        return self.encode_pooled(texts, device)[0]

    @torch.no_grad()
    def encode_pooled(self, texts: Sequence[str], device: Any = "cpu"):
        """(T5 hidden (B, 512 or 256, 4096), CLIP-L pooled (B, 768)) in float32."""
        clip_ids = self.tokenize_clip(texts).to(next(self.clip_l.parameters()).device)
        pooled = self.clip_l(input_ids=clip_ids).pooler_output.float()  # (B, 768)
        t5_ids = self.tokenize_t5(texts).to(next(self.t5.parameters()).device)
        hidden = self.t5(input_ids=t5_ids).last_hidden_state.float()  # (B, L, 4096)
        return hidden.to(device), pooled.to(device)


def default_tokenizers(variant: str) -> tuple[Tokenize, Tokenize]:
    from core.models.t5_tokenizer import T5Tokenizer
    from core.models.tokenizers import END, clip_token_ids

    return (lambda texts: clip_token_ids(list(texts), END)), T5Tokenizer(T5_TOKENS[variant])


# --- latents as tokens ------------------------------------------------------------------------

def pack_latents(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) → (B, h/2 · w/2, 4C): each 2×2 patch one token
    (``FluxPipeline._pack_latents``)."""
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"Flux packs 2×2 latent patches: latent size {h}×{w} must be even "
                         "(image sides a multiple of 16 pixels)")
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)  # (B, h/2, w/2, C, 2, 2)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)  # (B, N, 4C)


def unpack_latents(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`pack_latents`."""
    b, _, channels = tokens.shape
    x = tokens.view(b, h // 2, w // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels // 4, h, w)  # (B, C, h, w)


def image_ids(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Position ids (0, row, column) of the h/2 × w/2 tokens: (N, 3)."""
    ids = torch.zeros(h // 2, w // 2, 3, device=device, dtype=dtype)
    ids[..., 1] = torch.arange(h // 2, device=device, dtype=dtype)[:, None]
    ids[..., 2] = torch.arange(w // 2, device=device, dtype=dtype)[None, :]
    return ids.reshape(-1, 3)  # (N, 3)


class ConditionedFlux:
    """``network(x_t, t, cond=…) → v̂`` around diffusers' ``FluxTransformer2DModel``.

    ``cond`` is a Conditioning or a ConditioningBatch (one call for all parts
    when their T5 tokens have one shape). Each part's distilled guidance is
    its ``extras["flux_guidance"]`` (default 3.5), ignored by schnell."""

    def __init__(self, transformer, texts, default_guidance: float = DEFAULT_GUIDANCE) -> None:
        from core.models.conditioned import PromptMemo

        self.transformer = transformer
        self.prompts = PromptMemo(texts)
        self.default_guidance = default_guidance

    @inference
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        from core.models.conditioned import concat_parts, for_each_part

        parts = for_each_part(cond, x_t)
        encoded = [self.prompts(part, x_t[rows]) for part, rows in parts]
        if any(pooled is None for _, pooled in encoded):
            raise ValueError("Flux needs CLIP-L's pooled embedding: encode the prompt with "
                             "Flux's own text encoders")
        guidance = [self._guidance(part, x_t[rows]) for part, rows in parts]
        hidden = concat_parts([h for h, _ in encoded])
        t = torch.as_tensor(t, device=x_t.device).expand(x_t.shape[0])  # (B,)
        if hidden is None:  # prompts of different lengths: one call per part
            return torch.cat([self._run(x_t[rows], t[rows], h, p, g)
                              for (_, rows), (h, p), g in zip(parts, encoded, guidance)])
        return self._run(x_t, t, hidden, torch.cat([p for _, p in encoded]), torch.cat(guidance))

    def _guidance(self, part, rows: torch.Tensor) -> torch.Tensor:
        value = float(part.extras.get(GUIDANCE_KEY, self.default_guidance))
        return torch.full((rows.shape[0],), value, device=rows.device, dtype=torch.float32)  # (b,)

    def _run(self, x_t, t, hidden, pooled, guidance):
        from core.models.conditioned import module_dtype

        dtype = module_dtype(self.transformer)
        h, w = x_t.shape[-2:]
        out = self.transformer(
            hidden_states=pack_latents(x_t).to(dtype), timestep=t.to(dtype),
            guidance=guidance if self.transformer.config.guidance_embeds else None,
            pooled_projections=pooled.to(dtype), encoder_hidden_states=hidden.to(dtype),
            txt_ids=torch.zeros(hidden.shape[1], 3, device=x_t.device, dtype=dtype),
            img_ids=image_ids(h, w, x_t.device, dtype), return_dict=False,
        )[0]
        return unpack_latents(out, h, w).to(x_t.dtype)  # (B, C, h, w)


# --- the transformer --------------------------------------------------------------------------

def transformer_weights(tensors: Mapping[str, torch.Tensor]):
    """(diffusers-named tensors, config) of the Flux transformer in a file, or None."""
    from core.checkpoints.flux_convert import convert_flux_transformer, flux_config_from_state_dict

    for prefix in (COMFY_PREFIX, ""):
        if prefix + "double_blocks.0.img_attn.qkv.weight" in tensors:
            found = {k: v for k, v in tensors.items() if k.startswith(COMFY_PREFIX)} if prefix else \
                {k: v for k, v in tensors.items() if not k.startswith(_OTHER_PARTS)}
            return convert_flux_transformer(found), flux_config_from_state_dict(found)
        found = under_prefix(tensors, prefix)
        if "x_embedder.weight" in found and "transformer_blocks.0.attn.norm_q.weight" in found:
            return found, diffusers_flux_config(found)
    return None


_OTHER_PARTS = ("text_encoders.", "vae.", "first_stage_model.", "encoder.", "decoder.")


def diffusers_flux_config(weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``FluxTransformer2DModel`` config from diffusers-named tensors' shapes."""
    from core.checkpoints.flux_convert import flux_rope_axes

    width, in_channels = weights["x_embedder.weight"].shape
    head_dim = weights["transformer_blocks.0.attn.norm_q.weight"].shape[0]
    out_channels = weights["proj_out.weight"].shape[0]

    def count(pattern):
        return len({m[1] for k in weights if (m := re.match(pattern, k))})

    return dict(
        patch_size=1, in_channels=in_channels,
        out_channels=None if out_channels == in_channels else out_channels,
        num_layers=count(r"transformer_blocks\.(\d+)\."),
        num_single_layers=count(r"single_transformer_blocks\.(\d+)\."),
        attention_head_dim=head_dim, num_attention_heads=width // head_dim,
        joint_attention_dim=weights["context_embedder.weight"].shape[1],
        pooled_projection_dim=weights["time_text_embed.text_embedder.linear_1.weight"].shape[1],
        guidance_embeds="time_text_embed.guidance_embedder.linear_1.weight" in weights,
        axes_dims_rope=flux_rope_axes(head_dim),
    )


def build_transformer(weights, config, path, dtype: torch.dtype, device: Any = "cpu",
                      overrides: Mapping[str, Any] | None = None):
    from diffusers import FluxTransformer2DModel

    offline()
    with loading_errors(path, "Flux transformer"):
        with empty_parameters():
            transformer = FluxTransformer2DModel(**{**config, **(overrides or {})})
        assign_weights(transformer, weights, path, "Flux transformer", dtype)
    return finish(transformer, path, "Flux transformer", device)


# --- loaders ----------------------------------------------------------------------------------

@checkpoint_boundary("Flux checkpoint")
def load_flux(path, variant: str | None = None, *, clip_l=None, t5xxl=None, vae=None,
              device: Any = "cpu", dtype: torch.dtype = torch.float32,
              overrides: Mapping[str, Mapping[str, Any]] | None = None):
    """Flux.1 as MODEL, CLIP and VAE (a ``LoadedCheckpoint``).

    ``variant`` (``dev`` / ``schnell``) defaults to what the file shows (a
    guidance embedding means dev). Parts the file lacks come from the separate
    ``clip_l``, ``t5xxl`` and ``vae`` files."""
    overrides = overrides or {}
    if is_diffusers_folder(path):
        return _from_folder(Path(path), variant, device, dtype)
    tensors = open_tensors(path)
    with loading_errors(path, "Flux transformer"):
        found = transformer_weights(tensors)
    if found is None:
        raise CheckpointError(f"{path}: no Flux transformer in this file "
                              "(neither double_blocks.… nor transformer_blocks.… keys)")
    weights, config = found
    variant = _variant(variant, config, path)
    transformer = build_transformer(weights, config, path, dtype, device,
                                    overrides.get("transformer"))
    texts = _text_encoders(path, tensors, clip_l, t5xxl, variant, device, dtype, overrides)
    return assemble(transformer, texts, _vae(path, tensors, vae, device, dtype, overrides.get("vae")),
                    variant)


def _variant(variant: str | None, config: Mapping[str, Any], path) -> str:
    shown = "dev" if config["guidance_embeds"] else "schnell"
    if variant is None:
        return shown
    if variant not in VARIANTS:
        raise ChoiceError(f"the Flux variant must be one of {VARIANTS}, not {variant!r}")
    if variant != shown:
        log.warning("%s: loaded as Flux-%s though its weights look like %s", path, variant, shown)
    return variant


def load_flux_text_encoders(clip_l, t5xxl, variant: str = "dev", device: Any = "cpu",
                            dtype: torch.dtype = torch.float32,
                            overrides: Mapping[str, Mapping[str, Any]] | None = None
                            ) -> FluxTextEncoders:
    """Flux's CLIP value from separate ``clip_l`` and ``t5xxl`` files."""
    return _text_encoders(None, {}, clip_l, t5xxl, variant, device, dtype, overrides or {})


def _text_encoders(path, tensors, clip_l, t5xxl, variant, device, dtype,
                   overrides) -> FluxTextEncoders:
    def encoder(role, separate, projection="file"):
        return text_files.encoder_from(tensors, path, separate, role, dtype, device, overrides, projection)

    clip = encoder("clip_l", clip_l, projection="none")
    t5 = encoder("t5xxl", t5xxl)
    missing = [r for r, m in (("clip_l", clip), ("t5xxl", t5)) if m is None]
    if missing:
        raise CheckpointError(f"{path or 'Flux'}: Flux needs its {' and '.join(missing)} text "
                              f"encoder(s): choose the {' and '.join(missing)} file(s)")
    return FluxTextEncoders(clip, t5, default_tokenizers(variant))


def _vae(path, tensors, vae, device, dtype, overrides) -> ShiftedVAEHandle:
    inside = vae_weights(tensors)
    if inside is not None:
        return build_vae16(inside, path, "flux", dtype, device, overrides)
    if vae is None:
        raise CheckpointError(f"{path}: this file holds no VAE: choose Flux's VAE file "
                              "(ae.safetensors)")
    return load_vae16_file(vae, "flux", dtype, device, overrides)


def _from_folder(folder: Path, variant: str | None, device, dtype):
    transformer = load_folder_component(folder, "transformer", device, dtype)
    variant = _variant(variant, transformer.config, folder)
    clip = load_folder_component(folder, "text_encoder", device, dtype)
    t5 = load_folder_component(folder, "text_encoder_2", device, dtype)
    handle = handle_for(load_folder_component(folder, "vae", device, dtype), folder / "vae")
    defaults = default_tokenizers(variant)
    tokenizers = (folder_tokenizer(folder, "tokenizer", CLIP_TOKENS) or defaults[0],
                  folder_tokenizer(folder, "tokenizer_2", T5_TOKENS[variant]) or defaults[1])
    return assemble(transformer, FluxTextEncoders(clip, t5, tokenizers), handle, variant)


def assemble(transformer, texts: FluxTextEncoders, vae: ShiftedVAEHandle, variant: str):
    """The three handles; the transformer wrapped as a flow denoiser (t as is)."""
    from core.diffusion.denoisers import FlowDenoiser
    from core.latent_sizes import LatentSizes
    from core.models.builtin import LoadedCheckpoint
    from core.values import DiffusionModel

    shift = "flux_shift(height, width)" if variant == "dev" else "1"
    guidance = "; the Flux guidance node sets the distilled guidance" if variant == "dev" else ""
    model = DiffusionModel(
        name=f"flux-{variant}", denoiser=FlowDenoiser(ConditionedFlux(transformer, texts), 1.0),
        parameterization="flow", latent_channels=transformer.config.in_channels // 4,
        downscale=vae.downscale, decoder=vae, batched_cfg=True, latent_rgb=LATENT_RGB["flux"],
        latent_sizes=LatentSizes(multiple=2),  # latents are packed into 2×2 patches
        description=f"Flux.1-{variant}: rectified flow transformer (CLIP-L + T5-XXL); flow "
                    f"schedule with shift {shift}; keep the sampler's guidance at 1"
                    + guidance,
    )
    return LoadedCheckpoint(model, texts, vae)

"""The 16-channel VAEs of SD3/SD3.5 and Flux.1, with their latent shift.

These autoencoders normalise latents with a scale *and* a shift:
z = (E(x) − shift) · scale, x = D(z / scale + shift) (diffusers'
``StableDiffusion3Pipeline`` and ``FluxPipeline``). Scale and shift are
not tellable from the weights, so the family says which (SD3: 1.5305 and
0.0609; Flux: 0.3611 and 0.1159, ``core/models/configs/*/vae.json``).

Files read: the original (LDM) names, bare (Flux's ``ae.safetensors``) or
under ``first_stage_model.`` / ``vae.`` (all-in-one checkpoints), and the
diffusers names (``encoder.down_blocks.…``, a diffusers ``vae`` folder).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from core.checkpoints.boundary import CheckpointError, ChoiceError, checkpoint_boundary
from core.models.families.text_files import published_config
from core.previews import LatentRGB
from core.models.families.weights import (
    assign_weights,
    empty_parameters,
    finish,
    loading_errors,
    offline,
    open_tensors,
    under_prefix,
)

FAMILY_CONFIGS = {"sd3": "sd3_medium", "flux": "flux_dev"}
LDM_PREFIXES = ("first_stage_model.", "vae.")

#: Published latent → RGB preview maps of the normalised latents (ComfyUI's
#: ``latent_formats.py``, ``SD3`` and ``Flux``, with their biases).
LATENT_RGB = {
    "sd3": LatentRGB((
        (-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458),
        (0.0856, 0.0339, 0.0902), (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309),
        (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358), (-0.0194, 0.0020, 0.0669),
        (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
        (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293),
        (-0.1448, -0.1463, -0.1189)), (0.2394, 0.2135, 0.1925)),
    "flux": LatentRGB((
        (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617), (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259), (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778)), (-0.0329, -0.0718, -0.0851)),
}


@dataclass(frozen=True)
class ShiftedVAEHandle:
    """A VAE with latent scale and shift: images [0, 1] ↔ normalised latents."""

    vae: Any
    scaling_factor: float
    shift_factor: float
    latent_channels: int
    downscale: int
    source: Path | None = None

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        weight = next(self.vae.parameters())
        dist = self.vae.encode((images[:, :3] * 2 - 1).to(weight.device, weight.dtype)).latent_dist
        return (dist.mean.float() - self.shift_factor) * self.scaling_factor  # (B, C, H/f, W/f)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        weight = next(self.vae.parameters())
        z = latents.float() / self.scaling_factor + self.shift_factor
        pixels = self.vae.decode(z.to(weight.device, weight.dtype)).sample
        return ((pixels.float().cpu() + 1) / 2).clamp(0, 1)  # (B, 3, H, W)


def vae_weights(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The VAE's tensors of a file (prefix removed, either naming), or None."""
    for prefix in (*LDM_PREFIXES, ""):
        found = under_prefix(tensors, prefix)
        if "encoder.conv_in.weight" in found and "decoder.conv_out.weight" in found:
            parts = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
            return {k: v for k, v in found.items() if k.startswith(parts)}
    return None


def is_diffusers_layout(weights: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("encoder.down_blocks.") for k in weights)


def vae_config(weights: Mapping[str, torch.Tensor], family: str,
               overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``AutoencoderKL`` config from the shapes (widths, depth, channels, quant
    convs); group count, scale and shift from the family's published config."""
    config = published_config(FAMILY_CONFIGS[family], "vae")
    diffusers = is_diffusers_layout(weights)
    if diffusers:
        pattern = r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\."
        first, mid_attention = ("encoder.down_blocks.{}.resnets.0.conv1.weight",
                                "encoder.mid_block.attentions.0.to_q.weight")
    else:
        pattern = r"encoder\.down\.(\d+)\.block\.(\d+)\."
        first, mid_attention = "encoder.down.{}.block.0.conv1.weight", "encoder.mid.attn_1.q.weight"
    found = [(int(m[1]), int(m[2])) for k in weights if (m := re.match(pattern, k))]
    levels = max(i for i, _ in found) + 1
    config.update(
        in_channels=weights["encoder.conv_in.weight"].shape[1],
        out_channels=weights["decoder.conv_out.weight"].shape[0],
        block_out_channels=[weights[first.format(i)].shape[0] for i in range(levels)],
        layers_per_block=max(j for i, j in found if i == 0) + 1,
        latent_channels=weights["encoder.conv_out.weight"].shape[0] // 2,
        down_block_types=["DownEncoderBlock2D"] * levels, up_block_types=["UpDecoderBlock2D"] * levels,
        use_quant_conv="quant_conv.weight" in weights,
        use_post_quant_conv="post_quant_conv.weight" in weights,
        mid_block_add_attention=mid_attention in weights,
    )
    config.update(overrides or {})
    return config


def build_vae16(weights: Mapping[str, torch.Tensor], path, family: str, dtype: torch.dtype,
                device: Any = "cpu", overrides: Mapping[str, Any] | None = None) -> ShiftedVAEHandle:
    """A :class:`ShiftedVAEHandle` around diffusers' ``AutoencoderKL`` holding ``weights``."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    offline()
    with loading_errors(path, "VAE"):
        config = vae_config(weights, family, overrides)
        scaling, shift = float(config.pop("scaling_factor")), float(config.pop("shift_factor"))
        if not is_diffusers_layout(weights):
            weights = convert_ldm_vae_checkpoint(dict(weights), config)
        with empty_parameters():
            vae = AutoencoderKL(**config,
                                scaling_factor=scaling, shift_factor=shift)
        assign_weights(vae, weights, path, "VAE", dtype)
    vae = finish(vae, path, "VAE", device)
    downscale = 2 ** (len(config["block_out_channels"]) - 1)
    return ShiftedVAEHandle(vae, scaling, shift, config["latent_channels"], downscale, Path(path))


def handle_for(vae, source: Path) -> ShiftedVAEHandle:
    """The handle of an ``AutoencoderKL`` loaded with its own config (a diffusers folder)."""
    return ShiftedVAEHandle(vae, float(vae.config.scaling_factor), float(vae.config.shift_factor or 0.0),
                            vae.config.latent_channels, 2 ** (len(vae.config.block_out_channels) - 1),
                            source)


@checkpoint_boundary("VAE file")
def load_vae16_file(path, family: str, dtype: torch.dtype = torch.float32, device: Any = "cpu",
                    overrides: Mapping[str, Any] | None = None) -> ShiftedVAEHandle:
    """A standalone 16-channel VAE file (or the VAE inside an all-in-one file)."""
    if family not in FAMILY_CONFIGS:
        raise ChoiceError(f"the VAE family must be one of {tuple(FAMILY_CONFIGS)}, not {family!r}")
    tensors = open_tensors(path)
    weights = vae_weights(tensors)
    if weights is None:
        raise CheckpointError(f"{path}: no VAE in this file (no encoder.conv_in / decoder.conv_out)")
    return build_vae16(weights, path, family, dtype, device, overrides)

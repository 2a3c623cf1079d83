"""Deep-compression autoencoders (DC-AE, Chen et al. 2024) as a VAE value.

Unlike a KL autoencoder, ``AutoencoderDC.encode`` returns the latent itself
(``.latent``), not a distribution: there is no sampling, and img2img encodes
the same picture to the same latent. The handle gives the graph the same
encode/decode pair as :class:`~core.models.builtin.VAEHandle`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.checkpoints import CheckpointError, load_checkpoint
from core.checkpoints.boundary import checkpoint_boundary
from core.checkpoints.safetensors_io import component
from core.models.families.weights import build_from_config
from core.previews import LatentRGB


@dataclass(frozen=True)
class DCAEHandle:
    """A DC-AE with its latent scale: images [0, 1] ↔ scaled latents."""

    vae: Any
    scaling_factor: float
    latent_channels: int
    downscale: int
    source: Path | None = None

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        weight = next(self.vae.parameters())
        latent = self.vae.encode((images[:, :3] * 2 - 1).to(weight.device, weight.dtype)).latent
        return latent.float() * self.scaling_factor  # (B, C, H/f, W/f)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        weight = next(self.vae.parameters())
        pixels = self.vae.decode(latents.to(weight.device, weight.dtype) / self.scaling_factor).sample
        return ((pixels.float().cpu() + 1) / 2).clamp(0, 1)  # (B, 3, H, W)


def dcae_downscale(config: dict) -> int:
    """Each encoder level after the first halves the sides."""
    return 2 ** (len(config["encoder_block_out_channels"]) - 1)


@checkpoint_boundary("VAE file")
def load_dcae(path: Path, device: Any = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[DCAEHandle, LatentRGB | None]:
    """A workbench DC-AE file (shapes-dcae) as a VAE value and its preview map."""
    from diffusers import AutoencoderDC

    tensors, metadata = load_checkpoint(path)
    try:
        config = dict(metadata["components"]["vae"]["config"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: no autoencoder in this model file") from None
    scaling = float(config.pop("scaling_factor", math.nan))
    if not math.isfinite(scaling) or scaling <= 0:
        raise CheckpointError(f"{path}: the autoencoder's scaling_factor is {scaling}; latents "
                              "are divided by it, so it must be a finite number above 0")
    network = build_from_config(lambda values: AutoencoderDC(**values), config,
                                component(tensors, "vae"), path, "DC-AE", device, dtype)
    network = network.eval().requires_grad_(False)
    mapping = metadata.get("latent_rgb")
    handle = DCAEHandle(network, scaling, int(config["latent_channels"]), dcae_downscale(config),
                        Path(path))
    return handle, (LatentRGB.from_json(mapping) if mapping else None)

"""Loading VAEs from workbench model files."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from core.checkpoints import CheckpointError, load_checkpoint
from core.checkpoints.boundary import checkpoint_boundary
from core.checkpoints.safetensors_io import component
from core.models.families.weights import build_from_config
from core.previews import PUBLISHED, LatentRGB


@checkpoint_boundary("VAE file")
def load_vae(path: Path, device="cpu", with_preview: bool = False,
             dtype: torch.dtype = torch.float32):
    """(AutoencoderKL in eval mode and ``dtype``, scaling_factor) from a
    shapes-vae file; with ``with_preview`` also its latent → RGB preview map
    (or None)."""
    from diffusers import AutoencoderKL

    tensors, metadata = load_checkpoint(path)
    try:
        config = dict(metadata["components"]["vae"]["config"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: no VAE in this model file") from None
    scaling = float(config.pop("scaling_factor"))
    if not math.isfinite(scaling) or scaling <= 0:
        raise CheckpointError(f"{path}: the VAE's scaling_factor is {scaling}; latents are "
                              "divided by it, so it must be a finite number above 0")
    vae = build_from_config(lambda values: AutoencoderKL(**values), config,
                            component(tensors, "vae"), path, "VAE", device, dtype)
    vae = vae.eval().requires_grad_(False)
    if not with_preview:
        return vae, scaling
    mapping = metadata.get("latent_rgb")
    return vae, scaling, (LatentRGB.from_json(mapping) if mapping else PUBLISHED.get(scaling))

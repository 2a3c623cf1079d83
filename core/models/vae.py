"""Loading VAEs from workbench model files."""
from __future__ import annotations

from pathlib import Path

import torch

from core.checkpoints import CheckpointError, load_checkpoint
from core.checkpoints.safetensors_io import component
from core.device import place
from core.previews import PUBLISHED, LatentRGB


def load_vae(path: Path, device="cpu", with_preview: bool = False,
             dtype: torch.dtype = torch.float32):
    """(AutoencoderKL in eval mode and ``dtype``, scaling_factor) from a
    shapes-vae file; with ``with_preview`` also its latent → RGB preview map
    (or None)."""
    from diffusers import AutoencoderKL

    tensors, metadata = load_checkpoint(path)
    try:
        config = dict(metadata["components"]["vae"]["config"])
    except (KeyError, TypeError):
        raise CheckpointError(f"{path}: no VAE in this model file") from None
    scaling = float(config.pop("scaling_factor"))
    vae = place(AutoencoderKL(**config), "cpu", dtype)
    missing, unexpected = vae.load_state_dict(
        {k: v.to(dtype) for k, v in component(tensors, "vae").items()}, strict=False
    )
    if missing or unexpected:
        raise CheckpointError(f"{path}: the VAE weights do not match its config "
                              f"({len(missing)} missing, {len(unexpected)} unexpected)")
    vae = place(vae, device, dtype).eval().requires_grad_(False)
    if not with_preview:
        return vae, scaling
    mapping = metadata.get("latent_rgb")
    return vae, scaling, (LatentRGB.from_json(mapping) if mapping else PUBLISHED.get(scaling))

"""Tiny configurations of diffusers' classes for the built-in shapes models.

Sizes were chosen to train in well under an hour on 2 CPU cores (FACTS.md:
a 1.7 M-parameter U-Net on 16×16×4 latents runs about 3.7 it/s at batch 64).
"""
from __future__ import annotations

from typing import Any

VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=4,
    block_out_channels=(16, 32, 64),  # three levels: 64×64 → 16×16
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    layers_per_block=1, norm_num_groups=8, sample_size=64,
)

# Attention (self and cross) only at 8×8 and 4×4: at 16×16 it doubled the step
# time for little gain on one-shape scenes (1.8 vs 3.5 it/s at batch 64).
LDM_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=16, in_channels=4, out_channels=4,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1, cross_attention_dim=64, attention_head_dim=4, norm_num_groups=16,
)


def make_vae(config: dict[str, Any] = VAE_CONFIG):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**config)


def make_unet(config: dict[str, Any] = LDM_UNET_CONFIG):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config)

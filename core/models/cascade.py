"""A cascade in the shapes world: a 16×16 base model, then 16 → 64 super-resolution.

Cascaded diffusion (Ho et al. 2022, "Cascaded Diffusion Models"; Imagen,
Saharia et al. 2022, §2.4) samples a small picture first and then runs
super-resolution diffusion models, each conditioned on the upsampled
output of the stage before. The SR model sees that picture concatenated to
its x_t (as Palette does, ``concat.py``). Its training inputs are
downsampled *real* pictures, but at sampling time it gets the base model's
imperfect ones; **noise conditioning augmentation** (Ho et al. 2022, §4.1;
Imagen §2.4) closes that gap: the upsampled input is corrupted by the
forward process at a random level s during training, the network is told s,
and at sampling time the user picks s: more augmentation hides more of the
base model's artifacts, at the price of detail taken from its picture.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.diffusion.forward import q_sample

LOW_PIXELS = 16
HIGH_PIXELS = 64
#: Training draws the augmentation level from the lower half of the schedule.
MAX_AUGMENTATION = 0.5


def downsample(images: torch.Tensor, pixels: int = LOW_PIXELS) -> torch.Tensor:
    """Box-filtered (area) downsampling, the low-resolution training targets:
    (B, C, H, W) → (B, C, pixels, pixels), any range."""
    return F.interpolate(images, size=(pixels, pixels), mode="area")


def augmentation_timesteps(levels: torch.Tensor | float, num_timesteps: int) -> torch.Tensor:
    """A level in [0, 1] (the fraction of the schedule) → its timestep index."""
    levels = torch.as_tensor(levels, dtype=torch.float64)
    return (levels * (num_timesteps - 1)).round().long()


def augment(source: torch.Tensor, timesteps: torch.Tensor, schedule,
            noise: torch.Tensor) -> torch.Tensor:
    """The condition corrupted by the forward process to level s:
    √ᾱ_s c + √(1 − ᾱ_s) ε (DDPM eq. 4 applied to the condition; CDM §4.1).
    s = 0 keeps the condition as it was."""
    augmented = q_sample(source, timesteps, schedule, noise)
    keep = (timesteps == 0).reshape(-1, *([1] * (source.ndim - 1))).to(source.device)
    return torch.where(keep, source, augmented)

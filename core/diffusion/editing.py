"""Starting from an existing image: image-to-image (SDEdit) and inpainting.

Image-to-image (Meng et al. 2022, SDEdit): noise the input to the level the
strength picks with q(x_t | x_0), then sample the remaining steps.

Inpainting (RePaint-style, Lugmayr et al. 2022): at every step the known
region of the model's input is replaced by the known image noised to the
current level, and its output there by the known image, so only the masked
region is generated and it must agree with what surrounds it.
"""
from __future__ import annotations

from typing import Any

import torch

from core.diffusion.denoisers import Denoised, as_denoised, expand_level


def noised_to_level(x0: torch.Tensor, noise: torch.Tensor, level, parameterization: str):
    """x_0 brought to a noise level: x_0 + σ ε (ve) or (1 − t) x_0 + t ε (flow).
    At σ = ∞ (ᾱ = 0) it is the noise itself, the VP sample x_T a sampler carries there."""
    level = expand_level(level, x0).reshape(-1, *([1] * (x0.ndim - 1)))
    if parameterization == "flow":
        return (1 - level) * x0 + level * noise
    return torch.where(torch.isinf(level), noise, x0 + level * noise)


class InpaintDenoiser:
    """Keeps the known region: ``mask`` is 1 where to generate, 0 where to keep.
    The wrapped model's variance is handed on unchanged: the known region of x
    is replaced at every step, so it matters only where the mask generates."""

    def __init__(self, model, known: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor):
        self.model = model
        self.parameterization = model.parameterization
        self.known, self.mask, self.noise = known, mask, noise

    def __call__(self, x: torch.Tensor, level, **extra: Any) -> Denoised:
        known_now = noised_to_level(self.known, self.noise, level, self.parameterization)
        x = self.mask * x + (1 - self.mask) * known_now
        result = as_denoised(self.model(x, level, **extra))
        return Denoised(self.mask * result.x0 + (1 - self.mask) * self.known, result.variance)

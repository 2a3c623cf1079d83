"""Denoisers with a closed form: no training, exact answers.

The *ideal denoiser* of a finite set of images {y_i} is the minimiser of the
denoising loss, E[x_0 | x] (Karras et al. 2022, Appendix B.3): a softmax-
weighted mean of the set, weights ∝ N(x; y_i, σ² I). It is what a network
would learn with infinite capacity and no generalisation: it can only
reproduce the set. The Gaussian denoiser is the same for data ~ N(μ, s² I).
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import torch

from core.diffusion.denoisers import expand_level

_STOP_WORDS = {"a", "an", "the", "at", "on", "of", "in"}


def prompt_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP_WORDS}


class IdealDenoiser:
    """E[x_0 | x] over ``images`` (N, C, H, W), optionally conditioned by caption.

    With ``captions``, ``cond`` (a text, or an object with a ``text``) keeps
    only the images whose caption contains every word of the prompt; an
    empty prompt keeps all of them.
    """

    def __init__(self, images: torch.Tensor, captions: Sequence[str] | None = None,
                 parameterization: str = "ve") -> None:
        if images.ndim != 4 or len(images) == 0:
            raise ValueError("the ideal denoiser needs a non-empty (N, C, H, W) set of images")
        if captions is not None and len(captions) != len(images):
            raise ValueError("one caption per image")
        self.images = images.to(torch.float32)
        self.flat = self.images.flatten(1)  # (N, D)
        self.captions = list(captions) if captions is not None else None
        self.parameterization = parameterization

    def candidates(self, cond: Any) -> torch.Tensor:
        """Indices of the images the condition allows."""
        text = getattr(cond, "text", cond) or ""
        words = prompt_words(text)
        if not words or self.captions is None:
            return torch.arange(len(self.images))
        keep = [i for i, c in enumerate(self.captions) if words <= prompt_words(c)]
        if not keep:
            raise ValueError(f"no image in the ideal denoiser's set matches the prompt {text!r}")
        return torch.tensor(keep)

    def __call__(self, x: torch.Tensor, level, cond: Any = None, **_: Any) -> torch.Tensor:
        if x.shape[1:] != self.images.shape[1:]:  # it compares x with its images, pixel by pixel
            raise ValueError(f"the ideal denoiser's images are {_shape(self.images.shape[1:])} but "
                             f"x is {_shape(x.shape[1:])}: sample latents of its images' size")
        level = expand_level(level, x).to(torch.float32)  # (B,)
        flat = self.flat[self.candidates(cond)].to(x.device)  # (M, D)
        query = x.flatten(1).to(torch.float32)  # (B, D)
        if self.parameterization == "flow":  # x = (1 − t) y + t ε
            scale, spread = (1 - level)[:, None], level[:, None]
        else:  # x = y + σ ε
            scale, spread = torch.ones_like(level)[:, None], level[:, None]
        # ‖x − s·y_i‖² = ‖x‖² − 2 s x·y_i + s² ‖y_i‖², for all i at once
        dist = (query**2).sum(1, keepdim=True) - 2 * scale * query @ flat.T + scale**2 * (flat**2).sum(1)
        weights = torch.softmax(-dist / (2 * spread.clamp(min=1e-12) ** 2), dim=1)  # (B, M)
        return (weights @ flat).reshape(x.shape).to(x.dtype)


def _shape(shape) -> str:
    return "×".join(str(side) for side in shape)  # C×H×W


class GaussianDenoiser:
    """E[x_0 | x] for data x_0 ~ N(μ, s² I): μ + s²/(s² + σ²) · (x − μ) in VE form."""

    parameterization = "ve"

    def __init__(self, mean: torch.Tensor | float, std: float) -> None:
        self.mean = mean
        self.std = std

    def __call__(self, x: torch.Tensor, level, **_: Any) -> torch.Tensor:
        sigma = expand_level(level, x).reshape(-1, *([1] * (x.ndim - 1)))
        shrink = self.std**2 / (self.std**2 + sigma**2)
        return self.mean + shrink * (x - self.mean)

    def ode_solution(self, x_start: torch.Tensor, sigma_start: float, sigma_end: float) -> torch.Tensor:
        """The exact probability-flow ODE solution from σ_start to σ_end:
        x(σ) − μ = (x_start − μ) · √(s² + σ²) / √(s² + σ_start²)."""
        ratio = ((self.std**2 + sigma_end**2) / (self.std**2 + sigma_start**2)) ** 0.5
        return self.mean + (x_start - self.mean) * ratio

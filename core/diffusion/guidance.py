"""Guidance: steering a denoiser toward a condition.

Classifier-free guidance (Ho & Salimans 2022, eq. 6):

    ε̃ = ε_uncond + g · (ε_cond − ε_uncond)

with the *scale* g used by diffusers, ComfyUI and A1111. The paper writes
ε̃ = (1 + w) ε_cond − w ε_uncond, so g = 1 + w: g = 1 is the plain
conditional model (w = 0), g = 0 the unconditional one. Because x̂_0 is
affine in ε̂ at a fixed x and level, the same mix applies to x̂_0.

Classifier guidance (Dhariwal & Nichol 2021, Algorithm 2 / eq. 14):

    ε̂ = ε − s · √(1 − ᾱ_t) · ∇_{x_t} log p(y | x_t)

CLIP guidance (Nichol et al. 2021, GLIDE §2.4) is the same shift with the
image–text similarity f(x_t) · g(c) of a noise-aware CLIP in place of
log p(y | x_t) (``core.models.noisy_clip.ClipTarget``).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from core.diffusion.denoisers import (
    Denoised,
    as_denoised,
    expand_level,
    predicted_noise,
    to_model_scale,
    x0_from_noise,
)


class CFGDenoiser:
    """Classifier-free guidance around a denoiser that takes ``cond=``.

    ``negative`` is the unconditional (empty) or negative prompt's conditioning.
    ``rescale`` φ ∈ [0, 1] is Lin et al. 2024's guidance rescale (§3.4, eq. 15–16),
    applied to ε̂ as diffusers does: it pulls the guided prediction's standard
    deviation back to the conditional one's, against over-exposure at high g.
    With ``batched`` the model takes a :class:`~core.values.ConditioningBatch`:
    both predictions come from one call on ``cat([x, x])`` (half the calls;
    what diffusers' pipelines do), otherwise from two calls.
    A learned variance is the conditional branch's, as in GLIDE and
    improved-diffusion, which guide ε (here x̂_0) and keep each branch's variance.
    """

    def __init__(self, model, positive: Any, negative: Any, scale: float, rescale: float = 0.0,
                 batched: bool = False):
        self.model = model
        self.parameterization = model.parameterization
        self.positive, self.negative = positive, negative
        self.scale, self.rescale = scale, rescale
        self.batched = batched

    def __call__(self, x: torch.Tensor, level, **extra: Any) -> Denoised:
        if self.scale == 1.0:
            return as_denoised(self.model(x, level, cond=self.positive, **extra))
        if self.batched:
            uncond, cond = self._both_at_once(x, level, extra)
        else:
            cond = as_denoised(self.model(x, level, cond=self.positive, **extra))
            uncond = as_denoised(self.model(x, level, cond=self.negative, **extra))
        guided = uncond.x0 + self.scale * (cond.x0 - uncond.x0)  # Ho & Salimans eq. 6
        if self.rescale > 0:
            guided = self._rescaled(x, level, cond.x0, guided)
        return Denoised(guided, cond.variance)

    def _both_at_once(self, x, level, extra) -> tuple[Denoised, Denoised]:
        """The unconditional and the conditional result from one call."""
        from core.values import ConditioningBatch

        level = torch.as_tensor(level)
        doubled = level if level.ndim == 0 else torch.cat([level, level])
        both = as_denoised(self.model(torch.cat([x, x]), doubled,  # (2B, C, H, W)
                                      cond=ConditioningBatch((self.negative, self.positive)),
                                      **extra))
        uncond_x0, cond_x0 = both.x0.chunk(2)
        uncond_v, cond_v = (None, None) if both.variance is None else both.variance.chunk(2)
        return Denoised(uncond_x0, uncond_v), Denoised(cond_x0, cond_v)

    def _rescaled(self, x, level, cond_x0, guided_x0):
        p = self.parameterization
        eps_cond = predicted_noise(p, x, cond_x0, level)
        eps_cfg = predicted_noise(p, x, guided_x0, level)
        dims = list(range(1, x.ndim))
        ratio = eps_cond.std(dim=dims, keepdim=True) / eps_cfg.std(dim=dims, keepdim=True)
        eps = self.rescale * (eps_cfg * ratio) + (1 - self.rescale) * eps_cfg  # Lin et al. eq. 16
        rescaled = x0_from_noise(p, x, eps, level)
        # At pure noise (σ = ∞, or flow t = 1) every ε̂ is x itself: the ratio is 1
        # and rescaling changes nothing, but x̂_0 from ε̂ would be 0/0 there.
        level = expand_level(level, x).reshape(-1, *([1] * (x.ndim - 1)))  # (B, 1, 1, 1)
        pure_noise = level >= 1 if p == "flow" else torch.isinf(level)
        return torch.where(pure_noise, guided_x0, rescaled)


class ClassifierGuidedDenoiser:
    """Classifier guidance around a VE denoiser.

    ``log_prob(x_t, level) -> (B,)`` is log p(y | x_t) for the wanted class,
    differentiable in x_t, the *VP-scaled* sample the classifier was trained
    on. In x̂_0 terms the shift of ε̂ above is x̂_0 + s (1 − ᾱ)/√ᾱ ∇ log p.
    The wrapped model's variance is handed on unchanged. Any differentiable
    score of x_t serves: CLIP guidance passes a CLIP similarity.
    """

    parameterization = "ve"

    def __init__(self, model, log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 scale: float) -> None:
        if model.parameterization != "ve":
            raise ValueError("classifier guidance is defined here for diffusion (VE) denoisers")
        self.model = model
        self.log_prob = log_prob
        self.scale = scale

    def __call__(self, x: torch.Tensor, level, **extra: Any) -> Denoised:
        """The guided x̂_0 and the wrapped model's variance (or None)."""
        result = as_denoised(self.model(x, level, **extra))
        return Denoised(self._guided(x, level, result.x0), result.variance)

    def _guided(self, x: torch.Tensor, level, x0: torch.Tensor) -> torch.Tensor:
        if self.scale == 0:
            return x0
        sigma = expand_level(level, x).reshape(-1, *([1] * (x.ndim - 1)))
        # At σ = ∞ (ᾱ = 0) x_T says nothing about y: ∇ log p(y | x_T) = 0, no shift.
        finite = torch.isfinite(sigma)
        if not bool(finite.any()):
            return x0
        with torch.enable_grad():
            x_t = to_model_scale("ve", x, level).detach().requires_grad_(True)
            grad = torch.autograd.grad(self.log_prob(x_t, expand_level(level, x)).sum(), x_t)[0]
        alpha_bar = 1 / (1 + sigma**2)
        shifted = x0 + self.scale * (1 - alpha_bar) / alpha_bar.sqrt() * grad  # Dhariwal & Nichol eq. 14
        return torch.where(finite, shifted, x0)

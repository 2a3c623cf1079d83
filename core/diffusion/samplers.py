"""Samplers: small pure functions with one signature (k-diffusion's habit).

    sampler(model, x, levels, extra_args=None, callback=None, generator=None, **options) -> x_0

- ``model`` is a denoiser (``denoisers.py``): ``model(x, level, **extra_args)`` →
  :class:`~core.diffusion.denoisers.Denoised` (x̂_0 and any learned variance), or x̂_0 alone.
- ``x`` is the starting sample at ``levels[0]`` (noise scaled to that level; at
  σ = ∞, where only DDIM and DDPM may start, the VP sample x_T = noise).
- ``levels`` is descending and ends in 0: VE noise levels σ, or flow times t.
- ``callback(StepInfo)`` is called once per step, after the model call; it may
  return :data:`STOP` to end the loop at once (the current x is returned), or
  raise (the executor's cancellation) to abort.
- ``generator`` is the only source of randomness (stochastic samplers).

Derivative notation (Karras et al. 2022, eq. 3 with s(t) = 1): along the
probability-flow ODE, dx/dσ = (x − D(x; σ)) / σ. In the flow parameterization
the same expression is the velocity, dx/dt = (x − x̂_0) / t, so ``euler`` and
``heun`` integrate both. DDPM/DDIM/DPM-Solver are written in σ with
ᾱ = 1 / (1 + σ²), which makes any pair of levels a valid (strided) step.

Zero terminal SNR (Lin et al. 2023): ``ddim`` and ``ddpm`` step between ᾱ
values, so they may start at σ = ∞, ᾱ_T = 0 exactly, as Lin et al. and
diffusers sample (a v-model's first x̂_0 is then −v̂). ``euler``,
``euler_ancestral``, ``heun`` and ``dpmpp_2m`` step along σ (or log σ) and need a
finite start; on such a schedule they start at its finite σ_max (≈ 4519 for
scaled_linear, ᾱ ≈ 4.9e-8: ``schedules.ZERO_SNR_SAMPLING_ALPHA_BAR``).

Each sampler's options (keyword, default, range) and the parameterizations
it works with are declared in ``registry.py``; :data:`SAMPLERS` is that registry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from core.diffusion.denoisers import Denoised, as_denoised, predicted_noise
from core.diffusion.noise import randn_like
from core.diffusion.registry import SAMPLERS, VARIANCE, SamplerInfo  # noqa: F401  (re-exported)


class _Stop:
    def __repr__(self) -> str:
        return "STOP"


#: Return this from a callback to end sampling at once.
STOP: Any = _Stop()


@dataclass(frozen=True)
class StepInfo:
    """What a callback sees: the state at ``level`` and the model's view of it."""

    index: int
    total: int
    level: float  # σ (ve) or t (flow) at which the model was called
    x: torch.Tensor  # x at that level, in the sampler's parameterization
    x0: torch.Tensor  # predicted clean sample
    eps: torch.Tensor  # predicted noise


Callback = Callable[[StepInfo], Any]


def _model_step(model, x, level, extra_args, callback, index, total) -> Denoised | None:
    """Call the model, report the step; return its result, or None when asked to stop."""
    result = as_denoised(model(x, _level(level, x), **(extra_args or {})))
    if callback is not None and _report(model, callback, index, total, level, x, result.x0) is STOP:
        return None
    return result


def _x0_step(model, x, level, extra_args, callback, index, total) -> torch.Tensor | None:
    """:func:`_model_step` for samplers that use x̂_0 alone."""
    result = _model_step(model, x, level, extra_args, callback, index, total)
    return None if result is None else result.x0


def _finite_start(levels, sampler: str) -> None:
    """The σ-based Euler family steps along σ, which needs a finite start."""
    if len(levels) and math.isinf(float(levels[0])):
        raise ValueError(f"{sampler} needs a finite first noise level; only ddim and ddpm start "
                         "at σ = ∞ (ᾱ_T = 0 of a zero-terminal-SNR schedule)")


def _level(level: float, x: torch.Tensor) -> torch.Tensor:
    """The level as a (B,) float64 CPU tensor: exact, so a denoiser that maps
    σ to a timestep gets whole timesteps for table levels; each denoiser
    casts it to x's dtype and device for its own arithmetic."""
    return torch.full((x.shape[0],), float(level), dtype=torch.float64)


def _alpha_bar(sigma: float) -> float:
    """ᾱ of a VE noise level: σ² = (1 − ᾱ)/ᾱ (0 at σ = ∞)."""
    return 1.0 / (1.0 + sigma * sigma)


def _vp(x: torch.Tensor, sigma: float, alpha_bar: float) -> torch.Tensor:
    """x_t = √ᾱ x in the VP scale of the papers; at σ = ∞ x already is x_T."""
    return x if math.isinf(sigma) else x * math.sqrt(alpha_bar)


def _noise_of(x: torch.Tensor, x0: torch.Tensor, sigma: float) -> torch.Tensor:
    """ε̂ from x = x̂_0 + σ ε̂; at σ = ∞ x is x_T, pure noise."""
    return x if math.isinf(sigma) else (x - x0) / sigma


# -- stochastic ancestral samplers ----------------------------------------------------
@torch.no_grad()
def ddpm(model, x, levels, extra_args=None, callback=None, generator=None, variance="auto"):
    """Ancestral sampling, Ho et al. 2020 Algorithm 2, with any stride between levels.

    Each step samples the posterior q(x_s | x_t, x̂_0) (DDPM eq. 7) with variance
    ``fixed_small`` β̃ (the posterior's own), ``fixed_large`` β, or ``learned``:
    Σ = exp(v log β + (1 − v) log β̃) from the model (Nichol & Dhariwal 2021, eq. 15);
    ``auto`` is ``learned`` where the model's result carries a variance, else
    ``fixed_small``. It may start at σ = ∞ (ᾱ_T = 0): x is then x_T.
    """
    if variance not in VARIANCE.choices:
        raise ValueError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCE.choices)}")
    total = len(levels) - 1
    for i in range(total):
        sigma, sigma_next = float(levels[i]), float(levels[i + 1])
        result = _model_step(model, x, sigma, extra_args, callback, i, total)
        if result is None:
            return x
        ab_t, ab_s = _alpha_bar(sigma), _alpha_bar(sigma_next)
        beta = 1 - ab_t / ab_s  # β of the strided step t → s
        x_t = _vp(x, sigma, ab_t)  # to the VP scale of the paper
        mean = (math.sqrt(ab_s) * beta / (1 - ab_t)) * result.x0 + (
            math.sqrt(ab_t / ab_s) * (1 - ab_s) / (1 - ab_t)
        ) * x_t  # μ̃, DDPM eq. 7
        if sigma_next > 0:
            small = max((1 - ab_s) / (1 - ab_t) * beta, 1e-20)  # β̃, DDPM eq. 7
            std = _ddpm_std(variance, result, beta, small)
            mean = mean + std * randn_like(x, generator)  # x_s = μ̃ + σ z, Algorithm 2 line 4
        x = mean / math.sqrt(ab_s)  # back to the VE scale
    return x


def _ddpm_std(variance: str, result: Denoised, beta: float, small: float):
    """The reverse step's standard deviation; ``small`` is β̃ (DDPM eq. 7)."""
    if variance == "auto":
        variance = "fixed_small" if result.variance is None else "learned"
    if variance == "fixed_small":
        return math.sqrt(small)
    if variance == "fixed_large":
        return math.sqrt(beta)
    if result.variance is None:
        raise ValueError("the 'learned' variance needs a model trained with a learned variance "
                         "(this one returns none): choose another variance on the Sampler node")
    frac = (result.variance + 1) / 2  # v ∈ [−1, 1] → [0, 1]
    return torch.exp(0.5 * (frac * math.log(beta) + (1 - frac) * math.log(small)))  # N&D eq. 15


def _report(model, callback, index, total, level, x, x0):
    eps = predicted_noise(model.parameterization, x, x0, level)
    return callback(StepInfo(index, total, float(level), x, x0, eps))


@torch.no_grad()
def ddim(model, x, levels, extra_args=None, callback=None, generator=None, eta=0.0):
    """DDIM, Song et al. 2020, eq. 12: x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − c²) ε̂ + c z,
    with c = η √β̃ (eq. 16). η = 0 is deterministic (the probability-flow
    ODE's Euler step in σ); η = 1 has exactly DDPM's fixed-small variance.
    It may start at σ = ∞ (ᾱ_T = 0): x is then x_T and ε̂ = x_T."""
    total = len(levels) - 1
    for i in range(total):
        sigma, sigma_next = float(levels[i]), float(levels[i + 1])
        x0 = _x0_step(model, x, sigma, extra_args, callback, i, total)
        if x0 is None:
            return x
        if sigma_next == 0:
            x = x0
            continue
        eps = _noise_of(x, x0, sigma)  # x = x̂_0 + σ ε̂
        ab_t, ab_s = _alpha_bar(sigma), _alpha_bar(sigma_next)
        c = eta * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))  # eq. 16
        direction = math.sqrt(max(1 - ab_s - c * c, 0.0)) * eps  # "direction pointing to x_t"
        x_s = math.sqrt(ab_s) * x0 + direction  # eq. 12 in the VP scale
        if eta > 0:
            x_s = x_s + c * randn_like(x, generator)
        x = x_s / math.sqrt(ab_s)
    return x


@torch.no_grad()
def euler_ancestral(model, x, levels, extra_args=None, callback=None, generator=None, eta=1.0):
    """Euler step down to σ_down, then fresh noise up to σ_next (k-diffusion's
    ``sample_euler_ancestral``): σ_up = η √(σ_next² (σ² − σ_next²) / σ²),
    σ_down = √(σ_next² − σ_up²). η = 1 adds DDPM's posterior noise; η = 0 is
    plain :func:`euler` (σ_up = 0, σ_down = σ_next)."""
    _finite_start(levels, "euler_ancestral")
    total = len(levels) - 1
    for i in range(total):
        sigma, sigma_next = float(levels[i]), float(levels[i + 1])
        x0 = _x0_step(model, x, sigma, extra_args, callback, i, total)
        if x0 is None:
            return x
        sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
        sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
        x = x + (x - x0) / sigma * (sigma_down - sigma)  # Euler step, Karras eq. 3
        if sigma_next > 0:
            x = x + randn_like(x, generator) * sigma_up
    return x


# -- deterministic ODE solvers ----------------------------------------------------------
@torch.no_grad()
def euler(model, x, levels, extra_args=None, callback=None, generator=None):
    """Euler's method on the probability-flow ODE dx/dσ = (x − D(x; σ))/σ
    (Karras et al. 2022, Algorithm 1 without churn): first order."""
    _finite_start(levels, "euler")
    total = len(levels) - 1
    for i in range(total):
        sigma, sigma_next = float(levels[i]), float(levels[i + 1])
        x0 = _x0_step(model, x, sigma, extra_args, callback, i, total)
        if x0 is None:
            return x
        x = x + (x - x0) / sigma * (sigma_next - sigma)
    return x


@torch.no_grad()
def heun(model, x, levels, extra_args=None, callback=None, generator=None):
    """Heun's method (Karras et al. 2022, Algorithm 1): an Euler step, then the
    average of the slopes at both ends; second order. The last step, to σ = 0,
    is a plain Euler step (the slope there is undefined)."""
    _finite_start(levels, "heun")
    total = len(levels) - 1
    for i in range(total):
        sigma, sigma_next = float(levels[i]), float(levels[i + 1])
        x0 = _x0_step(model, x, sigma, extra_args, callback, i, total)
        if x0 is None:
            return x
        d = (x - x0) / sigma  # Algorithm 1, line 7
        x_next = x + d * (sigma_next - sigma)  # line 8
        if sigma_next > 0:
            x0_next = as_denoised(model(x_next, _level(sigma_next, x), **(extra_args or {}))).x0
            d_next = (x_next - x0_next) / sigma_next  # line 10
            x_next = x + (d + d_next) / 2 * (sigma_next - sigma)  # line 11
        x = x_next
    return x


@torch.no_grad()
def dpmpp_2m(model, x, levels, extra_args=None, callback=None, generator=None):
    """DPM-Solver++(2M), Lu et al. 2022, Algorithm 2, in λ = −log σ: second
    order from the previous step's x̂_0; first order on the first step and on
    the last (to σ = 0, where h is infinite)."""
    _finite_start(levels, "dpmpp_2m")
    total = len(levels) - 1
    previous_x0 = None
    h_last = None
    for i in range(total):
        sigma, sigma_next = float(levels[i]), float(levels[i + 1])
        x0 = _x0_step(model, x, sigma, extra_args, callback, i, total)
        if x0 is None:
            return x
        lam, lam_next = -math.log(sigma), (-math.log(sigma_next) if sigma_next > 0 else math.inf)
        h = lam_next - lam
        if previous_x0 is None or sigma_next == 0:
            d = x0
        else:
            r = h_last / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous_x0  # Algorithm 2, line 6
        x = (sigma_next / sigma) * x - math.expm1(-h) * d  # line 7 (σ_s/σ_t) x − (e^{−h} − 1) D
        previous_x0, h_last = x0, h
    return x


@torch.no_grad()
def flow_euler(model, x, levels, extra_args=None, callback=None, generator=None):
    """Euler's method on the flow-matching ODE dx/dt = v(x, t) from t = 1 to 0
    (Lipman et al. 2023, Esser et al. 2024): x_{t'} = x_t + (t' − t) v̂, with
    v̂ = (x_t − x̂_0)/t. The arithmetic is :func:`euler`'s, read in time."""
    return euler(model, x, levels, extra_args, callback, generator)

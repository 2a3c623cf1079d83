"""The forward (noising) process and its posterior (Ho et al. 2020, §2).

    q(x_t | x_{t−1}) = N(√α_t · x_{t−1}, β_t I)                       DDPM eq. 2
    q(x_t | x_0)     = N(√ᾱ_t · x_0, (1 − ᾱ_t) I)                    DDPM eq. 4, the "nice property"
    q(x_{t−1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t I)                  DDPM eq. 6–7

``t`` is a timestep index (0 … T−1), an int or a (B,) tensor. Noise is
always passed in: these functions draw nothing themselves.
"""
from __future__ import annotations

import torch

from core.diffusion.schedules import Schedule


def _at(table: torch.Tensor, t, like: torch.Tensor) -> torch.Tensor:
    """table[t] shaped to broadcast over ``like`` (B, …), in its dtype and device."""
    index = torch.as_tensor(t, dtype=torch.long)
    values = table[index.to(table.device)]  # the tables live on the CPU, t may not
    values = values.reshape(-1, *([1] * (like.ndim - 1))) if values.ndim else values
    return values.to(device=like.device, dtype=like.dtype)


def q_step(x_prev: torch.Tensor, t, schedule: Schedule, noise: torch.Tensor) -> torch.Tensor:
    """One step of the forward process: x_t = √α_t x_{t−1} + √β_t ε (DDPM eq. 2)."""
    return _at(schedule.alphas.sqrt(), t, x_prev) * x_prev + _at(schedule.betas.sqrt(), t, x_prev) * noise


def q_sample(x0: torch.Tensor, t, schedule: Schedule, noise: torch.Tensor) -> torch.Tensor:
    """Jump straight to step t: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (DDPM eq. 4)."""
    alpha_bar = schedule.alphas_cumprod
    return _at(alpha_bar.sqrt(), t, x0) * x0 + _at((1 - alpha_bar).sqrt(), t, x0) * noise


def q_posterior(x0: torch.Tensor, x_t: torch.Tensor, t, schedule: Schedule):
    """Mean, variance and clipped log-variance of q(x_{t−1} | x_t, x_0) (DDPM eq. 6–7)."""
    mean = _at(schedule.posterior_mean_coef1, t, x_t) * x0 + _at(schedule.posterior_mean_coef2, t, x_t) * x_t
    variance = _at(schedule.posterior_variance, t, x_t)
    log_variance = _at(schedule.posterior_log_variance_clipped, t, x_t)
    return mean, variance, log_variance

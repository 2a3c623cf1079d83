"""Training objectives beyond the simple loss: the variational bound terms
that teach a network the reverse-process variance (Nichol & Dhariwal 2021).

The model outputs ε̂ and v ∈ [−1, 1]; the reverse step's variance is

    Σ_θ(x_t, t) = exp(u log β_t + (1 − u) log β̃_t),  u = (v + 1)/2     (N&D eq. 15)

and the hybrid objective is L_simple + λ L_vlb with λ = 0.001 (eq. 16), the
gradient of L_vlb reaching only Σ (the mean is trained by L_simple). Here,
as in improved-diffusion's code, both terms are means over pixels and
L_vlb is in bits: a per-pixel mean already divides the paper's summed L_vlb
by D = 3072 at 32×32×3, which is the paper's λ within a factor of 3.
"""
from __future__ import annotations

import math

import torch

from core.diffusion.forward import _at, q_posterior
from core.diffusion.schedules import Schedule


def learned_log_variance(v: torch.Tensor, t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """log Σ_θ from the network's v (Nichol & Dhariwal eq. 15)."""
    u = (v + 1) / 2
    log_beta = _at(schedule.betas.log(), t, v)
    log_beta_tilde = _at(schedule.posterior_log_variance_clipped, t, v)
    return u * log_beta + (1 - u) * log_beta_tilde


def normal_kl(mean1, log_var1, mean2, log_var2) -> torch.Tensor:
    """KL(N(mean1, e^log_var1) ‖ N(mean2, e^log_var2)), elementwise, in nats."""
    return 0.5 * (-1.0 + log_var2 - log_var1 + (log_var1 - log_var2).exp()
                  + (mean1 - mean2) ** 2 * (-log_var2).exp())


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x0, mean, log_var) -> torch.Tensor:
    """log p(x_0 | x_1) for 8-bit data scaled to [−1, 1] (Ho et al. 2020, eq. 13):
    the Gaussian's mass over each pixel value's bin, the edge bins open-ended."""
    centred = x0 - mean
    inv_std = (-0.5 * log_var).exp()
    cdf_plus = _standard_normal_cdf(inv_std * (centred + 1 / 255))
    cdf_minus = _standard_normal_cdf(inv_std * (centred - 1 / 255))
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()
    log_one_minus_cdf_minus = (1 - cdf_minus).clamp(min=1e-12).log()
    log_bin = (cdf_plus - cdf_minus).clamp(min=1e-12).log()
    return torch.where(x0 < -0.999, log_cdf_plus,
                       torch.where(x0 > 0.999, log_one_minus_cdf_minus, log_bin))


def vlb_terms(x0, x_t, t, eps, v, schedule: Schedule) -> torch.Tensor:
    """L_{t−1} per sample, in bits per dimension (DDPM eq. 5): the KL between
    the true posterior q(x_{t−1} | x_t, x_0) and p_θ(x_{t−1} | x_t) for t > 0,
    the decoder's negative log-likelihood for t = 0. ``eps`` should be
    detached so only the variance learns from this term (N&D §3.1)."""
    true_mean, _, true_log_var = q_posterior(x0, x_t, t, schedule)
    x0_hat = (x_t - _at((1 - schedule.alphas_cumprod).sqrt(), t, x_t) * eps) \
        / _at(schedule.alphas_cumprod.sqrt(), t, x_t)  # DDPM eq. 15
    model_mean, _, _ = q_posterior(x0_hat.clamp(-1, 1), x_t, t, schedule)
    model_log_var = learned_log_variance(v, t, schedule)
    dims = tuple(range(1, x0.ndim))
    kl = normal_kl(true_mean, true_log_var, model_mean, model_log_var).mean(dim=dims) / math.log(2)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, model_log_var).mean(dim=dims) \
        / math.log(2)
    return torch.where(torch.as_tensor(t, device=x0.device) == 0, nll, kl)  # (B,)

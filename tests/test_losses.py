"""The Improved-DDPM loss pieces (core.diffusion.losses) against closed forms."""
from __future__ import annotations

import math

import pytest
import torch

from core.diffusion.forward import q_posterior, q_sample
from core.diffusion.losses import (
    discretized_gaussian_log_likelihood,
    learned_log_variance,
    normal_kl,
    vlb_terms,
)
from core.diffusion.schedules import make_schedule

F64 = torch.float64


@pytest.fixture(scope="module")
def cosine():
    return make_schedule("cosine", 1000)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pixel_grid(shape, seed: int) -> torch.Tensor:
    """Random 8-bit pixel values scaled to [−1, 1], as the data are."""
    k = torch.randint(0, 256, shape, generator=gen(seed)).to(F64)
    return k / 255 * 2 - 1


# -- normal_kl ---------------------------------------------------------------------
def test_kl_of_a_gaussian_with_itself_is_zero():
    mean = torch.randn(5, 7, generator=gen(0), dtype=F64)
    log_var = torch.randn(5, 7, generator=gen(1), dtype=F64)
    assert torch.allclose(normal_kl(mean, log_var, mean, log_var), torch.zeros(5, 7, dtype=F64),
                          atol=1e-12)


def test_kl_matches_the_closed_form():
    # KL(N(1, 2) ‖ N(0, 4)) = ½ (log(4/2) + (2 + 1²)/4 − 1)
    expected = 0.5 * (math.log(2) + 3 / 4 - 1)
    kl = normal_kl(torch.tensor(1.0, dtype=F64), torch.tensor(math.log(2), dtype=F64),
                   torch.tensor(0.0, dtype=F64), torch.tensor(math.log(4), dtype=F64))
    assert kl.item() == pytest.approx(expected, rel=1e-12)
    # It is not symmetric: KL(N(0, 4) ‖ N(1, 2)) = ½ (log(2/4) + (4 + 1)/2 − 1)
    reverse = normal_kl(torch.tensor(0.0, dtype=F64), torch.tensor(math.log(4), dtype=F64),
                        torch.tensor(1.0, dtype=F64), torch.tensor(math.log(2), dtype=F64))
    assert reverse.item() == pytest.approx(0.5 * (math.log(0.5) + 5 / 2 - 1), rel=1e-12)


def test_kl_agrees_with_torch_distributions_and_is_never_negative():
    m1, m2 = torch.randn(2, 200, generator=gen(2), dtype=F64)
    lv1, lv2 = 3 * torch.randn(2, 200, generator=gen(3), dtype=F64)
    ours = normal_kl(m1, lv1, m2, lv2)
    theirs = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, (0.5 * lv1).exp()),
        torch.distributions.Normal(m2, (0.5 * lv2).exp()))
    assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    assert (ours >= 0).all()


# -- discretized_gaussian_log_likelihood ---------------------------------------------
ALL_PIXELS = torch.arange(256, dtype=F64) / 255 * 2 - 1  # every value x_0 can take


def test_a_very_narrow_gaussian_on_the_pixel_gives_it_all_the_mass():
    log_var = torch.full_like(ALL_PIXELS, math.log(1e-10))
    ll = discretized_gaussian_log_likelihood(ALL_PIXELS, ALL_PIXELS, log_var)
    assert ll.shape == (256,)
    assert torch.allclose(ll, torch.zeros(256, dtype=F64), atol=1e-9)  # the edges included
    # ... and none to a neighbouring value (the clamp keeps it finite).
    off = discretized_gaussian_log_likelihood(ALL_PIXELS[1:], ALL_PIXELS[:-1], log_var[1:])
    assert (off < -20).all() and torch.isfinite(off).all()


@pytest.mark.parametrize("mean, var", [(0.1, 0.05), (-0.97, 0.002), (0.999, 0.5), (0.0, 4.0)])
def test_the_bins_of_all_256_values_hold_probability_one(mean, var):
    means = torch.full((256,), mean, dtype=F64)
    log_var = torch.full((256,), math.log(var), dtype=F64)
    probabilities = discretized_gaussian_log_likelihood(ALL_PIXELS, means, log_var).exp()
    assert probabilities.sum().item() == pytest.approx(1.0, abs=1e-9)
    assert (probabilities > 0).all()


def test_an_interior_bin_is_the_gaussian_mass_between_its_edges():
    def cdf(z: float) -> float:
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))

    x0, mean, std = 10 / 255 * 2 - 1, -0.9, 0.1
    expected = cdf((x0 + 1 / 255 - mean) / std) - cdf((x0 - 1 / 255 - mean) / std)
    ll = discretized_gaussian_log_likelihood(torch.tensor(x0, dtype=F64),
                                             torch.tensor(mean, dtype=F64),
                                             torch.tensor(2 * math.log(std), dtype=F64))
    assert ll.item() == pytest.approx(math.log(expected), rel=1e-9)
    # The edge bins are open-ended: x_0 = −1 takes all the mass below −1 + 1/255.
    low = discretized_gaussian_log_likelihood(torch.tensor(-1.0, dtype=F64),
                                              torch.tensor(mean, dtype=F64),
                                              torch.tensor(2 * math.log(std), dtype=F64))
    assert low.item() == pytest.approx(math.log(cdf((-1 + 1 / 255 - mean) / std)), rel=1e-9)


# -- learned_log_variance ------------------------------------------------------------
def test_v_interpolates_between_log_beta_and_the_clipped_log_beta_tilde(cosine):
    t = torch.tensor([0, 1, 10, 500, 999])
    like = torch.zeros(5, 1, 2, 2, dtype=F64)
    log_beta = cosine.betas.log()[t].reshape(5, 1, 1, 1)
    log_beta_tilde = cosine.posterior_log_variance_clipped[t].reshape(5, 1, 1, 1)
    at_one = learned_log_variance(like + 1, t, cosine)
    at_minus_one = learned_log_variance(like - 1, t, cosine)
    at_zero = learned_log_variance(like, t, cosine)
    assert torch.allclose(at_one, log_beta.expand_as(like), rtol=1e-12)
    assert torch.allclose(at_minus_one, log_beta_tilde.expand_as(like), rtol=1e-12)
    assert torch.allclose(at_zero, ((log_beta + log_beta_tilde) / 2).expand_as(like), rtol=1e-12)
    # For t ≥ 1 the clipped value is β̃_t itself; at t = 0 (β̃_0 = 0) it is β̃_1.
    beta_tilde = cosine.posterior_variance
    assert at_minus_one[2, 0, 0, 0].item() == pytest.approx(math.log(beta_tilde[10].item()), rel=1e-12)
    assert at_minus_one[0, 0, 0, 0].item() == pytest.approx(math.log(beta_tilde[1].item()), rel=1e-12)
    # β̃_t < β_t, so the log-variance grows with v.
    assert (at_minus_one[1:] < at_zero[1:]).all() and (at_zero[1:] < at_one[1:]).all()


# -- vlb_terms -----------------------------------------------------------------------
def noisy_batch(schedule, t, seed: int = 0):
    x0 = pixel_grid((len(t), 3, 4, 4), seed)
    noise = torch.randn(x0.shape, generator=gen(seed + 1), dtype=F64)
    return x0, noise, q_sample(x0, t, schedule, noise)


def test_the_true_posterior_has_zero_vlb_for_t_above_zero(cosine):
    t = torch.tensor([1, 5, 100, 500, 998])
    x0, noise, x_t = noisy_batch(cosine, t)
    v = -torch.ones_like(x0)  # log Σ = log β̃_t, the true posterior variance
    terms = vlb_terms(x0, x_t, t, noise, v, cosine)
    assert terms.shape == (5,)
    assert torch.allclose(terms, torch.zeros(5, dtype=F64), atol=1e-7)


def test_the_wrong_variance_costs_the_closed_form_kl_in_bits(cosine):
    t = torch.tensor([3, 50, 700])
    x0, noise, x_t = noisy_batch(cosine, t, seed=4)
    terms = vlb_terms(x0, x_t, t, noise, torch.ones_like(x0), cosine)  # Σ = β_t instead of β̃_t
    log_beta, log_beta_tilde = cosine.betas.log()[t], cosine.posterior_log_variance_clipped[t]
    # KL(N(μ, β̃) ‖ N(μ, β)) = ½ (−1 + log β − log β̃ + β̃/β), per pixel, / ln 2 for bits
    expected = 0.5 * (-1 + log_beta - log_beta_tilde + (log_beta_tilde - log_beta).exp()) / math.log(2)
    assert torch.allclose(terms, expected, rtol=1e-9)
    assert (terms > 0).all()


def test_a_wrong_mean_costs_the_squared_error_over_the_variance(cosine):
    t = torch.tensor([20, 400])
    x0, noise, x_t = noisy_batch(cosine, t, seed=7)
    wrong = noise + 0.3
    terms = vlb_terms(x0, x_t, t, wrong, -torch.ones_like(x0), cosine)
    true_mean, _, log_var = q_posterior(x0, x_t, t, cosine)
    ab = cosine.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    x0_hat = ((x_t - (1 - ab).sqrt() * wrong) / ab.sqrt()).clamp(-1, 1)
    model_mean, _, _ = q_posterior(x0_hat, x_t, t, cosine)
    expected = (0.5 * (model_mean - true_mean) ** 2 / log_var.exp()).mean(dim=(1, 2, 3)) / math.log(2)
    assert torch.allclose(terms, expected, rtol=1e-9)
    assert (terms > 1e-5).all()


def test_at_t_zero_the_term_is_the_decoder_nll_in_bits(cosine):
    t = torch.tensor([0, 0])
    x0, noise, x_t = noisy_batch(cosine, t, seed=9)
    v = torch.zeros_like(x0)
    terms = vlb_terms(x0, x_t, t, noise, v, cosine)
    # At t = 0 the posterior mean is x̂_0 itself (coef1 = 1, coef2 = 0).
    log_var = learned_log_variance(v, t, cosine)
    expected = -discretized_gaussian_log_likelihood(x0, x0, log_var).mean(dim=(1, 2, 3)) / math.log(2)
    assert torch.allclose(terms, expected, rtol=1e-9)
    assert (terms > 0).all()


def test_the_vlb_trains_the_variance_only_through_v(cosine):
    t = torch.tensor([10, 300])
    x0, noise, x_t = noisy_batch(cosine, t, seed=11)
    x0, x_t, noise = x0.float(), x_t.float(), noise.float()
    v = torch.zeros_like(x0, requires_grad=True)
    eps = (noise + 0.1).requires_grad_(True)
    vlb_terms(x0, x_t, t, eps.detach(), v, cosine).sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0 and torch.isfinite(v.grad).all()
    assert eps.grad is None

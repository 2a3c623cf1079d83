"""Noise schedules and timestep grids against the papers' numbers.

Reference values are those of /work/shared/FACTS.md ("Diffusion numbers"),
recomputed in float64; diffusers' ``DDIMScheduler`` is the oracle for the
timestep spacings (Lin et al. 2024, Table 2).
"""
from __future__ import annotations

import math

import pytest
import torch

from core.diffusion.schedules import (
    SCHEDULE_NAMES,
    ZERO_SNR_SAMPLING_ALPHA_BAR,
    Schedule,
    make_schedule,
)
from core.diffusion.timesteps import (
    SPACINGS,
    flow_times,
    img2img_start,
    karras_sigmas,
    level_to_timestep,
    sampling_sigmas,
    shift_flow_time,
    spaced_timesteps,
)

TABLES = (
    "betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "sigmas", "log_sigmas", "snr",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1",
    "posterior_mean_coef2",
)


@pytest.fixture(scope="module")
def schedules() -> dict:
    out = {name: make_schedule(name) for name in SCHEDULE_NAMES}
    for name in SCHEDULE_NAMES:
        out[f"{name}_zsnr"] = make_schedule(name, zero_snr=True)
    return out


# -- the papers' numbers -----------------------------------------------------------
def test_linear_alpha_bar(schedules):
    s = schedules["linear"]
    assert float(s.alphas_cumprod[-1]) == pytest.approx(4.0358297653756876e-05, rel=1e-12)
    assert float(s.alphas_cumprod[499]) == pytest.approx(0.078587, abs=1e-6)
    assert float(s.betas[0]) == 1e-4 and float(s.betas[-1]) == pytest.approx(0.02, rel=1e-15)


def test_scaled_linear_numbers(schedules):
    s = schedules["scaled_linear"]
    assert float(s.alphas_cumprod[-1]) == pytest.approx(0.004660099, abs=5e-10)
    assert s.sigma_max == pytest.approx(14.614641, abs=1e-6)
    assert s.sigma_min == pytest.approx(0.0291672, abs=1e-7)
    assert float(s.alphas_cumprod[499]) == pytest.approx(0.27767, abs=1e-5)
    # √β is linear between √0.00085 and √0.012
    roots = s.betas.sqrt()
    assert torch.allclose(roots.diff(), roots.diff()[0].expand(999), rtol=0, atol=1e-15)


def test_cosine_alpha_bar(schedules):
    s = schedules["cosine"]
    assert float(s.alphas_cumprod[499]) == pytest.approx(0.4938436, abs=1e-7)
    assert float(s.betas.max()) <= 0.999  # Nichol & Dhariwal's cap
    assert float(s.betas[-1]) == 0.999


def test_zero_terminal_snr(schedules):
    plain, zero = schedules["scaled_linear"], schedules["scaled_linear_zsnr"]
    assert float(zero.alphas_cumprod[-1]) == 0.0
    assert math.isinf(float(zero.sigmas[-1])) and float(zero.snr[-1]) == 0.0
    assert float(zero.alphas_cumprod[0]) == pytest.approx(float(plain.alphas_cumprod[0]), rel=1e-12)
    assert float(plain.alphas_cumprod[499]) == pytest.approx(0.27767, abs=1e-5)
    assert float(zero.alphas_cumprod[499]) == pytest.approx(0.24236, abs=1e-5)
    assert bool((zero.alphas_cumprod.diff() < 0).all())  # still strictly decreasing
    # the largest level a sampler may start from is finite and the documented clamp
    assert zero.sigma_max == pytest.approx(
        math.sqrt((1 - ZERO_SNR_SAMPLING_ALPHA_BAR) / ZERO_SNR_SAMPLING_ALPHA_BAR), rel=1e-15)
    assert zero.zero_snr and not plain.zero_snr


def test_every_table_is_float64(schedules):
    for schedule in schedules.values():
        for table in TABLES:
            value = getattr(schedule, table)
            assert value.dtype == torch.float64, (schedule.name, table)
            assert value.shape == (schedule.num_timesteps,), (schedule.name, table)


def test_float32_betas_become_float64():
    s = Schedule("custom", torch.linspace(1e-4, 0.02, 10, dtype=torch.float32))
    assert s.betas.dtype == torch.float64 and s.alphas_cumprod.dtype == torch.float64


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "cosine", "scaled_linear_zsnr"])
def test_posterior_is_ddpm_eq7_by_hand(schedules, name):
    s = schedules[name]
    betas = s.betas.tolist()
    for t in (1, 2, 10, 500, 998, 999):
        ab_t = math.prod(1 - b for b in betas[: t + 1])
        ab_prev = math.prod(1 - b for b in betas[:t])
        beta = betas[t]
        assert float(s.alphas_cumprod[t]) == pytest.approx(ab_t, rel=1e-12, abs=1e-300)
        assert float(s.alphas_cumprod_prev[t]) == pytest.approx(ab_prev, rel=1e-12)
        assert float(s.posterior_variance[t]) == pytest.approx(
            (1 - ab_prev) / (1 - ab_t) * beta, rel=1e-12)
        assert float(s.posterior_mean_coef1[t]) == pytest.approx(
            beta * math.sqrt(ab_prev) / (1 - ab_t), rel=1e-12, abs=1e-15)
        assert float(s.posterior_mean_coef2[t]) == pytest.approx(
            (1 - ab_prev) * math.sqrt(1 - beta) / (1 - ab_t), rel=1e-12)
        assert float(s.posterior_log_variance_clipped[t]) == pytest.approx(
            math.log((1 - ab_prev) / (1 - ab_t) * beta), rel=1e-12)
    # t = 0: the posterior is the data itself; its log-variance is clipped at β̃_1
    assert float(s.alphas_cumprod_prev[0]) == 1.0
    assert float(s.posterior_variance[0]) == 0.0
    assert float(s.posterior_mean_coef1[0]) == pytest.approx(1.0, rel=1e-12)
    assert float(s.posterior_mean_coef2[0]) == 0.0
    assert float(s.posterior_log_variance_clipped[0]) == float(s.posterior_log_variance_clipped[1])


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_sigma_and_snr(schedules, name):
    s = schedules[name]
    ab = s.alphas_cumprod
    assert torch.allclose(s.sigmas, ((1 - ab) / ab).sqrt(), rtol=1e-14, atol=0)
    assert torch.allclose(s.snr, 1 / s.sigmas**2, rtol=1e-12, atol=0)
    assert torch.allclose(s.snr, ab / (1 - ab), rtol=1e-14, atol=0)
    assert torch.allclose(s.log_sigmas, s.sigmas.log(), rtol=1e-14, atol=0)
    assert bool((s.sigmas.diff() > 0).all())
    assert s.sigma_min == float(s.sigmas[0]) and s.sigma_max == float(s.sigmas[-1])


# -- σ ↔ t ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["linear", "scaled_linear", "cosine", "scaled_linear_zsnr", "linear_zsnr", "sigmoid_zsnr"])
def test_sigma_to_t_exact_on_table_entries(schedules, name):
    s = schedules[name]
    t = torch.arange(s.num_timesteps)
    table = s.sigmas.clamp(max=s.sigma_max)  # a zero-SNR σ_T = ∞ is sampled as σ_max
    assert torch.equal(s.sigma_to_t(table), t.to(torch.float64))
    assert torch.allclose(s.t_to_sigma(t), table, rtol=1e-12, atol=0)
    sigma_max = torch.tensor(s.sigma_max, dtype=torch.float64)
    assert float(s.sigma_to_t(sigma_max)) == s.num_timesteps - 1
    assert float(s.t_to_sigma(torch.tensor(999.0))) == pytest.approx(s.sigma_max, rel=1e-12)


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "scaled_linear_zsnr"])
def test_sigma_to_t_and_t_to_sigma_invert_each_other(schedules, name):
    s = schedules[name]
    t = torch.rand(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 999
    sigma = s.t_to_sigma(t)
    assert torch.allclose(s.sigma_to_t(sigma), t, rtol=0, atol=1e-9)
    log_sigma = torch.empty(200, dtype=torch.float64).uniform_(
        math.log(s.sigma_min), math.log(s.sigma_max), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(s.t_to_sigma(s.sigma_to_t(log_sigma.exp())), log_sigma.exp(), rtol=1e-12)
    # halfway in log σ between two entries is halfway in t
    mid = ((s.log_sigmas[10] + s.log_sigmas[11]) / 2).exp()
    assert float(s.sigma_to_t(mid)) == pytest.approx(10.5, abs=1e-9)
    # outside the table: clamped to its ends; shapes preserved
    assert float(s.sigma_to_t(torch.tensor(1e-9))) == 0.0
    assert float(s.sigma_to_t(torch.tensor(1e9))) == 999.0
    assert s.sigma_to_t(sigma.reshape(20, 10)).shape == (20, 10)


def test_level_to_timestep(schedules):
    s = schedules["scaled_linear"]
    assert level_to_timestep(s, float(s.sigmas[321])) == 321.0  # a Python float, kept float64
    assert level_to_timestep(s, float(s.sigmas[999])) == 999.0
    assert level_to_timestep(s, 0.0) == -1.0
    assert level_to_timestep(None, 0.25) == 0.25


# -- spacings --------------------------------------------------------------------------
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_spaced_timesteps_match_diffusers(spacing):
    DDIMScheduler = pytest.importorskip("diffusers").DDIMScheduler
    scheduler = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    # 27 and 48 are where torch's float arithmetic rounds a .5 the other way
    # than numpy's (which diffusers uses); 61 is where numpy's arange overshoots.
    for steps in (1, 2, 7, 10, 25, 27, 48, 50, 61, 100, 999, 1000):
        scheduler.set_timesteps(steps)
        theirs = scheduler.timesteps.tolist()
        ours = spaced_timesteps(1000, steps, spacing)
        assert ours.dtype == torch.int64
        assert ours.tolist() == theirs[:steps], (spacing, steps)
        # diffusers' trailing grid sometimes gets one stray timestep −1 more
        assert theirs[steps:] in ([], [-1]), (spacing, steps)


SCHEDULER_STEPS = (1, 2, 4, 7, 10, 25, 27, 28, 48, 50, 61, 100, 112, 999, 1000)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("scheduler", [
    "DDIMScheduler", "DDPMScheduler", "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "DPMSolverMultistepScheduler"])
def test_which_spacings_pick_the_same_timesteps_as_diffusers(scheduler, spacing):
    """What timesteps.py's docstring says matches, and what does not."""
    cls = getattr(pytest.importorskip("diffusers"), scheduler)
    differs = set()
    for steps in SCHEDULER_STEPS:
        instance = cls(num_train_timesteps=1000, timestep_spacing=spacing)
        instance.set_timesteps(steps)
        theirs = instance.timesteps
        if scheduler == "HeunDiscreteScheduler":  # t_0, t_1, t_1, t_2, t_2, …: each once
            theirs = torch.cat([theirs[:1], theirs[1::2]])
        if theirs[:steps].double().tolist() != spaced_timesteps(1000, steps, spacing).double().tolist():
            differs.add(steps)
    euler_family = scheduler in ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
                                 "HeunDiscreteScheduler")
    if euler_family and spacing == "linspace":  # fractional timesteps unless (N − 1) | (T − 1)
        assert differs == {n for n in SCHEDULER_STEPS if n > 1 and 999 % (n - 1)}
    elif scheduler == "DPMSolverMultistepScheduler" and spacing != "trailing":
        assert differs == set(SCHEDULER_STEPS)  # its own grid of N + 1 points
    else:
        assert differs == set()


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_spaced_timesteps_shape(spacing):
    for steps in range(1, 1001, 37):
        t = spaced_timesteps(1000, steps, spacing)
        assert len(t) == steps and int(t.min()) >= 0 and int(t.max()) <= 999
        assert bool((t.diff() < 0).all())
    assert spaced_timesteps(1000, 10, "trailing")[0] == 999  # starts at pure noise
    assert spaced_timesteps(1000, 10, "leading").tolist() == list(range(900, -1, -100))
    assert spaced_timesteps(1000, 1000, "linspace").tolist() == list(range(999, -1, -1))


# -- the levels a sampler visits ------------------------------------------------------
def test_karras_sigmas_for_sd_at_10_steps(schedules):
    expected = [14.6146, 9.1029, 5.4784, 3.1686, 1.7494, 0.9141, 0.4469, 0.2014, 0.0819,
                0.0292, 0.0]
    sigmas = sampling_sigmas(schedules["scaled_linear"], 10, "karras")
    assert sigmas.dtype == torch.float64
    assert sigmas.tolist() == pytest.approx(expected, abs=5e-5)
    direct = karras_sigmas(0.0291672, 14.614641, 10)
    assert direct.tolist() == pytest.approx(expected, abs=5e-5)


def test_karras_sigmas_formula():
    sigmas = karras_sigmas(0.002, 80.0, 5, rho=7.0)
    assert float(sigmas[0]) == pytest.approx(80.0, rel=1e-14)
    assert float(sigmas[-2]) == pytest.approx(0.002, rel=1e-12)
    assert float(sigmas[-1]) == 0.0
    # equally spaced in σ^{1/ρ}
    roots = sigmas[:-1] ** (1 / 7)
    assert torch.allclose(roots.diff(), roots.diff()[0].expand(4), rtol=1e-12, atol=0)
    assert karras_sigmas(0.1, 10.0, 1).tolist() == pytest.approx([10.0, 0.0])


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("name", [
    "linear", "scaled_linear", "cosine", "sigmoid",
    "linear_zsnr", "scaled_linear_zsnr", "cosine_zsnr", "sigmoid_zsnr",
])
def test_sampling_sigmas_descend_to_zero(schedules, name, spacing):
    s = schedules[name]
    for steps in (1, 7, 30, 500, 1000):
        sigmas = sampling_sigmas(s, steps, spacing)
        assert sigmas.dtype == torch.float64 and len(sigmas) == steps + 1
        assert float(sigmas[-1]) == 0.0
        assert bool((sigmas.diff() < 0).all())
        assert bool(torch.isfinite(sigmas).all())
        assert float(sigmas[0]) <= s.sigma_max * (1 + 1e-12)


def test_sampling_sigmas_are_table_entries(schedules):
    s = schedules["scaled_linear"]
    for spacing in ("leading", "trailing", "linspace"):
        t = spaced_timesteps(1000, 20, spacing)
        assert torch.equal(sampling_sigmas(s, 20, spacing)[:-1], s.sigmas[t])


def test_zero_snr_start_is_clamped(schedules):
    zero = schedules["scaled_linear_zsnr"]
    sigmas = sampling_sigmas(zero, 10, "trailing")
    assert float(sigmas[0]) == zero.sigma_max
    assert math.isfinite(zero.sigma_max) and zero.sigma_max > 1000
    assert torch.equal(sigmas[1:-1], zero.sigmas[spaced_timesteps(1000, 10, "trailing")[1:]])
    karras = sampling_sigmas(zero, 10, "karras")
    assert float(karras[0]) == pytest.approx(zero.sigma_max, rel=1e-12)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_zero_snr_sigma_max_lies_above_every_finite_sigma(schedules, name):
    """linear and sigmoid rescaled to zero SNR have σ_{T−2} ≈ 15 400, above the
    clamp SD uses (≈ 4 519): the clamp must not fall below the table."""
    zero = schedules[f"{name}_zsnr"]
    assert math.isfinite(zero.sigma_max) and zero.sigma_max > float(zero.sigmas[-2])
    start = sampling_sigmas(zero, 1000, "trailing")
    assert float(start[0]) == zero.sigma_max and float(start[1]) == float(zero.sigmas[-2])


def test_flow_times_and_shift():
    assert flow_times(4).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert flow_times(4).dtype == torch.float64
    shifted = flow_times(4, shift=3.0)
    assert float(shifted[0]) == 1.0 and float(shifted[-1]) == 0.0
    assert shifted.tolist() == pytest.approx([1.0, 0.9, 0.75, 0.5, 0.0], abs=1e-15)
    assert bool((shifted.diff() < 0).all())
    assert bool((shifted[1:-1] > flow_times(4)[1:-1]).all())  # a shift > 1 stays longer at noise
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.equal(shift_flow_time(t, 1.0), t)
    # shifting by a then b is shifting by a·b; by 1/s undoes a shift of s
    assert torch.allclose(shift_flow_time(shift_flow_time(t, 2.0), 3.0), shift_flow_time(t, 6.0))
    assert torch.allclose(shift_flow_time(shift_flow_time(t, 3.0), 1 / 3), t)


def test_img2img_start():
    assert img2img_start(10, 1.0) == 0  # txt2img: every step
    assert img2img_start(10, 0.0) == 10  # nothing to do
    assert img2img_start(10, 0.5) == 5
    assert img2img_start(20, 0.75) == 5
    assert img2img_start(50, 0.3) == 35
    for steps in (1, 7, 25):
        for strength in (0.0, 0.1, 0.33, 0.5, 0.9, 1.0):
            assert img2img_start(steps, strength) == steps - round(strength * steps)


# -- bad inputs -----------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors(schedules):
    with pytest.raises(ValueError, match=r"unknown schedule 'quadratic'.*linear, scaled_linear"):
        make_schedule("quadratic")
    with pytest.raises(ValueError, match="at least 2 timesteps"):
        make_schedule("linear", timesteps=1)
    with pytest.raises(ValueError, match=r"beta must lie in \(0, 1\]"):
        Schedule("bad", torch.tensor([0.1, 1.5], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"beta must lie in \(0, 1\]"):
        Schedule("bad", torch.tensor([0.0, 0.1], dtype=torch.float64))
    with pytest.raises(ValueError, match="at least two betas"):
        Schedule("bad", torch.tensor([0.1], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"unknown spacing 'uniform'.*leading, trailing, linspace"):
        spaced_timesteps(1000, 10, "uniform")
    with pytest.raises(ValueError, match="unknown spacing 'uniform'"):
        sampling_sigmas(schedules["linear"], 10, "uniform")
    for steps in (0, -3, 1001):
        with pytest.raises(ValueError, match=rf"steps must be between 1 and 1000, got {steps}"):
            spaced_timesteps(1000, steps, "leading")
        with pytest.raises(ValueError, match="steps must be between 1 and 1000"):
            sampling_sigmas(schedules["linear"], steps, "trailing")
    with pytest.raises(ValueError, match="steps must be at least 1"):
        karras_sigmas(0.1, 10.0, 0)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        sampling_sigmas(schedules["linear"], 0, "karras")
    with pytest.raises(ValueError, match="steps must be at least 1"):
        flow_times(0)
    for shift in (-1.0, 0.0):
        with pytest.raises(ValueError, match="shift must be positive"):
            flow_times(10, shift=shift)
        with pytest.raises(ValueError, match="shift must be positive"):
            shift_flow_time(torch.tensor(0.5), shift)
    for strength in (-0.1, 1.0001, 2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"strength must be within \[0, 1\], got"):
            img2img_start(10, strength)

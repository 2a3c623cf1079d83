"""Zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and
Sample Steps are Flawed"): DDIM and DDPM start at ᾱ_T = 0 exactly (σ = ∞,
x_T = noise), as Lin et al. and diffusers sample, so a v-model's first
prediction is x̂_0 = −v̂; the σ-based Euler family starts at the finite σ_max."""
from __future__ import annotations

import math

import pytest
import torch

from core.diffusion import samplers
from core.diffusion.denoisers import DiscreteTimeDenoiser
from core.diffusion.guidance import CFGDenoiser, ClassifierGuidedDenoiser
from core.diffusion.schedules import make_schedule
from core.diffusion.timesteps import sampling_sigmas
from core.sampling import run_sampler, sampled_levels
from core.values import Conditioning, DiffusionModel, SamplingSchedule

STEPS = 10


@pytest.fixture(scope="module")
def table():
    return make_schedule("scaled_linear", 1000, zero_snr=True)


def sampling_schedule(table, spacing="trailing", steps=STEPS):
    return SamplingSchedule(table.name, "ve", sampling_sigmas(table, steps, spacing), table, spacing)


def v_network(x_t, t, cond=None):
    """A fixed v̂ of x_t and t (any function serves as a v-model here)."""
    return 0.6 * torch.tanh(x_t) + 0.1 * (t / 1000).reshape(-1, 1, 1, 1) * x_t


def v_model(table, network=v_network):
    return DiffusionModel("v", DiscreteTimeDenoiser(network, table, "v_prediction"), "ve", 4,
                          schedule=table)


# -- where each sampler starts ------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_ddim_and_ddpm_start_at_alpha_bar_zero_with_x0_minus_v(table, sampler):
    """Regression: they started at σ ≈ 4519 (ᾱ = 4.9e-8), so x̂_0 was −v̂ + 2e-4 x_t."""
    schedule = sampling_schedule(table)
    steps = []
    run_sampler(v_model(table), schedule, torch.zeros(2, 4, 8, 8), sampler=sampler, seed=5,
                on_step=lambda info, step: steps.append(info))
    first = steps[0]
    assert math.isinf(first.level) and len(steps) == STEPS
    noise = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(5))
    assert torch.equal(first.x, noise)  # x_T is the noise itself
    assert torch.equal(first.eps, noise)
    t = torch.full((2,), 999.0)
    assert torch.equal(first.x0, -v_network(noise, t))  # x̂_0 = √ᾱ x_T − √(1 − ᾱ) v̂ = −v̂
    assert all(math.isfinite(s.level) for s in steps[1:])


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "heun", "dpmpp_2m"])
def test_the_euler_family_starts_at_the_finite_sigma_max(table, sampler):
    schedule = sampling_schedule(table)
    trajectory = run_sampler(v_model(table), schedule, torch.zeros(1, 4, 8, 8),
                             sampler=sampler)[1]
    assert trajectory.steps[0].level == table.sigma_max == pytest.approx(4518.8, abs=0.1)
    with pytest.raises(ValueError, match=f"{sampler} needs a finite first noise level"):
        samplers.SAMPLERS[sampler].fn(v_model(table).denoiser, torch.zeros(1, 4, 8, 8),
                                      sampled_levels(schedule, 0, STEPS, "ddim"))


def test_only_a_start_at_the_last_timestep_of_a_zero_snr_table_is_infinite(table):
    infinite = lambda schedule, start=0: math.isinf(  # noqa: E731
        float(sampled_levels(schedule, start, schedule.steps, "ddim")[0]))
    assert infinite(sampling_schedule(table, "trailing"))
    assert infinite(sampling_schedule(table, "linspace"))
    assert infinite(sampling_schedule(table, "karras"))
    assert not infinite(sampling_schedule(table, "leading"))  # leading never reaches T − 1
    assert not infinite(sampling_schedule(table), start=3)  # img2img or a resumed run
    assert not infinite(sampling_schedule(make_schedule("scaled_linear"), "trailing"))


def test_an_epsilon_model_is_told_it_cannot_start_at_alpha_bar_zero(table):
    model = DiffusionModel("eps", DiscreteTimeDenoiser(v_network, table), "ve", 4, schedule=table)
    with pytest.raises(ValueError, match="ε-prediction model cannot predict x̂_0 at ᾱ_T = 0.*"
                                         "zero_snr off on the Schedule node"):
        run_sampler(model, sampling_schedule(table), torch.zeros(1, 4, 8, 8), sampler="ddim")
    run_sampler(model, sampling_schedule(table), torch.zeros(1, 4, 8, 8), sampler="euler")


def test_guidance_at_alpha_bar_zero_stays_finite(table):
    """At ᾱ = 0 every ε̂ is x_T (CFG rescale changes nothing) and x_T says
    nothing about a class (no classifier shift): both leave x̂_0 as it is."""
    def network(x_t, t, cond=None):
        return v_network(x_t, t) * (1.5 if cond is not None and cond.text else 1.0)

    inner = DiscreteTimeDenoiser(network, table, "v_prediction")
    x, level = torch.randn(2, 4, 8, 8), torch.tensor([math.inf, 3.0], dtype=torch.float64)
    plain = CFGDenoiser(inner, Conditioning("a"), Conditioning(""), 5.0)(x, level).x0
    rescaled = CFGDenoiser(inner, Conditioning("a"), Conditioning(""), 5.0, rescale=0.7)(x, level).x0
    assert torch.equal(rescaled[0], plain[0]) and not torch.allclose(rescaled[1], plain[1])
    guided = ClassifierGuidedDenoiser(inner, lambda x_t, s: -(x_t**2).sum(dim=(1, 2, 3)), 2.0)
    shifted = guided(x, level).x0
    assert torch.equal(shifted[0], inner(x, level).x0[0]) and torch.isfinite(shifted).all()


# -- diffusers with rescale_betas_zero_snr as the oracle -------------------------------------
def test_ddim_and_ddpm_match_diffusers_from_alpha_bar_zero(table):
    """DDIMScheduler / DDPMScheduler(rescale_betas_zero_snr=True, v-prediction,
    trailing): the same trajectory within 1e-5 (test_diffusion_oracle.py's
    tolerance), from x_T = noise at t = 999 where ᾱ = 0."""
    diffusers = pytest.importorskip("diffusers")
    from tests.test_diffusion_oracle import (BETAS, FakeNetwork, assert_same_timesteps,
                                             assert_same_trajectory, initial_noise, run_diffusers,
                                             run_ours)

    schedule = sampling_schedule(table)
    levels = sampled_levels(schedule, 0, STEPS, "ddim")
    config = dict(num_train_timesteps=1000, clip_sample=False, prediction_type="v_prediction",
                  rescale_betas_zero_snr=True, timestep_spacing="trailing",
                  **BETAS["scaled_linear"])
    cases = [(diffusers.DDIMScheduler(set_alpha_to_one=True, **config), samplers.ddim, {}),
             (diffusers.DDPMScheduler(variance_type="fixed_small", **config), samplers.ddpm,
              {"generator": torch.Generator().manual_seed(777)})]
    for scheduler, sampler, step_kwargs in cases:
        scheduler.set_timesteps(STEPS)
        assert float(scheduler.alphas_cumprod[999]) == 0.0 and int(scheduler.timesteps[0]) == 999
        noise = initial_noise()
        theirs_net = FakeNetwork(schedule=table)
        theirs, theirs_final = run_diffusers(scheduler, theirs_net, noise, **step_kwargs)
        ours_net = FakeNetwork(schedule=table)
        ours_kwargs = {"generator": torch.Generator().manual_seed(777)} if step_kwargs else {}
        denoiser = DiscreteTimeDenoiser(ours_net, table, "v_prediction")
        ours, ours_final, infos = run_ours(sampler, denoiser, noise.clone(), levels, **ours_kwargs)
        assert_same_timesteps(ours_net, theirs_net)
        assert_same_trajectory(ours, theirs, ours_final, theirs_final, STEPS)
        assert torch.equal(infos[0].x0, -FakeNetwork(schedule=table)(noise, torch.tensor(999.0)))

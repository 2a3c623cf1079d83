"""diffusers' schedulers as a test oracle for ``core.diffusion.samplers``.

Each test drives a diffusers scheduler the way its pipelines do (``set_timesteps``,
``scale_model_input``, model call, ``step``) and one of our samplers with the same
fake network, the same starting state and, for the stochastic samplers, a
generator seeded identically. Both trajectories must agree within 1e-5
(absolute, on the VP-scaled sample, float32) at every step and at the end.

Our samplers work in the VE parameterization x_ve = x_vp · √(1 + σ²) on a
descending ``levels`` tensor of σ ending in 0. The sample before step i is read
from the sampler's callback (``StepInfo.x``, VE, at ``levels[i]``) and converted
to the VP scale with :func:`to_model_scale`; diffusers' VE schedulers (Euler,
Euler ancestral, Heun) are converted the same way, its VP schedulers (DDPM,
DDIM, DPM-Solver) are compared as they are.

Starting state: diffusers starts at ``noise · init_noise_sigma``. For the VE
schedulers with linspace spacing that is noise · σ_max = noise · levels[0],
which is how our samplers start. The VP schedulers start at x_T = noise in the
VP scale, i.e. x_ve = noise · √(1 + σ_0²), while noise · σ_0 would be
√(1 − ᾱ_T) · noise in the VP scale: a different starting point (0.7 % smaller
at t = 900 on scaled_linear, far above 1e-5), not a sampler difference. So for
those we hand our sampler diffusers' own x_T, converted to VE.

Noise streams: both sides draw randn(shape, generator) in float32 on the CPU,
one draw per step, in the same order. diffusers' Euler ancestral and DDIM
(η > 0) also draw on the last step, where the noise is multiplied by 0; ours
skips that draw. It is the last draw of the run, so the streams still agree.
"""
from __future__ import annotations

import math

import pytest
import torch

# diffusers is the oracle, not a dependency of the project (pyproject.toml).
pytest.importorskip("diffusers")

from diffusers import (  # noqa: E402
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
)

from core.diffusion import samplers  # noqa: E402
from core.diffusion.denoisers import (  # noqa: E402
    DiscreteTimeDenoiser,
    FlowDenoiser,
    to_model_scale,
)
from core.diffusion.schedules import make_schedule  # noqa: E402
from core.diffusion.timesteps import (  # noqa: E402
    flow_times,
    karras_sigmas,
    sampling_sigmas,
    spaced_timesteps,
)

# diffusers' schedulers hand torch tensors to numpy with copy=False (numpy 2 deprecation).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

T = 1000
TOL = 1e-5  # absolute, on the VP-scaled float32 sample; never loosen
SHAPE = (2, 4, 8, 8)
NOISE_SEED = 20240
STEP_SEED = 777

#: diffusers' configuration of our named schedules.
BETAS = {
    "linear": dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02),
    "scaled_linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
}

#: A small fixed pattern, so the prediction is not an odd function of x alone.
PATTERN = 0.05 * torch.sin(0.7 * torch.arange(math.prod(SHAPE[1:]), dtype=torch.float32)).reshape(
    SHAPE[1:]
)


class FakeNetwork:
    """A deterministic network of moderate strength that depends on x and t.

    ``kind="epsilon"`` (``schedule`` given): the noise prediction of the ideal
    denoiser for data N(0, 0.5² I) on ``schedule`` plus a perturbation,
    ε̂ = √(1−ᾱ) x / (0.25 ᾱ + 1 − ᾱ) + √ᾱ (0.3 tanh(1.5 x) + 0.1 (t/1000) x + pattern),
    ᾱ = ᾱ(t) interpolated in t from the float64 table. Like a trained network it
    keeps ε̂ = O(1) and x̂_0 = O(1) at every level, so the samples stay O(1) and 1e-5
    is a meaningful tolerance (a plain ε̂ = 0.3 tanh(x) + … is inconsistent with
    the noise level: x̂_0 grows like 1/√ᾱ_T and the samples end near 100, where
    1e-5 is below float32 resolution).
    ``kind="epsilon"`` without ``schedule`` (for Karras levels, where diffusers
    rounds the timestep it passes and our wrapper does not): no t at all,
    ε̂ = x + 0.05 tanh(2x) + 0.2 pattern, which keeps x̂_0 moderate.
    ``kind="velocity"``: v̂ = 0.8 tanh(x) + 0.2 (t/1000) x + pattern (flow matching).
    ``learned_variance=True`` appends C channels of v ∈ [−1, 1] (Nichol & Dhariwal).
    Every call's input dtype and (per-sample) timesteps are recorded.
    """

    def __init__(self, kind="epsilon", schedule=None, learned_variance=False):
        self.kind, self.learned_variance = kind, learned_variance
        self.alphas_cumprod = None if schedule is None else schedule.alphas_cumprod
        self.timesteps: list[torch.Tensor] = []
        self.dtypes: list[torch.dtype] = []  # of x as passed
        self.t_dtypes: list[torch.dtype] = []  # of t as passed

    def _alpha_bar(self, t):
        table = self.alphas_cumprod
        t = t.to(torch.float64).clamp(0, len(table) - 1)
        low = t.floor().long().clamp(max=len(table) - 2)
        frac = t - low
        return (1 - frac) * table[low] + frac * table[low + 1]

    def __call__(self, x, t):
        self.t_dtypes.append(torch.as_tensor(t).dtype)
        t = torch.as_tensor(t).to(torch.float32).reshape(-1).expand(x.shape[0])  # (B,)
        self.timesteps.append(t.clone())
        self.dtypes.append(x.dtype)
        tt = (t / 1000).reshape(-1, 1, 1, 1)
        if self.kind == "velocity":
            out = 0.8 * torch.tanh(x) + 0.2 * tt * x + PATTERN
        elif self.alphas_cumprod is None:
            out = x + 0.05 * torch.tanh(2 * x) + 0.2 * PATTERN
        else:
            ab = self._alpha_bar(t).reshape(-1, 1, 1, 1).to(x.dtype)
            ideal = (1 - ab).sqrt() * x / (0.25 * ab + 1 - ab)
            out = ideal + ab.sqrt() * (0.3 * torch.tanh(1.5 * x) + 0.1 * tt * x + PATTERN)
        if self.learned_variance:
            v = torch.tanh(1.5 * x + 2 * tt - 1)  # in [−1, 1], varies with x and t
            out = torch.cat([out, v], dim=1)
        return out


def initial_noise():
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(NOISE_SEED), dtype=torch.float32)


def run_diffusers(scheduler, network, latents, **step_kwargs):
    """The denoising loop of diffusers' pipelines. Returns the sample before each
    (outer) step and the final sample, in the scheduler's own scale."""
    before = []
    for t in scheduler.timesteps:
        # Heun calls the model twice per step; record only at the start of a step.
        if getattr(scheduler, "state_in_first_order", True):
            before.append(latents)
        model_input = latents
        if hasattr(scheduler, "scale_model_input"):
            model_input = scheduler.scale_model_input(latents, t)
        model_output = network(model_input, t)
        latents = scheduler.step(model_output, t, latents, **step_kwargs).prev_sample
    return before, latents


def run_ours(sampler, denoiser, x, levels, **kwargs):
    """Our sampler; returns the model-scale sample before each step (from the
    callback) and the final sample, plus every StepInfo."""
    before, infos = [], []

    def record(info):
        assert info.index == len(before) and info.total == len(levels) - 1
        assert info.level == float(levels[info.index])
        infos.append(info)
        before.append(to_model_scale(denoiser.parameterization, info.x, info.level))

    out = sampler(denoiser, x, levels, callback=record, **kwargs)
    return before, out, infos


def ve_to_vp(samples, levels):
    return [to_model_scale("ve", x, float(sigma)) for x, sigma in zip(samples, levels)]


def assert_same_trajectory(ours, theirs, final_ours, final_theirs, steps):
    assert len(ours) == len(theirs) == steps
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.dtype == b.dtype == torch.float32
        err = (a - b).abs().max().item()
        assert err <= TOL, f"before step {i}: max |ours − diffusers| = {err:.3g}"
    assert final_ours.dtype == final_theirs.dtype == torch.float32
    err = (final_ours - final_theirs).abs().max().item()
    assert err <= TOL, f"final sample: max |ours − diffusers| = {err:.3g}"
    # The trajectory really moved (a do-nothing sampler would not pass by accident).
    assert (final_theirs - theirs[0]).abs().max().item() > 0.1


def assert_same_timesteps(ours_net, theirs_net, atol=1e-3):
    """Our wrapper passed the network the same timesteps diffusers did, call by call."""
    assert len(ours_net.timesteps) == len(theirs_net.timesteps)
    for i, (a, b) in enumerate(zip(ours_net.timesteps, theirs_net.timesteps)):
        assert torch.allclose(a, b, rtol=0, atol=atol), f"call {i}: t {a.tolist()} vs {b.tolist()}"


def vp_start(levels, latents):
    """Our VE start for a VP scheduler's x_T (see the module docstring)."""
    return latents * math.sqrt(1 + float(levels[0]) ** 2)


# -- DDPM ---------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule_name", ["linear", "scaled_linear"])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large", "learned_range"])
@pytest.mark.parametrize("steps", [10, 50])
def test_ddpm_matches_diffusers(schedule_name, variance, steps):
    schedule = make_schedule(schedule_name)
    learned = variance == "learned_range"
    scheduler = DDPMScheduler(
        num_train_timesteps=T, clip_sample=False, variance_type=variance,
        timestep_spacing="leading", **BETAS[schedule_name],
    )
    scheduler.set_timesteps(steps)
    # leading spacing with N | T: diffusers' prev_timestep t − T//N is the next scheduled t.
    assert torch.equal(scheduler.timesteps, spaced_timesteps(T, steps, "leading"))
    levels = torch.cat([schedule.sigmas[scheduler.timesteps], torch.zeros(1, dtype=torch.float64)])
    assert torch.equal(sampling_sigmas(schedule, steps, "leading"), levels)

    noise = initial_noise()
    assert scheduler.init_noise_sigma == 1.0
    theirs_net = FakeNetwork(schedule=schedule, learned_variance=learned)
    theirs, theirs_final = run_diffusers(
        scheduler, theirs_net, noise * scheduler.init_noise_sigma,
        generator=torch.Generator().manual_seed(STEP_SEED),
    )

    ours_net = FakeNetwork(schedule=schedule, learned_variance=learned)
    denoiser = DiscreteTimeDenoiser(ours_net, schedule, prediction="epsilon", learned_variance=learned)
    ours, ours_final, _ = run_ours(
        samplers.ddpm, denoiser, vp_start(levels, noise), levels,
        generator=torch.Generator().manual_seed(STEP_SEED),
        variance="learned" if learned else variance,
    )
    assert_same_timesteps(ours_net, theirs_net)
    assert_same_trajectory(ours, theirs, ours_final, theirs_final, steps)


# -- DDIM ---------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule_name", ["linear", "scaled_linear"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers(schedule_name, eta):
    steps = 10
    schedule = make_schedule(schedule_name)
    scheduler = DDIMScheduler(
        num_train_timesteps=T, clip_sample=False, set_alpha_to_one=True,
        timestep_spacing="leading", **BETAS[schedule_name],
    )
    scheduler.set_timesteps(steps)
    assert torch.equal(scheduler.timesteps, spaced_timesteps(T, steps, "leading"))
    levels = sampling_sigmas(schedule, steps, "leading")
    assert torch.equal(levels[:-1], schedule.sigmas[scheduler.timesteps])

    noise = initial_noise()
    theirs_net = FakeNetwork(schedule=schedule)
    theirs, theirs_final = run_diffusers(
        scheduler, theirs_net, noise * scheduler.init_noise_sigma,
        eta=eta, generator=torch.Generator().manual_seed(STEP_SEED),
    )
    ours_net = FakeNetwork(schedule=schedule)
    ours, ours_final, _ = run_ours(
        samplers.ddim, DiscreteTimeDenoiser(ours_net, schedule), vp_start(levels, noise), levels,
        eta=eta, generator=torch.Generator().manual_seed(STEP_SEED),
    )
    assert_same_timesteps(ours_net, theirs_net)
    assert_same_trajectory(ours, theirs, ours_final, theirs_final, steps)


# -- Euler, Euler ancestral, Heun (VE schedulers) -------------------------------------------
#: linspace spacing with N = 10 gives the whole timesteps 999, 888, …, 0.
VE_STEPS = 10


def _ve_levels(scheduler, schedule, steps):
    """The scheduler's own σ (float32) as our float64 levels; they are our
    linspace levels up to diffusers' float32 ᾱ table."""
    sigmas = scheduler.sigmas
    if isinstance(scheduler, HeunDiscreteScheduler):  # σ_0, σ_1, σ_1, …, σ_{N−1}, σ_{N−1}, 0
        sigmas = torch.cat([sigmas[:1], sigmas[1:-1:2], sigmas[-1:]])
    levels = sigmas.to(torch.float64)
    assert len(levels) == steps + 1 and levels[-1] == 0
    # float32 ᾱ tables: 1 − ᾱ_0 ≈ 1e-4 (linear) carries a relative error of
    # ~1e-4, so σ_min agrees only to that; the other levels far better.
    assert torch.allclose(levels, sampling_sigmas(schedule, steps, "linspace"), rtol=5e-4, atol=0)
    assert torch.allclose(levels[:-2], sampling_sigmas(schedule, steps, "linspace")[:-2], rtol=1e-5)
    return levels


@pytest.mark.parametrize("schedule_name", ["linear", "scaled_linear"])
@pytest.mark.parametrize(
    "scheduler_cls, sampler",
    [
        (EulerDiscreteScheduler, samplers.euler),
        (EulerAncestralDiscreteScheduler, samplers.euler_ancestral),
        (HeunDiscreteScheduler, samplers.heun),
    ],
    ids=["euler", "euler_ancestral", "heun"],
)
def test_ve_schedulers_match_diffusers(schedule_name, scheduler_cls, sampler):
    schedule = make_schedule(schedule_name)
    scheduler = scheduler_cls(num_train_timesteps=T, timestep_spacing="linspace", **BETAS[schedule_name])
    scheduler.set_timesteps(VE_STEPS)
    assert torch.equal(
        scheduler.timesteps.unique_consecutive().long(), spaced_timesteps(T, VE_STEPS, "linspace")
    )
    levels = _ve_levels(scheduler, schedule, VE_STEPS)

    noise = initial_noise()
    assert float(scheduler.init_noise_sigma) == float(levels[0])  # linspace: σ_max
    stochastic = sampler is samplers.euler_ancestral
    step_kwargs = dict(generator=torch.Generator().manual_seed(STEP_SEED)) if stochastic else {}
    theirs_net = FakeNetwork(schedule=schedule)
    theirs_ve, theirs_final = run_diffusers(
        scheduler, theirs_net, noise * scheduler.init_noise_sigma, **step_kwargs
    )
    theirs = ve_to_vp(theirs_ve, levels)

    ours_net = FakeNetwork(schedule=schedule)
    ours_kwargs = dict(generator=torch.Generator().manual_seed(STEP_SEED)) if stochastic else {}
    ours, ours_final, _ = run_ours(
        sampler, DiscreteTimeDenoiser(ours_net, schedule), noise * float(levels[0]), levels,
        **ours_kwargs,
    )
    # Heun: 2N − 1 model calls in both, at the same timesteps.
    assert_same_timesteps(ours_net, theirs_net)
    assert_same_trajectory(ours, theirs, ours_final, theirs_final, VE_STEPS)


# -- DPM-Solver++(2M) (a VP scheduler) -----------------------------------------------------
def _dpmpp_2m_case(schedule_name, steps, karras):
    schedule = make_schedule(schedule_name)
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=T, algorithm_type="dpmsolver++", solver_order=2,
        use_karras_sigmas=karras, timestep_spacing="trailing", **BETAS[schedule_name],
    )
    scheduler.set_timesteps(steps)
    levels = scheduler.sigmas.to(torch.float64)
    assert len(levels) == steps + 1 and levels[-1] == 0  # final_sigmas_type="zero"
    if karras:
        expected = karras_sigmas(schedule.sigma_min, schedule.sigma_max, steps)
    else:
        # DPM-Solver's own "linspace"/"leading" differ from the other schedulers'
        # (N + 1 points); its "trailing" is the common one: 999, 899, … for N = 10.
        assert torch.equal(scheduler.timesteps, spaced_timesteps(T, steps, "trailing"))
        expected = sampling_sigmas(schedule, steps, "trailing")
    assert torch.allclose(levels, expected, rtol=5e-4, atol=0)  # float32 ᾱ tables (see _ve_levels)

    noise = initial_noise()
    assert scheduler.init_noise_sigma == 1.0
    # diffusers rounds Karras timesteps before calling the model; ours passes the
    # continuous one: a network without t for those.
    theirs_net = FakeNetwork(schedule=None if karras else schedule)
    theirs, theirs_final = run_diffusers(scheduler, theirs_net, noise * scheduler.init_noise_sigma)
    ours_net = FakeNetwork(schedule=None if karras else schedule)
    ours, ours_final, infos = run_ours(
        samplers.dpmpp_2m, DiscreteTimeDenoiser(ours_net, schedule), vp_start(levels, noise), levels
    )
    if not karras:
        assert_same_timesteps(ours_net, theirs_net)
    else:
        assert_same_timesteps(ours_net, theirs_net, atol=0.5)  # rounding only
    assert_same_trajectory(ours, theirs, ours_final, theirs_final, steps)
    return ours_net, infos, ours_final


@pytest.mark.parametrize("karras", [False, True], ids=["trailing", "karras"])
@pytest.mark.parametrize("schedule_name", ["linear", "scaled_linear"])
def test_dpmpp_2m_matches_diffusers(schedule_name, karras):
    _dpmpp_2m_case(schedule_name, 10, karras)


# -- flow matching -------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_euler_matches_diffusers(shift):
    steps = 10
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, shift=shift)
    scheduler.set_timesteps(steps)
    levels = scheduler.sigmas.to(torch.float64)  # diffusers' own grid (see test_flow_times)
    assert len(levels) == steps + 1 and levels[0] == 1 and levels[-1] == 0
    # diffusers calls the network with timestep = σ · num_train_timesteps.
    assert torch.allclose(scheduler.timesteps, scheduler.sigmas[:-1] * T, rtol=1e-6)

    noise = initial_noise()
    theirs_net = FakeNetwork(kind="velocity")
    theirs, theirs_final = run_diffusers(scheduler, theirs_net, noise)  # no init_noise_sigma: 1
    ours_net = FakeNetwork(kind="velocity")
    ours, ours_final, _ = run_ours(
        samplers.flow_euler, FlowDenoiser(ours_net, timestep_scale=T), noise * float(levels[0]), levels
    )
    assert_same_timesteps(ours_net, theirs_net)
    assert_same_trajectory(ours, theirs, ours_final, theirs_final, steps)


@pytest.mark.parametrize("shift", [1.0, 3.0, 0.5])
@pytest.mark.parametrize("steps", [1, 10, 28])
def test_flow_times(steps, shift):
    """flow_times is SD3's shift applied once to linspace(1, 0, N + 1).

    It is not diffusers' FlowMatchEuler grid, which is not compared here: that
    one spaces N values from 1 down to its ``sigma_min`` (already shift(1/T),
    from ``__init__``), shifts them all in ``set_timesteps`` (so the smallest σ is
    shift(shift(1/T))), then appends 0.
    """
    t = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    expected = shift * t / (1 + (shift - 1) * t)
    got = flow_times(steps, shift)
    assert got.dtype == torch.float64 and got.shape == (steps + 1,)
    assert torch.allclose(got, expected, rtol=1e-14, atol=0)
    assert got[0] == 1 and got[-1] == 0 and bool((got[:-1] > got[1:]).all())


# -- float32 over 50 steps ----------------------------------------------------------------
def test_ddim_float32_over_50_steps():
    steps = 50
    schedule = make_schedule("scaled_linear")
    scheduler = DDIMScheduler(
        num_train_timesteps=T, clip_sample=False, set_alpha_to_one=True,
        timestep_spacing="leading", **BETAS["scaled_linear"],
    )
    scheduler.set_timesteps(steps)
    levels = sampling_sigmas(schedule, steps, "leading")
    assert torch.equal(levels[:-1], schedule.sigmas[scheduler.timesteps])
    noise = initial_noise()
    theirs_net = FakeNetwork(schedule=schedule)
    theirs, theirs_final = run_diffusers(scheduler, theirs_net, noise, eta=0.0)
    ours_net = FakeNetwork(schedule=schedule)
    ours, ours_final, infos = run_ours(
        samplers.ddim, DiscreteTimeDenoiser(ours_net, schedule), vp_start(levels, noise), levels
    )
    _assert_float32(ours_net, infos, ours_final)
    assert_same_timesteps(ours_net, theirs_net)
    assert_same_trajectory(ours, theirs, ours_final, theirs_final, steps)


@pytest.mark.parametrize("karras", [False, True], ids=["trailing", "karras"])
def test_dpmpp_2m_float32_over_50_steps(karras):
    ours_net, infos, ours_final = _dpmpp_2m_case("scaled_linear", 50, karras)
    _assert_float32(ours_net, infos, ours_final)


def _assert_float32(network, infos, final):
    assert set(network.dtypes) == {torch.float32}
    assert set(network.t_dtypes) == {torch.float32}
    for info in infos:
        assert info.x.dtype == info.x0.dtype == info.eps.dtype == torch.float32
    assert final.dtype == torch.float32

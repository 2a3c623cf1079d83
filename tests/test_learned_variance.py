"""The learned variance (Nichol & Dhariwal 2021, eq. 15) is part of what a
denoiser returns (``Denoised``), so DDPM gets it through every wrapper:
classifier-free guidance, classifier guidance and inpainting, each with a
learned-variance model and with a fixed one."""
from __future__ import annotations

import pytest
import torch

from core.diffusion.denoisers import Denoised, DiscreteTimeDenoiser
from core.diffusion.guidance import ClassifierGuidedDenoiser
from core.diffusion.schedules import make_schedule
from core.diffusion.timesteps import sampling_sigmas
from core.sampling import run_sampler
from core.values import Conditioning, DiffusionModel, SamplingSchedule

F64 = torch.float64
SHAPE = (2, 3, 4, 4)


def eps_network(v: float | None):
    """ε̂ = 0.5 x_t, shifted by a prompt (so guidance matters); with ``v`` it
    also returns C channels of the constant variance interpolation v."""
    def network(x_t, t, cond=None):
        eps = 0.5 * x_t + (0.3 if cond is not None and cond.text else 0.0)
        return eps if v is None else torch.cat([eps, torch.full_like(x_t, v)], dim=1)
    return network


def quadratic_log_prob(x_t, sigma):
    return -0.5 * ((x_t - 0.2) ** 2).sum(dim=(1, 2, 3))


@pytest.fixture(scope="module")
def schedule():
    table = make_schedule("linear", 1000)
    return SamplingSchedule("linear", "ve", sampling_sigmas(table, 6, "leading"), table)


def model(schedule, v: float | None, wrapper: str) -> DiffusionModel:
    denoiser = DiscreteTimeDenoiser(eps_network(v), schedule.schedule, "epsilon",
                                    learned_variance=v is not None)
    if wrapper == "classifier":
        denoiser = ClassifierGuidedDenoiser(denoiser, quadratic_log_prob, 2.0)
    return DiffusionModel("fake", denoiser, "ve", 3, schedule=schedule.schedule)


def sample(model, schedule, wrapper, **options):
    settings = dict(sampler="ddpm", seed=7, dtype=F64, options=options)
    if wrapper == "cfg":
        settings.update(positive=Conditioning("a red circle"), negative=Conditioning(""),
                        guidance=3.0)
    if wrapper == "inpainting":
        mask = torch.zeros(1, 1, 4, 4)
        mask[..., 2:] = 1
        settings.update(mask=mask)
    latent = torch.linspace(-1, 1, 96, dtype=F64).reshape(SHAPE)
    return run_sampler(model, schedule, latent, **settings)[0]


WRAPPERS = ["cfg", "classifier", "inpainting"]


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("v, same_as", [(-1.0, "fixed_small"), (1.0, "fixed_large")])
def test_the_learned_variance_reaches_ddpm_through(schedule, wrapper, v, same_as):
    """v = −1 is Σ = β̃, v = +1 is Σ = β: with ``auto`` (and ``learned``) the
    run must equal the fixed-variance run of the same ε̂ with that variance."""
    learned = model(schedule, v, wrapper)
    fixed = model(schedule, None, wrapper)
    expected = sample(fixed, schedule, wrapper, variance=same_as)
    for variance in ("auto", "learned"):
        got = sample(learned, schedule, wrapper, variance=variance)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(expected, sample(fixed, schedule, wrapper, variance="fixed_small"
                                                if same_as == "fixed_large" else "fixed_large"))


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_a_fixed_variance_model_samples_fixed_small_and_refuses_learned(schedule, wrapper):
    fixed = model(schedule, None, wrapper)
    assert torch.equal(sample(fixed, schedule, wrapper, variance="auto"),
                       sample(fixed, schedule, wrapper, variance="fixed_small"))
    with pytest.raises(ValueError, match="needs a model trained with a learned variance .* "
                                         "choose another variance on the Sampler node"):
        sample(fixed, schedule, wrapper, variance="learned")


def test_wrappers_hand_on_the_variance_of_the_conditional_branch(schedule):
    """CFG keeps the conditional prediction's variance (GLIDE, improved-diffusion)."""
    from core.diffusion.guidance import CFGDenoiser

    def network(x_t, t, cond=None):
        v = 0.5 if cond.text else -0.5
        return torch.cat([0.5 * x_t, torch.full_like(x_t, v)], dim=1)

    inner = DiscreteTimeDenoiser(network, schedule.schedule, learned_variance=True)
    guided = CFGDenoiser(inner, Conditioning("a"), Conditioning(""), scale=4.0)
    result = guided(torch.ones(SHAPE, dtype=F64), torch.tensor(2.0, dtype=F64))
    assert isinstance(result, Denoised)
    assert torch.equal(result.variance, torch.full(SHAPE, 0.5, dtype=F64))


def test_inpainting_the_pixel_model_with_its_learned_variance():
    """Regression (issue 12): DDPM with variance ``auto`` on shapes-ddpm failed
    as soon as a mask was given ("the 'learned' variance needs a model trained
    with a learned variance"): inpainting dropped the variance."""
    from core.models.builtin import load_model

    loaded = load_model("shapes-ddpm")
    table = loaded.model.schedule
    schedule = SamplingSchedule(table.name, "ve", sampling_sigmas(table, 2, "trailing"), table)
    known = torch.zeros(1, 3, 32, 32)
    mask = torch.zeros(32, 32)
    mask[:, 16:] = 1
    run = lambda variance: run_sampler(  # noqa: E731
        loaded.model, schedule, known, sampler="ddpm", positive=Conditioning("a red circle"),
        mask=mask, seed=1, options={"variance": variance})[0]
    auto = run("auto")
    assert torch.equal(auto, run("learned"))
    assert not torch.equal(auto, run("fixed_small"))
    assert torch.equal(auto[..., :16], known[..., :16])  # the kept half is the input

"""Branching a run at step k: stop a sampler part-way, continue it exactly."""
from __future__ import annotations

import pytest
import torch

from core.diffusion.ideal import IdealDenoiser
from core.diffusion.schedules import make_schedule
from core.diffusion.timesteps import sampling_sigmas
from core.sampling import SamplingError, run_sampler
from core.values import DiffusionModel, Latent, SamplingSchedule

STEPS = 12


@pytest.fixture(scope="module")
def model():
    images = torch.rand(6, 3, 8, 8) * 2 - 1
    return DiffusionModel("ideal", IdealDenoiser(images, [f"image {i}" for i in range(6)]), "ve", 3)


@pytest.fixture(scope="module")
def schedule():
    table = make_schedule("cosine", 1000)
    return SamplingSchedule("cosine", "ve", sampling_sigmas(table, STEPS, "trailing"), table)


def _run(model, schedule, sampler="euler", **options):
    steps = []
    x, _ = run_sampler(model, schedule, torch.zeros(2, 3, 8, 8), sampler=sampler, seed=3,
                       on_step=lambda info, step: steps.append(info.x.clone()), **options)
    return x, steps


@pytest.mark.parametrize("sampler", ["euler", "ddim", "heun"])
def test_stop_then_resume_equals_one_run_bit_for_bit(model, schedule, sampler):
    whole, whole_steps = _run(model, schedule, sampler)
    part, part_steps = _run(model, schedule, sampler, stop_at_step=5)
    assert len(part_steps) == 5
    rest, rest_steps = run_sampler(model, schedule, part, sampler=sampler, seed=3, resume_step=5)
    assert torch.equal(part, whole_steps[5])  # x at step 5, exactly
    assert torch.equal(rest, whole)


def test_a_branch_shares_the_prefix_and_differs_after(model, schedule):
    _, original = _run(model, schedule, "euler_ancestral")
    prefix, _ = _run(model, schedule, "euler_ancestral", stop_at_step=6)
    branch_steps = []
    run_sampler(model, schedule, prefix, sampler="euler_ancestral", seed=99, resume_step=6,
                on_step=lambda info, step: branch_steps.append(info.x.clone()))
    assert torch.equal(branch_steps[0], original[6])  # the same x_t at the branch point
    assert not torch.equal(branch_steps[1], original[7])  # other noise after it


def test_impossible_step_ranges_are_refused(model, schedule):
    with pytest.raises(SamplingError, match="cannot run steps"):
        run_sampler(model, schedule, torch.zeros(1, 3, 8, 8), stop_at_step=STEPS + 1)
    with pytest.raises(SamplingError, match="cannot run steps"):
        run_sampler(model, schedule, torch.zeros(1, 3, 8, 8), resume_step=7, stop_at_step=3)


def test_sampler_node_continues_a_noisy_latent_and_checks_its_schedule(model, schedule):
    from nodes.diffusion import sample

    class Ctx:
        device = "cpu"

        def step(self, *args, **kwargs):
            pass

    settings = dict(positive=None, negative=None, mask=None, sampler="euler", guidance=1.0,
                    rescale=0.0, eta=0.0, variance="auto", seed=0, denoise=1.0)
    whole = sample(Ctx(), model, schedule, Latent(torch.zeros(1, 3, 8, 8)), **settings)
    half = sample(Ctx(), model, schedule, Latent(torch.zeros(1, 3, 8, 8)), stop_at_step=4,
                  **settings)["latent"]
    assert half.noisy and half.step == 4 and half.level == float(schedule.levels[4])
    rest = sample(Ctx(), model, schedule, half, **settings)["latent"]
    assert not rest.noisy and torch.equal(rest.samples, whole["latent"].samples)
    other = SamplingSchedule("cosine", "ve", sampling_sigmas(schedule.schedule, STEPS, "leading"),
                             schedule.schedule)
    with pytest.raises(SamplingError, match="left at step 4"):
        sample(Ctx(), model, other, half, **settings)

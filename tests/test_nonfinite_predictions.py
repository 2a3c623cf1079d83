"""Issue 12, "never a wrong number": a model that predicts NaN or inf (weights
too big to scan at load, or an fp16 overflow) stops the run with a message
at the first such step instead of writing a black or NaN image."""
from __future__ import annotations

import pytest
import torch

from core.diffusion.schedules import make_schedule
from core.diffusion.timesteps import sampling_sigmas
from core.sampling import SamplingError, run_sampler
from core.values import DiffusionModel, SamplingSchedule


def _model(bad_from_level: float) -> DiffusionModel:
    def denoiser(x, level, cond=None, **_):
        x0 = torch.zeros_like(x)
        return x0 + float("nan") if float(torch.as_tensor(level).flatten()[0]) < bad_from_level else x0
    return DiffusionModel("fake", denoiser, "ve", 3)


@pytest.mark.parametrize("sampler", ["euler", "ddim", "dpmpp_2m"])
def test_a_nan_prediction_stops_the_run_naming_the_step(sampler):
    table = make_schedule("scaled_linear")
    schedule = SamplingSchedule(table.name, "ve", sampling_sigmas(table, 6, "trailing"), table)
    run_sampler(_model(-1.0), schedule, torch.zeros(1, 3, 8, 8), sampler=sampler)  # finite: fine
    with pytest.raises(SamplingError, match=r"NaN or infinite values at step 4 .*try fp32"):
        run_sampler(_model(float(schedule.levels[3]) + 1e-6), schedule, torch.zeros(1, 3, 8, 8),
                    sampler=sampler)

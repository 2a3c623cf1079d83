"""Which noise levels a diffusion task trains on, and how much each counts.

Shared by the tasks that train ε-predicting networks on a discrete schedule
(shapes-ldm, -controlnet, -ddpm, -palette, -unclip).
"""
from __future__ import annotations

import torch

#: The most one sample's loss may be weighted (:func:`snr_weight`).
MAX_WEIGHT = 20.0
#: The top of the schedule that :func:`high_noise_timesteps` favours.
TOP_FRACTION = 0.1


def snr_weight(schedule, t: torch.Tensor) -> torch.Tensor:
    """min(1 + 1/SNR_t, MAX_WEIGHT) per sample (float32, on the CPU): the ε loss
    times this is v-prediction's loss for an ε network (Salimans & Ho 2022,
    §4), so errors in the layout x̂_0 at high noise count; truncated so the
    last timesteps cannot dominate (see ``ldm_task``)."""
    return (1 + 1 / schedule.snr[t.cpu()]).clamp(max=MAX_WEIGHT).float()


def high_noise_timesteps(num_timesteps: int, batch: int, fraction: float,
                         generator: torch.Generator) -> torch.Tensor:
    """t uniform, except that ``fraction`` of the batch is drawn from the top
    10 % of the schedule. Measured on a first shapes-ddpm: at 32×32 a plain
    background is 1024 identical pixels, so its mean stays readable through
    the noise until t ≈ 0.98 T (Chen 2023, "On the importance of noise
    scheduling", §2: redundancy raises the effective SNR). Only those last
    steps teach a model to take background and position from its condition
    (a prompt, a source image, an embedding), and uniform t gave them 2 % of
    the samples: the model then drew random backgrounds from pure noise."""
    t = torch.randint(num_timesteps, (batch,), generator=generator)
    high = torch.rand(batch, generator=generator) < fraction
    top = torch.randint(int((1 - TOP_FRACTION) * num_timesteps), num_timesteps, (batch,),
                        generator=generator)
    return torch.where(high, top, t)

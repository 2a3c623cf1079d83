"""Which noise levels a sampler visits: N of the schedule's T timesteps, Karras
noise levels, or a flow-matching time grid.

Every function returns the levels a sampler consumes: a descending float64
tensor of N + 1 values whose last entry is 0 (the clean sample). For
diffusion models the levels are VE noise levels σ (x = x_0 + σ ε); for
flow-matching models they are times t in [0, 1] (x = (1 − t) x_0 + t ε).

Spacings follow diffusers' names and arithmetic (Lin et al. 2024, Table 2),
always as whole timesteps. What matches diffusers 0.42 (tests/test_schedules.py
checks each line):

- DDIMScheduler, DDPMScheduler: the same timesteps for leading, trailing and
  linspace. diffusers' trailing sometimes appends a stray −1 (ignored here).
- EulerDiscrete, EulerAncestralDiscrete, HeunDiscrete: the same for leading
  and trailing. Not for linspace: they keep np.linspace(0, T − 1, N)
  unrounded (fractional timesteps, e.g. 832.5 at N = 7) and interpolate σ
  linearly in t; here linspace is rounded to whole timesteps and σ read off
  the table. The two agree only where N − 1 divides T − 1 (N = 2, 4, 10,
  28, 38, 112, 334, 1000 of T = 1000).
- DPMSolverMultistep: the same for trailing only; its leading and linspace
  space N + 1 points and drop the last (e.g. linspace N = 10: 999, 899, …).
- leading is diffusers' with ``steps_offset=0``, its constructors' default;
  Stable Diffusion's scheduler configs set 1, which moves every leading
  timestep up by one (901, 801, … for N = 10).
- karras spacing is σ-based (Karras et al. 2022, eq. 5), like diffusers'
  ``use_karras_sigmas``, which then rounds the timesteps it passes the network
  (here the network gets the fractional t of each σ).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from core.diffusion.registry import SPACINGS  # noqa: F401  (re-exported)
from core.diffusion.schedules import Schedule


def spaced_timesteps(num_timesteps: int, steps: int, spacing: str) -> torch.Tensor:
    """N integer timesteps out of T, descending (diffusers' ``timestep_spacing``)."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be between 1 and {num_timesteps}, got {steps}")
    T = num_timesteps
    # numpy's linspace/arange, as diffusers uses them: torch's round differently
    # at halves (e.g. linspace N = 27, trailing N = 48 pick another timestep).
    # Where numpy's arange yields N + 1 values (N = 61, …) diffusers keeps a
    # stray timestep −1; only the first N are kept here.
    if spacing == "linspace":  # both ends included: T−1 … 0
        picked = torch.from_numpy(np.linspace(0, T - 1, steps).round())
    elif spacing == "leading":  # 0, T/N, 2T/N … (never reaches T−1)
        picked = torch.arange(steps, dtype=torch.float64) * (T // steps)
    elif spacing == "trailing":  # T−1, T−1−T/N … (starts at pure noise)
        picked = torch.from_numpy(np.round(np.arange(T, 0, -T / steps)) - 1)[:steps].flip(0)
    else:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of leading, trailing, linspace")
    return picked.flip(0).long()


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, eq. 5: σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,
    then 0. ρ = 7 spends more steps at low noise, where detail forms."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (inv_max + ramp * (inv_min - inv_max)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def sampling_sigmas(schedule: Schedule, steps: int, spacing: str = "leading") -> torch.Tensor:
    """The VE noise levels σ (N + 1, ending in 0) a sampler visits on ``schedule``."""
    if spacing == "karras":
        return karras_sigmas(schedule.sigma_min, schedule.sigma_max, steps)
    timesteps = spaced_timesteps(schedule.num_timesteps, steps, spacing)
    sigmas = schedule.sigmas[timesteps].clamp(max=schedule.sigma_max)
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def shift_flow_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Esser et al. 2024 (SD3), eq. 23: t' = s·t / (1 + (s − 1)·t). A shift
    above 1 spends more steps at high noise, as large images need."""
    if shift <= 0:
        raise ValueError("the shift must be positive")
    return shift * t / (1 + (shift - 1) * t)


def flow_times(steps: int, shift: float = 1.0) -> torch.Tensor:
    """A flow-matching time grid: t from 1 (noise) to 0 (data) in N uniform
    steps, optionally shifted; N + 1 values."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    return shift_flow_time(torch.linspace(1, 0, steps + 1, dtype=torch.float64), shift)


def level_to_timestep(schedule: Schedule | None, level: float) -> float:
    """The training timestep a level corresponds to, for display: t for a VE σ
    on a discrete schedule, or the flow time itself."""
    if schedule is None:
        return float(level)
    if level <= 0:
        return -1.0
    return float(schedule.sigma_to_t(torch.tensor(level, dtype=torch.float64)))


def img2img_start(steps: int, strength: float) -> int:
    """SDEdit (Meng et al. 2022): with ``strength`` s, skip the first
    N − round(s·N) steps and start from q(x_t | x_0) there. s = 1 is pure txt2img."""
    if not 0.0 <= strength <= 1.0 or math.isnan(strength):
        raise ValueError(f"strength must be within [0, 1], got {strength}")
    return steps - int(round(strength * steps))

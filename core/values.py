"""The values that flow along MODEL, SCHEDULE, LATENT, CONDITIONING, MASK and
TRAJECTORY links (IMAGE is a plain tensor, see ``core.images``).

They are small frozen records around tensors, so nodes stay pure functions
and cached outputs cannot be changed by a later node.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from core.diffusion.schedules import Schedule
from core.latent_sizes import LatentSizes


@dataclass(frozen=True)
class Conditioning:
    """What a model is conditioned on: the prompt, and its encoding once a text
    encoder has made one (``embeddings``; extra tensors in ``extras``)."""

    text: str = ""
    embeddings: torch.Tensor | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConditioningBatch:
    """Several conditionings side by side along the batch: part i conditions
    rows [i·n, (i+1)·n) of x, n = len(x) / len(parts).

    This is how classifier-free guidance asks for the unconditional and the
    conditional prediction in one network call on ``cat([x, x])``, as
    diffusers' pipelines do, instead of two calls."""

    parts: tuple[Conditioning, ...]


@dataclass(frozen=True)
class DiffusionModel:
    """A backbone ready to sample: a denoiser D(x, level, cond=…) → x̂_0 (a
    ``core.diffusion.denoisers.Denoised``, which carries a learned variance
    when the network predicts one; a closed-form denoiser may return the bare
    x̂_0 tensor) and the facts a graph needs about it.

    ``parameterization`` is ``"ve"`` (diffusion) or ``"flow"``; latents have
    ``latent_channels`` channels and are ``downscale`` times smaller than the
    image (1 for pixel-space models). ``schedule`` is the training schedule of
    a discrete-time model (None for closed-form or flow models).
    ``batched_cfg`` says its denoiser takes a :class:`ConditioningBatch` as
    ``cond``, so guidance evaluates all conditionings in one network call.
    ``latent_sizes`` are the latent sizes it can sample (default: any).
    ``frames`` > 0 marks a video model: its latents are (B, T, C, h, w), and
    ``frames`` is the clip length it was trained on (0: an image model).
    """

    name: str
    denoiser: Callable[..., torch.Tensor]
    parameterization: str
    latent_channels: int
    downscale: int = 1
    schedule: Schedule | None = None
    description: str = ""
    latent_rgb: Any = None  # a core.previews.LatentRGB for fast previews of latents
    decoder: Any = None  # what turns its samples into pixels (the checkpoint's VAE; an
    # ``approximate`` one, TAESD, serves the live previews and keeps the VAE as ``exact``)
    batched_cfg: bool = False
    latent_sizes: LatentSizes = LatentSizes()
    frames: int = 0


@dataclass(frozen=True)
class SamplingSchedule:
    """The noise levels a sampler visits: descending, ending in 0 (σ or flow t)."""

    name: str
    parameterization: str
    levels: torch.Tensor  # (N + 1,) float64
    schedule: Schedule | None = None  # the discrete table, when there is one
    spacing: str = ""

    @property
    def steps(self) -> int:
        return len(self.levels) - 1

    @classmethod
    def discrete(cls, table: Schedule, steps: int, spacing: str) -> "SamplingSchedule":
        """``steps`` σ levels of a discrete schedule, picked with ``spacing``."""
        from core.diffusion.timesteps import sampling_sigmas

        return cls(table.name, "ve", sampling_sigmas(table, steps, spacing), table, spacing)


@dataclass(frozen=True)
class Latent:
    """Samples in a model's latent space (B, C, h, w); for pixel-space models
    these are images in [−1, 1].

    A sampler stopped part-way (``stop_at_step``) leaves a *noisy* latent:
    ``samples`` is then the sampler's own x at step ``step`` of its schedule,
    whose noise level is ``level`` (VE σ or flow t), and the next sampler
    continues from it exactly (how a run is branched)."""

    samples: torch.Tensor
    step: int | None = None
    level: float | None = None

    @property
    def noisy(self) -> bool:
        return self.step is not None


@dataclass(frozen=True)
class TrajectoryStep:
    """One recorded sampler step (CPU tensors, in the model's own scale)."""

    index: int
    level: float
    timestep: float
    x_t: torch.Tensor
    x0: torch.Tensor
    eps: torch.Tensor


@dataclass(frozen=True)
class Trajectory:
    """Every step of one sampling run, for scrubbing, plots and filmstrips."""

    sampler: str
    parameterization: str
    steps: tuple[TrajectoryStep, ...]
    levels: torch.Tensor  # the full level grid that was visited

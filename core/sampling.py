"""One sampling run, end to end, in three parts: the start state (noise, the
img2img start, a branch's resumed x), the denoiser the sampler calls
(guidance, inpainting, ControlNet steps) and the trajectory its callback
records. The Sampler node is a thin wrapper around :func:`run_sampler`;
scripts and notebooks can call it directly.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from core.diffusion.denoisers import to_model_scale
from core.diffusion.editing import InpaintDenoiser, noised_to_level
from core.diffusion.guidance import CFGDenoiser
from core.diffusion.noise import cpu_generator
from core.diffusion.registry import SAMPLERS, option_problems
from core.diffusion.samplers import StepInfo
from core.diffusion.timesteps import img2img_start, level_to_timestep
from core.latent_sizes import check_latent
from core.values import Conditioning, DiffusionModel, SamplingSchedule, Trajectory, TrajectoryStep

OnStep = Callable[[StepInfo, TrajectoryStep], Any]


class SamplingError(ValueError):
    """Settings that cannot sample (the message says which and why)."""


@dataclass(frozen=True)
class SamplingSettings:
    """Everything a run takes besides the model, the schedule and the latent.

    ``options`` are the sampler's own (``core.diffusion.registry``), by keyword:
    ``eta`` for ddim and euler_ancestral, ``variance`` for ddpm (``auto``,
    ``fixed_small``, ``fixed_large`` or ``learned``); the others take none.
    ``denoise`` < 1 starts part-way (SDEdit); ``mask`` (1 = generate) keeps
    the rest of the latent. ``resume_step`` k continues a run stopped at step
    k from its own x; ``stop_at_step`` k ends the run there, still noisy.
    """

    sampler: str = "euler"
    positive: Conditioning | None = None
    negative: Conditioning | None = None
    guidance: float = 1.0
    rescale: float = 0.0
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    denoise: float = 1.0
    mask: torch.Tensor | None = None
    on_step: OnStep | None = None
    device: Any = "cpu"
    dtype: torch.dtype = torch.float32
    resume_step: int | None = None
    stop_at_step: int | None = None


@dataclass(frozen=True)
class StartState:
    """Where the sampler starts and what the run draws on along the way."""

    x: torch.Tensor  # (B, C, h, w) the sampler's x at its first level
    known: torch.Tensor  # the input latent on the device (img2img and inpainting source)
    noise: torch.Tensor  # the initial noise, also what inpainting noises the known region with
    generator: torch.Generator  # the same seeded stream then feeds ancestral samplers
    mask: torch.Tensor | None  # (B|1, 1, h, w) 1 = generate, fitted to the latent


def check_compatible(model: DiffusionModel, schedule: SamplingSchedule, sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise SamplingError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if schedule.parameterization != model.parameterization:
        wanted = "a 'flow' schedule" if model.parameterization == "flow" else "a diffusion schedule"
        raise SamplingError(
            f"the model {model.name!r} is a {_kind(model.parameterization)} model and needs "
            f"{wanted}, but the schedule is {schedule.name!r}"
        )
    if model.parameterization not in SAMPLERS[sampler].parameterizations:
        allowed = ", ".join(n for n, s in SAMPLERS.items() if model.parameterization in s.parameterizations)
        raise SamplingError(
            f"the sampler {sampler!r} does not work with {_kind(model.parameterization)} models; "
            f"use one of {allowed}"
        )


def _kind(parameterization: str) -> str:
    return "flow-matching" if parameterization == "flow" else "diffusion"


def run_sampler(model: DiffusionModel, schedule: SamplingSchedule, latent: torch.Tensor,
                settings: SamplingSettings | None = None,
                **changes: Any) -> tuple[torch.Tensor, Trajectory]:
    """Sample from ``latent`` (B, C, h, w); return the result and its trajectory.

    ``settings`` (or its fields as keywords: ``sampler=``, ``guidance=``, …)
    say how; see :class:`SamplingSettings`. The initial noise is drawn on the
    CPU from ``seed`` (the same stream then feeds ancestral samplers), so a
    seed gives the same picture everywhere. On a zero-terminal-SNR schedule
    whose first step is its last timestep, ddim and ddpm start at ᾱ_T = 0
    exactly (σ = ∞, x_T = noise); the other samplers at its finite σ_max.
    """
    settings = _with_changes(settings or SamplingSettings(), changes)
    check_compatible(model, schedule, settings.sampler)
    check_latent(model, latent.shape, "the latent's size (an Empty latent's width and height, "
                 "or the size of the image encoded)")
    problems = option_problems(settings.sampler, settings.options)
    if problems:
        raise SamplingError("; ".join(problems))
    start, end = step_span(schedule, settings)
    levels = sampled_levels(schedule, start, end, settings.sampler)
    if len(levels) < 2:  # nothing to do (denoise 0, or resumed where it stops)
        return latent, Trajectory(settings.sampler, model.parameterization, (), schedule.levels)
    state = start_state(model, latent, float(levels[0]), settings)
    recorder = TrajectoryRecorder(schedule, model.parameterization, start, settings.on_step)
    result = SAMPLERS[settings.sampler].fn(
        assemble_denoiser(model, schedule, state, settings), state.x, levels,
        callback=recorder, generator=state.generator, **settings.options)
    if state.mask is not None and end == schedule.steps:
        result = state.mask * result + (1 - state.mask) * state.known
    return result, recorder.trajectory(settings.sampler)


def _with_changes(settings: SamplingSettings, changes: Mapping[str, Any]) -> SamplingSettings:
    names = {f.name for f in dataclasses.fields(SamplingSettings)}
    for name in changes:
        if name not in names:
            hint = (f"pass it as options={{{name!r}: …}}" if any(
                info.option(name) for info in SAMPLERS.values()) else
                f"the settings are {', '.join(sorted(names))}")
            raise SamplingError(f"run_sampler has no setting {name!r}: {hint}")
    return dataclasses.replace(settings, **changes)


# -- the start state ---------------------------------------------------------------
def step_span(schedule: SamplingSchedule, settings: SamplingSettings) -> tuple[int, int]:
    """The first and last step this run takes, of the schedule's N."""
    start = (img2img_start(schedule.steps, settings.denoise) if settings.resume_step is None
             else settings.resume_step)
    end = settings.stop_at_step or schedule.steps
    if not 0 <= start <= schedule.steps or not start <= end <= schedule.steps:
        raise SamplingError(f"cannot run steps {start + 1} to {end} of a {schedule.steps}-step "
                            "schedule")
    return start, end


def sampled_levels(schedule: SamplingSchedule, start: int, end: int, sampler: str) -> torch.Tensor:
    """The levels the sampler visits: the schedule's, except that a run from
    the last timestep of a zero-terminal-SNR table starts at σ = ∞ (ᾱ_T = 0,
    Lin et al. 2023) for the samplers that can (DDIM, DDPM)."""
    levels = schedule.levels[start:end + 1]
    if start == 0 and len(levels) > 1 and SAMPLERS[sampler].zero_snr_start and \
            _starts_at_zero_snr(schedule):
        levels = torch.cat([levels.new_full((1,), math.inf), levels[1:]])
    return levels


def _starts_at_zero_snr(schedule: SamplingSchedule) -> bool:
    """The schedule's first level is the clamped σ_max of a table whose σ_T = ∞."""
    table = schedule.schedule
    if table is None or not math.isinf(float(table.sigmas[-1])):
        return False
    return abs(float(schedule.levels[0]) - table.sigma_max) <= 1e-9 * table.sigma_max


def start_state(model: DiffusionModel, latent: torch.Tensor, first_level: float,
                settings: SamplingSettings) -> StartState:
    """The seeded noise and the x the sampler starts from: the latent noised to
    the first level by q(x_t | x_0), or, when resuming, the latent itself."""
    generator = cpu_generator(settings.seed)
    noise = torch.randn(tuple(latent.shape), generator=generator, dtype=torch.float32)
    noise = noise.to(device=settings.device, dtype=settings.dtype)
    known = latent.to(device=settings.device, dtype=settings.dtype)
    if settings.resume_step is None:
        x = noised_to_level(known, noise, first_level, model.parameterization)
    else:
        x = known.clone()  # exactly where the first run left it
        if settings.mask is not None:
            raise SamplingError("a resumed run cannot take an inpainting mask")
    mask = None
    if settings.mask is not None:
        mask = _fit_mask(settings.mask, known).to(device=settings.device, dtype=settings.dtype)
    return StartState(x, known, noise, generator, mask)


def _fit_mask(mask: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """A (B|1, 1, H, W) or (H, W) mask in [0, 1], resized to the latent's size."""
    import torch.nn.functional as F

    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == 3:
        mask = mask[:, None]
    if mask.shape[-2:] != latent.shape[-2:]:
        mask = F.interpolate(mask.float(), size=latent.shape[-2:], mode="bilinear", align_corners=False)
    return mask.clamp(0, 1)


# -- the denoiser the sampler calls ---------------------------------------------------------
def assemble_denoiser(model: DiffusionModel, schedule: SamplingSchedule, state: StartState,
                      settings: SamplingSettings):
    """The model as the sampler sees it: prompts whose ControlNets are bound to
    these steps, classifier-free guidance, then inpainting. Every layer hands
    on the model's learned variance (``Denoised``)."""
    positive, negative = _bound_to_steps(model, schedule, settings.positive, settings.negative)
    denoiser: Any = CFGDenoiser(_Bound(model), positive or Conditioning(),
                                negative or Conditioning(), settings.guidance, settings.rescale,
                                batched=model.batched_cfg)
    if state.mask is not None:
        denoiser = InpaintDenoiser(denoiser, state.known, state.mask, state.noise)
    return denoiser


def _bound_to_steps(model: DiffusionModel, schedule: SamplingSchedule, positive, negative):
    """The prompts with every ControlNet that acts on part of the steps bound to
    this schedule's steps (the network sees only t, so a hint learns which t
    are controlled). Flow models keep their hints unbound: a hint with a
    start/end then says it cannot act on part of their steps."""
    if model.schedule is None:
        return positive, negative
    from core.models.families.controlnet import bind_control_steps, step_timesteps

    bound = bind_control_steps([positive, negative],
                               step_timesteps(model.schedule, schedule.levels))
    return bound[0], bound[1]


class _Bound:
    """A DiffusionModel as a denoiser object (CFG wraps objects with a parameterization)."""

    def __init__(self, model: DiffusionModel) -> None:
        self.parameterization = model.parameterization
        self._fn = model.denoiser

    def __call__(self, x, level, **extra):
        return self._fn(x, level, **extra)


# -- the trajectory ------------------------------------------------------------------------
class TrajectoryRecorder:
    """The sampler's callback: keeps each step (float16, on the CPU) and hands
    it, with the sampler's own view, to ``on_step``."""

    def __init__(self, schedule: SamplingSchedule, parameterization: str, first_index: int,
                 on_step: OnStep | None) -> None:
        self.schedule = schedule
        self.parameterization = parameterization
        self.first_index = first_index
        self.on_step = on_step
        self.steps: list[TrajectoryStep] = []

    def __call__(self, info: StepInfo):
        if not bool(torch.isfinite(info.x0).all()):
            raise SamplingError(
                f"the model predicted NaN or infinite values at step {self.first_index + info.index + 1} "
                f"(noise level σ = {info.level:.4g}): its weights may hold NaN/inf (model files "
                "over 512 MiB are not scanned when loaded), or the precision overflows: try fp32")
        p = self.parameterization
        step = TrajectoryStep(
            index=self.first_index + info.index,
            level=info.level,
            timestep=level_to_timestep(self.schedule.schedule if p == "ve" else None, info.level),
            x_t=to_model_scale(p, info.x, info.level).detach().to("cpu", torch.float16),
            x0=info.x0.detach().to("cpu", torch.float16),
            eps=info.eps.detach().to("cpu", torch.float16),
        )
        self.steps.append(step)
        return self.on_step(info, step) if self.on_step is not None else None

    def trajectory(self, sampler: str) -> Trajectory:
        return Trajectory(sampler, self.parameterization, tuple(self.steps), self.schedule.levels)

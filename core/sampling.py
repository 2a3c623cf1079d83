"""One sampling run, end to end: noise, img2img start, guidance, inpainting,
the sampler loop and its trajectory. The Sampler node is a thin wrapper
around :func:`run_sampler`; scripts and notebooks can call it directly.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from core.diffusion.denoisers import to_model_scale
from core.diffusion.editing import InpaintDenoiser, noised_to_level
from core.diffusion.guidance import CFGDenoiser
from core.diffusion.noise import cpu_generator
from core.diffusion.samplers import SAMPLERS, StepInfo
from core.diffusion.timesteps import img2img_start, level_to_timestep
from core.values import Conditioning, DiffusionModel, SamplingSchedule, Trajectory, TrajectoryStep

OnStep = Callable[[StepInfo, TrajectoryStep], Any]


class SamplingError(ValueError):
    """Settings that cannot sample (the message says which and why)."""


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


def run_sampler(
    model: DiffusionModel,
    schedule: SamplingSchedule,
    latent: torch.Tensor,
    *,
    sampler: str = "euler",
    positive: Conditioning | None = None,
    negative: Conditioning | None = None,
    guidance: float = 1.0,
    rescale: float = 0.0,
    eta: float = 0.0,
    variance: str = "auto",
    seed: int = 0,
    denoise: float = 1.0,
    mask: torch.Tensor | None = None,
    on_step: OnStep | None = None,
    device: Any = "cpu",
    dtype: torch.dtype = torch.float32,
    resume_step: int | None = None,
    stop_at_step: int | None = None,
) -> tuple[torch.Tensor, Trajectory]:
    """Sample from ``latent`` (B, C, h, w); return the result and its trajectory.

    The initial noise is drawn on the CPU from ``seed`` (the same stream then
    feeds ancestral samplers), so a seed gives the same picture everywhere.
    ``denoise`` < 1 starts part-way (SDEdit); ``mask`` (1 = generate) keeps the
    rest of ``latent``. ``eta`` is DDIM's η; ``variance`` is DDPM's (``auto``,
    ``fixed_small``, ``fixed_large`` or ``learned``).

    Branching: with ``resume_step`` k, ``latent`` is the sampler's own x at
    step k of this schedule (a run stopped there) and sampling goes on from
    it exactly, drawing any fresh noise from ``seed``; ``stop_at_step`` k
    ends the run at step k and returns that x, still noisy.
    """
    check_compatible(model, schedule, sampler)
    start = img2img_start(schedule.steps, denoise) if resume_step is None else resume_step
    end = schedule.steps if not stop_at_step else stop_at_step
    if not 0 <= start <= schedule.steps or not start <= end <= schedule.steps:
        raise SamplingError(f"cannot run steps {start + 1} to {end} of a {schedule.steps}-step "
                            "schedule")
    levels = schedule.levels[start:end + 1]
    if len(levels) < 2:  # nothing to do (denoise 0, or resumed where it stops)
        return latent, Trajectory(sampler, model.parameterization, (), schedule.levels)
    generator = cpu_generator(seed)
    noise = torch.randn(tuple(latent.shape), generator=generator, dtype=torch.float32)
    noise = noise.to(device=device, dtype=dtype)
    p = model.parameterization
    known = latent.to(device=device, dtype=dtype)
    if resume_step is None:
        x = noised_to_level(known, noise, float(levels[0]), p)  # q(x_t | x_0) at the start level
    else:
        x = known.clone()  # exactly where the first run left it
        if mask is not None:
            raise SamplingError("a resumed run cannot take an inpainting mask")
    positive, negative = _bound_to_steps(model, schedule, positive, negative)
    denoiser: Any = CFGDenoiser(_Bound(model), positive or Conditioning(),
                                negative or Conditioning(), guidance, rescale,
                                batched=model.batched_cfg)
    if mask is not None:
        mask = _fit_mask(mask, known).to(device=device, dtype=dtype)
        denoiser = InpaintDenoiser(denoiser, known, mask, noise)
    recorded: list[TrajectoryStep] = []

    def callback(info: StepInfo):
        step = TrajectoryStep(
            index=start + info.index,
            level=info.level,
            timestep=level_to_timestep(schedule.schedule if p == "ve" else None, info.level),
            x_t=to_model_scale(p, info.x, info.level).detach().to("cpu", torch.float16),
            x0=info.x0.detach().to("cpu", torch.float16),
            eps=info.eps.detach().to("cpu", torch.float16),
        )
        recorded.append(step)
        return on_step(info, step) if on_step is not None else None

    options: dict[str, Any] = {}
    if sampler == "ddim":
        options["eta"] = eta
    elif sampler == "ddpm":
        options["variance"] = _ddpm_variance(variance, model)
    result = SAMPLERS[sampler].fn(denoiser, x, levels, callback=callback, generator=generator, **options)
    if mask is not None and end == schedule.steps:
        result = mask * result + (1 - mask) * known
    return result, Trajectory(sampler, p, tuple(recorded), schedule.levels)


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
        with_variance = getattr(model.denoiser, "denoise_with_variance", None)
        if with_variance is not None:
            self.denoise_with_variance = with_variance

    def __call__(self, x, level, **extra):
        return self._fn(x, level, **extra)


def _ddpm_variance(choice: str, model: DiffusionModel) -> str:
    """``auto`` uses the model's learned variance when it has one (Nichol & Dhariwal)."""
    if choice != "auto":
        return choice
    return "learned" if getattr(model.denoiser, "learned_variance", False) else "fixed_small"


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

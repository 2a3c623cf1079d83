"""Diffusion nodes: Schedule, Sampler and the forward process of the lectures.

Their schedule, spacing and sampler choices, and the Sampler node's option
fields (η, variance, …), come from ``core.diffusion.registry``: a sampler
registered there appears here and gets the options it declares.
"""
from __future__ import annotations

from core.diffusion.registry import (
    FLOW_SCHEDULE,
    MAX_TIMESTEPS,
    SAMPLERS,
    SCHEDULE_NAMES,
    SPACINGS,
    SamplerOption,
    option_fields,
    options_from_fields,
)
from core.nodespec import MAX_SEED, Input, NodeSpec, Output
from core.ports import PortType



def make_sampling_schedule(ctx, name, timesteps, zero_snr, spacing, steps, shift):
    """The levels a sampler will visit (σ for diffusion, t for flow)."""
    from core.diffusion.schedules import make_schedule
    from core.diffusion.timesteps import flow_times, sampling_sigmas
    from core.values import SamplingSchedule

    if name == FLOW_SCHEDULE:
        return SamplingSchedule("flow", "flow", flow_times(steps, shift), None, "uniform")
    if steps > timesteps and spacing != "karras":
        raise ValueError(f"{steps} steps cannot be picked from a schedule of {timesteps} timesteps")
    table = make_schedule(name, timesteps, zero_snr)
    return SamplingSchedule(name, "ve", sampling_sigmas(table, steps, spacing), table, spacing)


def sample(ctx, model, schedule, latent, positive, negative, mask,
           sampler, guidance, rescale, seed, denoise, stop_at_step=0, **option_values):
    """Run one sampler over the schedule; every step is streamed as an event.
    A noisy latent (from a sampler stopped part-way) is continued exactly
    from its step: that is how a run branches. ``option_values`` are the
    node's option fields; the sampler gets those it declares."""
    from core.sampling import SamplingError, run_sampler
    from core.values import Latent

    resume = latent.step if latent.noisy else None
    if resume is not None and abs(float(schedule.levels[resume]) - latent.level) > 1e-9 * max(
            1.0, abs(latent.level)):
        raise SamplingError(
            f"the latent was left at step {resume} at noise level {latent.level:.6g}, but this "
            f"schedule's step {resume} is at {float(schedule.levels[resume]):.6g}: continue it "
            "with the schedule it was started with")

    def on_step(info, step):
        ctx.step(
            step.index, schedule.steps, t=step.level, x_t=step.x_t, x0=step.x0, eps=step.eps,
            timestep=step.timestep, parameterization=model.parameterization,
            latent_rgb=model.latent_rgb, decoder=model.decoder,
            state=info.x.detach().to("cpu", copy=True),  # exact x, for branching at this step
        )

    result, trajectory = run_sampler(
        model, schedule, latent.samples, sampler=sampler, positive=positive, negative=negative,
        guidance=guidance, rescale=rescale, options=options_from_fields(sampler, option_values),
        seed=seed,
        denoise=denoise, mask=mask, on_step=on_step, device=ctx.device,
        resume_step=resume, stop_at_step=stop_at_step or None,
    )
    if stop_at_step and stop_at_step < schedule.steps:
        return {"latent": Latent(result.detach().float().cpu(), stop_at_step,
                                 float(schedule.levels[stop_at_step])), "trajectory": trajectory}
    return {"latent": Latent(result.detach().float().cpu()), "trajectory": trajectory}


def forward_process(ctx, image, schedule, t, seed, mode):
    """x_t from an image: the closed form q(x_t | x_0), or t single steps of
    q(x_t | x_{t−1}) (the lectures' two demos), shown in [0, 1]."""
    from core.diffusion.forward import q_sample, q_step
    from core.diffusion.noise import cpu_generator
    from core.images import check_image
    import torch

    check_image(image)
    table = schedule.schedule
    if table is None:
        raise ValueError("the forward process needs a diffusion schedule (not 'flow')")
    if t >= table.num_timesteps:
        raise ValueError(f"t = {t} is past the schedule's last timestep {table.num_timesteps - 1}")
    x0 = image * 2 - 1  # pixels [0, 1] → data [−1, 1]
    generator = cpu_generator(seed)
    if mode == "closed form":
        x = q_sample(x0, t, table, torch.randn(x0.shape, generator=generator))
    else:
        x = x0
        for step in range(t + 1):
            x = q_step(x, step, table, torch.randn(x0.shape, generator=generator))
            ctx.step(step, t + 1, t=float(step), x_t=x)
    return (x + 1) / 2


def _option_input(field: str, option: SamplerOption) -> Input:
    """A sampler option as a node field, shown only while a sampler that takes it is chosen."""
    users = tuple(n for n, info in SAMPLERS.items() if any(o.node_field == field for o in info.options))
    tooltip = f"{option.tooltip} (used by {', '.join(users)})"
    shown = ("sampler", users)
    if option.choices is not None:
        return Input(field, PortType.STRING, option.default, choices=option.choices, tooltip=tooltip,
                     shown_when=shown)
    return Input(field, PortType.FLOAT, option.default, min=option.minimum, max=option.maximum,
                 step=0.05, tooltip=tooltip, shown_when=shown)


def schedule_spec() -> NodeSpec:
    return NodeSpec(
        type_id="diffusion.schedule",
        title="Schedule",
        category="diffusion",
        description="A noise schedule and the levels N sampling steps visit.",
        fn=make_sampling_schedule,
        inputs=(
            Input("name", PortType.STRING, "scaled_linear", choices=(*SCHEDULE_NAMES, FLOW_SCHEDULE),
                  tooltip="β schedule; 'flow' gives a flow-matching time grid"),
            Input("timesteps", PortType.INT, 1000, min=2, max=MAX_TIMESTEPS,
                  tooltip="T, training steps"),
            Input("zero_snr", PortType.BOOLEAN, False,
                  tooltip="Rescale to zero terminal SNR (Lin et al.); pair with trailing spacing. "
                          "ddim and ddpm then start at ᾱ_T = 0 exactly, the others at σ_max"),
            Input("spacing", PortType.STRING, "leading", choices=SPACINGS),
            Input("steps", PortType.INT, 25, min=1, max=10000, tooltip="Sampling steps N"),
            Input("shift", PortType.FLOAT, 1.0, min=0.01, max=100.0, step=0.1,
                  tooltip="Flow only: t' = s·t/(1 + (s − 1)·t)"),
        ),
        outputs=(Output("schedule", PortType.SCHEDULE),),
    )


def sampler_spec() -> NodeSpec:
    """The Sampler node of the samplers registered now (choices and option fields)."""
    options = tuple(_option_input(field, option) for field, option in option_fields().items())
    return NodeSpec(
        type_id="diffusion.sampler",
        title="Sampler",
        category="diffusion",
        description="Denoise a latent step by step; every step can be watched, paused and cancelled.",
        fn=sample,
        inputs=(
            Input("model", PortType.MODEL),
            Input("schedule", PortType.SCHEDULE),
            Input("latent", PortType.LATENT, tooltip="Empty latent, or an image's latent for img2img"),
            Input("positive", PortType.CONDITIONING, optional=True),
            Input("negative", PortType.CONDITIONING, optional=True),
            Input("mask", PortType.MASK, optional=True, tooltip="1 where to generate (inpainting)"),
            Input("sampler", PortType.STRING, "euler", choices=tuple(SAMPLERS)),
            Input("guidance", PortType.FLOAT, 1.0, min=0.0, max=50.0, step=0.5,
                  tooltip="Classifier-free guidance scale g = 1 + w; 1 = no guidance"),
            Input("rescale", PortType.FLOAT, 0.0, min=0.0, max=1.0, step=0.05,
                  tooltip="Guidance rescale φ (Lin et al.)"),
            *options,
            Input("seed", PortType.INT, 0, min=0, max=MAX_SEED, widget="seed"),
            Input("denoise", PortType.FLOAT, 1.0, min=0.0, max=1.0, step=0.05,
                  tooltip="Strength: below 1 keeps part of the input latent (img2img)"),
            Input("stop_at_step", PortType.INT, 0, min=0, max=10000,
                  tooltip="Stop after this step and hand on the noisy latent (0 = run to "
                          "the end); a second sampler continues it exactly: a branch"),
        ),
        outputs=(Output("latent", PortType.LATENT), Output("trajectory", PortType.TRAJECTORY)),
    )


FORWARD = NodeSpec(
    type_id="diffusion.forward",
    title="Forward process",
    category="diffusion",
    description="Noise an image to step t: closed form q(x_t|x_0) or t steps of q(x_t|x_{t−1}).",
    fn=forward_process,
    inputs=(
        Input("image", PortType.IMAGE),
        Input("schedule", PortType.SCHEDULE),
        Input("t", PortType.INT, 250, min=0, max=MAX_TIMESTEPS - 1,
              tooltip="Timestep index 0 … T−1"),
        Input("seed", PortType.INT, 0, min=0, max=MAX_SEED, widget="seed"),
        Input("mode", PortType.STRING, "closed form", choices=("closed form", "step by step")),
    ),
    outputs=(Output("image", PortType.IMAGE),),
)

NODES = (schedule_spec(), sampler_spec(), FORWARD)

"""The diffusion math of the lectures, written to be read next to the papers.

- ``schedules``: named β schedules and their float64 tables (β, α, ᾱ, σ, SNR, posterior).
- ``timesteps``: which levels a sampler visits (spacings, Karras, flow grids).
- ``forward``: q(x_t | x_{t−1}), q(x_t | x_0), q(x_{t−1} | x_t, x_0).
- ``denoisers``: ε/v/x0/velocity networks wrapped into one denoiser interface.
- ``samplers``: ddpm, ddim, euler, euler_ancestral, heun, dpmpp_2m, flow_euler.
- ``guidance``: classifier-free and classifier guidance.
- ``editing``: image-to-image strength and inpainting.
- ``ideal``: closed-form denoisers (a finite image set; Gaussian data).
- ``noise``: seeded CPU noise.
"""
from core.diffusion.denoisers import (
    DiscreteTimeDenoiser,
    FlowDenoiser,
    predicted_noise,
    to_model_scale,
)
from core.diffusion.editing import InpaintDenoiser, noised_to_level
from core.diffusion.forward import q_posterior, q_sample, q_step
from core.diffusion.guidance import CFGDenoiser, ClassifierGuidedDenoiser
from core.diffusion.ideal import GaussianDenoiser, IdealDenoiser
from core.diffusion.noise import cpu_generator, initial_noise
from core.diffusion.samplers import SAMPLERS, STOP, StepInfo
from core.diffusion.schedules import SCHEDULE_NAMES, Schedule, make_schedule
from core.diffusion.timesteps import (
    SPACINGS,
    flow_times,
    img2img_start,
    karras_sigmas,
    sampling_sigmas,
    spaced_timesteps,
)

__all__ = [
    "CFGDenoiser", "ClassifierGuidedDenoiser", "DiscreteTimeDenoiser", "FlowDenoiser",
    "GaussianDenoiser", "IdealDenoiser", "InpaintDenoiser", "SAMPLERS", "SCHEDULE_NAMES",
    "SPACINGS", "STOP", "Schedule", "StepInfo", "cpu_generator", "flow_times",
    "img2img_start", "initial_noise", "karras_sigmas", "make_schedule", "noised_to_level",
    "predicted_noise", "q_posterior", "q_sample", "q_step", "sampling_sigmas",
    "spaced_timesteps", "to_model_scale",
]

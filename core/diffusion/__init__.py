"""The diffusion math of the lectures, written to be read next to the papers.

- ``registry``: schedule, spacing and sampler names, each sampler's options (no torch).
- ``schedules``: named β schedules and their float64 tables (β, α, ᾱ, σ, SNR, posterior).
- ``timesteps``: which levels a sampler visits (spacings, Karras, flow grids).
- ``forward``: q(x_t | x_{t−1}), q(x_t | x_0), q(x_{t−1} | x_t, x_0).
- ``denoisers``: ε/v/x0/velocity networks wrapped into one denoiser interface.
- ``samplers``: ddpm, ddim, euler, euler_ancestral, heun, dpmpp_2m, flow_euler.
- ``guidance``: classifier-free and classifier guidance.
- ``editing``: image-to-image strength and inpainting.
- ``ideal``: closed-form denoisers (a finite image set; Gaussian data).
- ``noise``: seeded CPU noise.

The names below are imported on first use, so ``core.diffusion.registry``
(which the node catalogue reads) loads without torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "denoisers": ("Denoised", "DiscreteTimeDenoiser", "FlowDenoiser", "as_denoised",
                  "predicted_noise", "to_model_scale"),
    "editing": ("InpaintDenoiser", "noised_to_level"),
    "forward": ("q_posterior", "q_sample", "q_step"),
    "guidance": ("CFGDenoiser", "ClassifierGuidedDenoiser"),
    "ideal": ("GaussianDenoiser", "IdealDenoiser"),
    "noise": ("cpu_generator", "initial_noise"),
    "registry": ("SAMPLERS", "SCHEDULE_NAMES", "SPACINGS"),
    "samplers": ("STOP", "StepInfo"),
    "schedules": ("Schedule", "make_schedule"),
    "timesteps": ("flow_times", "img2img_start", "karras_sigmas", "sampling_sigmas",
                  "spaced_timesteps"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'core.diffusion' has no attribute {name!r}")
    return getattr(importlib.import_module(f"core.diffusion.{_MODULE_OF[name]}"), name)

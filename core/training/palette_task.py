"""Training shapes-palette: image-to-image diffusion by concatenation.

Palette (Saharia et al. 2022, §3): a conditional diffusion model p(y | x)
whose U-Net sees the source image x concatenated to the noisy target y_t
along the channels, trained with the plain ε loss of DDPM (Ho et al. 2020,
eq. 14) — no text, no cross-attention, no classifier-free guidance. Here
the task is colourisation: x is the luminance of a shapes scene (ITU-R
BT.601), y the colour scene, 32×32 pixels on shapes-ddpm's cosine schedule.

A third of each batch is drawn from the top 10 % of t (as ``ddpm_task`` does,
Chen 2023): at 32×32 a plain background stays readable through the noise
until t ≈ 0.98 T, and only those steps teach the model to take the
background from the source image rather than from the noise.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.diffusion.forward import q_sample
from core.diffusion.schedules import make_schedule
from core.models.concat import LUMA, luminance
from core.models.shapes import PALETTE_UNET_CONFIG, make_palette_unet
from core.training.common import jsonable, write_model
from core.training.data import ShapesPool
from core.training.ddpm_task import PIXELS, SCHEDULE
from core.training.noise_levels import high_noise_timesteps, snr_weight


class PaletteTask:
    name = "shapes-palette"

    def __init__(self, pool: ShapesPool, batch: int, device, high_noise: float = 0.3) -> None:
        if pool.images.shape[-1] != PIXELS:
            raise ValueError(f"shapes-palette trains on {PIXELS}×{PIXELS} images")
        self.pool, self.batch, self.device = pool, batch, device
        self.high_noise = high_noise
        self.schedule = make_schedule(*SCHEDULE)
        self.unet = make_palette_unet().to(device)

    def modules(self):
        return {"unet": self.unet}

    def timesteps(self, generator: torch.Generator) -> torch.Tensor:
        return high_noise_timesteps(self.schedule.num_timesteps, self.batch, self.high_noise,
                                    generator)

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        y0 = self.pool.image_batch(indices)  # (B, 3, 32, 32) in [−1, 1]
        source = luminance(y0)  # (B, 1, 32, 32)
        t = self.timesteps(generator)
        noise = torch.randn(y0.shape, generator=generator)
        y_t = q_sample(y0, t, self.schedule, noise)  # DDPM eq. 4
        inputs = torch.cat([y_t, source], dim=1).to(self.device)  # (B, 4, 32, 32): Palette §3
        eps = self.unet(inputs, t.to(self.device)).sample
        simple = ((eps - noise.to(self.device)) ** 2).mean(dim=(1, 2, 3))  # DDPM eq. 14
        return (simple * snr_weight(self.schedule, t).to(self.device)).mean()

    def export(self, path: Path, modules, recipe) -> None:
        write_model(path, modules, {
            "name": "shapes-palette", "kind": "palette", "prediction": "epsilon",
            "clip_sample": True, "sample_size": PIXELS,
            "schedule": {"name": SCHEDULE[0], "timesteps": SCHEDULE[1]},
            "condition": {"kind": "luminance", "channels": 1, "weights": list(LUMA)},
            "components": {"unet": {"class": "UNet2DModel", "config": jsonable(PALETTE_UNET_CONFIG)}},
            "recipe": {**recipe, "task": "palette", "loss": "ε, weighted min(1 + 1/SNR, 20)",
                       "high_noise_fraction": self.high_noise, "batch": self.batch,
                       "pool": len(self.pool)},
        })

"""Training shapes-ddpm: DDPM in pixel space with a learned variance.

The setting of Improved DDPM (Nichol & Dhariwal 2021): 32×32 images, the
cosine schedule with T = 1000 (their eq. 17), a U-Net that outputs ε̂ and
the variance interpolant v, trained with the hybrid loss L_simple + λ L_vlb
(their eq. 16; ``core.diffusion.losses``), L_simple weighted by
min(1 + 1/SNR_t, 20) by default as shapes-ldm's (``ldm_task``): without it a
first run drew good shapes but left position and background at chance. Each step is Algorithm 1 of Ho et
al. 2020: x_0 from the data, t uniform, ε ~ N(0, I), a gradient step on
‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)‖². The model is caption-conditioned
through cross-attention with captions dropped at random (all of them 10% of
the time), so the same network also runs unconditionally, the model that
classifier guidance steers.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.diffusion.forward import q_sample
from core.diffusion.losses import vlb_terms
from core.diffusion.schedules import make_schedule
from core.models.shapes import DDPM_UNET_CONFIG, make_ddpm_unet
from core.training.common import CAPTION_DROPOUT, CaptionEncoder, jsonable, write_model
from core.training.data import ShapesPool
from core.training.ldm_task import WEIGHTINGS
from core.training.noise_levels import high_noise_timesteps, snr_weight

SCHEDULE = ("cosine", 1000)
PIXELS = 32


class DDPMTask:
    name = "shapes-ddpm"

    def __init__(self, pool: ShapesPool, batch: int, device, weighting: str = "v",
                 high_noise: float = 0.5) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown loss weighting {weighting!r}; choose one of {WEIGHTINGS}")
        self.weighting = weighting
        self.high_noise = high_noise
        if pool.images.shape[-1] != PIXELS:
            raise ValueError(f"shapes-ddpm trains on {PIXELS}×{PIXELS} images")
        self.pool, self.batch, self.device = pool, batch, device
        self.schedule = make_schedule(*SCHEDULE)
        self.text = CaptionEncoder(device)
        self.unet = make_ddpm_unet().to(device)

    def timesteps(self, generator: torch.Generator) -> torch.Tensor:
        """Half the batch from the top of the schedule (``noise_levels``)."""
        return high_noise_timesteps(self.schedule.num_timesteps, self.batch, self.high_noise,
                                    generator)

    def modules(self):
        return {"unet": self.unet, "text_encoder": self.text.model}

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        x0 = self.pool.image_batch(indices)  # (B, 3, 32, 32) in [−1, 1]
        texts = self.text.captions(self.pool, indices, generator)
        t = self.timesteps(generator)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = q_sample(x0, t, self.schedule, noise)  # DDPM eq. 4
        x0, x_t, noise, t = (v.to(self.device) for v in (x0, x_t, noise, t))
        context, _ = self.text.encode(texts)
        eps, v = self.unet(x_t, t, encoder_hidden_states=context).sample.chunk(2, dim=1)
        simple = ((eps - noise) ** 2).mean(dim=(1, 2, 3))  # L_simple, DDPM eq. 14
        if self.weighting == "v":  # see ldm_task: layout and background need the high-noise end
            simple = simple * snr_weight(self.schedule, t).to(self.device)
        vlb = vlb_terms(x0, x_t, t, eps.detach(), v, self.schedule).mean()  # N&D eq. 16
        return simple.mean() + vlb

    def export(self, path: Path, modules, recipe) -> None:
        write_model(path, modules, {
            "name": "shapes-ddpm", "kind": "pixel", "prediction": "epsilon",
            "learned_variance": True, "clip_sample": True, "sample_size": PIXELS,
            "schedule": {"name": SCHEDULE[0], "timesteps": SCHEDULE[1]},
            "components": {
                "unet": {"class": "UNet2DConditionModel", "config": jsonable(DDPM_UNET_CONFIG)},
                "text_encoder": self.text.component(),
            },
            "recipe": {**recipe, "task": "ddpm", "loss": "hybrid (L_simple + L_vlb in bits/dim)",
                       "loss_weighting": self.weighting,
                       "high_noise_fraction": self.high_noise,
                       "batch": self.batch, "pool": len(self.pool),
                       "caption_dropout": CAPTION_DROPOUT},
        })

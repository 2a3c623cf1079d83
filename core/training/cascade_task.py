"""Training the cascade: a 16×16 base on a frozen text encoder, and 16 → 64 SR.

**Base** (``shapes-cascade-base``): pixel-space DDPM at 16×16 (Algorithm 1
of Ho et al. 2020 with the ε loss weighted min(1 + 1/SNR, 20) and a third
of the batch from the top tenth of t, as ``ddpm_task``), cross-attending to
the states of a *frozen* text encoder, as Imagen (Saharia et al. 2022, §2.1)
keeps T5 frozen: ``shapes-t5`` (pretrained on the captions alone) or, for
Imagen's comparison of the two (§4.4, Fig. A.5), the text tower of
``shapes-clip`` (``shapes-cascade-base-clip``). The encoder is copied into
the model file, so the base loads like any pixel model.

**Super-resolution** (``shapes-sr``): Palette's concatenation (``concat.py``)
with the 16×16 picture upsampled to 64×64 (bicubic, as the graph does),
corrupted by noise conditioning augmentation at a level s drawn uniformly
from the first half of the schedule, s fed to the U-Net beside t (its class
embedding goes through the timestep projection): Ho et al. 2022, §4.1.
Convolutions only, so it upsamples any size. It predicts v (Salimans & Ho
2022), not ε: an ε-model drew the shapes sharply but shifted every colour
and background (black came back green or gray; PSNR 12.8 dB against
bicubic's 28.8). Measured cause: its ε̂ missed the mean of the noise
(error 0.010 against the mean's spread of 0.015) while matching ε to an MSE
of 0.0008: at 64×64 the picture's mean is almost invisible in x_t near T,
ε's loss hardly sees it, and x̂_0 = (x_t − √(1−ᾱ) ε̂)/√ᾱ blows that miss up
to the whole background. v is −x_0 at t = T, so the network is taught the
picture (here: the upsampled source) exactly where ε leaves it free. A
third of each batch comes from the top tenth of t (``noise_levels``).
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from core.checkpoints import CheckpointError, load_checkpoint
from core.checkpoints.safetensors_io import component
from core.diffusion.forward import q_sample
from core.diffusion.schedules import make_schedule
from core.models.cascade import (
    HIGH_PIXELS,
    LOW_PIXELS,
    MAX_AUGMENTATION,
    augment,
    downsample,
)
from core.models.concat import source_channels
from core.models.shapes import (
    CASCADE_BASE_UNET_CONFIG,
    SR_UNET_CONFIG,
    make_ddpm_unet,
    make_palette_unet,
)
from core.models.text import WordTokenizer, make_text_encoder
from core.training.common import CAPTION_DROPOUT, jsonable, write_model
from core.training.data import ShapesPool, dropped_caption
from core.training.noise_levels import high_noise_timesteps, snr_weight

SCHEDULE = ("cosine", 1000)


class FrozenText:
    """A pretrained text encoder, frozen: texts → (B, L, 64) states."""

    def __init__(self, path: Path, device) -> None:
        tensors, meta = load_checkpoint(path)
        self.source = Path(path).stem
        if meta.get("kind") == "text_encoder":  # shapes-t5, shapes-gemma
            from core.models.builtin import text_encoder_from

            self.component = dict(meta["components"]["text_encoder"])
            self.encoder = text_encoder_from(path, tensors, meta, device)
            self.model = self.encoder.model
        elif meta.get("kind") == "clip":  # shapes-clip's text tower
            from core.models.text import TextEncoder

            clip = meta["components"]["clip"]
            self.component = {"class": "CLIPTextModel", "config": clip["config"]["text"],
                              "vocabulary": clip["vocabulary"], "max_length": clip["max_length"]}
            self.model = make_text_encoder(self.component["config"])
            self._load(component(component(tensors, "clip"), "text_encoder"), path)
            self.encoder = TextEncoder(WordTokenizer(clip["vocabulary"], clip["max_length"]),
                                       self.model)
        else:
            raise CheckpointError(f"{path}: not a text encoder (shapes-t5, shapes-gemma) or "
                                  "CLIP file")
        self.model.to(device).eval().requires_grad_(False)
        self.device = device

    def _load(self, weights: dict, path: Path) -> None:
        if not weights:
            raise CheckpointError(f"{path}: holds no text encoder weights")
        self.model.load_state_dict({k: v.float() for k, v in weights.items()})

    @torch.no_grad()
    def states(self, texts: list[str]) -> torch.Tensor:
        return self.encoder.encode_pooled(texts, self.device)[0]


class CascadeBaseTask:
    name = "shapes-cascade-base"

    def __init__(self, pool: ShapesPool, batch: int, device, text_path: Path,
                 high_noise: float = 0.3, name: str | None = None) -> None:
        self.pool, self.batch, self.device = pool, batch, device
        self.name = name or self.name
        self.high_noise = high_noise
        self.images = downsample(pool.images.float() / 127.5 - 1)  # (N, 3, 16, 16)
        self.schedule = make_schedule(*SCHEDULE)
        self.text = FrozenText(text_path, device)
        self.unet = make_ddpm_unet(CASCADE_BASE_UNET_CONFIG).to(device)
        self._rng = random.Random(0)

    def modules(self):
        return {"unet": self.unet}

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        x0 = self.images[indices]
        self._rng.seed(int(torch.randint(2**31, (1,), generator=generator)))
        texts = [dropped_caption(self.pool.scenes[i], self._rng) for i in indices.tolist()]
        t = high_noise_timesteps(self.schedule.num_timesteps, self.batch, self.high_noise,
                                 generator)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = q_sample(x0, t, self.schedule, noise).to(self.device)  # DDPM eq. 4
        context = self.text.states(texts)
        eps = self.unet(x_t, t.to(self.device), encoder_hidden_states=context).sample
        error = ((eps - noise.to(self.device)) ** 2).mean(dim=(1, 2, 3))  # DDPM eq. 14
        return (error * snr_weight(self.schedule, t).to(self.device)).mean()

    def export(self, path: Path, modules, recipe) -> None:
        write_model(path, {**modules, "text_encoder": self.text.model}, {
            "name": self.name, "kind": "pixel", "prediction": "epsilon", "clip_sample": True,
            "sample_size": LOW_PIXELS, "schedule": {"name": SCHEDULE[0], "timesteps": SCHEDULE[1]},
            "components": {
                "unet": {"class": "UNet2DConditionModel",
                         "config": jsonable(CASCADE_BASE_UNET_CONFIG)},
                "text_encoder": self.text.component,
            },
            "cascade": {"stage": "base", "text_encoder": self.text.source, "frozen": True},
            "recipe": {**recipe, "task": "cascade base", "text_encoder": self.text.source,
                       "loss": "ε, weighted min(1 + 1/SNR, 20)",
                       "high_noise_fraction": self.high_noise, "batch": self.batch,
                       "pool": len(self.pool), "caption_dropout": CAPTION_DROPOUT},
        })


def velocity(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, schedule) -> torch.Tensor:
    """v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (Salimans & Ho 2022, §4): at t → T it is
    −x_0, so the network is taught the picture itself where ε-prediction
    leaves it unconstrained."""
    alpha_bar = schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0


class SuperResolutionTask:
    name = "shapes-sr"

    def __init__(self, pool: ShapesPool, batch: int, device, high_noise: float = 0.3) -> None:
        if pool.images.shape[-1] != HIGH_PIXELS:
            raise ValueError(f"shapes-sr trains on {HIGH_PIXELS}×{HIGH_PIXELS} images")
        self.pool, self.batch, self.device = pool, batch, device
        self.high_noise = high_noise
        self.schedule = make_schedule(*SCHEDULE)
        self.unet = make_palette_unet(SR_UNET_CONFIG).to(device)

    def modules(self):
        return {"unet": self.unet}

    def condition(self, x0: torch.Tensor) -> torch.Tensor:
        """What the graph gives the model: the 16×16 picture, upsampled as the
        wrapper upsamples it (``source_channels``), in [−1, 1]."""
        low = (downsample(x0) + 1) / 2
        return source_channels(low, 3, (HIGH_PIXELS, HIGH_PIXELS))

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        x0 = self.pool.image_batch(indices)  # (B, 3, 64, 64) in [−1, 1]
        top = int(MAX_AUGMENTATION * self.schedule.num_timesteps)
        s = torch.randint(top, (self.batch,), generator=generator)  # CDM §4.1
        source = augment(self.condition(x0), s, self.schedule,
                         torch.randn(x0.shape, generator=generator))
        t = high_noise_timesteps(self.schedule.num_timesteps, self.batch, self.high_noise,
                                 generator)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = q_sample(x0, t, self.schedule, noise)  # DDPM eq. 4
        inputs = torch.cat([x_t, source], dim=1).to(self.device)  # (B, 6, 64, 64)
        v_hat = self.unet(inputs, t.to(self.device), class_labels=s.to(self.device)).sample
        target = velocity(x0, noise, t, self.schedule)  # Salimans & Ho 2022, §4
        return ((v_hat - target.to(self.device)) ** 2).mean()

    def export(self, path: Path, modules, recipe) -> None:
        write_model(path, modules, {
            "name": "shapes-sr", "kind": "super_resolution", "prediction": "v_prediction",
            "clip_sample": True, "sample_size": HIGH_PIXELS,
            "schedule": {"name": SCHEDULE[0], "timesteps": SCHEDULE[1]},
            "condition": {"kind": "low-resolution", "channels": 3, "pixels": LOW_PIXELS,
                          "augmentation": {"max": MAX_AUGMENTATION}},
            "components": {"unet": {"class": "UNet2DModel", "config": jsonable(SR_UNET_CONFIG)}},
            "cascade": {"stage": "super-resolution", "from": LOW_PIXELS, "to": HIGH_PIXELS},
            "recipe": {**recipe, "task": "super-resolution",
                       "loss": "v-prediction MSE",
                       "augmentation": f"s uniform over the first {MAX_AUGMENTATION:g} of the "
                                       "schedule", "high_noise_fraction": self.high_noise,
                       "batch": self.batch, "pool": len(self.pool)},
        })

"""Training unCLIP's two models on a frozen shapes-clip (Ramesh et al. 2022).

Both read CLIP *image* embeddings z_i of the training pictures, computed
once for the whole pool (CLIP is frozen) at t = 0, times √D (``unclip.py``).

* ``shapes-prior`` (§2.2, the diffusion prior): z_t of z_i on the cosine
  schedule at a uniform t; the PriorTransformer predicts z_i itself from
  z_t, t and the caption's CLIP text encoding; loss ‖ẑ_0 − z_i‖². Captions
  drop phrases as the other models' do, and are empty 10 % of the time for
  classifier-free guidance.
* ``shapes-unclip`` (§2.1, the decoder): DDPM's ε loss on the 32×32 picture
  given z_i, z_i zeroed 10 % of the time for classifier-free guidance. As
  for shapes-palette, a third of each batch comes from the top 10 % of t and
  the loss is weighted min(1 + 1/SNR, 20): the background must come from z_i,
  not from the noise (``ddpm_task``).
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from core.diffusion.forward import q_sample
from core.diffusion.schedules import make_schedule
from core.models.shapes import PRIOR_CONFIG, UNCLIP_DECODER_CONFIG, make_prior
from core.models.unclip import embedding_scale, encode_prior_text
from core.training.common import jsonable, write_model
from core.training.data import ShapesPool, dropped_caption
from core.training.ddpm_task import PIXELS, SCHEDULE
from core.training.noise_levels import high_noise_timesteps, snr_weight

UNCONDITIONAL = 0.1  # the share of captions emptied (prior) and embeddings zeroed (decoder)
HIGH_NOISE = 0.3


@torch.no_grad()
def image_embeddings(clip, pool: ShapesPool, device, batch: int = 512) -> torch.Tensor:
    """CLIP image embeddings (N, D) of every picture in the pool, at t = 0."""
    rows = []
    for start in range(0, len(pool), batch):
        x0 = pool.image_batch(torch.arange(start, min(start + batch, len(pool)))).to(device)
        rows.append(clip.network.encode_image(x0, torch.zeros(len(x0), device=device)).cpu())
    return torch.cat(rows)


class _OnClip:
    """What both tasks share: the frozen CLIP, the pool and its embeddings."""

    def __init__(self, pool: ShapesPool, batch: int, device, clip_path: Path) -> None:
        from core.models.builtin import load_noisy_clip

        if pool.images.shape[-1] != PIXELS:
            raise ValueError(f"{self.name} trains on {PIXELS}×{PIXELS} images")
        self.pool, self.batch, self.device = pool, batch, device
        self.clip_path = Path(clip_path)
        self.clip = load_noisy_clip(str(clip_path), device)
        self.schedule = make_schedule(*SCHEDULE)
        self.embeddings = image_embeddings(self.clip, pool, device)  # (N, D)
        self.dim = self.embeddings.shape[1]
        self._rng = random.Random(0)

    def _indices(self, generator):
        return torch.randint(len(self.pool), (self.batch,), generator=generator)

    def _common(self) -> dict:
        return {"sample_size": PIXELS, "embed_dim": self.dim, "clip": self.clip_path.stem,
                "schedule": {"name": SCHEDULE[0], "timesteps": SCHEDULE[1]}}


class PriorTask(_OnClip):
    name = "shapes-prior"

    def __init__(self, pool, batch, device, clip_path) -> None:
        super().__init__(pool, batch, device, clip_path)
        self.prior = make_prior().to(device)

    def modules(self):
        return {"prior": self.prior}

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = self._indices(generator)
        self._rng.seed(int(torch.randint(2**31, (1,), generator=generator)))
        texts = [dropped_caption(self.pool.scenes[i], self._rng, UNCONDITIONAL)
                 for i in indices.tolist()]
        hidden, text_embedding, mask = encode_prior_text(self.clip, texts, self.device)
        z0 = self.embeddings[indices] * embedding_scale(self.dim)  # (B, D)
        t = torch.randint(self.schedule.num_timesteps, (self.batch,), generator=generator)
        z_t = q_sample(z0, t, self.schedule, torch.randn(z0.shape, generator=generator))
        predicted = self.prior(z_t.to(self.device), t.to(self.device),
                               proj_embedding=text_embedding * embedding_scale(self.dim),
                               encoder_hidden_states=hidden,
                               attention_mask=mask).predicted_image_embedding  # (B, D)
        return ((predicted - z0.to(self.device)) ** 2).mean()  # DALL·E 2 §2.2: predict z_i

    def export(self, path: Path, modules, recipe) -> None:
        write_model(path, modules, {
            "name": "shapes-prior", "kind": "prior", "prediction": "sample", **self._common(),
            "components": {"prior": {"class": "PriorTransformer", "config": jsonable(PRIOR_CONFIG)}},
            "recipe": {**recipe, "task": "prior", "loss": "‖ẑ_0 − z_i‖² (DALL·E 2 §2.2)",
                       "batch": self.batch, "pool": len(self.pool),
                       "empty_captions": UNCONDITIONAL},
        })


class DecoderTask(_OnClip):
    name = "shapes-unclip"

    def __init__(self, pool, batch, device, clip_path) -> None:
        from diffusers import UNet2DConditionModel

        super().__init__(pool, batch, device, clip_path)
        self.unet = UNet2DConditionModel(**UNCLIP_DECODER_CONFIG).to(device)

    def modules(self):
        return {"unet": self.unet}

    def timesteps(self, generator: torch.Generator) -> torch.Tensor:
        return high_noise_timesteps(self.schedule.num_timesteps, self.batch, HIGH_NOISE, generator)

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = self._indices(generator)
        x0 = self.pool.image_batch(indices)  # (B, 3, 32, 32)
        kept = (torch.rand(self.batch, generator=generator) >= UNCONDITIONAL).float()[:, None]
        z = self.embeddings[indices] * embedding_scale(self.dim) * kept  # (B, D); 0 = no z_i
        t = self.timesteps(generator)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = q_sample(x0, t, self.schedule, noise)  # DDPM eq. 4
        z = z.to(self.device)
        eps = self.unet(x_t.to(self.device), t.to(self.device), encoder_hidden_states=z[:, None],
                        class_labels=z).sample
        simple = ((eps - noise.to(self.device)) ** 2).mean(dim=(1, 2, 3))  # DDPM eq. 14
        return (simple * snr_weight(self.schedule, t).to(self.device)).mean()

    def export(self, path: Path, modules, recipe) -> None:
        write_model(path, modules, {
            "name": "shapes-unclip", "kind": "unclip_decoder", "prediction": "epsilon",
            "clip_sample": True, **self._common(),
            "components": {"unet": {"class": "UNet2DConditionModel",
                                    "config": jsonable(UNCLIP_DECODER_CONFIG)}},
            "recipe": {**recipe, "task": "unclip decoder", "loss": "ε, weighted min(1 + 1/SNR, 20)",
                       "high_noise_fraction": HIGH_NOISE, "zeroed_embeddings": UNCONDITIONAL,
                       "batch": self.batch, "pool": len(self.pool)},
        })

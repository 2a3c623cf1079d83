"""Training shapes-dcae: a deep-compression autoencoder (Chen et al. 2024).

64×64×3 → 8×8×16 and back. DC-AE's first phase trains the whole network on
reconstruction alone (their §3.2: L1 plus a perceptual term; GAN loss only
in the last, decoder-only phase); here L1 + MSE, as shapes-vae, on the
procedural pictures. The encoder is deterministic (``.latent``), so there is
no KL term; the scale is fixed afterwards by ``scaling_factor`` = 1 / std of
the latents, as Sana's DC-AE files carry one (0.41407 for f32c32).
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.checkpoints import save_checkpoint
from core.models.shapes import DCAE_CONFIG, make_dcae
from core.previews import fit_latent_rgb
from core.training.common import jsonable
from core.training.data import ShapesPool


class DCAETask:
    name = "shapes-dcae"

    def __init__(self, pool: ShapesPool, batch: int, device) -> None:
        self.pool, self.batch, self.device = pool, batch, device
        self.dcae = make_dcae().to(device)

    def modules(self):
        return {"vae": self.dcae}

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        x = self.pool.image_batch(indices).to(self.device)  # (B, 3, 64, 64) in [-1, 1]
        recon = self.dcae.decode(self.dcae.encode(x).latent).sample
        return (recon - x).abs().mean() + ((recon - x) ** 2).mean()

    def export(self, path: Path, modules, recipe) -> None:
        dcae = modules["vae"].eval()
        latents, images = encoded_sample(dcae, self.pool, self.device)
        scaling = float(1.0 / latents.std())
        preview = fit_latent_rgb(latents * scaling, (images + 1) / 2)
        save_checkpoint(path, {f"vae.{k}": v.half() for k, v in dcae.state_dict().items()}, {
            "format": "diffusion-workbench.model", "name": "shapes-dcae", "kind": "vae",
            "latent_rgb": preview.to_json(),
            "components": {"vae": {"class": "AutoencoderDC",
                                   "config": jsonable({**DCAE_CONFIG,
                                                       "scaling_factor": scaling})}},
            "recipe": {**recipe, "task": "dcae", "loss": "L1 + MSE", "batch": self.batch,
                       "pool": len(self.pool)},
        })


@torch.no_grad()
def encoded_sample(dcae, pool: ShapesPool, device, count: int = 2048):
    """(unscaled latents, images [-1, 1]) of the first ``count`` pool pictures."""
    latents, images = [], []
    for start in range(0, min(count, len(pool)), 256):
        indices = torch.arange(start, min(start + 256, count, len(pool)))
        batch = pool.image_batch(indices)
        latents.append(dcae.encode(batch.to(device)).latent.cpu())
        images.append(batch)
    return torch.cat(latents), torch.cat(images)


@torch.no_grad()
def encode_pool(dcae, pool: ShapesPool, device, chunk: int = 256) -> torch.Tensor:
    """Every pool picture's latent (unscaled), on the CPU: (N, 16, 8, 8)."""
    out = []
    for start in range(0, len(pool), chunk):
        indices = torch.arange(start, min(start + chunk, len(pool)))
        out.append(dcae.encode(pool.image_batch(indices).to(device)).latent.cpu())
    return torch.cat(out)

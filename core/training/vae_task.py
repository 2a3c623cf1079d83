"""Training the shapes VAE (Rombach et al. 2022, §3): 64×64×3 ↔ 16×16×4.

Loss: L1 + MSE reconstruction plus a tiny KL term (weight 1e-6, as SD's
"KL-f8" models) that keeps the latent close to a unit Gaussian in shape
while leaving its detail; the scale is fixed afterwards by ``scaling_factor``
= 1 / std of the latents, as Stable Diffusion does.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.checkpoints import save_checkpoint
from core.models.shapes import VAE_CONFIG, make_vae
from core.training.data import ShapesPool

KL_WEIGHT = 1e-6


class VAETask:
    name = "shapes-vae"

    def __init__(self, pool: ShapesPool, batch: int, device, decoder_only: bool = False) -> None:
        self.pool, self.batch, self.device = pool, batch, device
        self.vae = make_vae().to(device)
        self.decoder_only = decoder_only
        self.scaling: float | None = None  # kept from the file fine-tuned, when only decoding learns

    def freeze_encoder(self, scaling: float) -> None:
        """Fine-tune the decoder alone: the latents (and every model trained on
        them) stay exactly as they are, so the latent scale is kept too."""
        for module in (self.vae.encoder, self.vae.quant_conv):
            module.requires_grad_(False)
        self.scaling = scaling

    def modules(self):
        return {"vae": self.vae}

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        x = self.pool.image_batch(indices).to(self.device)  # (B, 3, 64, 64)
        with torch.set_grad_enabled(not self.decoder_only):
            posterior = self.vae.encode(x).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator).to(self.device)
        z = posterior.mean + posterior.std * noise  # (B, 4, 16, 16), reparameterised
        recon = self.vae.decode(z).sample
        kl = posterior.kl().mean() / x[0].numel() if not self.decoder_only else 0.0
        return (recon - x).abs().mean() + ((recon - x) ** 2).mean() + KL_WEIGHT * kl

    def export(self, path: Path, modules, recipe) -> None:
        vae = modules["vae"]
        scaling = self.scaling or latent_scaling_factor(vae, self.pool, self.device)
        config = {**VAE_CONFIG, "scaling_factor": scaling}
        preview = fit_preview(vae, self.pool, scaling, self.device)
        save_checkpoint(path, {f"vae.{k}": v.half() for k, v in vae.state_dict().items()}, {
            "format": "diffusion-workbench.model", "name": "shapes-vae", "kind": "vae",
            "latent_rgb": preview.to_json(),
            "components": {"vae": {"class": "AutoencoderKL", "config": _jsonable(config)}},
            "recipe": {**recipe, "task": "vae", "kl_weight": KL_WEIGHT, "batch": self.batch,
                       "decoder_only": self.decoder_only,
                       "pool": len(self.pool)},
        })


@torch.no_grad()
def latent_scaling_factor(vae, pool: ShapesPool, device, count: int = 2048) -> float:
    """1 / std of the latent means over ``count`` pool images."""
    vae.eval()
    means = []
    for start in range(0, min(count, len(pool)), 256):
        indices = torch.arange(start, min(start + 256, count, len(pool)))
        means.append(vae.encode(pool.image_batch(indices).to(device)).latent_dist.mean.cpu())
    return float(1.0 / torch.cat(means).std())


@torch.no_grad()
def fit_preview(vae, pool: ShapesPool, scaling: float, device, count: int = 1024):
    """The least-squares latent → RGB map of this VAE (``core.previews``)."""
    from core.previews import fit_latent_rgb

    indices = torch.arange(min(count, len(pool)))
    images = pool.image_batch(indices)
    latents = vae.encode(images.to(device)).latent_dist.mean.cpu() * scaling
    return fit_latent_rgb(latents, (images + 1) / 2)


def _jsonable(config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}

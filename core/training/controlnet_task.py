"""Training shapes-controlnet: outline hints steering the frozen shapes-ldm.

Zhang et al. 2023: a trainable copy of the U-Net's encoder takes the hint
through a small convolutional embedding; its outputs enter the frozen
U-Net's skip connections through zero-initialised convolutions, so training
starts from the unchanged model. The loss is shapes-ldm's own (ε loss with
its SNR weighting) with the hint as extra input; half of the captions are
emptied (the paper's 50%), which makes the ControlNet read shapes from the
hint instead of the prompt.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from core.diffusion.forward import q_sample
from core.models.builtin import load_ldm
from core.models.shapes import CONTROLNET_EMBEDDING_CHANNELS, make_controlnet
from core.training.common import jsonable, write_model
from core.training.data import ShapesPool, dropped_caption
from core.training.ldm_task import encode_pool
from core.training.noise_levels import snr_weight

EMPTY_PROMPTS = 0.5


class ControlNetTask:
    name = "shapes-controlnet"

    def __init__(self, pool: ShapesPool, batch: int, device, ldm_path: Path) -> None:
        self.pool, self.batch, self.device = pool, batch, device
        loaded = load_ldm(str(ldm_path), device)
        self.base = ldm_path.stem
        self.unet = loaded.model.denoiser.network.unet  # frozen, in eval mode
        self.clip = loaded.clip
        self.schedule = loaded.model.schedule
        self.scaling = loaded.vae.scaling_factor
        self.mean, self.std = encode_pool(loaded.vae.vae, pool, device)
        self.controlnet = make_controlnet(self.unet).to(device).train()
        self.captions = random.Random(0)

    def modules(self):
        return {"controlnet": self.controlnet}

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        eps_z = torch.randn(self.mean[indices].shape, generator=generator)
        z0 = (self.mean[indices] + self.std[indices] * eps_z) * self.scaling
        self.captions.seed(int(torch.randint(2**31, (1,), generator=generator)))
        texts = [dropped_caption(self.pool.scenes[i], self.captions, EMPTY_PROMPTS)
                 for i in indices.tolist()]
        hint = self.pool.outline_batch(indices).expand(-1, 3, -1, -1).to(self.device)
        t = torch.randint(self.schedule.num_timesteps, (self.batch,), generator=generator)
        noise = torch.randn(z0.shape, generator=generator)
        z_t = q_sample(z0, t, self.schedule, noise).to(self.device)
        with torch.no_grad():
            context = self.clip.encode(texts, self.device)
        down, mid = self.controlnet(z_t, t.to(self.device), encoder_hidden_states=context,
                                    controlnet_cond=hint, return_dict=False)
        prediction = self.unet(z_t, t.to(self.device), encoder_hidden_states=context,
                               down_block_additional_residuals=down,
                               mid_block_additional_residual=mid).sample
        error = ((prediction - noise.to(self.device)) ** 2).mean(dim=(1, 2, 3))
        return (error * snr_weight(self.schedule, t).to(self.device)).mean()

    def export(self, path: Path, modules, recipe) -> None:
        write_model(path, modules, {
            "name": "shapes-controlnet", "kind": "controlnet", "base": self.base,
            "hint": "outline: the shape's edges, white on black, 64×64 RGB in [0, 1]",
            "components": {"controlnet": {"class": "ControlNetModel",
                                          "config": _public(self.controlnet.config)}},
            "recipe": {**recipe, "task": "controlnet", "batch": self.batch,
                       "pool": len(self.pool), "empty_prompts": EMPTY_PROMPTS,
                       "embedding_channels": list(CONTROLNET_EMBEDDING_CHANNELS)},
        })


def _public(config) -> dict:
    """A diffusers config without its private ``_…`` bookkeeping keys."""
    return jsonable({k: v for k, v in dict(config).items() if not k.startswith("_")})

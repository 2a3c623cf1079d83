"""Training shapes-sana: Sana's recipe in miniature (Xie et al. 2024).

Three parts, two of them frozen: the deep-compression autoencoder
(shapes-dcae) encodes the pool once; the decoder-only language model
(shapes-gemma) reads each caption, and its last hidden layer (padding
zeroed) is the text the DiT attends to; the linear-attention DiT
(``SanaTransformer2DModel``) learns rectified flow matching as shapes-flow
does: x_t = (1 − t) x_0 + t ε, the network regresses v = ε − x_0 (Lipman et
al. 2023, eq. 23; Sana §2.4 trains flow matching the same way), t drawn
logit-normal(0, 1) (SD3 §3.1, eq. 19). Captions drop phrases, and 10 % are
empty, so classifier-free guidance works.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from core.models.dcae import load_dcae
from core.models.shapes import SANA_TRANSFORMER_CONFIG, make_sana_transformer
from core.training.common import CAPTION_DROPOUT, jsonable, write_model
from core.training.cascade_task import FrozenText
from core.training.data import ShapesPool, dropped_caption
from core.training.dcae_task import encode_pool

TIMESTEP_SCALE = 1000.0  # the network sees t · 1000, as Sana's scheduler passes σ · 1000


class SanaTask:
    name = "shapes-sana"

    def __init__(self, pool: ShapesPool, batch: int, device, dcae_path: Path,
                 gemma_path: Path) -> None:
        self.pool, self.batch, self.device = pool, batch, device
        handle, _preview = load_dcae(dcae_path, device)
        self.scaling = handle.scaling_factor
        self.latents = encode_pool(handle.vae, pool, device) * self.scaling  # (N, 16, 8, 8)
        self.text = FrozenText(gemma_path, device)
        self.transformer = make_sana_transformer().to(device)
        self._rng = random.Random(0)

    def modules(self):
        return {"transformer": self.transformer}

    def captions(self, indices: torch.Tensor, generator: torch.Generator) -> list[str]:
        self._rng.seed(int(torch.randint(2**31, (1,), generator=generator)))
        return [dropped_caption(self.pool.scenes[i], self._rng) for i in indices.tolist()]

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        x0 = self.latents[indices]
        t = torch.sigmoid(torch.randn(self.batch, generator=generator))  # logit-normal(0, 1)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * noise
        hidden = self.text.states(self.captions(indices, generator))
        velocity = self.transformer(x_t.to(self.device), encoder_hidden_states=hidden,
                                    timestep=(t * TIMESTEP_SCALE).to(self.device)).sample
        return ((velocity - (noise - x0).to(self.device)) ** 2).mean()  # CFM, Lipman eq. 23

    def export(self, path: Path, modules, recipe) -> None:
        write_model(path, {"transformer": modules["transformer"],
                           "text_encoder": self.text.model}, {
            "name": "shapes-sana", "kind": "sana", "prediction": "velocity",
            "timestep_scale": TIMESTEP_SCALE, "vae": "shapes-dcae",
            "components": {
                "transformer": {"class": "SanaTransformer2DModel",
                                "config": jsonable(SANA_TRANSFORMER_CONFIG)},
                "text_encoder": self.text.component,
            },
            "recipe": {**recipe, "task": "sana", "timesteps": "logit-normal(0, 1)",
                       "batch": self.batch, "pool": len(self.pool),
                       "text_encoder": "shapes-gemma, frozen", "autoencoder": "shapes-dcae",
                       "caption_dropout": CAPTION_DROPOUT},
        })

"""Training shapes-flow: rectified flow matching with a diffusion transformer.

The SD3 recipe in miniature (Esser et al. 2024): the straight path
x_t = (1 − t) x_0 + t ε between a latent and noise (their eq. 3 with
a_t = 1 − t, b_t = t), the network regresses its velocity
v = ε − x_0 (conditional flow matching, Lipman et al. 2023, eq. 23), and t
is drawn logit-normal(0, 1) (SD3 §3.1, eq. 19), which spends the training on
the middle of the path where the velocity is hardest to guess. The network
is SD3's MMDiT (``SD3Transformer2DModel``: patches, joint text-image
attention, adaLN-Zero), on the shapes VAE's latents, with a caption encoder
of the same design as shapes-ldm's trained alongside; it gets the hidden
states as its text tokens and the <eos> state as the pooled embedding.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.models.shapes import FLOW_TRANSFORMER_CONFIG, make_flow_transformer
from core.models.vae import load_vae
from core.training.common import CAPTION_DROPOUT, CaptionEncoder, jsonable, write_model
from core.training.data import ShapesPool
from core.training.ldm_task import encode_pool

TIMESTEP_SCALE = 1000.0  # the network sees t · 1000, as SD3's scheduler passes σ · 1000


class FlowTask:
    name = "shapes-flow"

    def __init__(self, pool: ShapesPool, batch: int, device, vae_path: Path) -> None:
        self.pool, self.batch, self.device = pool, batch, device
        vae, self.scaling = load_vae(vae_path, device)
        self.mean, self.std = encode_pool(vae, pool, device)  # (N, 4, 16, 16) each
        self.text = CaptionEncoder(device)
        self.transformer = make_flow_transformer().to(device)

    def modules(self):
        return {"transformer": self.transformer, "text_encoder": self.text.model}

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        eps_z = torch.randn(self.mean[indices].shape, generator=generator)
        x0 = (self.mean[indices] + self.std[indices] * eps_z) * self.scaling
        texts = self.text.captions(self.pool, indices, generator)
        t = torch.sigmoid(torch.randn(self.batch, generator=generator))  # logit-normal(0, 1)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * noise
        x_t, target, t = x_t.to(self.device), (noise - x0).to(self.device), t.to(self.device)
        hidden, pooled = self.text.encode(texts)
        velocity = self.transformer(x_t, encoder_hidden_states=hidden, pooled_projections=pooled,
                                    timestep=t * TIMESTEP_SCALE).sample
        return ((velocity - target) ** 2).mean()  # CFM loss, Lipman et al. eq. 23

    def export(self, path: Path, modules, recipe) -> None:
        write_model(path, modules, {
            "name": "shapes-flow", "kind": "flow", "prediction": "velocity",
            "timestep_scale": TIMESTEP_SCALE, "vae": "shapes-vae",
            "components": {
                "transformer": {"class": "SD3Transformer2DModel",
                                "config": jsonable(FLOW_TRANSFORMER_CONFIG)},
                "text_encoder": self.text.component(),
            },
            "recipe": {**recipe, "task": "flow", "timesteps": "logit-normal(0, 1)",
                       "batch": self.batch, "pool": len(self.pool),
                       "caption_dropout": CAPTION_DROPOUT},
        })

"""Training shapes-video: text-to-video in miniature (CogVideoX, Yang et al. 2024).

Clips of 8 frames (a shape moving left/right/up/down, growing or
shrinking: ``core/data/motion.py``) go frame by frame through the frozen
shapes VAE; the latents travel as (B, T, C, H, W), CogVideoX's layout. The
transformer attends over all frames and the text at once, and its 3-D
positions tell frames apart, which is what lets a prompt's motion words
set the direction. Training is rectified flow matching as shapes-flow's
(x_t = (1 − t) x_0 + t ε, v = ε − x_0, t logit-normal; CogVideoX itself
trains v-prediction on a DDPM schedule), with a caption encoder over the
shapes vocabulary plus the motion words trained alongside.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from core.data.motion import motion_vocabulary
from core.models.shapes import VIDEO_FRAMES, VIDEO_TRANSFORMER_CONFIG, make_video_transformer
from core.models.text import shapes_vocabulary
from core.models.vae import load_vae
from core.training.clips import ClipPool, dropped_motion_caption
from core.training.common import CaptionEncoder, jsonable, write_model

TIMESTEP_SCALE = 1000.0


def video_vocabulary() -> list[str]:
    """The still-picture vocabulary (same ids), then the motion words it lacks."""
    words = shapes_vocabulary()
    return [*words, *(w for w in motion_vocabulary() if w not in words)]


@torch.no_grad()
def encode_clips(vae, pool: ClipPool, device, chunk: int = 64):
    """The encoder's Gaussian (mean, std) of every frame, (N, T, 4, 16, 16) each, fp16 on the CPU."""
    means, stds = [], []
    for start in range(0, len(pool), chunk):
        frames = pool.frame_batch(torch.arange(start, min(start + chunk, len(pool))))
        b, t = frames.shape[:2]
        dist = vae.encode(frames.flatten(0, 1).to(device)).latent_dist
        means.append(dist.mean.cpu().half().unflatten(0, (b, t)))
        stds.append(dist.std.cpu().half().unflatten(0, (b, t)))
    return torch.cat(means), torch.cat(stds)


class VideoTask:
    name = "shapes-video"

    def __init__(self, pool: ClipPool, batch: int, device, vae_path: Path) -> None:
        self.pool, self.batch, self.device = pool, batch, device
        vae, self.scaling = load_vae(vae_path, device)
        self.mean, self.std = encode_clips(vae, pool, device)
        self.text = CaptionEncoder(device, vocabulary=video_vocabulary())
        self.transformer = make_video_transformer().to(device)
        self._rng = random.Random(0)

    def modules(self):
        return {"transformer": self.transformer, "text_encoder": self.text.model}

    def captions(self, indices: torch.Tensor, generator: torch.Generator) -> list[str]:
        self._rng.seed(int(torch.randint(2**31, (1,), generator=generator)))
        return [dropped_motion_caption(self.pool.clips[i], self._rng) for i in indices.tolist()]

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        mean, std = self.mean[indices].float(), self.std[indices].float()
        x0 = (mean + std * torch.randn(mean.shape, generator=generator)) * self.scaling
        t = torch.sigmoid(torch.randn(self.batch, generator=generator))  # logit-normal(0, 1)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = (1 - t[:, None, None, None, None]) * x0 + t[:, None, None, None, None] * noise
        hidden, _pooled = self.text.encode(self.captions(indices, generator))
        velocity = self.transformer(x_t.to(self.device), encoder_hidden_states=hidden,
                                    timestep=(t * TIMESTEP_SCALE).to(self.device)).sample
        return ((velocity - (noise - x0).to(self.device)) ** 2).mean()  # CFM, Lipman eq. 23

    def export(self, path: Path, modules, recipe) -> None:
        write_model(path, modules, {
            "name": "shapes-video", "kind": "video", "prediction": "velocity",
            "timestep_scale": TIMESTEP_SCALE, "vae": "shapes-vae", "frames": VIDEO_FRAMES,
            "components": {
                "transformer": {"class": "CogVideoXTransformer3DModel",
                                "config": jsonable(VIDEO_TRANSFORMER_CONFIG)},
                "text_encoder": self.text.component(),
            },
            "recipe": {**recipe, "task": "video", "timesteps": "logit-normal(0, 1)",
                       "batch": self.batch, "clips": len(self.pool),
                       "caption_dropout": "size 0.5, colour 0.15, background 0.5, empty 0.1"},
        })

"""Training shapes-clip: a noise-aware contrastive image/text model.

CLIP's loss (Radford et al. 2021): in a batch of N (image, caption) pairs,
the N × N matrix of logits τ · f(x_i) · g(c_j) is read row-wise (which
caption fits this image?) and column-wise (which image fits this caption?)
with cross-entropy. The image side sees x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε on
shapes-ddpm's cosine schedule at a uniform t, as GLIDE's noised CLIP (§2.4)
does, so its gradient is meaningful along the reverse process.

The shapes world has only 540 full captions, and partial captions ("a red
circle") fit many scenes, so a batch holds pairs whose "negatives" are in
fact true matches. Plain CLIP would push those apart. Here every pair that
fits counts as a positive: the target of row i is uniform over the captions
its scene satisfies, and the target of column j uniform over the scenes
that satisfy caption j (multi-positive contrastive targets, as in SupCon,
Khosla et al. 2020, eq. 2, applied to both CLIP directions).
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from core.diffusion.forward import q_sample
from core.diffusion.schedules import make_schedule
from core.models.noisy_clip import make_noisy_clip
from core.models.text import WordTokenizer, shapes_vocabulary, text_encoder_config
from core.training.common import jsonable, write_model
from core.training.data import ShapesPool, partial_caption
from core.training.ddpm_task import PIXELS, SCHEDULE

EMBED_DIM = 64


def clip_config(vocab_size: int) -> dict:
    """The image tower is the classifier's network with spatial pooling, narrower
    and with attention at 8×8 only: 1.6 it/s at batch 256 on one CPU thread
    (the classifier's widths and attention at 16×16 too: 0.6 it/s)."""
    return {
        "image": dict(sample_size=PIXELS, in_channels=3, block_out_channels=(16, 32, 64),
                      down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                      layers_per_block=1, norm_num_groups=8, attention_head_dim=16,
                      pooling="spatial", spatial_channels=16),
        "text": text_encoder_config(vocab_size),
        "embed_dim": EMBED_DIM,
    }


def fits(scene, kept: dict[str, str]) -> bool:
    """Whether ``scene`` agrees with every attribute a caption states."""
    return all(getattr(scene, attribute) == value for attribute, value in kept.items())


def positives(scenes: list, kept: list[dict[str, str]]) -> torch.Tensor:
    """(N, N) bool: scene i fits caption j. The diagonal is always true."""
    return torch.tensor([[fits(scene, said) for said in kept] for scene in scenes])


def multi_positive_clip_loss(logits: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy with soft targets spread over every match."""
    targets = matches.to(logits.dtype)
    image_to_text = -(targets / targets.sum(1, keepdim=True)
                      * logits.log_softmax(dim=1)).sum(1).mean()
    text_to_image = -(targets / targets.sum(0, keepdim=True)
                      * logits.log_softmax(dim=0)).sum(0).mean()
    return (image_to_text + text_to_image) / 2


class ClipTask:
    name = "shapes-clip"

    def __init__(self, pool: ShapesPool, batch: int, device) -> None:
        if pool.images.shape[-1] != PIXELS:
            raise ValueError(f"shapes-clip trains on {PIXELS}×{PIXELS} images")
        self.pool, self.batch, self.device = pool, batch, device
        self.schedule = make_schedule(*SCHEDULE)
        self.tokenizer = WordTokenizer(shapes_vocabulary())
        self.config = clip_config(len(self.tokenizer.vocabulary))
        self.clip = make_noisy_clip(self.config).to(device)
        self._rng = random.Random(0)

    def modules(self):
        return {"clip": self.clip}

    def captions(self, indices: torch.Tensor, generator: torch.Generator):
        self._rng.seed(int(torch.randint(2**31, (1,), generator=generator)))
        return [partial_caption(self.pool.scenes[i], self._rng) for i in indices.tolist()]

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        x0 = self.pool.image_batch(indices)  # (B, 3, 32, 32)
        t = torch.randint(self.schedule.num_timesteps, (self.batch,), generator=generator)
        x_t = q_sample(x0, t, self.schedule, torch.randn(x0.shape, generator=generator))
        texts, kept = zip(*self.captions(indices, generator))
        matches = positives([self.pool.scenes[i] for i in indices.tolist()], list(kept))
        image = self.clip.encode_image(x_t.to(self.device), t.to(self.device))  # (B, D)
        text = self.clip.encode_text(self.tokenizer(list(texts)).to(self.device))  # (B, D)
        logits = self.clip.temperature() * image @ text.T  # (B, B)
        return multi_positive_clip_loss(logits, matches.to(self.device))

    def export(self, path: Path, modules, recipe) -> None:
        write_model(path, modules, {
            "name": "shapes-clip", "kind": "clip", "sample_size": PIXELS,
            "schedule": {"name": SCHEDULE[0], "timesteps": SCHEDULE[1]},
            "components": {"clip": {"class": "NoisyCLIP", "config": {
                "image": jsonable(self.config["image"]), "text": self.config["text"],
                "embed_dim": self.config["embed_dim"]},
                "vocabulary": self.tokenizer.vocabulary,
                "max_length": self.tokenizer.max_length}},
            "recipe": {**recipe, "task": "clip",
                       "loss": "CLIP's symmetric cross-entropy, targets spread over every "
                               "caption a scene fits", "batch": self.batch,
                       "pool": len(self.pool), "captions": "partial (shape always; size 0.5, "
                       "colour 0.85, position 0.6, background 0.5)"},
        })

"""Training shapes-classifier: p(shape, colour | x_t, t) on noisy 32×32 images.

Dhariwal & Nichol 2021, §4.1: the classifier sees the same noisy samples
the diffusion model sees, x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε on shapes-ddpm's
cosine schedule, with t uniform, so its gradient ∇_{x_t} log p(y | x_t) is
meaningful all along the reverse process. Loss: cross-entropy per head.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.data.shapes import COLORS, SHAPES
from core.diffusion.forward import q_sample
from core.diffusion.schedules import make_schedule
from core.models.classifier import make_classifier
from core.models.shapes import CLASSIFIER_CONFIG
from core.training.common import jsonable, write_model
from core.training.data import ShapesPool
from core.training.ddpm_task import PIXELS, SCHEDULE

LABELS = {"shape": list(SHAPES), "color": list(COLORS)}


class ClassifierTask:
    name = "shapes-classifier"

    def __init__(self, pool: ShapesPool, batch: int, device) -> None:
        if pool.images.shape[-1] != PIXELS:
            raise ValueError(f"shapes-classifier trains on {PIXELS}×{PIXELS} images")
        self.pool, self.batch, self.device = pool, batch, device
        self.schedule = make_schedule(*SCHEDULE)
        self.classifier = make_classifier(CLASSIFIER_CONFIG).to(device)
        self.targets = {
            head: torch.tensor([names.index(getattr(s, head)) for s in pool.scenes])
            for head, names in LABELS.items()
        }

    def modules(self):
        return {"classifier": self.classifier}

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        x0 = self.pool.image_batch(indices)
        t = torch.randint(self.schedule.num_timesteps, (self.batch,), generator=generator)
        x_t = q_sample(x0, t, self.schedule, torch.randn(x0.shape, generator=generator))
        logits = self.classifier(x_t.to(self.device), t.to(self.device))
        return sum(torch.nn.functional.cross_entropy(logits[head], self.targets[head][indices]
                                                     .to(self.device))
                   for head in LABELS)

    def export(self, path: Path, modules, recipe) -> None:
        write_model(path, modules, {
            "name": "shapes-classifier", "kind": "classifier", "sample_size": PIXELS,
            "schedule": {"name": SCHEDULE[0], "timesteps": SCHEDULE[1]},
            "labels": LABELS,
            "components": {"classifier": {"class": "NoisyClassifier",
                                          "config": jsonable(CLASSIFIER_CONFIG)}},
            "recipe": {**recipe, "task": "classifier", "batch": self.batch,
                       "pool": len(self.pool)},
        })

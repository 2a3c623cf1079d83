"""A noise-aware CLIP for the shapes world: image and text in one embedding.

CLIP (Radford et al. 2021) trains an image encoder f and a text encoder g so
that f(x) · g(c) is high for matching pairs and low otherwise. GLIDE
(Nichol et al. 2021, §2.4) guides a diffusion model with such a model, so
its image encoder must read *noisy* images: here f sees x_t and t, as the
noise-aware classifier does (it is that network, ``classifier.py``, with
spatial pooling so it can read position and size, and one embedding head).
g is the built-in caption encoder (``text.py``) with a linear projection of
its <eos> state. Both outputs are L2-normalised; the learned temperature
turns cosines into logits.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from core.models.classifier import NoisyClassifier
from core.models.text import WordTokenizer, make_text_encoder, pooled_output

EMBEDDING_HEAD = "embedding"
MAX_LOGIT_SCALE = 100.0  # CLIP clips exp(logit_scale) at 100


class NoisyCLIP(nn.Module):
    """``encode_image(x_t, t)`` and ``encode_text(ids)`` → unit vectors (B, D)."""

    def __init__(self, image: dict[str, Any], text: dict[str, Any], embed_dim: int) -> None:
        super().__init__()
        self.config = {"image": dict(image), "text": dict(text), "embed_dim": embed_dim}
        self.image_encoder = NoisyClassifier(**{**image, "heads": {EMBEDDING_HEAD: embed_dim}})
        self.text_encoder = make_text_encoder(text)
        self.text_projection = nn.Linear(text["hidden_size"], embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial τ

    def encode_image(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        features = self.image_encoder(x_t, t)[EMBEDDING_HEAD]  # (B, D)
        return nn.functional.normalize(features, dim=-1)

    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.text_encoder(input_ids=input_ids).last_hidden_state  # (B, L, W)
        features = self.text_projection(pooled_output(hidden, input_ids))  # (B, D)
        return nn.functional.normalize(features, dim=-1)

    def temperature(self) -> torch.Tensor:
        """exp(logit_scale), clipped as CLIP clips it."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)


def make_noisy_clip(config: dict[str, Any]) -> NoisyCLIP:
    return NoisyCLIP(**config)


class ClipTarget:
    """The CLIP logit τ · f(x_t) · g(c) of chosen prompts: what CLIP guidance
    climbs (GLIDE §2.4 uses f(x_t) · g(c); the temperature only puts the scale
    s on the footing of a classifier's log-probability). ``prompts`` is one
    text for every row or one per row. σ maps to the model's own timestep."""

    def __init__(self, network: NoisyCLIP, tokenizer: WordTokenizer, schedule,
                 prompts: str | Sequence[str]) -> None:
        rows = [prompts] if isinstance(prompts, str) else list(prompts)
        if not rows or not all(text.strip() for text in rows):
            raise ValueError("CLIP guidance needs a prompt to steer toward")
        unknown = sorted({w for text in rows for w in tokenizer.unknown_words(text)})
        if unknown:
            raise ValueError(f"the CLIP model does not know {', '.join(map(repr, unknown))} "
                             f"(it knows: {', '.join(tokenizer.vocabulary[4:])})")
        self.network, self.schedule = network, schedule
        device = next(network.parameters()).device
        with torch.no_grad():
            self.text = network.encode_text(tokenizer(rows).to(device))  # (P, D)
            self.scale = network.temperature()

    def __call__(self, x_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        size = self.network.config["image"]["sample_size"]
        if self.network.config["image"].get("pooling") == "spatial" and \
                tuple(x_t.shape[-2:]) != (size, size):
            raise ValueError(f"the CLIP model reads {size}×{size} images (it knows where things "
                             f"are on that grid), but this one is {x_t.shape[-1]}×"
                             f"{x_t.shape[-2]}: set the Empty latent to {size}×{size}")
        if len(self.text) not in (1, x_t.shape[0]):
            raise ValueError(f"{len(self.text)} prompts for a batch of {x_t.shape[0]}: "
                             "give one, or one per image")
        t = self.schedule.sigma_to_t(sigma.detach().to("cpu", torch.float64))
        image = self.network.encode_image(x_t, t.to(device=x_t.device, dtype=x_t.dtype))
        text = self.text.to(device=x_t.device, dtype=image.dtype)
        return self.scale.to(image.dtype) * (image * text).sum(dim=-1)  # (B,)

"""Pretraining shapes-t5: T5's span corruption on the shapes captions.

T5 (Raffel et al. 2020, §3.1.4) drops random spans of a text, replaces each
with a sentinel (<extra_id_i>), and trains the decoder to write the dropped
spans after their sentinels; 15 % of tokens, mean span 3. Captions are
short (2–12 words), so here 30 % of the words in spans of about 2, at
least one span. The captions are partial (phrases dropped as the diffusion
tasks drop them), so the model sees every phrase at every position. Only
the encoder is exported: the cascade trains on it frozen (Imagen §2.1).
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from core.models.shapes_t5 import (
    SENTINELS,
    T5WordTokenizer,
    encoder_weights,
    make_t5,
    sentinel_id,
    t5_config,
    t5_vocabulary,
)
from core.models.text import EOS
from core.training.common import write_model
from core.training.data import ShapesPool, partial_caption

NOISE_DENSITY = 0.3
MEAN_SPAN = 2.0


def random_partition(total: int, parts: int, rng: random.Random) -> list[int]:
    """``parts`` positive integers summing to ``total``."""
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    edges = [0, *cuts, total]
    return [b - a for a, b in zip(edges, edges[1:])]


def noise_spans(length: int, rng: random.Random) -> list[tuple[int, int]]:
    """Masked spans (start, end) of a ``length``-word text (length ≥ 2):
    about ``NOISE_DENSITY`` of the words in spans of about ``MEAN_SPAN``,
    alternating with kept runs as T5's ``random_spans_noise_mask`` does; the
    first run is kept or masked at random, so the first word is masked too."""
    noise = min(length - 1, max(1, round(NOISE_DENSITY * length)))
    spans = max(1, min(SENTINELS, round(noise / MEAN_SPAN), length - noise))
    noise_runs = random_partition(noise, spans, rng)
    kept_runs = random_partition(length - noise, spans, rng)
    noise_first = rng.random() < 0.5
    result, position = [], 0
    for kept, masked in zip(kept_runs, noise_runs):
        if not noise_first:
            position += kept
        result.append((position, position + masked))
        position += masked + (kept if noise_first else 0)
    return result


def corrupt(words: list[int], rng: random.Random, vocabulary) -> tuple[list[int], list[int]]:
    """(input ids, target ids), both ending in <eos>."""
    spans = noise_spans(len(words), rng)
    source, target, previous = [], [], 0
    for index, (start, end) in enumerate(spans):
        sentinel = sentinel_id(vocabulary, index)
        source += [*words[previous:start], sentinel]
        target += [sentinel, *words[start:end]]
        previous = end
    return source + words[previous:] + [EOS], target + [EOS]


class T5PretrainTask:
    name = "shapes-t5"

    def __init__(self, pool: ShapesPool, batch: int, device) -> None:
        self.pool, self.batch, self.device = pool, batch, device
        self.tokenizer = T5WordTokenizer(t5_vocabulary())
        self.config = t5_config(len(self.tokenizer.vocabulary))
        self.model = make_t5(self.config).to(device)
        self._rng = random.Random(0)

    def modules(self):
        return {"t5": self.model}

    def batch_ids(self, generator: torch.Generator):
        self._rng.seed(int(torch.randint(2**31, (1,), generator=generator)))
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator).tolist()
        pairs = []
        for index in indices:
            text = partial_caption(self.pool.scenes[index], self._rng)[0]
            pairs.append(corrupt(self.tokenizer.word_ids(text), self._rng, self.tokenizer.vocabulary))
        inputs, mask = self.tokenizer.pad([p[0] for p in pairs])
        labels, label_mask = self.tokenizer.pad([p[1] for p in pairs])
        return inputs, mask, labels.masked_fill(label_mask == 0, -100)  # -100: no loss

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        inputs, mask, labels = (v.to(self.device) for v in self.batch_ids(generator))
        return self.model(input_ids=inputs, attention_mask=mask, labels=labels).loss

    def export(self, path: Path, modules, recipe) -> None:
        from core.models.shapes_t5 import make_t5_encoder

        encoder = make_t5_encoder(self.config)
        encoder.load_state_dict(encoder_weights(modules["t5"]))
        write_model(path, {"text_encoder": encoder}, {
            "name": "shapes-t5", "kind": "text_encoder",
            "components": {"text_encoder": self.component()},
            "recipe": {**recipe, "task": "t5 span corruption", "noise_density": NOISE_DENSITY,
                       "mean_span": MEAN_SPAN, "batch": self.batch, "pool": len(self.pool)},
        })

    def component(self) -> dict:
        return {"class": "T5EncoderModel", "config": self.config,
                "vocabulary": self.tokenizer.vocabulary, "max_length": self.tokenizer.max_length}

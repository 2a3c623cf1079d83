"""Pretraining shapes-gemma: next-word prediction on the shapes captions.

A decoder-only LM learns p(w_i | w_<i) (the causal language-modelling loss,
Radford et al. 2018, eq. 1) on partial captions, so every phrase is seen in
every position. Only its body is exported: Sana's DiT trains on its last
hidden layer, frozen (Sana §2.3).

Each training text is the caption **twice**: ``<bos> caption <eos> caption
<eos>``. Measured on the first model, trained on single captions: in this
world the attributes are independent, so the colour words are perfectly
interchangeable for next-word prediction, and the LM (tied embeddings)
learned nearly the same vector for all of them — "red" and "blue" moved its
last layer by 0.007 of 0.9 on average, and a Sana DiT trained on it drew
colour and background at chance (14.5 % and 31.5 %). Predicting the copy
needs every word remembered, as real text needs its words, so the states
keep them. At sampling time the LM reads the caption once.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from core.models.shapes_gemma import (
    DecoderWordTokenizer,
    body_weights,
    gemma_config,
    make_gemma_encoder,
    make_gemma_lm,
)
from core.models.text import PAD, shapes_vocabulary
from core.training.common import write_model
from core.training.data import ShapesPool, partial_caption


def pad_rows(rows: list[list[int]], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Id rows padded with <pad> to ``length``: (ids (B, L), mask (B, L))."""
    ids = torch.full((len(rows), length), PAD, dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(row[:length], dtype=torch.long)
    return ids, (ids != PAD).long()


class GemmaPretrainTask:
    name = "shapes-gemma"

    def __init__(self, pool: ShapesPool, batch: int, device) -> None:
        self.pool, self.batch, self.device = pool, batch, device
        self.tokenizer = DecoderWordTokenizer(shapes_vocabulary())
        self.config = gemma_config(len(self.tokenizer.vocabulary))
        self.model = make_gemma_lm(self.config).to(device)
        self._rng = random.Random(0)

    def modules(self):
        return {"gemma": self.model}

    def batch_ids(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (B, L), attention mask (B, L)): partial captions, each twice."""
        self._rng.seed(int(torch.randint(2**31, (1,), generator=generator)))
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator).tolist()
        rows = self.tokenizer.rows([partial_caption(self.pool.scenes[i], self._rng)[0]
                                    for i in indices])  # <bos> words <eos>
        return pad_rows([row + row[1:] for row in rows], 2 * self.tokenizer.max_length)

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        ids, mask = (v.to(self.device) for v in self.batch_ids(generator))
        labels = ids.masked_fill(mask == 0, -100)  # no loss on the padding
        return self.model(input_ids=ids, attention_mask=mask, labels=labels).loss

    def export(self, path: Path, modules, recipe) -> None:
        body = make_gemma_encoder(self.config)
        body.load_state_dict(body_weights(modules["gemma"]))
        write_model(path, {"text_encoder": body}, {
            "name": "shapes-gemma", "kind": "text_encoder",
            "components": {"text_encoder": self.component()},
            "recipe": {**recipe, "task": "causal language modelling, each caption twice",
                       "batch": self.batch,
                       "pool": len(self.pool)},
        })

    def component(self) -> dict:
        return {"class": "Gemma2Model", "config": self.config,
                "vocabulary": self.tokenizer.vocabulary, "max_length": self.tokenizer.max_length}

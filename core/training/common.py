"""Pieces every conditional shapes task shares: the caption encoder it
trains (or keeps frozen) and writing a model file."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from core.checkpoints import save_checkpoint
from core.models.text import (
    WordTokenizer,
    make_text_encoder,
    pooled_output,
    shapes_vocabulary,
    text_encoder_config,
)
from core.training.data import ShapesPool, dropped_caption

CAPTION_DROPOUT = "size 0.5, colour 0.15, position 0.4, background 0.5, empty 0.1"


class CaptionEncoder:
    """A word tokenizer and a small CLIP text transformer, trained with the backbone."""

    def __init__(self, device, empty: float = 0.1, vocabulary: list[str] | None = None) -> None:
        self.tokenizer = WordTokenizer(vocabulary or shapes_vocabulary())
        self.config = text_encoder_config(len(self.tokenizer.vocabulary))
        self.model = make_text_encoder(self.config).to(device)
        self.device = device
        self.empty = empty
        self._rng = random.Random(0)

    def captions(self, pool: ShapesPool, indices: torch.Tensor,
                 generator: torch.Generator) -> list[str]:
        """Captions with phrases dropped (and some empty, for CFG), seeded by ``generator``."""
        self._rng.seed(int(torch.randint(2**31, (1,), generator=generator)))
        return [dropped_caption(pool.scenes[i], self._rng, self.empty) for i in indices.tolist()]

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states (B, L, D), pooled (B, D))."""
        ids = self.tokenizer(texts).to(self.device)
        hidden = self.model(input_ids=ids).last_hidden_state
        return hidden, pooled_output(hidden, ids)

    def component(self) -> dict[str, Any]:
        return {"class": "CLIPTextModel", "config": self.config,
                "vocabulary": self.tokenizer.vocabulary, "max_length": self.tokenizer.max_length}


def jsonable(config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def write_model(path: Path, modules: dict[str, torch.nn.Module], metadata: dict) -> None:
    """Every module's weights under its name, in fp16, with ``metadata``."""
    tensors = {f"{name}.{key}": value.half()
               for name, module in modules.items() for key, value in module.state_dict().items()}
    save_checkpoint(path, tensors, {"format": "diffusion-workbench.model", **metadata})

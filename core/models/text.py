"""The built-in text encoder: a word-level tokenizer over the shapes-world
vocabulary and a small CLIP text transformer (transformers' ``CLIPTextModel``,
the class SD 1.x uses, at a tiny size)."""
from __future__ import annotations

import logging
import re
from typing import Any, Sequence

import torch

from core.data.shapes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)


def shapes_vocabulary() -> list[str]:
    """Every word of the caption grammar, after the special tokens."""
    words = {"a", "at", "the", "on", "background", *SHAPES, *COLORS, *SIZES, *BACKGROUNDS}
    for position in POSITIONS:
        words.update(position.split())
    return [*SPECIAL_TOKENS, *sorted(words)]


def words(text: str) -> list[str]:
    """The lower-cased words of a text, as the word tokenizers read it."""
    return re.findall(r"[a-z]+", text.lower())


class WordTokenizer:
    """Lower-cased words to ids: <bos> words <eos>, padded with <eos> to a
    fixed length as SD 1.x pads with its end token."""

    def __init__(self, vocabulary: Sequence[str], max_length: int = 16) -> None:
        self.vocabulary = list(vocabulary)
        self.ids = {word: index for index, word in enumerate(self.vocabulary)}
        self.max_length = max_length

    def unknown_words(self, text: str) -> list[str]:
        return [w for w in words(text) if w not in self.ids]

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            unknown = self.unknown_words(text)
            if unknown:
                log.warning("the text encoder does not know %s; it reads them as <unk>",
                            ", ".join(repr(w) for w in unknown))
            ids = [BOS] + [self.ids.get(w, UNK) for w in words(text)]
            ids = ids[: self.max_length - 1] + [EOS]
            rows.append(ids + [EOS] * (self.max_length - len(ids)))
        return torch.tensor(rows, dtype=torch.long)  # (B, L)


def text_encoder_config(vocab_size: int, max_length: int = 16) -> dict[str, Any]:
    return dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=max_length,
        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
    )


def make_text_encoder(config: dict[str, Any]):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**config))


class TextEncoder:
    """Tokenizer plus transformer: texts → (B, L, D) hidden states for cross-attention."""

    def __init__(self, tokenizer: WordTokenizer, model) -> None:
        self.tokenizer = tokenizer
        self.model = model

    def encode(self, texts: Sequence[str], device: Any = "cpu") -> torch.Tensor:
        return self.encode_pooled(texts, device)[0]  # (B, L, D)

    def encode_pooled(self, texts: Sequence[str], device: Any = "cpu"):
        """(hidden states (B, L, D), pooled (B, D)): what SD3-style models take."""
        ids = self.tokenizer(texts).to(device)
        hidden = self.model(input_ids=ids).last_hidden_state
        return hidden, pooled_output(hidden, ids)


def pooled_output(hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """The hidden state at each row's first <eos>: CLIP's pooled text
    embedding (what SD3 feeds its adaLN as ``pooled_projections``). Taken
    here rather than from ``pooler_output``, whose legacy rule for an
    ``eos_token_id`` of 2 picks the largest token id instead."""
    first_eos = (input_ids == EOS).int().argmax(dim=1)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first_eos.to(hidden.device)]

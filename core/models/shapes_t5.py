"""A small T5 for the shapes world: the frozen language model of a cascade.

Imagen (Saharia et al. 2022, §2.1, §4.4) conditions its cascade on a
*frozen* T5 encoder pretrained on text alone, and finds that scaling that
language model matters more than scaling the U-Net. Here the same recipe
at toy size: transformers' ``T5ForConditionalGeneration`` pretrained with
T5's span-corruption objective (Raffel et al. 2020, §3.1.4) on the
captions, then only its encoder (``T5EncoderModel``) ships, frozen.

Tokens are the shapes-world words (``text.shapes_vocabulary``) plus T5's
sentinels; a caption is its words, then <eos>, then <pad>. The encoder
reads the words with an attention mask and the padded states are zeroed,
so a diffusion model attending to them sees nothing where there is no word.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import torch

from core.models.text import EOS, PAD, UNK, WordTokenizer, shapes_vocabulary, words

log = logging.getLogger(__name__)

SENTINELS = 8  # <extra_id_0> … : at most this many masked spans per caption


def t5_vocabulary() -> list[str]:
    """The shapes words, then T5's sentinel tokens (the last ids, as in T5)."""
    return [*shapes_vocabulary(), *(f"<extra_id_{i}>" for i in range(SENTINELS))]


def sentinel_id(vocabulary: Sequence[str], index: int) -> int:
    return vocabulary.index(f"<extra_id_{index}>")


def t5_config(vocab_size: int) -> dict[str, Any]:
    """T5 v1.1's layout (gated-GELU, untied embeddings) at the width of the
    other shapes text encoders, so the same U-Nets (cross-attention width 64)
    can read either."""
    return dict(
        vocab_size=vocab_size, d_model=64, d_kv=16, d_ff=128, num_layers=2,
        num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=8,
        relative_attention_max_distance=16, dropout_rate=0.0, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False, pad_token_id=PAD, eos_token_id=EOS,
        decoder_start_token_id=PAD,
    )


def make_t5(config: dict[str, Any]):
    """The whole encoder–decoder, for pretraining."""
    from transformers import T5Config, T5ForConditionalGeneration

    return T5ForConditionalGeneration(T5Config(**config))


def make_t5_encoder(config: dict[str, Any]):
    """The encoder alone: what a diffusion model conditions on."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(**config))


def encoder_weights(model) -> dict[str, torch.Tensor]:
    """The part of a ``T5ForConditionalGeneration`` that ``T5EncoderModel`` holds."""
    return {key: value for key, value in model.state_dict().items()
            if key.startswith(("shared.", "encoder."))}


class T5WordTokenizer(WordTokenizer):
    """Words → ids: the words, <eos>, then <pad> to ``max_length``; and the
    attention mask (1 on the words and <eos>). No <bos>: T5 has none."""

    def word_ids(self, text: str) -> list[int]:
        unknown = self.unknown_words(text)
        if unknown:
            log.warning("the T5 encoder does not know %s; it reads them as <unk>",
                        ", ".join(repr(w) for w in unknown))
        return [self.ids.get(w, UNK) for w in words(text)]

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Id rows (each ending in <eos>) → (ids (B, L), mask (B, L))."""
        ids = torch.full((len(rows), self.max_length), PAD, dtype=torch.long)
        for row, tokens in enumerate(rows):
            tokens = list(tokens)[: self.max_length]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return ids, (ids != PAD).long()

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pad([self.word_ids(text)[: self.max_length - 1] + [EOS] for text in texts])


def encode_masked(encoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, D) encoder states with the padded positions zeroed."""
    hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    return hidden * mask.unsqueeze(-1).to(hidden.dtype)


class T5TextEncoder:
    """The CLIP port's interface over a T5 encoder: texts → states for
    cross-attention; the pooled vector is the mean of the word states."""

    def __init__(self, tokenizer: T5WordTokenizer, model) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.description = "T5 encoder (frozen)"

    def encode(self, texts: Sequence[str], device: Any = "cpu") -> torch.Tensor:
        return self.encode_pooled(texts, device)[0]

    def encode_pooled(self, texts: Sequence[str], device: Any = "cpu"):
        ids, mask = (v.to(device) for v in self.tokenizer(texts))
        hidden = encode_masked(self.model, ids, mask)  # (B, L, D)
        pooled = hidden.sum(1) / mask.sum(1, keepdim=True).to(hidden.dtype)  # (B, D)
        return hidden, pooled

"""A small decoder-only language model for the shapes world: Sana's text encoder.

Sana (Xie et al. 2024, §2.3) reads its prompt with the last hidden layer of
a decoder-only LLM (Gemma-2) instead of T5 or CLIP. Here the same design at
toy size: transformers' ``Gemma2ForCausalLM`` (RMSNorm, grouped-query
attention, GeGLU, rotary positions) pretrained by next-word prediction on the
captions, then only its body (``Gemma2Model``, which ends in the final norm)
ships, frozen; its ``last_hidden_state`` is what the DiT attends to.

Causal attention means each word's state sees only the words before it, so
the last state (<eos>) is the only one that has read the whole caption; the
DiT's cross-attention reads all of them. Padded positions are zeroed, as
for the frozen T5 (``shapes_t5``), so a diffusion model sees nothing where
there is no word.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import torch

from core.models.shapes_t5 import encode_masked
from core.models.text import BOS, EOS, PAD, UNK, WordTokenizer, words

log = logging.getLogger(__name__)


def gemma_config(vocab_size: int) -> dict[str, Any]:
    """Gemma-2's layout (GQA: 4 query heads share 2 key/value heads; tied
    embeddings) at the width of the other shapes text encoders, 64. Every
    layer attends globally (transformers still builds a sliding-window mask,
    so its window is set to the whole context) and the logit soft-capping is off (SDPA cannot do it; at this
    size nothing needs capping)."""
    return dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
        max_position_embeddings=32, layer_types=["full_attention"] * 3, sliding_window=32,
        attn_logit_softcapping=None, final_logit_softcapping=None, tie_word_embeddings=True,
        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
    )


def make_gemma_lm(config: dict[str, Any]):
    """The language model with its head, for pretraining."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    return Gemma2ForCausalLM(Gemma2Config(**config))


def make_gemma_encoder(config: dict[str, Any]):
    """The body alone: what a diffusion model conditions on."""
    from transformers import Gemma2Config, Gemma2Model

    return Gemma2Model(Gemma2Config(**config))


def body_weights(model) -> dict[str, torch.Tensor]:
    """The part of a ``Gemma2ForCausalLM`` that ``Gemma2Model`` holds (the
    head is the tied embedding, so nothing is lost)."""
    return {key.removeprefix("model."): value for key, value in model.state_dict().items()
            if key.startswith("model.")}


class DecoderWordTokenizer(WordTokenizer):
    """Words → ids as Gemma's tokenizer lays them out: <bos>, the words,
    <eos>, then <pad> to ``max_length``; and the attention mask (1 on all
    but the padding)."""

    def word_ids(self, text: str) -> list[int]:
        unknown = self.unknown_words(text)
        if unknown:
            log.warning("the language model does not know %s; it reads them as <unk>",
                        ", ".join(repr(w) for w in unknown))
        return [self.ids.get(w, UNK) for w in words(text)]

    def rows(self, texts: Sequence[str]) -> list[list[int]]:
        return [[BOS, *self.word_ids(text)[: self.max_length - 2], EOS] for text in texts]

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.rows(texts)
        ids = torch.full((len(rows), self.max_length), PAD, dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids, (ids != PAD).long()  # (B, L) each


class DecoderTextEncoder:
    """The CLIP port's interface over a decoder-only LM: texts → its last
    hidden layer (padding zeroed) for cross-attention; the pooled vector is
    the state at <eos>, the one position that has read every word."""

    def __init__(self, tokenizer: DecoderWordTokenizer, model) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.description = "decoder-only language model (Gemma-2 design, frozen)"

    def encode(self, texts: Sequence[str], device: Any = "cpu") -> torch.Tensor:
        return self.encode_pooled(texts, device)[0]

    def encode_pooled(self, texts: Sequence[str], device: Any = "cpu"):
        ids, mask = (v.to(device) for v in self.tokenizer(texts))
        hidden = encode_masked(self.model, ids, mask)  # (B, L, D)
        last = mask.sum(1) - 1  # the <eos> of each row
        return hidden, hidden[torch.arange(len(ids), device=hidden.device), last]

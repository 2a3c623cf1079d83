"""T5's tokenizer, offline: SentencePiece-unigram pieces from the
``tokenizer.json`` shipped in ``resources/tokenizers/t5`` (see its README for
origin and licence), read with the ``tokenizers`` library alone.

SD3/SD3.5 and Flux.1 feed T5-XXL a fixed number of tokens: the prompt's
pieces, the end token ``</s>`` (id 1), then padding ``<pad>`` (id 0), cut to
the length the pipeline uses (SD3 and Flux-schnell 256, Flux-dev 512).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch

from core.paths import TOKENIZERS_DIR

TOKENIZER_FILE = TOKENIZERS_DIR / "t5" / "tokenizer.json"
PAD_ID = 0
EOS_ID = 1


@lru_cache(maxsize=4)
def _tokenizer(max_length: int):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TOKENIZER_FILE))
    # Truncation leaves room for the end token the post-processor appends,
    # as transformers' T5TokenizerFast(truncation=True) does.
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(length=max_length, pad_id=PAD_ID, pad_token="<pad>")
    return tokenizer


class T5Tokenizer:
    """Texts → (B, max_length) token ids: pieces, ``</s>``, then ``<pad>``."""

    def __init__(self, max_length: int = 256) -> None:
        if max_length < 2:
            raise ValueError("T5 needs room for at least one piece and the end token")
        self.max_length = max_length

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        encodings = _tokenizer(self.max_length).encode_batch(list(texts))
        return torch.tensor([e.ids for e in encodings], dtype=torch.long)  # (B, L)

"""The CLIP byte-pair-encoding tokenizer, built offline from the vocabulary
file shipped in ``resources/tokenizers/clip`` (no hub, no download).

SD 1.x (CLIP ViT-L/14), SD 2.x (OpenCLIP ViT-H/14) and SDXL (both encoders)
share one vocabulary of 49,408 tokens: 256 byte symbols, the same with the
end-of-word mark ``</w>``, 48,894 merges and the two specials
``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407), exactly as OpenAI's
``SimpleTokenizer`` builds it. They differ only in what pads a prompt to 77
tokens: CLIP-L pads with ``<|endoftext|>`` (49407), OpenCLIP with ``!`` (0).
"""
from __future__ import annotations

import gzip
from functools import lru_cache

import torch

from core.paths import TOKENIZERS_DIR

CLIP_VOCAB_FILE = TOKENIZERS_DIR / "clip" / "bpe_simple_vocab_16e6.txt.gz"
CLIP_MAX_LENGTH = 77
START, END = "<|startoftext|>", "<|endoftext|>"
MERGE_COUNT = 49152 - 256 - 2  # the merges CLIP uses from the file's 262,144 lines
PAD_TOKENS = (END, "!")  # CLIP-L (SD 1.x, SDXL's first) and OpenCLIP (SD 2.x, SDXL's second)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (CLIP's byte alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


@lru_cache(maxsize=1)
def clip_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(token → id, merges) as CLIP's ``SimpleTokenizer`` builds them from the file."""
    lines = gzip.decompress(CLIP_VOCAB_FILE.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:MERGE_COUNT + 1]]
    symbols = list(_bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges), START, END]
    return {token: index for index, token in enumerate(tokens)}, merges


@lru_cache(maxsize=len(PAD_TOKENS))
def clip_tokenizer(pad_token: str = END):
    """transformers' ``CLIPTokenizer`` (a fast, Rust-backed one) with CLIP's
    vocabulary, 77 tokens long, padding with ``pad_token``. Built once per
    pad token per process; treat it as read-only."""
    from transformers import CLIPTokenizer

    if pad_token not in PAD_TOKENS:
        raise ValueError(f"CLIP pads with {' or '.join(map(repr, PAD_TOKENS))}, not {pad_token!r}")
    vocab, merges = clip_vocabulary()
    # vocab=/merges= (not vocab_file=, which transformers 5 ignores silently)
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), pad_token=pad_token,
                         model_max_length=CLIP_MAX_LENGTH)


def clip_token_ids(texts: list[str], pad_token: str = END) -> torch.Tensor:
    """Prompts as (B, 77) ids: start, BPE tokens (truncated), end, padding."""
    tokenizer = clip_tokenizer(pad_token)
    return tokenizer(list(texts), padding="max_length", max_length=CLIP_MAX_LENGTH,
                     truncation=True, return_tensors="pt").input_ids  # (B, 77)

"""Backbones as ``network(x_t, t, cond=…)``: each wraps a diffusers model and
turns a :class:`~core.values.Conditioning` into what that model takes.

A prompt without embeddings is encoded with the checkpoint's own text
encoder (memoised, bounded); ControlNet hints riding on the conditioning
(``extras["control"]``) add their residuals to the U-Net's skip connections.
"""
from __future__ import annotations

from typing import Any

import torch

from core.models.text import TextEncoder
from core.values import Conditioning

MEMO_SIZE = 32  # prompts kept encoded; a long session must not grow without bound


class PromptMemo:
    """Encodes prompts with a text encoder once: text → (hidden, pooled)."""

    def __init__(self, clip: TextEncoder) -> None:
        self.clip = clip
        self._encoded: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, cond: Conditioning, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden, pooled = cond.embeddings, cond.extras.get("pooled")
        if hidden is None:
            if cond.text not in self._encoded:
                if len(self._encoded) >= MEMO_SIZE:
                    self._encoded.pop(next(iter(self._encoded)))
                self._encoded[cond.text] = self.clip.encode_pooled([cond.text], x_t.device)
            hidden, pooled = self._encoded[cond.text]
        return _batched(hidden, x_t), (None if pooled is None else _batched(pooled, x_t))


def _batched(tensor: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    tensor = tensor.to(device=x_t.device, dtype=x_t.dtype)
    return tensor.expand(x_t.shape[0], *tensor.shape[1:]) if len(tensor) == 1 else tensor


class ConditionedUNet:
    """A cross-attention U-Net (SD's ``UNet2DConditionModel``), with ControlNets."""

    def __init__(self, unet, clip: TextEncoder) -> None:
        self.unet = unet
        self.clip = clip
        self.prompts = PromptMemo(clip)

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning | None = None):
        cond = cond or Conditioning()
        context, _ = self.prompts(cond, x_t)
        down, mid = control_residuals(cond, x_t, t, context)
        return self.unet(x_t, t, encoder_hidden_states=context,
                         down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample


def control_residuals(cond: Conditioning, x_t, t, context):
    """The summed residuals of every ControlNet hint on ``cond`` (Zhang et al.
    2023, eq. 2: each adds its zero-convolution outputs to the skips)."""
    down, mid = None, None
    for hint in cond.extras.get("control", ()):
        d, m = hint.residuals(x_t, t, context)
        down = d if down is None else [a + b for a, b in zip(down, d)]
        mid = m if mid is None else mid + m
    return down, mid


class ConditionedTransformer:
    """SD3's MMDiT: text tokens and the pooled text embedding (adaLN)."""

    def __init__(self, transformer, clip: TextEncoder) -> None:
        self.transformer = transformer
        self.clip = clip
        self.prompts = PromptMemo(clip)

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning | None = None):
        cond = cond or Conditioning()
        hidden, pooled = self.prompts(cond, x_t)
        if pooled is None:
            raise ValueError("this model needs a pooled text embedding: encode the prompt "
                             "with its own text encoder")
        return self.transformer(x_t, encoder_hidden_states=hidden, pooled_projections=pooled,
                                timestep=t).sample


class ControlHint:
    """One ControlNet with its hint image and strength, riding on a conditioning."""

    def __init__(self, controlnet: Any, image: torch.Tensor, strength: float) -> None:
        self.controlnet = controlnet
        self.image = image  # (1|B, 3, H, W) in [0, 1]
        self.strength = strength

    def residuals(self, x_t, t, context):
        factor = 2 ** (len(self.controlnet.config.conditioning_embedding_out_channels) - 1)
        size = (x_t.shape[-2] * factor, x_t.shape[-1] * factor)
        hint = self.image.to(device=x_t.device, dtype=x_t.dtype)
        if hint.shape[-2:] != size:
            hint = torch.nn.functional.interpolate(hint, size=size, mode="bilinear",
                                                   align_corners=False)
        hint = hint.expand(x_t.shape[0], -1, -1, -1) if len(hint) == 1 else hint
        return self.controlnet(x_t, t, encoder_hidden_states=context, controlnet_cond=hint,
                               conditioning_scale=self.strength, return_dict=False)

"""Backbones as ``network(x_t, t, cond=…)``: each wraps a diffusers model and
turns a :class:`~core.values.Conditioning` into what that model takes.

A prompt without embeddings is encoded with the checkpoint's own text
encoder (memoised, bounded); ControlNet hints riding on the conditioning
(``extras["control"]``) add their residuals to the U-Net's skip connections.
A :class:`~core.values.ConditioningBatch` conditions each part of the batch
on its own prompt in one call of the network (batched classifier-free
guidance). The network runs in its own dtype; its output comes back in x_t's.
"""
from __future__ import annotations

import functools
from typing import Any

import torch

from core.models.text import TextEncoder
from core.values import Conditioning, ConditioningBatch

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


def for_each_part(cond: Conditioning | ConditioningBatch | None,
                  x_t: torch.Tensor) -> list[tuple[Conditioning, slice]]:
    """The conditionings of ``cond`` with the rows of ``x_t`` each one conditions."""
    if not isinstance(cond, ConditioningBatch):
        return [(cond or Conditioning(), slice(None))]
    count = len(cond.parts)
    if count == 0 or x_t.shape[0] % count:
        raise ValueError(f"a batch of {x_t.shape[0]} rows cannot be split among "
                         f"{count} conditionings")
    rows = x_t.shape[0] // count
    return [(part, slice(i * rows, (i + 1) * rows)) for i, part in enumerate(cond.parts)]


def concat_parts(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
    """Per-part tensors joined along the batch, or None when they cannot be
    (a part without one, or different shapes past the batch dimension)."""
    if any(t is None for t in tensors) or len({t.shape[1:] for t in tensors}) != 1:
        return None
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def inference(method):
    """Run a network call in inference mode — on the CPU the U-Net's forward
    is ~5 % faster than under ``no_grad`` (no version counters, no view
    tracking) — and hand back an ordinary tensor (a clone made outside it),
    which samplers may update in place and autograd may read."""
    @functools.wraps(method)
    def call(*args, **kwargs):
        with torch.inference_mode():
            out = method(*args, **kwargs)
        return out.clone()
    return call


def module_dtype(module: torch.nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


class ConditionedUNet:
    """A cross-attention U-Net (SD's ``UNet2DConditionModel``), with ControlNets.

    SDXL's U-Net (``addition_embed_type == "text_time"``) also takes the
    pooled text embedding and the "micro-conditioning" time ids of each part
    (:func:`sdxl_time_ids`); ``downscale`` turns latent sizes into the pixel
    sizes they are given in (the VAE's factor, 8 for SD's)."""

    def __init__(self, unet, clip: TextEncoder, downscale: int = 8) -> None:
        self.unet = unet
        self.clip = clip
        self.downscale = downscale
        self.prompts = PromptMemo(clip)

    @inference
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond=None):
        parts = for_each_part(cond, x_t)
        dtype = module_dtype(self.unet)
        encoded = [self.prompts(part, x_t[rows]) for part, rows in parts]
        contexts = [hidden.to(dtype) for hidden, _ in encoded]
        added = [self._added(part, pooled, x_t[rows])
                 for (part, rows), (_, pooled) in zip(parts, encoded)]
        context = concat_parts(contexts)
        if context is None:  # prompts of different lengths: one call per part
            return torch.cat([self._run(x_t[rows], _rows(t, rows), part, c, a)
                              for (part, rows), c, a in zip(parts, contexts, added)])
        return self._run(x_t, t, cond, context, _joined(added))

    def _added(self, part: Conditioning, pooled, x_rows: torch.Tensor):
        """SDXL's ``added_cond_kwargs`` for these rows, or None for other U-Nets."""
        config = self.unet.config
        if config.get("addition_embed_type") != "text_time":
            return None
        if pooled is None:
            raise ValueError("SDXL needs the pooled text embedding: encode the prompt with "
                             "its own text encoders")
        count = ((config.projection_class_embeddings_input_dim - pooled.shape[-1])
                 / config.addition_time_embed_dim)
        size = (x_rows.shape[-2] * self.downscale, x_rows.shape[-1] * self.downscale)
        ids = sdxl_time_ids(part.extras, size, refiner=count == 5)
        dtype = module_dtype(self.unet)
        return {"text_embeds": pooled.to(dtype),  # (B, P)
                "time_ids": ids.to(x_rows.device, dtype).expand(x_rows.shape[0], -1)}  # (B, 6|5)

    def _run(self, x_t, t, cond, context, added=None):
        dtype = module_dtype(self.unet)
        x, t_in = x_t.to(dtype), _timesteps(t, x_t, dtype)
        down, mid = control_residuals(cond, x, t_in, context, added)
        return self.unet(x, t_in, encoder_hidden_states=context, added_cond_kwargs=added,
                         down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample.to(x_t.dtype)


def sdxl_time_ids(extras, size: tuple[int, int], refiner: bool = False) -> torch.Tensor:
    """SDXL's micro-conditioning (Podell et al. 2023, §2.2; diffusers'
    ``_get_add_time_ids``), in pixels, as a (1, 6) row for the base model:
    (original h, original w, crop top, crop left, target h, target w); for
    the refiner (1, 5): (original h, original w, crop top, crop left,
    aesthetic score). Defaults: original = target = ``size``, crop (0, 0),
    aesthetic score 6.0 (diffusers' default for the prompt; its negative
    prompt gets 2.5 — set ``extras["aesthetic_score"]`` for that).
    ``extras`` may set ``original_size``, ``crop``, ``target_size`` and
    ``aesthetic_score``."""
    original = tuple(extras.get("original_size", size))
    crop = tuple(extras.get("crop", (0, 0)))
    last = (float(extras.get("aesthetic_score", 6.0)),) if refiner else \
        tuple(extras.get("target_size", size))
    return torch.tensor([[*original, *crop, *last]], dtype=torch.float32)


def _joined(added: list[dict | None]) -> dict | None:
    """Per-part ``added_cond_kwargs`` joined along the batch."""
    if added[0] is None:
        return None
    return {key: torch.cat([a[key] for a in added]) for key in added[0]}


def _timesteps(t: torch.Tensor, x_t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Timesteps as a (B,) tensor in the network's dtype."""
    t = torch.as_tensor(t, device=x_t.device)
    return (t.expand(x_t.shape[0]) if t.ndim == 0 else t).to(dtype)


def _rows(t: torch.Tensor, rows: slice) -> torch.Tensor:
    t = torch.as_tensor(t)
    return t if t.ndim == 0 else t[rows]


def control_residuals(cond, x_t, t, context, added=None):
    """The summed residuals of every ControlNet hint (Zhang et al. 2023, eq. 2:
    each adds its zero-convolution outputs to the skips), or (None, None)
    when no hint acts. Parts of a batch that share their hints run each
    ControlNet once over the whole batch; otherwise each part gets its own
    hints' residuals (zeros for none). ``added`` is SDXL's
    ``added_cond_kwargs``, which SDXL ControlNets take too."""
    parts = for_each_part(cond, x_t)
    hints = [tuple(part.extras.get("control", ())) for part, _ in parts]
    if all(h == hints[0] for h in hints):
        return _summed(hints[0], x_t, t, context, added)
    per_part = [_summed(h, x_t[rows], _rows(t, rows), context[rows], _rows_of(added, rows))
                for h, (_, rows) in zip(hints, parts)]
    template = next((p for p in per_part if p[0] is not None), None)
    if template is None:
        return None, None
    filled = [p if p[0] is not None else _zeros_like(template, x_t[rows])
              for p, (_, rows) in zip(per_part, parts)]
    down = [torch.cat(level) for level in zip(*(p[0] for p in filled))]
    return down, torch.cat([p[1] for p in filled])


def _rows_of(added, rows: slice):
    return None if added is None else {k: v[rows] for k, v in added.items()}


def _summed(hints, x_t, t, context, added=None):
    """The hints' residuals added up; a hint outside its steps gives (None, None)."""
    down, mid = None, None
    for hint in hints:
        d, m = hint.residuals(x_t, t, context, added)
        if d is None:
            continue
        down = d if down is None else [a + b for a, b in zip(down, d)]
        mid = m if mid is None else mid + m
    return down, mid


def _zeros_like(template, x_rows):
    """Zero residuals (no ControlNet) shaped like ``template``'s, for these rows."""
    n = x_rows.shape[0]
    down, mid = template
    return ([torch.zeros(n, *d.shape[1:], dtype=d.dtype, device=d.device) for d in down],
            torch.zeros(n, *mid.shape[1:], dtype=mid.dtype, device=mid.device))


class ConditionedTransformer:
    """SD3's MMDiT: text tokens and the pooled text embedding (adaLN)."""

    def __init__(self, transformer, clip: TextEncoder) -> None:
        self.transformer = transformer
        self.clip = clip
        self.prompts = PromptMemo(clip)

    @inference
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond=None):
        parts = for_each_part(cond, x_t)
        encoded = [self.prompts(part, x_t[rows]) for part, rows in parts]
        if any(pooled is None for _, pooled in encoded):
            raise ValueError("this model needs a pooled text embedding: encode the prompt "
                             "with its own text encoder")
        hidden = concat_parts([h for h, _ in encoded])
        if hidden is None:  # prompts of different lengths: one call per part
            return torch.cat([self._run(x_t[rows], _rows(t, rows), h, p)
                              for (_, rows), (h, p) in zip(parts, encoded)])
        return self._run(x_t, t, hidden, torch.cat([p for _, p in encoded]))

    def _run(self, x_t, t, hidden, pooled):
        dtype = module_dtype(self.transformer)
        return self.transformer(x_t.to(dtype), encoder_hidden_states=hidden.to(dtype),
                                pooled_projections=pooled.to(dtype),
                                timestep=_timesteps(t, x_t, dtype)).sample.to(x_t.dtype)


class ConditionedSana(ConditionedTransformer):
    """Sana's linear-attention DiT (``SanaTransformer2DModel``): it attends
    to the text states alone (padding zeroed, as it was trained); there is
    no pooled embedding."""

    @inference
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond=None):
        parts = for_each_part(cond, x_t)
        hidden = [self.prompts(part, x_t[rows])[0] for part, rows in parts]
        joined = concat_parts(hidden)
        if joined is None:  # prompts of different lengths: one call per part
            return torch.cat([self._run(x_t[rows], _rows(t, rows), h)
                              for (_, rows), h in zip(parts, hidden)])
        return self._run(x_t, t, joined)

    def _run(self, x_t, t, hidden):
        dtype = module_dtype(self.transformer)
        return self.transformer(x_t.to(dtype), encoder_hidden_states=hidden.to(dtype),
                                timestep=_timesteps(t, x_t, dtype)).sample.to(x_t.dtype)


class ConditionedVideo(ConditionedTransformer):
    """A CogVideoX-style video transformer (``CogVideoXTransformer3DModel``):
    latents (B, T, C, h, w), text tokens through its expert adaLN, no pooled
    embedding."""

    @inference
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond=None):
        if x_t.ndim != 5:
            raise ValueError(f"a video model samples (batch, frames, channels, height, width) "
                             f"latents, not {tuple(x_t.shape)}: start from 'Empty video latent'")
        parts = for_each_part(cond, x_t)
        hidden = concat_parts([self.prompts(part, x_t[rows])[0] for part, rows in parts])
        dtype = module_dtype(self.transformer)
        return self.transformer(x_t.to(dtype), encoder_hidden_states=hidden.to(dtype),
                                timestep=_timesteps(t, x_t, dtype)).sample.to(x_t.dtype)

#: A ControlNet hint acting on every step (Zhang et al. 2023): the timed hint
#: with its default range, kept under its old name for callers that never
#: restrict the steps.
from core.models.families.controlnet import TimedControlHint as ControlHint  # noqa: E402


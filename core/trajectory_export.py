"""Pictures of a denoising run: a filmstrip PNG and an animated GIF.

A *frame* is one recorded step: its index, the noise level, and x_t, the
predicted x̂_0 and the predicted noise ε̂ as (B, C, h, w) tensors in the
model's own scale. ``to_rgb`` turns such a tensor into (B, 3, H, W) pixels
in [0, 1] (``core.previews.preview_rgb`` with the model's latent map, or a
VAE decode). The filmstrip has one row pair per batch item, x_t above x̂_0,
across up to ``columns`` evenly chosen steps; the animation shows x_t, x̂_0
and ε̂ side by side, one frame per step.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

ToRGB = Callable[[torch.Tensor], torch.Tensor]
MIN_SIDE = 96  # small latents are enlarged (nearest) to at least this many pixels


@dataclass(frozen=True)
class Frame:
    index: int
    level: float
    x_t: torch.Tensor
    x0: torch.Tensor
    eps: torch.Tensor | None = None


def chosen(frames: Sequence[Frame], columns: int) -> list[Frame]:
    """Up to ``columns`` frames, evenly spread, always the first and the last."""
    if len(frames) <= columns:
        return list(frames)
    picks = torch.linspace(0, len(frames) - 1, columns).round().long().unique()
    return [frames[int(i)] for i in picks]


def _enlarged(rgb: torch.Tensor) -> torch.Tensor:
    factor = max(1, -(-MIN_SIDE // rgb.shape[-1]))
    return rgb.repeat_interleave(factor, -1).repeat_interleave(factor, -2) if factor > 1 else rgb


def _noise_rgb(eps: torch.Tensor) -> torch.Tensor:
    """ε̂ as a picture: its first three channels, ±2.5 standard deviations to [0, 1]."""
    x = eps.float()[:, :3] if eps.shape[1] >= 3 else eps.float()[:, :1].expand(-1, 3, -1, -1)
    return (x / 5 + 0.5).clamp(0, 1)


def filmstrip(frames: Sequence[Frame], to_rgb: ToRGB, columns: int = 8):
    """A PIL image: for each batch item, x_t (top) and x̂_0 (bottom) across steps."""
    from PIL import Image, ImageDraw

    from core.images import to_pil

    if not frames:
        raise ValueError("no steps were recorded")
    picked = chosen(frames, columns)
    tiles = [(_enlarged(to_rgb(f.x_t)), _enlarged(to_rgb(f.x0))) for f in picked]
    batch, _, height, width = tiles[0][0].shape
    label = 14
    sheet = Image.new("RGB", (len(picked) * width, label + 2 * batch * height), "white")
    draw = ImageDraw.Draw(sheet)
    for column, (frame, (x_t, x0)) in enumerate(zip(picked, tiles)):
        draw.text((column * width + 2, 1), f"{frame.index + 1}", fill="black")
        for item in range(batch):
            top = label + 2 * item * height
            sheet.paste(to_pil(x_t[item]), (column * width, top))
            sheet.paste(to_pil(x0[item]), (column * width, top + height))
    return sheet


def animation(frames: Sequence[Frame], to_rgb: ToRGB, path: Path, item: int = 0,
              frame_ms: int = 120) -> Path:
    """An animated GIF of batch item ``item``: x_t | x̂_0 | ε̂ for every step."""
    from PIL import Image

    from core.images import to_pil

    if not frames:
        raise ValueError("no steps were recorded")
    pictures = []
    for frame in frames:
        parts = [_enlarged(to_rgb(frame.x_t))[item], _enlarged(to_rgb(frame.x0))[item]]
        if frame.eps is not None:  # ε̂ lives in latent space: shown at the pictures' size
            noise = _noise_rgb(frame.eps[item:item + 1])
            parts.append(torch.nn.functional.interpolate(noise, size=parts[0].shape[-2:])[0])
        pictures.append(to_pil(torch.cat(parts, dim=-1)))
    pictures += [pictures[-1]] * 8  # hold the result
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    return path


def export(frames: Sequence[Frame], to_rgb: ToRGB, folder: Path, stem: str,
           columns: int = 8) -> list[Path]:
    """Write ``<stem>-filmstrip.png`` and ``<stem>-denoising.gif`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    strip = folder / f"{stem}-filmstrip.png"
    filmstrip(frames, to_rgb, columns).save(strip)
    return [strip, animation(frames, to_rgb, folder / f"{stem}-denoising.gif")]

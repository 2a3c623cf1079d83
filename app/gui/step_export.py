"""Export of a scrubbed run from the GUI: a filmstrip PNG (x_t above the
predicted x̂_0, across chosen steps) and an animated GIF or WebP of the
denoising, written by the CLI's own ``core.trajectory_export`` from the kept
steps. Pixels come from the model's VAE where it has one (exact), else from
its linear latent map, as ``run --trajectory`` does. Runs in a worker.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

FORMATS = ("gif", "webp")


def frames_of(records: Sequence) -> list:
    """Kept step records as ``core.trajectory_export.Frame`` values (x_t, x̂_0, ε̂)."""
    from core.trajectory_export import Frame

    return [Frame(r.index, float(r.t or 0.0), *r.tensors) for r in records if r.tensors is not None]


def export_steps(records: Sequence, folder: Path, stem: str, columns: int = 8,
                 animation_format: str = "gif") -> list[Path]:
    """Write ``<stem>-filmstrip.png`` and ``<stem>-denoising.<gif|webp>``; return both paths."""
    import torch

    from core.previews import preview_rgb
    from core.trajectory_export import animation, filmstrip

    if animation_format not in FORMATS:
        raise ValueError(f"animation format must be one of {', '.join(FORMATS)}")
    frames = frames_of(records)
    if not frames:
        raise ValueError("no steps with images are kept for this sampler")
    decoder, mapping = records[-1].decoder, records[-1].latent_rgb

    def to_rgb(x):
        with torch.no_grad():
            return decoder.decode(x.float()) if decoder is not None else preview_rgb(x, mapping)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    strip = folder / f"{stem}-filmstrip.png"
    filmstrip(frames, to_rgb, columns).save(strip)
    return [strip, animation(frames, to_rgb, folder / f"{stem}-denoising.{animation_format}")]

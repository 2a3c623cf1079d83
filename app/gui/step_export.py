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


def parse_steps(text: str) -> list[int] | None:
    """"1, 5, 10-12" → [1, 5, 10, 11, 12] (1-based step numbers); empty → None
    (evenly spread). Raises ValueError naming what it cannot read."""
    steps: list[int] = []
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"{part!r} is not a step number or a range like 5-9") from None
        if first < 1 or last < first:
            raise ValueError(f"{part!r}: steps count from 1, ranges go upward")
        steps.extend(range(first, last + 1))
    return sorted(set(steps)) or None


def export_steps(records: Sequence, folder: Path, stem: str, columns: int = 8,
                 animation_format: str = "gif", steps: Sequence[int] | None = None) -> list[Path]:
    """Write ``<stem>-filmstrip.png`` and ``<stem>-denoising.<gif|webp>``; return both
    paths. ``steps`` (1-based) picks the filmstrip's columns; None spreads ``columns``."""
    import torch

    from core.previews import preview_rgb
    from core.trajectory_export import animation, filmstrip
    from core.video import as_pictures

    if animation_format not in FORMATS:
        raise ValueError(f"animation format must be one of {', '.join(FORMATS)}")
    frames = frames_of(records)
    if not frames:
        raise ValueError("no steps with images are kept for this sampler")
    decoder, mapping = records[-1].decoder, records[-1].latent_rgb

    def to_rgb(x):  # a video's clips come back as filmstrips
        with torch.no_grad():
            return as_pictures(x.float(), decoder.decode if decoder is not None
                               else lambda frames: preview_rgb(frames, mapping))

    picked = frames
    if steps is not None:
        picked = [f for f in frames if f.index + 1 in set(steps)]
        if not picked:
            kept = f"{frames[0].index + 1}–{frames[-1].index + 1}"
            raise ValueError(f"none of the steps {list(steps)} is kept (kept: {kept})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    strip = folder / f"{stem}-filmstrip.png"
    filmstrip(picked, to_rgb, len(picked) if steps is not None else columns).save(strip)
    return [strip, animation(frames, to_rgb, folder / f"{stem}-denoising.{animation_format}")]

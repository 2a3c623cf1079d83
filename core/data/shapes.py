"""The "shapes world": procedural images whose content is known exactly.

Each image is one shape on a plain background, with a caption in the fixed
grammar ``a {size} {color} {shape} at the {position} on a {background}
background`` and an outline hint (the shape's edges, white on black) for
ControlNet. Because every attribute is known, what a model generates can be
scored exactly. Generation is seeded and unlimited; shapes are drawn at 4×
and downsampled, so edges are anti-aliased.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle")
COLORS = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 220, 40),
    "green": (50, 170, 70),
    "blue": (40, 80, 220),
    "purple": (140, 60, 190),
}
SIZES = {"small": (0.25, 0.33), "large": (0.50, 0.60)}  # shape width / image width
POSITIONS = ("center", "top left", "top right", "bottom left", "bottom right")
BACKGROUNDS = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapeScene:
    """Everything that decides one picture."""

    shape: str
    color: str
    size: str
    position: str
    background: str
    extent: float  # shape width as a fraction of the image width
    rotation: float  # degrees; circles ignore it
    jitter: tuple[float, float]  # small offset of the centre, in image fractions

    @property
    def caption(self) -> str:
        return (f"a {self.size} {self.color} {self.shape} at the {self.position} "
                f"on a {self.background} background")

    def centre(self) -> tuple[float, float]:
        """The shape's centre in image fractions (x, y)."""
        if self.position == "center":
            x, y = 0.5, 0.5
        else:
            margin = self.extent / 2 + 0.04
            vertical, horizontal = self.position.split()
            x = margin if horizontal == "left" else 1 - margin
            y = margin if vertical == "top" else 1 - margin
        return x + self.jitter[0], y + self.jitter[1]


def random_scene(rng: random.Random) -> ShapeScene:
    size = rng.choice(tuple(SIZES))
    low, high = SIZES[size]
    return ShapeScene(
        shape=rng.choice(SHAPES),
        color=rng.choice(tuple(COLORS)),
        size=size,
        position=rng.choice(POSITIONS),
        background=rng.choice(tuple(BACKGROUNDS)),
        extent=rng.uniform(low, high),
        rotation=rng.uniform(0, 360),
        jitter=(rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)),
    )


def polygon(scene: ShapeScene, pixels: int) -> list[tuple[float, float]] | None:
    """The shape's corners in pixels (None for a circle). The rotated shape is
    scaled so its bounding box is ``extent`` wide (or tall) and centred where
    the position says, so size and position mean the same at every rotation."""
    if scene.shape == "circle":
        return None
    corners, start = (4, 45.0) if scene.shape == "square" else (3, -90.0)
    unit = [
        (math.cos(math.radians(start + scene.rotation + k * 360 / corners)),
         math.sin(math.radians(start + scene.rotation + k * 360 / corners)))
        for k in range(corners)
    ]
    xs, ys = [p[0] for p in unit], [p[1] for p in unit]
    span = max(max(xs) - min(xs), max(ys) - min(ys))
    mid_x, mid_y = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    scale = scene.extent * pixels / span
    cx, cy = (c * pixels for c in scene.centre())
    return [(cx + (x - mid_x) * scale, cy + (y - mid_y) * scale) for x, y in unit]


def render(scene: ShapeScene, pixels: int = 64):
    """(image, outline) as PIL images of ``pixels``² (RGB and L)."""
    from PIL import Image, ImageDraw

    big = pixels * _SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    outline = Image.new("L", (big, big), 0)
    paint, edges = ImageDraw.Draw(image), ImageDraw.Draw(outline)
    line = max(2, round(big / 48))
    corners = polygon(scene, big)
    if corners is None:
        cx, cy = (c * big for c in scene.centre())
        r = scene.extent * big / 2
        box = (cx - r, cy - r, cx + r, cy + r)
        paint.ellipse(box, fill=COLORS[scene.color])
        edges.ellipse(box, outline=255, width=line)
    else:
        paint.polygon(corners, fill=COLORS[scene.color])
        edges.polygon(corners, outline=255, width=line)
    resample = Image.Resampling.LANCZOS
    return image.resize((pixels, pixels), resample), outline.resize((pixels, pixels), resample)


def shapes_dataset(count: int, seed: int = 0, pixels: int = 64):
    """``count`` scenes as tensors: images (N, 3, H, W) in [−1, 1], outlines
    (N, 1, H, W) in [0, 1], and their captions."""
    import numpy as np
    import torch

    rng = random.Random(seed)
    images, outlines, captions = [], [], []
    for _ in range(count):
        scene = random_scene(rng)
        image, outline = render(scene, pixels)
        images.append(np.asarray(image, dtype=np.float32) / 127.5 - 1)
        outlines.append(np.asarray(outline, dtype=np.float32) / 255)
        captions.append(scene.caption)
    images_t = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    outlines_t = torch.from_numpy(np.stack(outlines)).unsqueeze(1)  # (N, 1, H, W)
    return images_t, outlines_t, captions

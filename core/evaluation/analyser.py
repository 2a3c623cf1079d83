"""Reading a shapes-world picture back from its pixels alone.

The analyser knows nothing about the model that made the picture: it finds
the background from the border, the shape as the pixels that differ from it,
and reads colour, size, position and shape off that mask. Shape uses a
rotation-free fill ratio, area / (π R²) with R the largest distance from the
centroid: about 1 for a circle, 2/π ≈ 0.64 for a square and 3√3/(4π) ≈ 0.41
for an equilateral triangle. A mask with deep dents or spikes is no clean
shape at all, whatever its fill ratio: its *solidity* (area over the area of
its convex hull, counted on pixel corners) falls below 0.75, where rendered
shapes never go (the smallest, staircased by the pixel grid, stay above 0.8);
such a picture reads as no shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from core.data.shapes import BACKGROUNDS, COLORS

_COLOR_TABLE = torch.tensor(list(COLORS.values()), dtype=torch.float32) / 255  # (6, 3)
_BACKGROUND_TABLE = torch.tensor(list(BACKGROUNDS.values()), dtype=torch.float32) / 255  # (3, 3)


@dataclass(frozen=True)
class Reading:
    """What the pixels show (None where nothing could be read)."""

    shape: str | None
    color: str | None
    size: str | None
    position: str | None
    background: str | None
    mask: torch.Tensor  # (H, W) bool: the shape's pixels


#: Smaller pictures are enlarged (bicubic) to this size first: at 32 pixels a
#: small circle is about 9 pixels wide and its staircase fills like a square.
READ_SIZE = 64


def analyse(image: torch.Tensor) -> Reading:
    """Read one (3, H, W) image in [0, 1]."""
    image = image.float().clamp(0, 1)
    if max(image.shape[-2:]) < READ_SIZE:
        image = torch.nn.functional.interpolate(image[None], size=(READ_SIZE, READ_SIZE),
                                                mode="bicubic", align_corners=False)[0].clamp(0, 1)
    _, height, width = image.shape
    border = torch.cat([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], dim=1)  # (3, P)
    background_rgb = border.median(dim=1).values  # (3,)
    background = _nearest(background_rgb, _BACKGROUND_TABLE, tuple(BACKGROUNDS))
    distance = (image - background_rgb[:, None, None]).abs().amax(dim=0)  # (H, W)
    mask = distance > 0.25
    if mask.sum() < 6:
        return Reading(None, None, None, None, background, mask)
    pixels = image[:, mask]  # (3, M)
    color = _nearest(pixels.median(dim=1).values, _COLOR_TABLE, tuple(COLORS))
    ys, xs = torch.nonzero(mask, as_tuple=True)
    cx, cy = xs.float().mean() + 0.5, ys.float().mean() + 0.5
    extent = max(int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1) / width
    size = "small" if extent < 0.42 else "large"
    box_x = (int(xs.min()) + int(xs.max()) + 1) / 2  # the renderer places the bounding box
    box_y = (int(ys.min()) + int(ys.max()) + 1) / 2
    position = _position(box_x / width, box_y / height)
    radius = ((xs.float() + 0.5 - cx) ** 2 + (ys.float() + 0.5 - cy) ** 2).sqrt().max() + 0.5
    fill = float(mask.sum()) / (math.pi * float(radius) ** 2)
    shape = "circle" if fill > 0.82 else "square" if fill > 0.52 else "triangle"
    if solidity(xs, ys) < MIN_SOLIDITY:
        shape = None
    return Reading(shape, color, size, position, background, mask)


MIN_SOLIDITY = 0.75


def solidity(xs: torch.Tensor, ys: torch.Tensor) -> float:
    """Pixel count over the area of the convex hull of the pixels' corners."""
    corners = sorted({(x + dx, y + dy) for x, y in zip(xs.tolist(), ys.tolist())
                      for dx in (0, 1) for dy in (0, 1)})
    hull_area = _polygon_area(_convex_hull(corners))
    return len(xs) / hull_area if hull_area else 0.0


def _convex_hull(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Andrew's monotone chain, counter-clockwise; ``points`` sorted and unique."""
    def half(sequence):
        chain: list[tuple[int, int]] = []
        for p in sequence:
            while len(chain) >= 2 and _cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    return half(points) + half(reversed(points)) if len(points) > 2 else points


def _cross(o, a, b) -> int:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _polygon_area(points: list[tuple[int, int]]) -> float:
    """The shoelace formula."""
    return abs(sum(points[i][0] * points[(i + 1) % len(points)][1]
                   - points[(i + 1) % len(points)][0] * points[i][1]
                   for i in range(len(points)))) / 2


def _nearest(rgb: torch.Tensor, table: torch.Tensor, names: tuple[str, ...]) -> str:
    return names[int(((table - rgb) ** 2).sum(dim=1).argmin())]


def _position(x: float, y: float) -> str:
    if abs(x - 0.5) < 0.12 and abs(y - 0.5) < 0.12:
        return "center"
    vertical = "top" if y < 0.5 else "bottom"
    horizontal = "left" if x < 0.5 else "right"
    return f"{vertical} {horizontal}"

"""Reading a shapes-world picture back from its pixels alone.

The analyser knows nothing about the model that made the picture: it finds
the background from the border, the shape as the pixels that differ from it,
and reads colour, size, position and shape off that mask.

A mask with deep dents or spikes is no clean shape at all: its *solidity*
(area over the area of its convex hull, counted on pixel corners) falls below
0.75, where rendered shapes never go (the smallest, staircased by the pixel
grid, stay above 0.8); such a picture reads as no shape.

Otherwise the corners decide. The outline is traced to a fraction of a pixel
(where the coverage, the distance from the background over the shape's own
contrast, crosses one half), and the largest triangle and quadrilateral with
corners on its convex hull are fitted. The fraction of the hull they cover is
1 for a sharp polygon and falls as its corners round off: a square whose
corners are rounded to a quarter of its side keeps 0.77 in its best
quadrilateral, a circle (or any ellipse) 2/π ≈ 0.64 in its best
quadrilateral and 3√3/(4π) ≈ 0.41 in its best triangle, a square 1/2 in its
best triangle. So a triangle has a
good best triangle, a square a good quadrilateral and no good triangle, and a
circle no good quadrilateral and a fill ratio, area / (π R²) with R the
largest distance from the centroid, of about 1 (an elongated ellipse fills
less). A shape that is none of these, such as a square with rounded corners or
a splash, reads as no shape.
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
    #: (best triangle, best quadrilateral) as fractions of the outline's convex
    #: hull (None where the mask is no clean shape)
    corners: tuple[float, float] | None = None


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
    shape, corners = None, None
    if solidity(xs, ys) >= MIN_SOLIDITY:
        contrast = max(float((pixels.median(dim=1).values - background_rgb).abs().max()), 0.25)
        corners = polygon_fits(_outline(distance / contrast))
        shape = _shape(fill, *corners)
    return Reading(shape, color, size, position, background, mask, corners)


MIN_SOLIDITY = 0.75
#: Calibrated on rendered shapes (tests/test_analyser.py; every size, colour,
#: background and rotation, at 64 and 32 pixels), which the smallest, drawn at
#: 32 pixels, come closest to: a square's best quadrilateral covers at least
#: 0.82 of its hull and its best triangle at most 0.50, a triangle's best
#: triangle at least 0.72, a circle's best quadrilateral at most 0.68 and its
#: fill ratio is at least 0.74. Corners rounded to a quarter of the side leave
#: a square 0.78 at most; rounded to 15 % of the side, a triangle 0.63.
MIN_TRIANGLE_FIT = 0.70
MIN_SQUARE_FIT = 0.80
MAX_SQUARE_TRIANGLE_FIT = 0.60
MAX_CIRCLE_FIT = 0.72
MIN_CIRCLE_FILL = 0.70


def _shape(fill: float, triangle: float, quadrilateral: float) -> str | None:
    """Three sharp corners, four, none (and round, not elongated), or no clean shape."""
    if triangle >= MIN_TRIANGLE_FIT:
        return "triangle"
    if quadrilateral >= MIN_SQUARE_FIT and triangle <= MAX_SQUARE_TRIANGLE_FIT:
        return "square"
    if quadrilateral <= MAX_CIRCLE_FIT and fill >= MIN_CIRCLE_FILL:
        return "circle"
    return None


def polygon_fits(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The largest triangle and quadrilateral with corners on the convex hull
    of ``points``, as fractions of the hull's area."""
    hull = torch.tensor(_convex_hull(sorted(set(points))), dtype=torch.float64)  # (n, 2)
    area = _polygon_area(hull.tolist())
    if len(hull) < 3 or area == 0:
        return 0.0, 0.0
    edge = hull[None, :, :] - hull[:, None, :]  # (n, n, 2): corner j seen from corner i
    # twice the signed area of triangle (i, j, k)
    twice = edge[:, :, None, 0] * edge[:, None, :, 1] - edge[:, :, None, 1] * edge[:, None, :, 0]  # (n, n, n)
    triangle = float(twice.abs().max()) / 2
    quadrilateral = float((twice.amax(dim=2) - twice.amin(dim=2)).max()) / 2  # diagonal (i, j)
    return triangle / area, quadrilateral / area


def _outline(coverage: torch.Tensor) -> list[tuple[float, float]]:
    """Where ``coverage`` (H, W) crosses 1/2 between neighbouring pixel
    centres, linearly interpolated, in pixel coordinates (centres at +0.5)."""
    padded = torch.nn.functional.pad(coverage, (1, 1, 1, 1))  # (H + 2, W + 2)
    points = []
    for a, b, along_x in ((padded[:, :-1], padded[:, 1:], True), (padded[:-1], padded[1:], False)):
        rows, columns = torch.nonzero((a - 0.5) * (b - 0.5) < 0, as_tuple=True)
        step = (0.5 - a[rows, columns]) / (b[rows, columns] - a[rows, columns])
        x = columns - 0.5 + (step if along_x else 0)
        y = rows - 0.5 + (0 if along_x else step)
        points += zip(x.tolist(), y.tolist())
    return points


def solidity(xs: torch.Tensor, ys: torch.Tensor) -> float:
    """Pixel count over the area of the convex hull of the pixels' corners."""
    corners = sorted({(x + dx, y + dy) for x, y in zip(xs.tolist(), ys.tolist())
                      for dx in (0, 1) for dy in (0, 1)})
    hull_area = _polygon_area(_convex_hull(corners))
    return len(xs) / hull_area if hull_area else 0.0


def _convex_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Andrew's monotone chain, counter-clockwise; ``points`` sorted and unique."""
    def half(sequence):
        chain: list[tuple[float, float]] = []
        for p in sequence:
            while len(chain) >= 2 and _cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    return half(points) + half(reversed(points)) if len(points) > 2 else points


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _polygon_area(points: list[tuple[float, float]]) -> float:
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

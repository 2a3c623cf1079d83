"""The pixel analyser reads rendered ground truth back exactly, and refuses
shapes that have lost their corners."""
from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest
import torch

from core.data.shapes import BACKGROUNDS, COLORS, POSITIONS, SIZES, ShapeScene, polygon, random_scene, render
from core.evaluation import analyser
from core.evaluation.analyser import analyse


def _tensor(picture) -> torch.Tensor:
    return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)  # (3, H, W)


def _rounded(scene: ShapeScene, pixels: int, radius: float, supersample: int = 4) -> torch.Tensor:
    """``scene``'s square or triangle with its corners rounded to ``radius`` × its
    side (the same sides, a disc's arc at each corner), box-filtered like the renderer."""
    big = pixels * supersample
    corners = torch.tensor(polygon(scene, big), dtype=torch.float64)  # (K, 2)
    centre = corners.mean(dim=0)
    side = float((corners[1] - corners[0]).norm())
    inradius = float((corners[0] - centre).norm()) * math.cos(math.pi / len(corners))
    inner = centre + (corners - centre) * (1 - radius * side / inradius)  # (K, 2)
    grid = torch.arange(big, dtype=torch.float64) + 0.5
    ys, xs = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([xs, ys], dim=-1).reshape(-1, 1, 2)  # (P, 1, 2)
    start, edge = inner, inner.roll(-1, 0) - inner  # (K, 2)
    along = (((points - start) * edge).sum(-1) / (edge * edge).sum(-1)).clamp(0, 1)  # (P, K)
    gap = (points - start - along[..., None] * edge).norm(dim=-1).amin(dim=1)  # (P,)
    side_of = edge[:, 0] * (points[..., 1] - start[:, 1]) - edge[:, 1] * (points[..., 0] - start[:, 0])  # (P, K)
    inside = (side_of >= 0).all(dim=1) | (side_of <= 0).all(dim=1)
    cover = (inside | (gap <= radius * side)).float().reshape(1, 1, big, big)
    cover = torch.nn.functional.avg_pool2d(cover, supersample)[0]  # (1, H, W)
    colour, background = (torch.tensor(rgb, dtype=torch.float32)[:, None, None] / 255
                          for rgb in (COLORS[scene.color], BACKGROUNDS[scene.background]))
    return background + (colour - background) * cover  # (3, H, W)


def test_the_analyser_reads_every_attribute_of_rendered_scenes():
    rng = random.Random(2024)
    attributes = ("shape", "color", "size", "position", "background")
    hits = dict.fromkeys(attributes, 0)
    count = 300
    for _ in range(count):
        scene = random_scene(rng)
        image, _ = render(scene, 64)
        reading = analyse(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1))
        for attribute in attributes:
            hits[attribute] += getattr(reading, attribute) == getattr(scene, attribute)
    assert {k: v / count for k, v in hits.items()} == dict.fromkeys(attributes, 1.0)


def test_an_empty_picture_reads_as_nothing():
    reading = analyse(torch.full((3, 64, 64), 0.5))
    assert reading.background == "gray" and reading.shape is None and reading.color is None


def test_small_renders_still_read_as_clean_shapes():
    rng = random.Random(7)
    for _ in range(150):
        scene = random_scene(rng)
        image, _ = render(scene, 32)
        reading = analyse(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1))
        assert reading.shape == scene.shape, scene


def test_a_splat_with_deep_dents_is_no_shape():
    image = torch.zeros(3, 64, 64)
    image[0, 28:36, 8:56] = 1  # a plus sign: solidity about 0.3
    image[0, 8:56, 28:36] = 1
    reading = analyse(image)
    assert reading.color == "red" and reading.shape is None


def _sweep(shape: str, step: float):
    """Every size (both ends), rotation (``step`` apart over the shape's
    symmetry), colour, background, position and sub-pixel offset, cycled together."""
    period = {"square": 90, "triangle": 120, "circle": 30}[shape]
    pairs = [(c, b) for c in COLORS for b in BACKGROUNDS]
    index = 0
    for size, extents in SIZES.items():
        for extent in extents:
            for rotation in np.arange(0, period, step):
                color, background = pairs[index % len(pairs)]
                jitter = ((index % 7 - 3) * 0.01, (index % 5 - 2) * 0.015)
                yield ShapeScene(shape, color, size, POSITIONS[index % len(POSITIONS)], background,
                                 extent, float(rotation), jitter)
                index += 1


@pytest.mark.parametrize("pixels", [64, 32])
def test_rendered_polygons_keep_their_corners_with_a_margin(pixels):
    """The calibration of the corner test: every rendered shape clears its
    thresholds by at least 0.02 (the tightest, small squares at 32 pixels)."""
    margin = 0.02
    for shape in ("square", "triangle", "circle"):
        for scene in _sweep(shape, step=5.0):
            reading = analyse(_tensor(render(scene, pixels)[0]))
            triangle, quadrilateral = reading.corners
            assert reading.shape == shape, (scene, reading.corners)
            if shape == "square":
                assert quadrilateral >= analyser.MIN_SQUARE_FIT + margin, (scene, reading.corners)
                assert triangle <= analyser.MAX_SQUARE_TRIANGLE_FIT - margin, (scene, reading.corners)
            elif shape == "triangle":
                assert triangle >= analyser.MIN_TRIANGLE_FIT + margin, (scene, reading.corners)
            else:
                assert quadrilateral <= analyser.MAX_CIRCLE_FIT - margin, (scene, reading.corners)


@pytest.mark.parametrize("pixels", [64, 32])
@pytest.mark.parametrize("shape, refused, rounder, seed", [
    ("square", 0.25, 0.35, 13),  # corners rounded to a quarter of the side
    ("triangle", 0.15, 0.2, 19),  # to 15 % of the side (half the inradius)
])
def test_a_polygon_with_rounded_corners_is_not_that_polygon(pixels, shape, refused, rounder, seed):
    """Rounded corners read as no shape; rounder still, as a circle or no shape,
    never as the polygon; sharp ones as the polygon."""
    rng = random.Random(seed)
    for _ in range(12):
        scene = dataclasses.replace(random_scene(rng), shape=shape)
        assert analyse(_rounded(scene, pixels, refused)).shape is None, scene
        assert analyse(_rounded(scene, pixels, rounder)).shape in ("circle", None), scene
        assert analyse(_rounded(scene, pixels, 0.0)).shape == shape, scene


def test_a_blurred_square_is_no_square():
    rng = random.Random(17)
    for _ in range(12):
        scene = dataclasses.replace(random_scene(rng), shape="square")
        image = _tensor(render(scene, 64)[0])
        sigma = 0.15 * scene.extent * 64 / math.sqrt(2)  # 15 % of the side
        taps = torch.arange(-12, 13, dtype=torch.float32)
        kernel = torch.exp(-taps ** 2 / (2 * sigma ** 2))
        kernel = kernel / kernel.sum()
        padded = torch.nn.functional.pad(image[None], (12, 12, 12, 12), mode="replicate")
        blurred = torch.nn.functional.conv2d(padded, kernel.view(1, 1, 1, -1).expand(3, 1, 1, 25), groups=3)
        blurred = torch.nn.functional.conv2d(blurred, kernel.view(1, 1, -1, 1).expand(3, 1, 25, 1), groups=3)[0]
        assert analyse(blurred).shape != "square", scene


def test_an_elongated_splash_is_no_triangle():
    """An ellipse fills as little of its circumcircle as a triangle, but its best
    triangle covers only 3√3/(4π) ≈ 0.41 of it, at any elongation."""
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    for aspect, angle in ((2.5, 0.3), (3.0, 1.2), (2.0, 2.0)):
        u = (xs - 32) * math.cos(angle) + (ys - 32) * math.sin(angle)
        v = -(xs - 32) * math.sin(angle) + (ys - 32) * math.cos(angle)
        inside = (u / 18) ** 2 + (v * aspect / 18) ** 2 <= 1  # (64, 64)
        image = torch.ones(3, 64, 64)
        image[:, inside] = torch.tensor([0.16, 0.31, 0.86])[:, None]  # blue on white
        reading = analyse(image)
        assert reading.color == "blue" and reading.shape is None, (aspect, reading.corners)


def test_eval_reports_shape_accuracy_per_background():
    """``score`` (core/evaluation/evaluate.py) breaks the shape accuracy down by
    the background asked for; rendered pictures read 100 % on each."""
    from core.evaluation.evaluate import Report, score

    rng = random.Random(23)
    scenes = [random_scene(rng) for _ in range(24)]
    images = torch.stack([_tensor(render(scene, 64)[0]) for scene in scenes])  # (24, 3, 64, 64)
    report = score(Report("rendered", len(scenes), 0, 0.0, ""), images, scenes, 1)
    counts = {b: sum(s.background == b for s in scenes) for b in BACKGROUNDS}
    assert report.shape_by_background == {b: (1.0, n) for b, n in counts.items() if n}
    assert f"| shape on gray ({counts['gray']}) | 100.0% |" in report.table()

"""The procedural shapes world: captions, determinism, pixels, outlines."""
from __future__ import annotations

import random
import re

import numpy as np
import torch

from core.data.shapes import COLORS, SHAPES, ShapeScene, random_scene, render, shapes_dataset

GRAMMAR = re.compile(
    r"^a (small|large) (red|orange|yellow|green|blue|purple) (circle|square|triangle) "
    r"at the (center|top left|top right|bottom left|bottom right) on a (black|white|gray) background$"
)


def test_captions_follow_the_grammar_and_cover_every_attribute():
    rng = random.Random(0)
    scenes = [random_scene(rng) for _ in range(400)]
    assert all(GRAMMAR.match(s.caption) for s in scenes)
    assert {s.shape for s in scenes} == set(SHAPES)
    assert {s.color for s in scenes} == set(COLORS)


def test_the_dataset_is_seeded():
    a_images, a_outlines, a_captions = shapes_dataset(6, seed=4, pixels=32)
    b_images, _, b_captions = shapes_dataset(6, seed=4, pixels=32)
    assert torch.equal(a_images, b_images) and a_captions == b_captions
    assert a_images.shape == (6, 3, 32, 32) and a_outlines.shape == (6, 1, 32, 32)
    assert a_images.min() >= -1 and a_images.max() <= 1
    assert not torch.equal(a_images, shapes_dataset(6, seed=5, pixels=32)[0])


def test_pixels_show_the_caption():
    scene = ShapeScene("square", "blue", "large", "top left", "white", 0.5, 30.0, (0.0, 0.0))
    image, outline = render(scene, 64)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32))  # (64, 64, 3)
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 100)
    ys, xs = torch.nonzero(blue, as_tuple=True)
    assert xs.float().mean() < 32 and ys.float().mean() < 32, "top left"
    width = (xs.max() - xs.min() + 1) / 64
    assert 0.45 <= width <= 0.55, "the bounding box is the extent at any rotation"
    assert tuple(pixels[63, 63].tolist()) == (255.0, 255.0, 255.0), "white background"
    edges = torch.from_numpy(np.asarray(outline, dtype=np.float32))  # (64, 64)
    assert (edges > 128).sum() > 50 and edges[32 - 4, 16] < 128, "only the edges are white"

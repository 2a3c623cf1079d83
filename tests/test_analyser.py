"""The pixel analyser reads rendered ground truth back exactly."""
from __future__ import annotations

import random

import numpy as np
import torch

from core.data.shapes import random_scene, render
from core.evaluation.analyser import analyse


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

"""Training data from the shapes world: a pre-rendered pool and caption dropout.

Rendering costs about 1 ms an image, so a pool of tens of thousands is made
once (seeded) and batches are drawn from it with the trainer's generator.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from core.data.shapes import ShapeScene, random_scene, render


CHUNK = 2048


def _render_chunk(job) -> tuple[torch.Tensor, torch.Tensor, list[ShapeScene]]:
    import numpy as np

    seed, index, count, pixels = job
    rng = random.Random(f"shapes-pool:{seed}:{index}")
    images = np.empty((count, pixels, pixels, 3), dtype=np.uint8)
    outlines = np.empty((count, pixels, pixels), dtype=np.uint8)
    scenes = []
    for row in range(count):
        scene = random_scene(rng)
        image, outline = render(scene, pixels)
        images[row], outlines[row] = np.asarray(image), np.asarray(outline)
        scenes.append(scene)
    return torch.from_numpy(images), torch.from_numpy(outlines), scenes


def render_chunks(render, chunks: list, workers: int) -> list:
    """``render(chunk)`` for every chunk, in worker processes when more than one."""
    if workers > 1 and len(chunks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            return list(pool.map(render, chunks))
    return [render(chunk) for chunk in chunks]


@dataclass
class ShapesPool:
    """Rendered scenes: images (N, 3, H, W) and outlines (N, 1, H, W) as uint8."""

    images: torch.Tensor
    outlines: torch.Tensor
    scenes: list[ShapeScene]

    @classmethod
    def render(cls, count: int, seed: int, pixels: int = 64, workers: int = 1) -> "ShapesPool":
        """``count`` scenes in chunks seeded from (seed, chunk index), so the
        pool is the same whatever the number of worker processes."""
        chunks = [(seed, index, min(CHUNK, count - start), pixels)
                  for index, start in enumerate(range(0, count, CHUNK))]
        parts = render_chunks(_render_chunk, chunks, workers)
        return cls(
            torch.cat([p[0] for p in parts]).permute(0, 3, 1, 2).contiguous(),  # (N, 3, H, W)
            torch.cat([p[1] for p in parts]).unsqueeze(1),  # (N, 1, H, W)
            [scene for p in parts for scene in p[2]],
        )

    def __len__(self) -> int:
        return len(self.scenes)

    def image_batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Images in [−1, 1], float32."""
        return self.images[indices].float() / 127.5 - 1

    def outline_batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Outline hints in [0, 1], float32."""
        return self.outlines[indices].float() / 255


def dropped_caption(scene: ShapeScene, rng: random.Random, empty: float = 0.1) -> str:
    """The caption with phrases dropped at random, so partial prompts work
    ("a red circle", "a blue triangle at the top left"); ``empty`` of the time
    nothing at all, which trains the unconditional model CFG needs."""
    if rng.random() < empty:
        return ""
    return partial_caption(scene, rng)[0]


def partial_caption(scene: ShapeScene, rng: random.Random) -> tuple[str, dict[str, str]]:
    """A caption that keeps the shape and, at random, the other phrases (size
    50 %, colour 85 %, position 60 %, background 50 %), with what it says:
    every scene that agrees with those attributes fits the caption too."""
    kept = {"shape": scene.shape}
    words = ["a"]
    if rng.random() < 0.5:
        words.append(scene.size)
        kept["size"] = scene.size
    if rng.random() < 0.85:
        words.append(scene.color)
        kept["color"] = scene.color
    words.append(scene.shape)
    if rng.random() < 0.6:
        words += ["at", "the", scene.position]
        kept["position"] = scene.position
    if rng.random() < 0.5:
        words += ["on", "a", scene.background, "background"]
        kept["background"] = scene.background
    return " ".join(words), kept

"""Training data for the video model: a pre-rendered pool of motion clips.

Like :class:`~core.training.data.ShapesPool`, rendered once in chunks seeded
from (seed, chunk index), so the pool is the same whatever the number of
worker processes; frames are kept as uint8 (N, T, 3, H, W).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from core.data.motion import DIRECTIONS, MotionClip, random_clip
from core.data.shapes import render
from core.training.data import render_chunks

CHUNK = 256
FRAMES = 8


def _render_chunk(job) -> tuple[torch.Tensor, list[MotionClip]]:
    import numpy as np

    seed, index, count, pixels, frames = job
    rng = random.Random(f"motion-pool:{seed}:{index}")
    out = np.empty((count, frames, pixels, pixels, 3), dtype=np.uint8)
    clips = []
    for row in range(count):
        clip = random_clip(rng, frames)
        for frame, scene in enumerate(clip.scenes()):
            out[row, frame] = np.asarray(render(scene, pixels)[0])
        clips.append(clip)
    return torch.from_numpy(out), clips


@dataclass
class ClipPool:
    """Rendered clips: frames (N, T, 3, H, W) as uint8, and what made them."""

    frames: torch.Tensor
    clips: list[MotionClip]

    @classmethod
    def render(cls, count: int, seed: int, pixels: int = 64, workers: int = 1,
               frames: int = FRAMES) -> "ClipPool":
        chunks = [(seed, index, min(CHUNK, count - start), pixels, frames)
                  for index, start in enumerate(range(0, count, CHUNK))]
        parts = render_chunks(_render_chunk, chunks, workers)
        return cls(torch.cat([p[0] for p in parts]).permute(0, 1, 4, 2, 3).contiguous(),
                   [clip for p in parts for clip in p[1]])

    def __len__(self) -> int:
        return len(self.clips)

    def frame_batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Clips' frames in [−1, 1], float32: (B, T, 3, H, W)."""
        return self.frames[indices].float() / 127.5 - 1


def dropped_motion_caption(clip: MotionClip, rng: random.Random, empty: float = 0.1) -> str:
    """The clip's caption with phrases dropped at random (size 50 %, colour
    15 %, background 50 %; the shape and the motion always stay), and
    ``empty`` of the time nothing, for classifier-free guidance."""
    if rng.random() < empty:
        return ""
    scene = clip.first
    words = ["a"]
    if clip.motion in DIRECTIONS and rng.random() < 0.5:
        words.append(scene.size)
    if rng.random() < 0.85:
        words.append(scene.color)
    words += [scene.shape, *clip.motion.split()]
    if rng.random() < 0.5:
        words += ["on", "a", scene.background, "background"]
    return " ".join(words)

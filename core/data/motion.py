"""Shapes-world video clips: one shape that moves, grows or shrinks.

A clip is ``frames`` pictures of the shapes world whose shape follows a
straight path (or a linear change of size) named in its caption:
``a {size} {color} {shape} moving {left|right|up|down} on a {background}
background`` or ``a {color} {shape} {growing|shrinking} on a {background}
background``. Each frame is an ordinary :class:`ShapeScene` (position
"center", its offset in ``jitter``), so frames render and analyse exactly as
still pictures do; what a video model generates can be scored frame by
frame, and its centroid path against the motion asked for.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

from core.data.shapes import BACKGROUNDS, COLORS, SHAPES, SIZES, ShapeScene

MOTIONS = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking")
#: The unit direction (x, y) of each translation, in image coordinates (y down).
DIRECTIONS = {"moving left": (-1, 0), "moving right": (1, 0), "moving up": (0, -1),
              "moving down": (0, 1)}
GROWTH = (0.25, 0.6)  # the extent a growing shape goes from and to (reversed when shrinking)
MARGIN = 0.04  # the gap kept between the shape and the border, as in still scenes


@dataclass(frozen=True)
class MotionClip:
    """Everything that decides one clip."""

    first: ShapeScene  # the first frame
    motion: str
    travel: float  # how far the centre moves over the clip, in image widths (translations)
    frames: int

    @property
    def caption(self) -> str:
        scene = self.first
        if self.motion in DIRECTIONS:
            return (f"a {scene.size} {scene.color} {scene.shape} {self.motion} "
                    f"on a {scene.background} background")
        return f"a {scene.color} {scene.shape} {self.motion} on a {scene.background} background"

    def scene(self, frame: int) -> ShapeScene:
        """Frame ``frame`` (0 … frames − 1) as a still scene."""
        progress = frame / max(1, self.frames - 1)
        if self.motion in DIRECTIONS:
            dx, dy = DIRECTIONS[self.motion]
            x, y = self.first.jitter
            step = self.travel * progress
            return replace(self.first, jitter=(x + dx * step, y + dy * step))
        low, high = GROWTH if self.motion == "growing" else GROWTH[::-1]
        extent = low + (high - low) * progress
        size = "small" if extent < 0.42 else "large"
        return replace(self.first, extent=extent, size=size)

    def scenes(self) -> list[ShapeScene]:
        return [self.scene(frame) for frame in range(self.frames)]

    def centres(self) -> list[tuple[float, float]]:
        """The shape's centre in every frame, in image fractions."""
        return [scene.centre() for scene in self.scenes()]


def random_clip(rng: random.Random, frames: int = 8) -> MotionClip:
    """A clip whose shape stays inside the picture from first frame to last."""
    motion = rng.choice(MOTIONS)
    shape, color = rng.choice(SHAPES), rng.choice(tuple(COLORS))
    background, rotation = rng.choice(tuple(BACKGROUNDS)), rng.uniform(0, 360)
    if motion in DIRECTIONS:
        size = rng.choice(tuple(SIZES))
        extent = rng.uniform(*SIZES[size])
        reach = 0.5 - extent / 2 - MARGIN  # the farthest the centre may sit from the middle
        travel = rng.uniform(1.2, 2.0) * reach  # most of the way across
        dx, dy = DIRECTIONS[motion]
        across = rng.uniform(-reach, reach) * 0.5  # the other axis: near the middle
        start = -travel / 2
        jitter = (dx * start + abs(dy) * across, dy * start + abs(dx) * across)
    else:
        extent = GROWTH[0] if motion == "growing" else GROWTH[1]
        size = "small" if motion == "growing" else "large"
        travel, jitter = 0.0, (rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03))
    first = ShapeScene(shape=shape, color=color, size=size, position="center",
                       background=background, extent=extent, rotation=rotation, jitter=jitter)
    return MotionClip(first, motion, travel, frames)


def motion_vocabulary() -> list[str]:
    """The words motion captions add to the still-picture grammar."""
    return sorted({word for motion in MOTIONS for word in motion.split()})

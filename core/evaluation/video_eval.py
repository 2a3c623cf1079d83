"""``diffusion-workbench eval shapes-video``: does a clip show what was asked?

Held-out prompts are full captions of clips drawn with a seed the training
pool never used. Every generated frame is read by the analyser (pixels
only), and three things are measured:

- **per-frame attributes**: colour, shape and background in every frame (size
  too for the translations, whose size does not change);
- **motion**: the centroid of the shape's pixels from the first frame to the
  last must travel along the prompted direction (at least ``MIN_TRAVEL`` of
  the picture's width, and further along that axis than across it); growing
  and shrinking must change the shape's area by at least ``MIN_GROWTH`` × the
  right way. The mean centroid error against the path the renderer would
  draw is reported too;
- **consistency**: the share of clips whose colour and shape readings stay
  the same in every frame, and the mean absolute change between consecutive
  frames (the rendered clips' own figure is printed beside it).

The same scoring runs on the rendered ground truth (``--reference``), which
bounds what the analyser can read.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import torch

from core.data.motion import DIRECTIONS, MotionClip, random_clip
from core.evaluation.analyser import analyse

HELD_OUT_SEED = 910_000
MIN_TRAVEL = 0.08  # of the picture's width, first frame to last
MIN_GROWTH = 1.5  # area ratio, first frame to last (or last to first)


@dataclass
class VideoReport:
    model: str
    clips: int
    steps: int = 0
    guidance: float = 0.0
    seconds_per_clip: float = 0.0
    accuracy: dict[str, float] = field(default_factory=dict)
    motion: dict[str, tuple[float, int]] = field(default_factory=dict)  # by motion: (share, clips)
    centroid_error: float = 0.0  # mean distance to the renderer's path, in picture widths
    consistent: float = 0.0
    frame_change: float = 0.0

    def table(self) -> str:
        head = (f"{self.model}: {self.clips} clips, {self.steps} steps, guidance {self.guidance}, "
                f"{self.seconds_per_clip:.3f} s/clip\n| measure | value |\n|---|---|\n")
        rows = [f"| {name} (every frame) | {value * 100:.1f}% |"
                for name, value in self.accuracy.items()]
        total = sum(count for _, count in self.motion.values())
        right = sum(share * count for share, count in self.motion.values())
        rows.append(f"| motion as prompted | {right / max(1, total) * 100:.1f}% |")
        rows += [f"| {name} ({count}) | {share * 100:.1f}% |"
                 for name, (share, count) in self.motion.items()]
        rows += [f"| centroid error (picture widths) | {self.centroid_error:.3f} |",
                 f"| same colour and shape in every frame | {self.consistent * 100:.1f}% |",
                 f"| mean change between frames | {self.frame_change:.4f} |"]
        return head + "\n".join(rows)


def held_out_clips(count: int, frames: int, seed: int = 0) -> list[MotionClip]:
    rng = random.Random(HELD_OUT_SEED + seed)
    return [random_clip(rng, frames) for _ in range(count)]


def rendered(clips: list[MotionClip], pixels: int = 64) -> torch.Tensor:
    """The clips as the renderer draws them: (N, T, 3, H, W) in [0, 1]."""
    import numpy as np

    from core.data.shapes import render

    return torch.stack([torch.stack([
        torch.from_numpy(np.array(render(scene, pixels)[0])).permute(2, 0, 1).float() / 255
        for scene in clip.scenes()]) for clip in clips])


def _centroid(reading) -> tuple[float, float] | None:
    mask = reading.mask
    if mask is None or mask.sum() == 0:
        return None
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return (float(xs.float().mean() + 0.5) / mask.shape[1],
            float(ys.float().mean() + 0.5) / mask.shape[0])


def moved_as_prompted(clip: MotionClip, first, last) -> bool:
    """Whether the first and last frames' readings show the clip's motion."""
    if clip.motion in DIRECTIONS:
        start, end = _centroid(first), _centroid(last)
        if start is None or end is None:
            return False
        dx, dy = DIRECTIONS[clip.motion]
        along = (end[0] - start[0]) * dx + (end[1] - start[1]) * dy
        across = abs((end[0] - start[0]) * dy) + abs((end[1] - start[1]) * dx)
        return along >= MIN_TRAVEL and along > across
    small, large = (first, last) if clip.motion == "growing" else (last, first)
    small_area, large_area = (float(r.mask.sum()) if r.mask is not None else 0.0
                              for r in (small, large))
    return large_area >= MIN_GROWTH * max(small_area, 1.0)


def score_clips(report: VideoReport, videos: torch.Tensor, clips: list[MotionClip]) -> VideoReport:
    """Fill ``report`` from ``videos`` (N, T, 3, H, W) in [0, 1] made for ``clips``."""
    attributes = ("color", "shape", "background", "size")
    hits = {name: [] for name in attributes}
    by_motion: dict[str, list[bool]] = {}
    errors, consistent = [], []
    for video, clip in zip(videos, clips):
        readings = [analyse(frame) for frame in video]
        truth = clip.scenes()
        for name in attributes:
            if name == "size" and clip.motion not in DIRECTIONS:
                continue
            hits[name] += [getattr(r, name) == getattr(s, name) for r, s in zip(readings, truth)]
        by_motion.setdefault(clip.motion, []).append(
            moved_as_prompted(clip, readings[0], readings[-1]))
        for reading, centre in zip(readings, clip.centres()):
            found = _centroid(reading)
            errors.append(1.0 if found is None else
                          ((found[0] - centre[0]) ** 2 + (found[1] - centre[1]) ** 2) ** 0.5)
        consistent.append(len({(r.color, r.shape) for r in readings}) == 1
                          and readings[0].shape is not None)
    report.accuracy = {name: sum(v) / len(v) for name, v in hits.items() if v}
    report.motion = {name: (sum(v) / len(v), len(v)) for name, v in sorted(by_motion.items())}
    report.centroid_error = sum(errors) / len(errors)
    report.consistent = sum(consistent) / len(consistent)
    report.frame_change = float((videos[:, 1:] - videos[:, :-1]).abs().mean())
    return report


def generate_clips(loaded, prompts: list[str], frames: int, steps: int, guidance: float,
                   seed: int, device, batch: int = 8, size: int = 64) -> torch.Tensor:
    """Clips (N, T, 3, size, size) in [0, 1] for ``prompts``: Euler on the
    flow schedule, classifier-free guidance against the empty prompt."""
    from core.diffusion.timesteps import flow_times
    from core.sampling import run_sampler
    from core.values import Conditioning, SamplingSchedule

    schedule = SamplingSchedule("flow", "flow", flow_times(steps), None, "uniform")
    model, down = loaded.model, loaded.model.downscale
    out = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        hidden, _ = loaded.clip.encode_pooled(chunk, device)
        empty, _ = loaded.clip.encode_pooled([""], device)
        shape = (len(chunk), frames, model.latent_channels, size // down, size // down)
        latents, _ = run_sampler(model, schedule, torch.zeros(shape), sampler="euler",
                                 positive=Conditioning("", hidden),
                                 negative=Conditioning("", empty.expand(len(chunk), -1, -1)),
                                 guidance=guidance, seed=seed * 100_003 + start, device=device)
        pixels = loaded.vae.decode(latents.flatten(0, 1))  # (B·T, 3, H, W)
        out.append(pixels.unflatten(0, (len(chunk), frames)))
    return torch.cat(out)


def evaluate_video(name: str, clips: int, steps: int | None, guidance: float, seed: int = 0,
                   device="cpu", grid=None) -> VideoReport:
    """Generate one clip for each of ``clips`` held-out captions and score them."""
    from core.models.builtin import load_model

    loaded = load_model(name, device)
    frames = loaded.model.frames
    held_out = held_out_clips(clips, frames, seed)
    started = time.perf_counter()
    videos = generate_clips(loaded, [c.caption for c in held_out], frames, steps or 25,
                            guidance, seed, device)
    report = VideoReport(name, clips, steps or 25, guidance,
                         (time.perf_counter() - started) / clips)
    if grid is not None:
        save_video_grid(videos[:16], grid)
    return score_clips(report, videos, held_out)


def evaluate_reference(clips: int, frames: int, seed: int = 0) -> VideoReport:
    """The same scoring on the rendered clips: what the analyser reads at best."""
    held_out = held_out_clips(clips, frames, seed)
    return score_clips(VideoReport("rendered clips", clips), rendered(held_out), held_out)


def save_video_grid(videos: torch.Tensor, path) -> None:
    """Each clip as a filmstrip row, in one PNG."""
    from core.images import save_png
    from core.video import Video, filmstrips

    strips = filmstrips(Video(videos))  # (N, 3, H, T·W)
    save_png(torch.cat(list(strips), dim=-2), path)

"""``diffusion-workbench eval``: how often a model draws what it was asked for.

Held-out prompts are full captions of scenes drawn with a seed the training
pool never used. Each generated picture is read back by the analyser (which
looks at pixels only), attribute by attribute. With several samples per
prompt, *diversity* is the mean pixel distance between samples of the same
prompt: the other side of the guidance trade-off.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.data.shapes import random_scene
from core.evaluation.analyser import analyse

ATTRIBUTES = ("color", "shape", "size", "position", "background")
HELD_OUT_SEED = 900_000


@dataclass
class Report:
    model: str
    samples: int
    steps: int
    guidance: float
    sampler: str
    accuracy: dict[str, float] = field(default_factory=dict)
    diversity: float | None = None
    seconds_per_image: float = 0.0

    def table(self) -> str:
        rows = [f"| {name} | {value * 100:.1f}% |" for name, value in self.accuracy.items()]
        extra = [f"| diversity | {self.diversity:.4f} |"] if self.diversity is not None else []
        head = (f"{self.model}: {self.samples} samples, {self.sampler}, {self.steps} steps, "
                f"guidance {self.guidance}, {self.seconds_per_image:.3f} s/image\n")
        return head + "| attribute | accuracy |\n|---|---|\n" + "\n".join(rows + extra)


def held_out_prompts(count: int, seed: int = 0) -> list:
    rng = random.Random(HELD_OUT_SEED + seed)
    return [random_scene(rng) for _ in range(count)]


def evaluate_ldm(name: str, prompts: int, per_prompt: int, steps: int, guidance: float,
                 sampler: str = "dpmpp_2m", spacing: str = "karras", batch: int = 32,
                 seed: int = 0, grid: Path | None = None, device="cpu") -> Report:
    """Generate ``per_prompt`` images for each of ``prompts`` held-out captions and score them."""
    import time

    from core.diffusion.timesteps import sampling_sigmas
    from core.models.builtin import load_ldm
    from core.sampling import run_sampler
    from core.values import Conditioning, SamplingSchedule

    loaded = load_ldm(name, device)
    table = loaded.model.schedule
    schedule = SamplingSchedule(table.name, "ve", sampling_sigmas(table, steps, spacing), table, spacing)
    scenes = [s for s in held_out_prompts(prompts, seed) for _ in range(per_prompt)]
    negative = Conditioning("", loaded.clip.encode([""], device))
    images = []
    started = time.perf_counter()
    for start in range(0, len(scenes), batch):
        chunk = scenes[start:start + batch]
        positive = Conditioning("", loaded.clip.encode([s.caption for s in chunk], device))
        shape = (len(chunk), loaded.model.latent_channels, 64 // loaded.model.downscale,
                 64 // loaded.model.downscale)
        latents, _ = run_sampler(loaded.model, schedule, torch.zeros(shape), sampler=sampler,
                                 positive=positive, negative=negative, guidance=guidance,
                                 seed=seed * 100_003 + start, device=device)
        images.append(loaded.vae.decode(latents))
    images_t = torch.cat(images)  # (N, 3, 64, 64)
    elapsed = time.perf_counter() - started
    report = Report(name, len(scenes), steps, guidance, sampler,
                    seconds_per_image=elapsed / len(scenes))
    readings = [analyse(image) for image in images_t]
    for attribute in ATTRIBUTES:
        hits = sum(getattr(r, attribute) == getattr(s, attribute) for r, s in zip(readings, scenes))
        report.accuracy[attribute] = hits / len(scenes)
    if per_prompt > 1:
        report.diversity = _diversity(images_t, per_prompt)
    if grid is not None:
        save_grid(images_t[:64], grid)
    return report


def _diversity(images: torch.Tensor, per_prompt: int) -> float:
    """Mean RMS pixel distance between two samples of the same prompt."""
    groups = images.reshape(-1, per_prompt, *images.shape[1:])
    distances = [
        ((group[i] - group[j]) ** 2).mean().sqrt()
        for group in groups for i, j in itertools.combinations(range(per_prompt), 2)
    ]
    return float(torch.stack(distances).mean())


def save_grid(images: torch.Tensor, path: Path, columns: int = 8) -> None:
    from core.images import to_pil
    from PIL import Image

    rows = (len(images) + columns - 1) // columns
    height, width = images.shape[-2:]
    sheet = Image.new("RGB", (columns * width, rows * height), "black")
    for index, image in enumerate(images):
        sheet.paste(to_pil(image), ((index % columns) * width, (index // columns) * height))
    sheet.save(path)

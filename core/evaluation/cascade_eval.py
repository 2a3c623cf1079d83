"""Measuring the cascade: super-resolution against bicubic, base alone against base → SR.

Two measurements (issue 13, Imagen and CDM's comparisons in miniature):

- ``shapes-sr`` on *real* low-resolution pictures: held-out scenes rendered
  at 64×64, box-filtered to 16×16, brought back to 64×64 by bicubic
  interpolation and by the SR model; PSNR against the rendered truth and
  the analyser's reading of each.
- the whole cascade on *generated* ones: a base model's 16×16 pictures for
  held-out captions, enlarged by bicubic interpolation and by the SR model,
  read against the caption; run with each base (T5 or CLIP text encoder) for
  Imagen's encoder comparison.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from core.evaluation.evaluate import (
    ATTRIBUTES,
    Report,
    generate,
    held_out_prompts,
    sample_rows,
    save_grid,
    score,
)
from core.models.cascade import HIGH_PIXELS, LOW_PIXELS, downsample

#: The SR sampler when none is given: see docs/models.md (the cascade).
DEFAULT_SR_SETUP = ("ddpm", "leading", 50)
DEFAULT_BASE_SETUP = ("ddpm", "leading", 50)
DEFAULT_AUGMENTATION = 0.0


def bicubic(images: torch.Tensor, size: int = HIGH_PIXELS) -> torch.Tensor:
    """(N, 3, h, w) in [0, 1] → (N, 3, size, size), as the wrapper upsamples."""
    return F.interpolate(images, size=(size, size), mode="bicubic",
                         align_corners=False).clamp(0, 1)


def psnr(images: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean PSNR in dB over the pictures, in [0, 1] units."""
    mse = ((images - truth) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def super_resolve(loaded, low: torch.Tensor, augmentation: float, sampler: str, spacing: str,
                  steps: int, seed: int, device) -> torch.Tensor:
    """64×64 pictures (N, 3, 64, 64) in [0, 1] drawn by an SR model over ``low``."""
    from core.models.concat import CONCAT_KEY, ConcatImage
    from core.values import Conditioning, SamplingSchedule

    def conditions(start, stop):
        source = ConcatImage(low[start:stop], augmentation, seed)
        return Conditioning(extras={CONCAT_KEY: source}), None

    schedule = SamplingSchedule.discrete(loaded.model.schedule, steps, spacing)
    return sample_rows(loaded, schedule, len(low), HIGH_PIXELS, conditions, sampler, 1.0, seed,
                       device)


def accuracy_row(label: str, images: torch.Tensor, scenes: list) -> str:
    """One markdown row: each attribute's accuracy, and shape per background."""
    report = score(Report(label, len(scenes), 0, 1.0, ""), images, scenes, 1)
    cells = [f"{report.accuracy[a] * 100:.1f} %" for a in ATTRIBUTES]
    shapes = report.shape_by_background
    by_background = " / ".join(f"{shapes[b][0] * 100:.0f}" if b in shapes else "–"
                               for b in _backgrounds())
    return f"| {label} | " + " | ".join(cells) + f" | {by_background} % |"


def table_head(first: str) -> str:
    backgrounds = " / ".join(_backgrounds())
    head = f"| {first} | " + " | ".join(ATTRIBUTES) + f" | shape on {backgrounds} |"
    return head + "\n" + "|---" * (len(ATTRIBUTES) + 2) + "|"


def _backgrounds() -> list[str]:
    from core.data.shapes import BACKGROUNDS

    return list(BACKGROUNDS)


def evaluate_sr(name: str, prompts: int, steps: int | None, sampler: str | None = None,
                augmentation: float = DEFAULT_AUGMENTATION, seed: int = 0,
                grid: Path | None = None, device="cpu") -> Report:
    """SR vs bicubic on box-filtered renders of held-out scenes."""
    from core.data.shapes import render
    from core.images import from_pil
    from core.models.builtin import load_model

    loaded = load_model(name, device)
    default_sampler, spacing, default_steps = DEFAULT_SR_SETUP
    sampler, steps = sampler or default_sampler, steps or default_steps
    scenes = held_out_prompts(prompts, seed)
    truth = torch.cat([from_pil(render(scene, HIGH_PIXELS)[0]) for scene in scenes])
    low = downsample(truth)  # (N, 3, 16, 16)
    started = time.perf_counter()
    images = super_resolve(loaded, low, augmentation, sampler, spacing, steps, seed, device)
    report = Report(f"{name} (16 → 64 on rendered scenes, augmentation {augmentation:g})",
                    len(scenes), steps, 1.0, sampler,
                    seconds_per_image=(time.perf_counter() - started) / len(scenes))
    score(report, images, scenes, 1)
    enlarged = bicubic(low)
    report.extra["PSNR, SR (dB)"] = psnr(images, truth)
    report.extra["PSNR, bicubic (dB)"] = psnr(enlarged, truth)
    report.appendix = "\n".join([
        table_head("64×64 picture"),
        accuracy_row("rendered truth", truth, scenes),
        accuracy_row("16×16, bicubic", enlarged, scenes),
        accuracy_row(f"16×16, {name}", images, scenes),
    ])
    if grid is not None:
        save_grid(torch.cat([enlarged[:8], images[:8], truth[:8]]), grid)
    return report


def evaluate_cascade(base: str, sr: str, prompts: int, steps: int | None, guidance: float,
                     sampler: str | None = None, augmentation: float = DEFAULT_AUGMENTATION,
                     seed: int = 0, grid: Path | None = None, device="cpu") -> Report:
    """The base's 16×16 pictures for held-out captions, enlarged bicubically
    and by the SR model, each read against its caption."""
    from core.checkpoints import load_checkpoint
    from core.evaluation.evaluate import Setup
    from core.models.builtin import load_model, model_file

    loaded = load_model(base, device)
    upsampler = load_model(sr, device)
    default_sampler, spacing, default_steps = DEFAULT_BASE_SETUP
    setup = Setup(sampler or default_sampler, spacing, steps or default_steps)
    scenes = held_out_prompts(prompts, seed)
    size = int(load_checkpoint(model_file(base))[1].get("sample_size", LOW_PIXELS))
    started = time.perf_counter()
    low = generate(loaded, [s.caption for s in scenes], setup, guidance, seed, device,
                   size=size)  # (N, 3, 16, 16)
    sr_sampler, sr_spacing, sr_steps = DEFAULT_SR_SETUP
    images = super_resolve(upsampler, low, augmentation, sr_sampler, sr_spacing, sr_steps, seed,
                           device)
    report = Report(f"{base} → {sr} (augmentation {augmentation:g})", len(scenes),
                    setup.steps, guidance, setup.sampler,
                    seconds_per_image=(time.perf_counter() - started) / len(scenes))
    score(report, images, scenes, 1)
    enlarged = bicubic(low)
    report.appendix = "\n".join([
        table_head("graph"),
        accuracy_row(f"{base}, bicubic to 64", enlarged, scenes),
        accuracy_row(f"{base} → {sr}", images, scenes),
    ])
    if grid is not None:
        save_grid(torch.cat([enlarged[:8], images[:8]]), grid)
    return report

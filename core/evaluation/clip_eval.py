"""Measuring shapes-clip: what it reads from noisy pictures, and how well
its gradient steers a diffusion model (CLIP guidance, GLIDE §2.4).

*Retrieval*: rendered held-out scenes are noised to x_t, and the caption
whose embedding is closest is picked from all 540 full captions; each
attribute of the pick is compared with the scene's. This says how much of
the prompt CLIP can still see at each noise level, which bounds what its
gradient can steer.

*Guidance*: the unconditional shapes-ddpm (empty prompt, no classifier-free
guidance) steered by CLIP toward each held-out scene's full caption, read
back by the analyser on every attribute.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import torch

from core.data.shapes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, ShapeScene, render
from core.evaluation.evaluate import (
    ATTRIBUTES,
    Report,
    _kind,
    decoder_of,
    generate,
    held_out_prompts,
    sampling_setup,
    save_grid,
    score,
)

RETRIEVAL_TIMESTEPS = (0, 250, 500, 750, 900)


def all_captions() -> list[dict[str, str]]:
    """Every full caption's attributes (3 shapes × 6 colours × 2 sizes × 5
    positions × 3 backgrounds = 540)."""
    return [dict(shape=s, color=c, size=z, position=p, background=b)
            for s, c, z, p, b in itertools.product(SHAPES, COLORS, SIZES, POSITIONS, BACKGROUNDS)]


def caption_of(attributes: dict[str, str]) -> str:
    return (f"a {attributes['size']} {attributes['color']} {attributes['shape']} at the "
            f"{attributes['position']} on a {attributes['background']} background")


@torch.no_grad()
def retrieval(clip, scenes: list[ShapeScene], timesteps=RETRIEVAL_TIMESTEPS,
              seed: int = 0) -> dict[int, dict[str, float]]:
    """Per timestep t, the share of scenes whose nearest caption at x_t gets
    each attribute right."""
    from core.diffusion.forward import q_sample
    from core.images import from_pil

    network, tokenizer, schedule = clip
    device = next(network.parameters()).device
    captions = all_captions()
    text = network.encode_text(tokenizer([caption_of(c) for c in captions]).to(device))  # (540, D)
    size = network.config["image"]["sample_size"]
    x0 = torch.cat([from_pil(render(scene, size)[0]) for scene in scenes]) * 2 - 1  # (N, 3, s, s)
    generator = torch.Generator().manual_seed(seed)
    results = {}
    for t in timesteps:
        steps = torch.full((len(scenes),), t)
        x_t = q_sample(x0, steps, schedule, torch.randn(x0.shape, generator=generator))
        image = network.encode_image(x_t.float().to(device), steps.float().to(device))
        picks = (image @ text.T).argmax(dim=1).tolist()  # (N,)
        results[t] = {a: sum(captions[p][a] == getattr(s, a) for p, s in zip(picks, scenes))
                      / len(scenes) for a in ATTRIBUTES}
    return results


def retrieval_table(results: dict[int, dict[str, float]]) -> str:
    """Retrieval accuracy as a Markdown table: a row per timestep."""
    head = "| t | " + " | ".join(ATTRIBUTES) + " |\n|---|" + "---|" * len(ATTRIBUTES)
    rows = [f"| {t} | " + " | ".join(f"{accuracy[a] * 100:.1f}%" for a in ATTRIBUTES) + " |"
            for t, accuracy in results.items()]
    return ("CLIP's nearest of the 540 full captions to 200 noised held-out scenes:\n"
            + head + "\n" + "\n".join(rows))


def evaluate_clip_guidance(model: str, clip_name: str, prompts: int, per_prompt: int,
                           steps: int | None, scale: float, sampler: str | None = None,
                           batch: int = 32, seed: int = 0, grid: Path | None = None,
                           device="cpu") -> Report:
    """The unconditional ``model`` steered by CLIP toward each held-out
    scene's full caption, scored on every attribute; the retrieval accuracy
    at each noise level rides along in ``extra``."""
    from core.diffusion.guidance import ClassifierGuidedDenoiser
    from core.models.builtin import load_model, load_noisy_clip
    from core.models.noisy_clip import ClipTarget
    from core.values import DiffusionModel

    loaded = load_model(model, device)
    clip = load_noisy_clip(clip_name, device)
    setup = sampling_setup(loaded, sampler, steps)
    scenes = [s for s in held_out_prompts(prompts, seed) for _ in range(per_prompt)]

    def wrap(base: DiffusionModel, start: int) -> DiffusionModel:
        rows = [s.caption for s in scenes[start:start + batch]]
        target = ClipTarget(clip.network, clip.tokenizer, clip.schedule, rows)
        return dataclasses.replace(base, denoiser=ClassifierGuidedDenoiser(base.denoiser, target,
                                                                           scale))

    started = time.perf_counter()
    images = generate(loaded, [""] * len(scenes), setup, 1.0, seed, device, batch, wrap=wrap,
                      size=32 if _kind(loaded) == "pixel" else 64)
    report = Report(f"{model} + {clip_name} (CLIP guidance, scale {scale})", len(scenes),
                    setup.steps, 1.0, setup.sampler,
                    seconds_per_image=(time.perf_counter() - started) / len(scenes))
    report.decoder = decoder_of(loaded)
    score(report, images, scenes, per_prompt)
    report.appendix = retrieval_table(retrieval(clip, held_out_prompts(200, seed + 1)))
    if grid is not None:
        save_grid(images[:64], grid)
    return report


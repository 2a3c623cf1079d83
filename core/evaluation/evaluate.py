"""``diffusion-workbench eval``: how often a model draws what it was asked for.

Held-out prompts are full captions of scenes drawn with a seed the training
pool never used. Each generated picture is read back by the analyser (which
looks at pixels only), attribute by attribute. With several samples per
prompt, *diversity* is the mean pixel distance between samples of the same
prompt: the other side of the guidance trade-off.
"""
from __future__ import annotations

import dataclasses
import itertools
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.data.shapes import BACKGROUNDS, random_scene
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
    extra: dict[str, float] = field(default_factory=dict)
    decoder: str = ""  # the VAE file the pictures were decoded with: it shapes what is read
    #: shape accuracy per requested background: (accuracy, pictures)
    shape_by_background: dict[str, tuple[float, int]] = field(default_factory=dict)
    appendix: str = ""  # a further table of the measurement (e.g. CLIP's retrieval)

    def table(self) -> str:
        rows = [f"| {name} | {value * 100:.1f}% |" for name, value in self.accuracy.items()]
        rows += [f"| shape on {name} ({count}) | {value * 100:.1f}% |"
                 for name, (value, count) in self.shape_by_background.items()]
        extra = [f"| diversity | {self.diversity:.4f} |"] if self.diversity is not None else []
        extra += [f"| {name} | {value:.3f} |" for name, value in self.extra.items()]
        head = (f"{self.model}: {self.samples} samples, {self.sampler}, {self.steps} steps, "
                f"guidance {self.guidance}, {self.seconds_per_image:.3f} s/image\n")
        if self.decoder:
            head += f"decoded by {self.decoder}\n"
        body = head + "| attribute | accuracy |\n|---|---|\n" + "\n".join(rows + extra)
        return body + (f"\n\n{self.appendix}" if self.appendix else "")


def held_out_prompts(count: int, seed: int = 0) -> list:
    rng = random.Random(HELD_OUT_SEED + seed)
    return [random_scene(rng) for _ in range(count)]


#: Sampler settings per kind of model when none are given (the default workflows').
DEFAULTS = {
    "ldm": ("dpmpp_2m", "karras", 25),
    "pixel": ("ddpm", "leading", 50),
    "flow": ("euler", "flow", 25),
}


@dataclass
class Setup:
    """How to sample for an evaluation: sampler, spacing and steps."""

    sampler: str
    spacing: str
    steps: int


def sampling_setup(loaded, sampler: str | None, steps: int | None) -> Setup:
    kind = _kind(loaded)
    default_sampler, spacing, default_steps = DEFAULTS[kind]
    return Setup(sampler or default_sampler, spacing, steps or default_steps)


def _kind(loaded) -> str:
    from core.models.builtin import PixelCodec

    if loaded.model.parameterization == "flow":
        return "flow"
    return "pixel" if isinstance(loaded.vae, PixelCodec) else "ldm"


def _sampling_schedule(loaded, setup: Setup):
    from core.diffusion.timesteps import flow_times
    from core.values import SamplingSchedule

    if loaded.model.parameterization == "flow":
        return SamplingSchedule("flow", "flow", flow_times(setup.steps), None, "uniform")
    return SamplingSchedule.discrete(loaded.model.schedule, setup.steps, setup.spacing)


def generate(loaded, prompts: list[str], setup: Setup, guidance: float, seed: int, device,
             batch: int = 32, hints: torch.Tensor | None = None, controlnet=None,
             strength: float = 1.0, wrap=None, size: int = 64) -> torch.Tensor:
    """Images (N, 3, size, size) in [0, 1] for ``prompts``; ``hints`` (N, 3, H, W)
    go through ``controlnet``; ``wrap(model, start)`` may replace the model
    (classifier guidance)."""
    from core.models.conditioned import ControlHint
    from core.sampling import run_sampler
    from core.values import Conditioning

    schedule = _sampling_schedule(loaded, setup)
    down = loaded.model.downscale
    images = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        hidden, pooled = loaded.clip.encode_pooled(chunk, device)
        empty_hidden, empty_pooled = loaded.clip.encode_pooled([""], device)
        extras, negative_extras = {"pooled": pooled}, {"pooled": empty_pooled}
        if hints is not None:
            hint = ControlHint(controlnet, hints[start:start + batch], strength)
            extras["control"] = negative_extras["control"] = (hint,)
        positive = Conditioning("", hidden, extras)
        negative = Conditioning("", empty_hidden.expand(len(chunk), -1, -1),
                                {**negative_extras, "pooled": empty_pooled.expand(len(chunk), -1)})
        model = wrap(loaded.model, start) if wrap is not None else loaded.model
        shape = (len(chunk), model.latent_channels, size // down, size // down)
        latents, _ = run_sampler(model, schedule, torch.zeros(shape), sampler=setup.sampler,
                                 positive=positive, negative=negative, guidance=guidance,
                                 seed=seed * 100_003 + start, device=device)
        images.append(loaded.vae.decode(latents))
    return torch.cat(images)


@torch.no_grad()
def sample_rows(loaded, schedule, rows: int, size: int, conditions, sampler: str,
                guidance: float, seed: int, device, batch: int = 32) -> torch.Tensor:
    """Pictures (rows, 3, size, size) in [0, 1] from a pixel-space model, in
    batches: ``conditions(start, stop)`` gives each batch's (positive,
    negative); seeds as :func:`generate`'s."""
    from core.sampling import run_sampler

    pictures = []
    for start in range(0, rows, batch):
        stop = min(start + batch, rows)
        positive, negative = conditions(start, stop)
        shape = (stop - start, loaded.model.latent_channels, size, size)
        result, _ = run_sampler(loaded.model, schedule, torch.zeros(shape), sampler=sampler,
                                positive=positive, negative=negative, guidance=guidance,
                                seed=seed * 100_003 + start, device=device)
        pictures.append(loaded.vae.decode(result))
    return torch.cat(pictures)


def score(report: Report, images: torch.Tensor, scenes: list, per_prompt: int,
          attributes=ATTRIBUTES) -> Report:
    readings = [analyse(image) for image in images]
    for attribute in attributes:
        hits = sum(getattr(r, attribute) == getattr(s, attribute) for r, s in zip(readings, scenes))
        report.accuracy[attribute] = hits / len(scenes)
    if "shape" in attributes:
        for background in BACKGROUNDS:
            hits = [r.shape == s.shape for r, s in zip(readings, scenes) if s.background == background]
            if hits:
                report.shape_by_background[background] = (sum(hits) / len(hits), len(hits))
    if per_prompt > 1:
        report.diversity = _diversity(images, per_prompt)
    return report


def evaluate_model(name: str, prompts: int, per_prompt: int, steps: int | None,
                   guidance: float, sampler: str | None = None, batch: int = 32, seed: int = 0,
                   grid: Path | None = None, device="cpu") -> Report:
    """Generate ``per_prompt`` images for each of ``prompts`` held-out captions and score them."""
    from core.models.builtin import load_model

    loaded = load_model(name, device)
    setup = sampling_setup(loaded, sampler, steps)
    size = 32 if _kind(loaded) == "pixel" else 64
    scenes = [s for s in held_out_prompts(prompts, seed) for _ in range(per_prompt)]
    started = time.perf_counter()
    images = generate(loaded, [s.caption for s in scenes], setup, guidance, seed, device,
                      batch, size=size)
    report = Report(name, len(scenes), setup.steps, guidance, setup.sampler,
                    seconds_per_image=(time.perf_counter() - started) / len(scenes))
    report.decoder = decoder_of(loaded)
    score(report, images, scenes, per_prompt)
    if grid is not None:
        save_grid(images[:64], grid)
    return report


def evaluate_controlnet(name: str, base: str, prompts: int, steps: int | None, guidance: float,
                        strength: float = 1.0, sampler: str | None = None, batch: int = 32,
                        seed: int = 0, grid: Path | None = None, device="cpu") -> Report:
    """Generate from held-out outlines (with their captions) and measure the IoU
    between the generated shape and the filled outline, as the analyser reads both."""
    from core.data.shapes import render
    from core.images import from_pil
    from core.models.builtin import load_controlnet, load_model

    loaded = load_model(base, device)
    controlnet = load_controlnet(name, device)
    setup = sampling_setup(loaded, sampler, steps)
    scenes = held_out_prompts(prompts, seed)
    pictures = [render(scene, 64) for scene in scenes]
    truth = [analyse(from_pil(image)[0]).mask for image, _ in pictures]
    hints = torch.cat([from_pil(outline.convert("RGB")) for _, outline in pictures])  # (N, 3, 64, 64)
    started = time.perf_counter()
    images = generate(loaded, [s.caption for s in scenes], setup, guidance, seed, device, batch,
                      hints=hints, controlnet=controlnet, strength=strength)
    report = Report(f"{name} on {base}", len(scenes), setup.steps, guidance, setup.sampler,
                    seconds_per_image=(time.perf_counter() - started) / len(scenes))
    report.decoder = decoder_of(loaded)
    score(report, images, scenes, 1)
    ious = [_iou(analyse(image).mask, mask) for image, mask in zip(images, truth)]
    report.extra["mean IoU"] = sum(ious) / len(ious)
    report.extra["IoU >= 0.8"] = sum(i >= 0.8 for i in ious) / len(ious)
    if grid is not None:
        save_grid(torch.cat([hints[:32], images[:32]]), grid)
    return report


def decoder_of(loaded) -> str:
    """The VAE file a latent model decodes with ("" for pixel models)."""
    source = getattr(loaded.vae, "source", None)
    return str(source) if source is not None else ""


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def evaluate_classifier_guidance(model: str, classifier: str, prompts: int, per_prompt: int,
                                 steps: int | None, scale: float, sampler: str | None = None,
                                 batch: int = 32, seed: int = 0, grid: Path | None = None,
                                 device="cpu") -> Report:
    """The unconditional model (empty prompt) steered by the classifier toward
    each held-out scene's shape and colour (Dhariwal & Nichol 2021)."""
    from core.diffusion.guidance import ClassifierGuidedDenoiser
    from core.models.builtin import load_classifier, load_model
    from core.models.classifier import ClassTarget
    from core.values import DiffusionModel

    loaded = load_model(model, device)
    network, labels, table = load_classifier(classifier, device)
    setup = sampling_setup(loaded, sampler, steps)
    scenes = [s for s in held_out_prompts(prompts, seed) for _ in range(per_prompt)]

    def wrap(base: DiffusionModel, start: int) -> DiffusionModel:
        rows = scenes[start:start + batch]
        target = ClassTarget(network, labels, table, {"shape": [s.shape for s in rows],
                                                      "color": [s.color for s in rows]})
        guided = ClassifierGuidedDenoiser(base.denoiser, target, scale)
        return dataclasses.replace(base, denoiser=guided)

    started = time.perf_counter()
    images = generate(loaded, [""] * len(scenes), setup, 1.0, seed, device, batch, wrap=wrap,
                      size=32 if _kind(loaded) == "pixel" else 64)
    report = Report(f"{model} + {classifier} (scale {scale})", len(scenes), setup.steps, 1.0,
                    setup.sampler, seconds_per_image=(time.perf_counter() - started) / len(scenes))
    report.decoder = decoder_of(loaded)
    score(report, images, scenes, per_prompt, attributes=("shape", "color"))
    if grid is not None:
        save_grid(images[:64], grid)
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

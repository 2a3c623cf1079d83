"""Measuring unCLIP: the prior's embeddings, and pictures through it.

For held-out full captions, z_i is shapes-clip's image embedding of the
scene's rendered picture. The prior's sample ẑ_i is compared with it by
cosine, beside two baselines: the caption's CLIP *text* embedding (what
the decoder would get without a prior, DALL·E 2 §5.1) and the image
embedding of another held-out scene (a picture of something else). Then
the decoder draws from ẑ_i (text → prior → decoder), and, for comparison,
from z_i itself (image variations: the decoder alone); the analyser reads
both against the caption.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from core.data.shapes import render
from core.evaluation.evaluate import (
    ATTRIBUTES,
    Report,
    held_out_prompts,
    sample_rows,
    save_grid,
    score,
)

DECODER_SETUP = ("ddim", "leading", 25)


def decode_embeddings(loaded, z: torch.Tensor, steps: int, guidance: float, seed: int, device,
                      sampler: str | None = None) -> torch.Tensor:
    """Pictures (N, 3, 32, 32) in [0, 1] drawn by the decoder from embeddings
    (N, D), guided against the zero embedding (no condition)."""
    from core.models.unclip import EMBEDDING_KEY
    from core.values import Conditioning, SamplingSchedule

    def conditions(start, stop):
        return Conditioning(extras={EMBEDDING_KEY: z[start:stop]}), Conditioning()

    default, spacing, _ = DECODER_SETUP
    schedule = SamplingSchedule.discrete(loaded.model.schedule, steps, spacing)
    return sample_rows(loaded, schedule, len(z), 32, conditions, sampler or default, guidance,
                       seed, device)


@torch.no_grad()
def true_embeddings(clip, scenes, device) -> torch.Tensor:
    """CLIP image embeddings (N, D) of the scenes' rendered pictures."""
    from core.images import from_pil

    size = clip.network.config["image"]["sample_size"]
    x0 = torch.cat([from_pil(render(scene, size)[0]) for scene in scenes]) * 2 - 1
    return clip.network.encode_image(x0.to(device), torch.zeros(len(x0), device=device)).cpu()


def evaluate_unclip(decoder: str, prior_name: str | None, clip_name: str | None, prompts: int,
                    steps: int | None, guidance: float, prior_guidance: float = 1.0,
                    sampler: str | None = None, seed: int = 0, grid: Path | None = None,
                    device="cpu") -> Report:
    from core.checkpoints import load_checkpoint
    from core.models.builtin import load_model, load_noisy_clip, load_prior, model_file
    from core.models.unclip import sample_embeddings

    loaded = load_model(decoder, device)
    path = model_file(decoder)
    meta = load_checkpoint(path)[1]
    clip = load_noisy_clip(clip_name or _beside(path, meta["clip"]), device)
    prior = load_prior(prior_name or _beside(path, "shapes-prior"), device)
    steps = steps or DECODER_SETUP[2]
    scenes = held_out_prompts(prompts, seed)
    started = time.perf_counter()
    truth = true_embeddings(clip, scenes, device)  # (N, D)
    predicted = sample_embeddings(prior, clip, [s.caption for s in scenes], steps,
                                  prior_guidance, seed, device)
    images = decode_embeddings(loaded, predicted, steps, guidance, seed, device, sampler)
    report = Report(f"{decoder} through {prior_name or 'shapes-prior'} (prior guidance "
                    f"{prior_guidance})", len(scenes), steps, guidance, sampler or DECODER_SETUP[0],
                    seconds_per_image=(time.perf_counter() - started) / len(scenes))
    score(report, images, scenes, 1)
    text = clip.network.encode_text(clip.tokenizer([s.caption for s in scenes]).to(device)).cpu()
    report.extra["cosine(prior's z, picture's z)"] = _mean_cosine(predicted, truth)
    report.extra["cosine(text embedding, picture's z)"] = _mean_cosine(text, truth)
    report.extra["cosine(another picture's z, picture's z)"] = _mean_cosine(truth.roll(1, 0), truth)
    variations = decode_embeddings(loaded, truth, steps, guidance, seed, device, sampler)
    report.appendix = _variations_table(score(Report("", len(scenes), steps, guidance, ""),
                                              variations, scenes, 1))
    if grid is not None:
        save_grid(torch.cat([images[:32], variations[:32]]), grid)
    return report


def _beside(path: Path, name: str) -> str:
    """The file ``name`` in the decoder's own folder when it is there (a trained
    set travels together, as a latent model's VAE does), else the built-in one."""
    neighbour = path.parent / f"{name}.safetensors"
    return str(neighbour) if neighbour.is_file() else name


def _mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())


def _variations_table(report: Report) -> str:
    head = "| decoder alone, from the picture's own z | " + " | ".join(ATTRIBUTES) + " |\n"
    head += "|---|" + "---|" * len(ATTRIBUTES)
    row = "| image → decoder | " + " | ".join(f"{report.accuracy[a] * 100:.1f}%"
                                              for a in ATTRIBUTES) + " |"
    return head + "\n" + row

"""Our graph against diffusers' pipeline on full-size SD 1.5 / SDXL random weights (issue 10).

The file: a full-size all-in-one ``.safetensors`` in the original single-file
layout with random weights (``bench/random_checkpoint.py``: SD 1.5 about
2.1 GB, SDXL base about 6.9 GB, fp16, streamed so memory stays low), made
under a temporary folder and deleted at the end unless ``--file`` / ``--keep``.
With ``--tiny`` the tiny random checkpoints of ``tests/layouts/files.py``
instead (seconds on a CPU; a check of the script, not a benchmark).

(a) Our graph: ``workflows/sd15-txt2img.json`` (for SDXL the same plain
    text-to-image graph with the SDXL file and the prompts of
    ``workflows/sdxl-base-refiner.json``; no refiner), its checkpoint node
    set to the file ("file…" + path), the size, steps and batch set,
    sampler "euler", schedule "scaled_linear" with "trailing" spacing,
    guidance 7.5 (SD 1.5) / 5.0 (SDXL), run by the executor as
    ``diffusion-workbench run`` runs it (no step previews). A new seed each
    repeat re-runs the sampler and the decoder; the loader and the two
    prompt nodes stay cached.
(b) diffusers: ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline``
    ``.from_single_file`` of the same file with ``config=`` a folder made
    from ``core/models/configs/sd1`` or ``sdxl`` (+ ``model_index.json``),
    ``torch_dtype``, ``local_files_only=True``, our CLIP tokenizers
    (``clip_tokenizer(END)``, SDXL's second ``clip_tokenizer("!")``),
    ``EulerDiscreteScheduler`` on the folder's scheduler config with
    ``timestep_spacing="trailing"`` (the same timesteps as our schedule),
    SDXL with ``force_zeros_for_empty_prompt=False`` and no watermarker.
    The prompt embeddings are computed once by the pipeline's own
    ``encode_prompt`` (its text encoders, our tokenizers) and passed as
    ``prompt_embeds`` etc., since our prompt nodes are cached across runs
    too; ``--pipeline-encodes`` makes the pipeline encode the prompts in
    every call instead. The initial noise is ours: ε drawn in float32 on the
    CPU from the seed (``cpu_generator``) and passed as ``latents``; the
    pipeline multiplies it by ``init_noise_sigma`` = σ_max (trailing
    spacing), which is our start x_T = 0 + σ_max·ε. Its images
    (``output_type="pt"``) are moved to the CPU as float32 inside the timed
    region, as our decode node returns them.

Both sides then do the same work: the same U-Net, VAE and text-encoder
weights, the same σ levels, guidance, noise and time ids (SDXL: original =
target size, crop (0, 0)). One difference is the libraries' own: SDXL's
VAE (``force_upcast``) decodes in float32 on both sides, ours keeping it in
float32, diffusers casting it up and back down in each call.

Timing: each run is timed whole (``time.perf_counter``, with
``torch.cuda.synchronize()`` before and after on CUDA), after one untimed run
per side (the picture comparison, seed 0) and ``--warmup`` more. Runs are
interleaved, the order alternating between repeats. Reported: per side the
median seconds per run and per image and it/s = steps / run time (the whole
run, VAE decode included, so a little below the sampler loop's own rate),
the ratio of the medians (a)/(b) and the median of the per-repeat ratios
(target ≤ 1.0), and the largest pixel difference of the two seed-0 pictures
(pixels in [0, 1]; random fp16 networks amplify rounding, so expect more
than the tiny fp32 check's < 1e-3).

Run (GPU, both models, a few minutes on an H200):
``python bench/peer_full.py --model both --device cuda --dtype fp16``
Options: ``--model sd15|sdxl|both --device cuda|cpu --dtype fp16|fp32
--steps 25 --size PX (512 SD 1.5, 1024 SDXL) --batch 1 --repeats N
--warmup N --threads T --file PATH --keep --tiny --pipeline-encodes``.
CPU check: ``python bench/peer_full.py --tiny --device cpu --dtype fp32
--model both``.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))
from random_checkpoint import INDEXES, config_folder, make_checkpoint  # noqa: E402

from core.diffusion.noise import cpu_generator  # noqa: E402
from core.executor import Executor  # noqa: E402
from core.workflow import load  # noqa: E402
from nodes import default_registry  # noqa: E402

MODELS = {  # --model -> (family, default size, guidance, title)
    "sd15": ("sd1", 512, 7.5, "SD 1.5"),
    "sdxl": ("sdxl", 1024, 5.0, "SDXL base"),
}
TINY_SIZE = 32  # pixels: the tiny VAEs downscale by 2, the tiny U-Nets need latents of 4k
FILE_CHOICE = "file…"  # nodes.loaders.FILE_CHOICE
COMMAND = "python bench/peer_full.py --model both --device cuda --dtype fp16"


# ------------------------------------------------------------------ the files

def tiny_files(family: str, folder: Path) -> tuple[Path, Path]:
    """A tiny random checkpoint of ``family`` and its diffusers config folder.
    CLIP's heads cannot be told from the shapes; our loader takes 64-wide heads
    (at least one) for widths it does not know, so the folder says the same."""
    from tests.layouts.files import tiny_sd1_checkpoint, tiny_sdxl_checkpoint

    maker = tiny_sd1_checkpoint if family == "sd1" else tiny_sdxl_checkpoint
    tiny = maker(folder / f"tiny-{family}.safetensors")
    configs = tiny.configs
    for name in ("text_encoder", "text_encoder_2"):
        if name in configs:
            configs[name]["num_attention_heads"] = max(1, configs[name]["hidden_size"] // 64)
    config = tiny.write_config_folder(folder / f"tiny-{family}-config")
    (config / "model_index.json").write_text(json.dumps(INDEXES[family], indent=2))
    return tiny.path, config


# ---------------------------------------------------------------- (a) our graph

def our_workflow(model: str, path: Path, size: int, steps: int, batch: int):
    family, _, guidance, _ = MODELS[model]
    workflow = load(ROOT / "workflows" / "sd15-txt2img.json")
    nodes = workflow.nodes
    if family == "sdxl":
        prompts = load(ROOT / "workflows" / "sdxl-base-refiner.json").nodes
        for node in ("positive", "negative"):
            nodes[node].params["text"] = prompts[node].params["text"]
    nodes["checkpoint"].params.update(name=FILE_CHOICE, path=str(path))
    nodes["latent"].params.update(width=size, height=size, batch_size=batch)
    nodes["schedule"].params.update(name="scaled_linear", spacing="trailing", steps=steps)
    nodes["sampler"].params.update(sampler="euler", guidance=guidance, seed=0)
    return workflow


def run_ours(executor, workflow, seed: int, device: str, dtype: str) -> torch.Tensor:
    workflow.nodes["sampler"].params["seed"] = seed  # re-runs the sampler and decoder only
    result = executor.run(workflow, device=device, dtype=dtype, previews=False)
    return result.outputs["save"]["images"]


# ------------------------------------------------------------- (b) diffusers

def make_pipeline(family: str, path: Path, folder: Path, device: torch.device, dtype):
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )
    from diffusers.utils import logging as diffusers_logging

    from core.models.tokenizers import END, clip_tokenizer

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    scheduler = EulerDiscreteScheduler.from_config({**config, "timestep_spacing": "trailing"})
    common = dict(config=str(folder), torch_dtype=dtype, local_files_only=True,
                  scheduler=scheduler, tokenizer=clip_tokenizer(END))
    if family == "sd1":
        pipe = StableDiffusionPipeline.from_single_file(
            str(path), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False, **common)
    else:
        pipe = StableDiffusionXLPipeline.from_single_file(
            str(path), tokenizer_2=clip_tokenizer("!"), force_zeros_for_empty_prompt=False,
            add_watermarker=False, **common)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_prompts(pipe, family: str, workflow, device, each_call: bool) -> dict:
    """The pipeline's prompt arguments: the embeddings from its own
    ``encode_prompt``, once (default), or the texts (encoded in every call)."""
    positive = workflow.nodes["positive"].params["text"]
    negative = workflow.nodes["negative"].params["text"]
    if each_call:
        return dict(prompt=positive, negative_prompt=negative)
    with torch.no_grad():
        if family == "sd1":
            embeds, negative_embeds = pipe.encode_prompt(positive, device, 1, True,
                                                         negative_prompt=negative)
            return dict(prompt_embeds=embeds, negative_prompt_embeds=negative_embeds)
        embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
            prompt=positive, device=device, num_images_per_prompt=1,
            do_classifier_free_guidance=True, negative_prompt=negative)
    return dict(prompt_embeds=embeds, negative_prompt_embeds=negative_embeds,
                pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=negative_pooled)


def run_theirs(pipe, prompts: dict, workflow, seed: int, device, dtype) -> torch.Tensor:
    params = {node: workflow.nodes[node].params for node in ("latent", "schedule", "sampler")}
    batch, height, width = (params["latent"][k] for k in ("batch_size", "height", "width"))
    factor = pipe.vae_scale_factor
    shape = (batch, pipe.unet.config.in_channels, height // factor, width // factor)
    noise = torch.randn(shape, generator=cpu_generator(seed), dtype=torch.float32)  # ours
    images = pipe(
        **prompts, latents=noise.to(device=device, dtype=dtype), height=height, width=width,
        num_images_per_prompt=batch, num_inference_steps=params["schedule"]["steps"],
        guidance_scale=params["sampler"]["guidance"], output_type="pt",
    ).images
    return images.float().cpu()


# ------------------------------------------------------------------ the runs

def timed(device: torch.device, call):
    """(seconds, result) of ``call()``, synchronized on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    result = call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, result


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    name = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as info:
            name = next(line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name} (cpu, {torch.get_num_threads()} torch threads)"


def bench_model(model: str, args, scratch: Path) -> None:
    import diffusers

    family, default_size, guidance, title = MODELS[model]
    device = torch.device(args.device)
    dtype = {"fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    size = args.size or (TINY_SIZE if args.tiny else default_size)
    made = None
    if args.tiny:
        path, folder = tiny_files(family, scratch)
        what = f"tiny random {title} file ({path.stat().st_size / 1e6:.1f} MB)"
    else:
        folder_for_file = Path(tempfile.gettempdir()) if args.keep else scratch
        path = args.file or folder_for_file / f"peer-full-{model}-random-fp16.safetensors"
        if not path.is_file():
            started = time.perf_counter()
            make_checkpoint(path, family=family)
            made = path
            print(f"made {path} in {time.perf_counter() - started:.1f} s", flush=True)
        folder = config_folder(scratch / f"{model}-config", family)
        what = f"full-size random-weight {title} file ({path.stat().st_size / 1e9:.2f} GB)"
    try:
        workflow = our_workflow(model, path, size, args.steps, args.batch)
        executor = Executor(default_registry(plugins=False)[0])
        load_s, pipe = timed(device, lambda: make_pipeline(family, path, folder, device, dtype))
        prompts = pipeline_prompts(pipe, family, workflow, device, args.pipeline_encodes)
        first_s, ours = timed(device, lambda: run_ours(executor, workflow, 0, args.device,
                                                       args.dtype))
        theirs_first_s, theirs = timed(device, lambda: run_theirs(pipe, prompts, workflow, 0,
                                                                  device, dtype))
        if ours.shape != theirs.shape:
            raise SystemExit(f"the pictures differ in shape: ours {tuple(ours.shape)}, "
                             f"diffusers {tuple(theirs.shape)}")
        difference = (ours.float() - theirs).abs().max().item()
        nans = [side for side, image in (("ours", ours), ("diffusers", theirs))
                if not torch.isfinite(image).all()]
        print(f"{title}: first runs (untimed in the medians) ours {first_s:.2f} s (loading and "
              f"encoding included), diffusers {theirs_first_s:.2f} s (from_single_file + "
              f"to(device) before: {load_s:.2f} s)", flush=True)
        for seed in range(args.warmup):
            run_ours(executor, workflow, 1000 + seed, args.device, args.dtype)
            run_theirs(pipe, prompts, workflow, 1000 + seed, device, dtype)
        ours_s, theirs_s = [], []
        for repeat in range(args.repeats):
            seed = repeat + 1
            sides = [("ours", lambda: run_ours(executor, workflow, seed, args.device, args.dtype)),
                     ("theirs", lambda: run_theirs(pipe, prompts, workflow, seed, device, dtype))]
            for side, call in sides if repeat % 2 == 0 else sides[::-1]:
                seconds, _ = timed(device, call)
                (ours_s if side == "ours" else theirs_s).append(seconds)
        a, b = statistics.median(ours_s), statistics.median(theirs_s)
        paired = statistics.median(x / y for x, y in zip(ours_s, theirs_s))
        encoding = ("the pipeline encodes the prompts in every call" if args.pipeline_encodes
                    else "prompt embeddings computed once on both sides")
        print(f"device {device_name(device)}; torch {torch.__version__}, diffusers "
              f"{diffusers.__version__}")
        print(f"{what}, {size}×{size}, batch {args.batch}, {args.steps} steps euler "
              f"(trailing), guidance {guidance}, {args.dtype}; {encoding}; "
              f"median of {args.repeats} interleaved runs")
        for label, median, runs in (("(a) our graph:         ", a, ours_s),
                                    ("(b) diffusers pipeline:", b, theirs_s)):
            print(f"{label} median {median:.3f} s/run, {median / args.batch:.3f} s/image, "
                  f"{args.steps / median:.2f} it/s (steps / whole run, decode included); "
                  f"runs {' '.join(f'{s:.3f}' for s in runs)}")
        print(f"(a)/(b) medians {a / b:.3f}, paired median {paired:.3f}; "
              f"largest pixel difference {difference:.2e} (seed-0 pictures: mean "
              f"{theirs.mean():.3f}, std {theirs.std():.3f})"
              + (f"; NOT FINITE: {', '.join(nans)}" if nans else ""), flush=True)
    finally:
        executor = pipe = None  # noqa: F841 (free the models before the next one)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if made is not None and not args.keep:
            made.unlink(missing_ok=True)
        elif made is not None:
            print(f"kept {made}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("sd15", "sdxl", "both"), default="sd15")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("fp16", "fp32"), default=None,
                        help="default fp16 on CUDA, fp32 on the CPU")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--size", type=int, default=0,
                        help="pixels (default 512 for sd15, 1024 for sdxl, 32 with --tiny)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per side")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--file", type=Path,
                        help="reuse this full-size file, or make it there (kept)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the file made (in the temp folder, not in the scratch folder)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny random checkpoints from tests/layouts (a CPU check)")
    parser.add_argument("--pipeline-encodes", action="store_true",
                        help="diffusers encodes the prompts in every call")
    args = parser.parse_args()
    args.dtype = args.dtype or ("fp16" if args.device.startswith("cuda") else "fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    models = ("sd15", "sdxl") if args.model == "both" else (args.model,)
    if args.file and len(models) > 1:
        parser.error("--file names one model's file: choose --model sd15 or sdxl")
    scratch = Path(tempfile.mkdtemp(prefix="bench-peer-full-"))
    try:
        for model in models:
            bench_model(model, args, scratch)
    finally:
        for item in sorted(scratch.rglob("*"), reverse=True):
            item.unlink() if item.is_file() else item.rmdir()
        scratch.rmdir()
    print(f"on a GPU machine: {COMMAND} (or --model sd15 / --model sdxl; add --repeats N)")


if __name__ == "__main__":
    main()

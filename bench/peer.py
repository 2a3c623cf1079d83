"""Our graph against diffusers' pipeline on the same weights (issue 10).

The default workflow (``workflows/txt2img.json``: shapes-ldm, 25 steps of
DPM-Solver++(2M) on Karras levels, guidance 3, batch 4, 64×64) run (a) by
the executor as ``diffusion-workbench run`` runs it (no step previews), and
(b) by diffusers' ``StableDiffusionPipeline`` built from the very same
U-Net and VAE modules, with ``DPMSolverMultistepScheduler`` configured to
visit the same levels, the same prompt embeddings and the same initial
noise. Runs are interleaved and the medians compared; the ratio (a)/(b) is
the figure of merit (target ≤ 1.0). The largest pixel difference between
the two pictures is printed too, to show that both did the same work
(diffusers rounds Karras timesteps to integers and starts from x_T = ε
rather than from the σ_max level, so they agree closely but not exactly).

Run: ``python bench/peer.py [--repeats N] [--device D] [--threads T]``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from core.diffusion.noise import cpu_generator
from core.executor import Executor
from core.models.builtin import load_ldm
from core.workflow import load
from nodes import default_registry

ROOT = Path(__file__).resolve().parents[1]


def make_pipeline(device: torch.device):
    """diffusers' SD pipeline around a second copy of shapes-ldm's modules."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    loaded = load_ldm("shapes-ldm", device)
    vae = loaded.vae.vae
    vae.register_to_config(scaling_factor=loaded.vae.scaling_factor)
    table = loaded.model.schedule
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=table.num_timesteps, beta_schedule="scaled_linear",
        beta_start=0.00085, beta_end=0.012, algorithm_type="dpmsolver++", solver_order=2,
        use_karras_sigmas=True, timestep_spacing="trailing",
    )
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=loaded.model.denoiser.network.unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline, loaded.clip


def run_pipeline(pipeline, clip, workflow, seed: int, device) -> torch.Tensor:
    params = {node: workflow.nodes[node].params for node in ("positive", "negative", "latent",
                                                            "sampler", "schedule")}
    batch, height, width = (params["latent"][k] for k in ("batch_size", "height", "width"))
    with torch.no_grad():
        positive = clip.encode([params["positive"]["text"]], device).expand(batch, -1, -1)
        negative = clip.encode([params["negative"]["text"]], device).expand(batch, -1, -1)
    shape = (batch, 4, height // 4, width // 4)
    noise = torch.randn(shape, generator=cpu_generator(seed), dtype=torch.float32).to(device)
    return pipeline(
        prompt_embeds=positive, negative_prompt_embeds=negative, latents=noise,
        height=height, width=width, num_inference_steps=params["schedule"]["steps"],
        guidance_scale=params["sampler"]["guidance"], output_type="pt",
    ).images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    workflow = load(ROOT / "workflows" / "txt2img.json")
    executor = Executor(default_registry(plugins=False)[0])
    pipeline, clip = make_pipeline(device)
    ours = executor.run(workflow, device=args.device, dtype="fp32", previews=False)  # warm
    theirs = run_pipeline(pipeline, clip, workflow, 0, device)
    difference = (ours.outputs["save"]["images"] - theirs.float().cpu()).abs().max().item()
    ours_s, theirs_s = [], []
    for repeat in range(args.repeats):
        seed = repeat + 1  # a new seed re-runs the sampler and decoder, not the loader
        workflow.nodes["sampler"].params["seed"] = seed
        started = time.perf_counter()
        executor.run(workflow, device=args.device, dtype="fp32", previews=False)
        ours_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        run_pipeline(pipeline, clip, workflow, seed, device)
        theirs_s.append(time.perf_counter() - started)
    a, b = statistics.median(ours_s), statistics.median(theirs_s)
    paired = statistics.median(x / y for x, y in zip(ours_s, theirs_s))
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"workflows/txt2img.json (batch 4, 25 steps dpmpp_2m karras, guidance 3), fp32")
    print(f"(a) our graph:          median {a:.3f} s")
    print(f"(b) diffusers pipeline: median {b:.3f} s")
    print(f"(a)/(b) medians {a / b:.3f}, paired median {paired:.3f}; "
          f"largest pixel difference {difference:.4f}")


if __name__ == "__main__":
    main()

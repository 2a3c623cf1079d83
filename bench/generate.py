"""Generation speed: a batch of 4 images from shapes-ldm at 25 steps, (a) as a
plain loop over the library and (b) as the default workflow through the
executor (events on). Target: under 3 s for the batch on 2 CPU cores.

Run: ``python bench/generate.py [--repeats N] [--device D]``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from core.diffusion.timesteps import sampling_sigmas
from core.executor import Executor
from core.models.builtin import load_ldm
from core.sampling import run_sampler
from core.values import Conditioning, SamplingSchedule
from core.workflow import load
from nodes import default_registry

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a large red circle at the top left on a white background"


def plain(loaded, steps: int, guidance: float, device) -> torch.Tensor:
    """Load nothing, encode, sample, decode: the work of one run, no graph."""
    table = loaded.model.schedule
    schedule = SamplingSchedule(table.name, "ve", sampling_sigmas(table, steps, "karras"), table)
    positive = Conditioning(PROMPT, loaded.clip.encode([PROMPT], device))
    negative = Conditioning("", loaded.clip.encode([""], device))
    latents, _ = run_sampler(loaded.model, schedule, torch.zeros(4, 4, 16, 16), sampler="dpmpp_2m",
                             positive=positive, negative=negative, guidance=guidance, seed=0,
                             device=device)
    return loaded.vae.decode(latents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    registry, _ = default_registry(plugins=False)
    workflow = load(ROOT / "workflows" / "txt2img.json")
    steps = workflow.nodes["schedule"].params["steps"]
    guidance = workflow.nodes["sampler"].params["guidance"]
    started = time.perf_counter()
    loaded = load_ldm("shapes-ldm", device)
    load_s = time.perf_counter() - started
    executor = Executor(registry)
    executor.run(workflow, device=args.device)  # warm: the checkpoint is loaded and cached
    plain_s, graph_s = [], []
    for repeat in range(args.repeats):
        workflow.nodes["sampler"].params["seed"] = repeat + 1  # re-run the sampler, not the loader
        started = time.perf_counter()
        plain(loaded, steps, guidance, device)
        plain_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        executor.run(workflow, device=args.device, on_event=lambda event: None)
        graph_s.append(time.perf_counter() - started)
    a, b = statistics.median(plain_s), statistics.median(graph_s)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"batch 4, {steps} steps dpmpp_2m, guidance {guidance}")
    print(f"loading shapes-ldm: {load_s:.2f} s (once; cached by the executor afterwards)")
    print(f"(a) plain loop:        median {a:.3f} s for the batch")
    print(f"(b) workflow:          median {b:.3f} s for the batch   (b)/(a) {b / a:.3f}")


if __name__ == "__main__":
    main()

"""Cost of live step previews: the default workflow (shapes-ldm, batch 4,
25 steps) with previews off, and on with every step turned into preview
pixels by the event sink, as the GUI's worker does (the linear latent map,
``core.previews``). Target: previews on at most 10% slower (issue 6).

Run: ``python bench/step_previews.py [--repeats N] [--device D]``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from core.events import Step
from core.executor import Executor
from core.previews import preview_rgb
from core.workflow import load
from nodes import default_registry

ROOT = Path(__file__).resolve().parents[1]


class PreviewSink:
    """Turns each step's x_t, x̂_0 and ε̂ into pixels, like the GUI's worker."""

    def __init__(self) -> None:
        self.previews = 0

    def __call__(self, event) -> None:
        if isinstance(event, Step) and event.x_t is not None:
            mapping = event.extra.get("latent_rgb")
            for tensor in (event.x_t, event.x0, event.eps):
                (preview_rgb(tensor, mapping) * 255).to(torch.uint8)
            self.previews += 1


def timed(executor, workflow, device, previews: bool, seed: int) -> tuple[float, int]:
    workflow.nodes["sampler"].params["seed"] = seed  # re-run the sampler, not the loader
    sink = PreviewSink()
    started = time.perf_counter()
    executor.run(workflow, device=device, on_event=sink, previews=previews)
    return time.perf_counter() - started, sink.previews


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    registry, _ = default_registry(plugins=False)
    workflow = load(ROOT / "workflows" / "txt2img.json")
    executor = Executor(registry)
    executor.run(workflow, device=args.device)  # warm: the checkpoint is loaded and cached
    off, on, counted = [], [], 0
    for repeat in range(args.repeats):  # interleaved, so drift hits both alike
        off.append(timed(executor, workflow, args.device, False, 2 * repeat + 1)[0])
        seconds, counted = timed(executor, workflow, args.device, True, 2 * repeat + 2)
        on.append(seconds)
    a, b = statistics.median(off), statistics.median(on)
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"txt2img.json, {counted} previewed steps per run")
    print(f"previews off: median {a:.3f} s    previews on: median {b:.3f} s    "
          f"overhead {100 * (b / a - 1):+.1f}%")


if __name__ == "__main__":
    main()

"""Sampler accuracy against step count on the ideal denoiser (issue 3).

The ideal denoiser of a finite image set (``core.diffusion.ideal``) is the
exact E[x_0 | x], so sampling it has an exact answer: the solution of the
probability-flow ODE from the same starting noise. This script builds 8
procedural 3×16×16 images (the shapes world, seed 0), starts a batch of 64
from σ = 80 (seed 0) and, for every deterministic sampler at 5/10/20/40/80
Karras steps (σ 0.002 … 80, ρ = 7), reports

    error = mean over the batch of max |x − x_ref|,

with x_ref from ``heun`` at 1000 steps (checked against ``dpmpp_2m`` at 2000).

Three tables: the final images (σ = 0), where an error is mostly a sample
that fell into another image's basin (counted as "flips"); the state at
σ = 1 (the same number of steps on a Karras grid from 80 down to 1), where
the ODE error is still smooth and shows each sampler's order; and the
flow-matching samplers on the flow-parameterized ideal denoiser (uniform
flow times, t = 1 … 0). Time per run is for the whole batch of 64.

Stochastic samplers (``ddpm``, ``euler_ancestral``, ``ddim`` with η = 1) are
not in the error tables: their output is a random draw, not an approximation
of the ODE's x_ref, so a distance to x_ref measures the noise, not the
sampler. They are measured as a distribution instead: on 512 starts, how far
the share of samples landing on each of the 8 images is from the exact
uniform 1/8 (total variation), next to the ODE reference's own total
variation on the same starts (the sampling noise of 512 draws).

Run: ``python bench/samplers.py [--batch B] [--threads T]`` (T = 1 by default:
these tensors are tiny, and on shared cores torch's intra-op threads only
add wake-up latency — a (32, 48) softmax took 0.5–7 ms with 2 threads and
9 µs with 1).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from core.data.shapes import shapes_dataset
from core.diffusion import IdealDenoiser, flow_times, karras_sigmas
from core.diffusion.samplers import SAMPLERS

STEPS = (5, 10, 20, 40, 80)
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
VE_SAMPLERS = ("euler", "ddim", "heun", "dpmpp_2m")  # ddim with η = 0
FLOW_SAMPLERS = ("euler", "heun", "flow_euler")
STOCHASTIC = (("ddpm", {}), ("euler_ancestral", {}), ("ddim", {"eta": 1.0}))


def evaluations(name: str, steps: int) -> int:
    """Model calls per run: heun corrects every step but the last (to 0 or not)."""
    return 2 * steps - 1 if name == "heun" else steps


def run(name: str, model, x, levels, repeats: int = 1, **options):
    """(result, median seconds) of ``repeats`` runs."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = SAMPLERS[name].fn(model, x.clone(), levels, **options)
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def nearest(images: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Index of the image nearest to each sample."""
    return torch.cdist(x.flatten(1), images.flatten(1)).argmin(1)


def max_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).abs().amax(1)  # (B,)


def error_table(title, names, images, model, x, grid, ref, count_flips, repeats):
    """Print one markdown table: error per sampler and step count, then the time."""
    print(f"\n### {title}\n")
    header = " | ".join(f"{n} steps" for n in STEPS)
    print(f"| sampler | {header} | model calls at {STEPS[0]}…{STEPS[-1]} steps | time per run at "
          f"{STEPS[0]} / {STEPS[-1]} steps |")
    print("|---" * (len(STEPS) + 3) + "|")
    ref_basin = nearest(images, ref) if count_flips else None
    for name in names:
        cells, seconds = [], []
        for steps in STEPS:
            out, took = run(name, model, x, grid(steps), repeats)
            error = float(max_abs(out, ref).mean())
            cell = f"{error:.2e}"
            if count_flips:
                cell += f" ({int((nearest(images, out) != ref_basin).sum())})"
            cells.append(cell)
            seconds.append(took)
        calls = f"{evaluations(name, STEPS[0])}…{evaluations(name, STEPS[-1])}"
        label = "ddim (η = 0)" if name == "ddim" else name
        print(f"| {label} | {' | '.join(cells)} | {calls} | "
              f"{seconds[0] * 1e3:.1f} / {seconds[-1] * 1e3:.1f} ms |")


def total_variation(images: torch.Tensor, x: torch.Tensor) -> float:
    counts = torch.bincount(nearest(images, x), minlength=len(images)).double()
    return 0.5 * float((counts / counts.sum() - 1 / len(images)).abs().sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (median)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    images = shapes_dataset(8, seed=0, pixels=16)[0]  # (8, 3, 16, 16) in [−1, 1]
    gaps = torch.cdist(images.flatten(1), images.flatten(1))
    gaps = gaps[~torch.eye(8, dtype=torch.bool)]
    print(f"8 shapes-world images 3×16×16; pairwise L2 distance {float(gaps.min()):.1f}…"
          f"{float(gaps.max()):.1f}; batch {args.batch}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    model = IdealDenoiser(images)
    x = SIGMA_MAX * torch.randn(args.batch, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    # -- VE, to σ = 0 -------------------------------------------------------------------
    full = lambda steps: karras_sigmas(SIGMA_MIN, SIGMA_MAX, steps)  # noqa: E731
    ref, took = run("heun", model, x, full(1000))
    check, _ = run("dpmpp_2m", model, x, full(2000))
    print(f"reference: heun, 1000 Karras steps ({took:.2f} s); vs dpmpp_2m at 2000 steps: "
          f"mean max |Δ| = {float(max_abs(ref, check).mean()):.1e}, "
          f"{int((nearest(images, ref) != nearest(images, check)).sum())} flips")
    error_table(
        "Final images (σ = 0): mean max |x − x_ref| (samples that ended on another image)",
        VE_SAMPLERS, images, model, x, full, ref, True, args.repeats)

    # -- VE, stopped at σ = 1 ----------------------------------------------------------------
    to_one = lambda steps: karras_sigmas(1.0, SIGMA_MAX, steps + 1)[:-1]  # noqa: E731
    ref_one, _ = run("heun", model, x, to_one(1000))
    error_table("Stopped at σ = 1 (Karras grid 80 … 1): mean max |x − x_ref|",
                VE_SAMPLERS, images, model, x, to_one, ref_one, False, args.repeats)

    # -- flow matching ------------------------------------------------------------------
    flow = IdealDenoiser(images, parameterization="flow")
    eps = x / SIGMA_MAX
    ref_flow, _ = run("heun", flow, eps, flow_times(1000))
    error_table("Flow matching, final images (uniform t, shift 1): mean max |x − x_ref| (flips)",
                FLOW_SAMPLERS, images, flow, eps, flow_times, ref_flow, True, args.repeats)

    # -- stochastic samplers: a distribution check ----------------------------------------
    many = SIGMA_MAX * torch.randn(512, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ode, _ = run("heun", model, many, full(1000))
    print("\n### Stochastic samplers: distribution over the 8 images (512 samples)\n")
    print("Total variation between the share of samples nearest to each image and the exact "
          f"1/8; the ODE reference (heun, 1000 steps) on the same starts: {total_variation(images, ode):.3f}. "
          "Last column: mean max |x − nearest image| at 80 steps.\n")
    print("| sampler | " + " | ".join(f"{n} steps" for n in STEPS) + " | distance to the set |")
    print("|---" * (len(STEPS) + 2) + "|")
    for name, options in STOCHASTIC:
        cells, out = [], None
        for steps in STEPS:
            out, _ = run(name, model, many, full(steps), generator=torch.Generator().manual_seed(2),
                         **options)
            cells.append(f"{total_variation(images, out):.3f}")
        to_set = torch.cdist(out.flatten(1), images.flatten(1)).argmin(1)
        distance = float(max_abs(out, images[to_set]).mean())
        label = f"{name} (η = 1)" if options else name
        print(f"| {label} | {' | '.join(cells)} | {distance:.1e} |")


if __name__ == "__main__":
    main()

"""Time per sampling step against image size: Sana's linear-attention DiT
against the quadratic-attention MMDiT of shapes-flow (issue 14).

Linear attention's point (Sana §2.2): ReLU(Q)(ReLU(K)ᵀV) costs O(N d²) in the
number of tokens N, softmax attention O(N² d). Both backbones here see the
same number of tokens at every size — shapes-flow patches 2×2 of a /4
latent, shapes-sana takes 1×1 patches of its DC-AE's /8 latent: (size/8)²
tokens — so the difference is the attention, the feed-forward design and
the width. One step is one network call at batch 2 (classifier-free
guidance's two halves), median of ``--repeats``.

shapes-sana runs with its shipped weights at every size (it has no
positional embedding). shapes-flow's positional table covers 32×32 latents
(128 px); above that the benchmark times the same architecture with a table
large enough for 512 px, at random weights: the time of a step does not
depend on the weights' values.

    python bench/sana_speed.py [--sizes 64 128 192 256 384 512] [--repeats 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from core.models.builtin import load_model
from core.models.shapes import FLOW_TRANSFORMER_CONFIG, make_flow_transformer


def step_seconds(call, repeats: int) -> float:
    """Median wall time of ``call()`` after one warm-up."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sana_step(transformer, size: int, text: torch.Tensor):
    x = torch.randn(2, transformer.config.in_channels, size // 8, size // 8)
    t = torch.full((2,), 500.0)
    return lambda: transformer(x, encoder_hidden_states=text, timestep=t)


def flow_step(transformer, size: int, text: torch.Tensor, pooled: torch.Tensor):
    x = torch.randn(2, transformer.config.in_channels, size // 4, size // 4)
    t = torch.full((2,), 500.0)
    return lambda: transformer(x, encoder_hidden_states=text, pooled_projections=pooled,
                               timestep=t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 192, 256, 384, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sana = load_model("shapes-sana").model.denoiser.network.transformer
    flow = load_model("shapes-flow").model.denoiser.network.transformer
    wide = make_flow_transformer({**FLOW_TRANSFORMER_CONFIG, "pos_embed_max_size": 64}).eval()
    text, pooled = torch.randn(2, 16, 64), torch.randn(2, 64)
    print("| image | tokens | shapes-sana (linear) | shapes-flow (softmax) | flow / sana |")
    print("|---|---|---|---|---|")
    with torch.inference_mode():
        for size in args.sizes:
            mmdit = flow if size <= 128 else wide
            linear = step_seconds(sana_step(sana, size, text), args.repeats)
            softmax = step_seconds(flow_step(mmdit, size, text, pooled), args.repeats)
            note = "" if mmdit is flow else " (random weights)"
            print(f"| {size}² | {(size // 8) ** 2} | {linear * 1000:.1f} ms | "
                  f"{softmax * 1000:.1f} ms{note} | {softmax / linear:.2f} |")


if __name__ == "__main__":
    main()

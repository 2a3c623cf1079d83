"""Randomness, always passed in: seeded CPU generators, so a seed means the same
picture on every device (DESIGN.md, Principles)."""
from __future__ import annotations

import torch


def cpu_generator(seed: int) -> torch.Generator:
    """A fresh generator on the CPU seeded with ``seed``."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def initial_noise(seed: int, shape, device=None, dtype=torch.float32) -> torch.Tensor:
    """ε ~ N(0, I) of ``shape`` (B, C, H, W): drawn in float32 on the CPU, then moved."""
    noise = torch.randn(tuple(shape), generator=cpu_generator(seed), dtype=torch.float32)
    return noise.to(device=device or "cpu", dtype=dtype)


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Fresh noise shaped like ``x`` from ``generator`` (drawn where the generator lives)."""
    if generator is None:
        raise ValueError("this sampler is stochastic: pass a torch.Generator for its noise")
    where = generator.device
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32, device=where)
    return noise.to(device=x.device, dtype=x.dtype)

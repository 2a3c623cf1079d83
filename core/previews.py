"""Fast previews of latents: a linear map from latent channels to RGB.

Decoding every step of a run with the VAE costs as much as the step itself;
a per-pixel linear map costs nothing and shows layout and colour well
enough to watch a picture form. For a VAE of our own the map is fitted by
least squares (latent pixel → the mean colour of the image patch it
covers); for Stable Diffusion's VAEs the factors are the published ones
(ComfyUI's ``latent_formats.py``: SD 1.x, which SD 2.x shares, and SDXL).
All maps work on the *scaled* latents the diffusion model sees and give
RGB in [−1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LatentRGB:
    """rgb = latent · factors + bias, per pixel: factors (C, 3), bias (3,)."""

    factors: tuple[tuple[float, ...], ...]
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def channels(self) -> int:
        return len(self.factors)

    def to_json(self) -> dict:
        return {"factors": [list(row) for row in self.factors], "bias": list(self.bias)}

    @classmethod
    def from_json(cls, data: dict) -> "LatentRGB":
        return cls(tuple(tuple(float(v) for v in row) for row in data["factors"]),
                   tuple(float(v) for v in data.get("bias", (0.0, 0.0, 0.0))))


#: Published maps for Stable Diffusion's VAEs, keyed by their scaling factor.
SD1 = LatentRGB(((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350),
                 (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177)))
SDXL = LatentRGB(((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068),
                  (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188)), (0.1084, -0.0175, -0.0011))
PUBLISHED = {0.18215: SD1, 0.13025: SDXL}


def preview_rgb(latents: torch.Tensor, mapping: LatentRGB | None) -> torch.Tensor:
    """(B, C, h, w) latents → (B, 3, h, w) pixels in [0, 1]. Without a map,
    3-channel data (pixel-space models) is shown as is, others as their first
    three channels."""
    x = latents.float()
    if mapping is not None and x.shape[1] == mapping.channels:
        factors = torch.tensor(mapping.factors, dtype=x.dtype)  # (C, 3)
        rgb = torch.einsum("bchw,cr->brhw", x, factors) + torch.tensor(mapping.bias)[:, None, None]
    else:
        rgb = x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)
    return ((rgb + 1) / 2).clamp(0, 1)


def fit_latent_rgb(latents: torch.Tensor, images: torch.Tensor) -> LatentRGB:
    """Least-squares map from scaled latents (N, C, h, w) to the images they
    encode (N, 3, H, W) in [0, 1], each latent pixel against the mean colour
    of the patch it covers."""
    target = torch.nn.functional.adaptive_avg_pool2d(images.float(), latents.shape[-2:]) * 2 - 1
    x = latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])  # (P, C)
    y = target.permute(0, 2, 3, 1).reshape(-1, 3)  # (P, 3)
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, y.double()).solution  # (C + 1, 3)
    factors = tuple(tuple(round(float(v), 5) for v in row) for row in solution[:-1])
    return LatentRGB(factors, tuple(round(float(v), 5) for v in solution[-1]))

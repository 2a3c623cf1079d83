"""Original (CompVis / Stability / A1111 / ComfyUI) single-file key layouts, made here.

No real checkpoint exists on the test machines, so the tests make files in the
layouts users hold: each module maps a diffusers/transformers state dict to the
original key names and tensor shapes, the inverse of diffusers' converters in
``diffusers/loaders/single_file_utils.py``. ``files.py`` writes them: tiny
random-weight files and full-size sparse files (real names and shapes, no data).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

CONFIG_ROOT = Path(__file__).resolve().parents[2] / "core" / "models" / "configs"


def published_config(folder: str, component: str) -> dict:
    """A full-size config from ``core/models/configs/<folder>/<component>.json``,
    without the ``_class_name``-style bookkeeping keys (ready for ``Model(**config)``)."""
    raw = json.loads((CONFIG_ROOT / folder / f"{component}.json").read_text())
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded random weights in place, every tensor distinct and non-zero.

    diffusers zero-initialises some layers (ControlNet zero convs, proj_out);
    a layout test with zeros there could not tell two such tensors apart.
    Norm scales stay near 1, matrices get a 1/sqrt(fan_in) scale, so tiny
    models still give finite, non-trivial outputs.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(module.named_parameters()):
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.ndim >= 2:
                noise /= (parameter[0].numel()) ** 0.5
            elif name.endswith("weight") and ("norm" in name or "ln_" in name):
                noise = 1.0 + 0.1 * noise
            else:
                noise *= 0.05
            parameter.copy_(noise.to(parameter.dtype))
    return module.eval()

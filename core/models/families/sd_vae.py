"""The 4-channel VAE of SD 1.x / 2.x / SDXL, inside a checkpoint or standalone.

Files read: the original (LDM) names under ``first_stage_model.`` (all-in-one
checkpoints) or ``vae.``, or bare (``vae-ft-mse-840000-ema-pruned``,
``sdxl_vae``); and diffusers' ``AutoencoderKL`` names. The structure comes
from the shapes (:func:`core.models.families.vae16.vae_config` reads them for
any ``AutoencoderKL``); the latent scale cannot be told from the weights, so
the family says it: z = E(x) · 0.18215 for SD 1.x/2.x, 0.13025 for SDXL
(diffusers' ``vae/config.json`` of runwayml/stable-diffusion-v1-5 and
stabilityai/stable-diffusion-xl-base-1.0), no shift.

SDXL's VAE overflows in float16 (its config says ``force_upcast``; diffusers
decodes it in float32): asked for float16, it is kept in float32.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from core.checkpoints.boundary import CheckpointError, ChoiceError, checkpoint_boundary
from core.models.families.text_files import published_config
from core.models.families.vae16 import is_diffusers_layout, vae_config, vae_weights
from core.models.families.weights import (
    assign_weights,
    empty_parameters,
    finish,
    loading_errors,
    offline,
    open_tensors,
)
from core.previews import SD1, SDXL

FAMILY_CONFIGS = {"sd1": "sd1", "sd2": "sd1", "sdxl": "sdxl", "sdxl_refiner": "sdxl"}
SCALING = {"sd1": 0.18215, "sd2": 0.18215, "sdxl": 0.13025, "sdxl_refiner": 0.13025}
#: Config entries the shapes tell (the rest comes from the family's published config).
SHAPE_KEYS = ("in_channels", "out_channels", "block_out_channels", "layers_per_block",
              "latent_channels", "down_block_types", "up_block_types", "use_quant_conv",
              "use_post_quant_conv", "mid_block_add_attention")

#: Latent → RGB preview maps of the scaled latents (ComfyUI's ``latent_formats.py``
#: ``SD15`` and ``SDXL`` with its bias; see /work/shared/FACTS.md), in core.previews.
LATENT_RGB = {"sd1": SD1, "sd2": SD1, "sdxl": SDXL, "sdxl_refiner": SDXL}


def vae_dtype(family: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype the family's VAE runs in: SDXL's stays float32 under float16."""
    return torch.float32 if dtype == torch.float16 and SCALING[family] == SCALING["sdxl"] else dtype


def sd_vae_config(weights: Mapping[str, torch.Tensor], family: str,
                  overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``AutoencoderKL`` config: structure from the shapes, the rest (groups,
    scale, ``force_upcast``) from the family's published config."""
    shaped = vae_config(weights, "sd3")  # any family: only the shape entries are kept
    config = published_config(FAMILY_CONFIGS[family], "vae")
    config.update({k: shaped[k] for k in SHAPE_KEYS}, scaling_factor=SCALING[family])
    config.update(overrides or {})
    return config


def build_sd_vae(weights: Mapping[str, torch.Tensor], path, family: str, dtype: torch.dtype,
                 device: Any = "cpu", overrides: Mapping[str, Any] | None = None):
    """A :class:`~core.models.builtin.VAEHandle` around ``AutoencoderKL`` holding ``weights``."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from core.models.builtin import VAEHandle

    offline()
    with loading_errors(path, "VAE"):
        config = sd_vae_config(weights, family, overrides)
        if config["latent_channels"] != 4:
            raise CheckpointError(f"{path}: a {config['latent_channels']}-channel VAE, not the "
                                  f"4-channel VAE of {family}")
        if not is_diffusers_layout(weights):
            weights = convert_ldm_vae_checkpoint(dict(weights), config)  # it may edit its input
        dtype = vae_dtype(family, dtype)
        with empty_parameters():
            vae = AutoencoderKL(**config)
        assign_weights(vae, weights, path, "VAE", dtype)
    vae = finish(vae, path, "VAE", device)
    downscale = 2 ** (len(config["block_out_channels"]) - 1)
    return VAEHandle(vae, float(config["scaling_factor"]), 4, downscale, Path(path))


def folder_vae_handle(vae, source: Path):
    """The handle of an ``AutoencoderKL`` loaded with its own config (a diffusers folder)."""
    from core.models.builtin import VAEHandle

    return VAEHandle(vae, float(vae.config.scaling_factor), vae.config.latent_channels,
                     2 ** (len(vae.config.block_out_channels) - 1), source)


def vae_from(tensors: Mapping[str, torch.Tensor], path, separate, family: str, dtype: torch.dtype,
             device: Any, overrides: Mapping[str, Any] | None = None):
    """The ``separate`` VAE file when given (it replaces the checkpoint's),
    else the VAE inside ``tensors``; a CheckpointError when neither exists."""
    if separate is not None:
        return load_sd_vae_file(separate, family, device, dtype, overrides)
    inside = vae_weights(tensors)
    if inside is None:
        raise CheckpointError(f"{path}: this file holds no VAE: choose a VAE file")
    return build_sd_vae(inside, path, family, dtype, device, overrides)


@checkpoint_boundary("VAE file")
def load_sd_vae_file(path, family: str = "sd1", device: Any = "cpu",
                     dtype: torch.dtype = torch.float32, overrides: Mapping[str, Any] | None = None):
    """A standalone SD/SDXL VAE file (or the VAE inside an all-in-one file) as a VAEHandle."""
    if family not in SCALING:
        raise ChoiceError(f"the VAE family must be one of {tuple(SCALING)}, not {family!r}")
    if Path(path).expanduser().is_dir():
        return _vae_folder(Path(path).expanduser(), family, device, dtype)
    tensors = open_tensors(path)
    weights = vae_weights(tensors)
    if weights is None:
        raise CheckpointError(f"{path}: no VAE in this file (no encoder.conv_in / decoder.conv_out)")
    return build_sd_vae(weights, path, family, dtype, device, overrides)


def _vae_folder(folder: Path, family: str, device: Any, dtype: torch.dtype):
    """A diffusers pipeline folder's ``vae`` or a VAE folder (``config.json``);
    the scale is the folder config's own."""
    from core.models.families.folders import is_diffusers_folder, load_folder_component

    if is_diffusers_folder(folder):
        return folder_vae_handle(load_folder_component(folder, "vae", device, vae_dtype(family, dtype)),
                                 folder / "vae")
    files = sorted(p.name for p in folder.glob("*.safetensors"))
    if not (folder / "config.json").is_file() or not files:
        raise CheckpointError(f"{folder}: not a diffusers VAE folder "
                              "(config.json and .safetensors weights)")
    from diffusers import AutoencoderKL

    offline()
    with loading_errors(folder, "VAE"):
        variant = "fp16" if all(".fp16." in f for f in files) else None
        vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                            variant=variant, torch_dtype=vae_dtype(family, dtype))
    return folder_vae_handle(finish(vae, folder, "VAE", device), folder)

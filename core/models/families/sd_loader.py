"""Stable Diffusion 1.x / 2.x, SDXL base and SDXL refiner as MODEL, CLIP and VAE.

Sources: an all-in-one original-layout ``.safetensors`` (U-Net under
``model.diffusion_model.``, VAE under ``first_stage_model.``, text encoders
under ``cond_stage_model.`` / ``conditioner.embedders.N.``), a U-Net-only
file with separate text-encoder and VAE files, or a diffusers folder
(``model_index.json``). The family is detected from the header when not
given (:func:`core.checkpoints.detect.detect`).

Sampling: SD's discrete VP schedule, "scaled_linear" β from 0.00085 to
0.012 over 1000 steps (every SD/SDXL ``scheduler_config.json``; it is
``make_schedule("scaled_linear")``), the U-Net predicting ε — or v (Salimans
& Ho 2022) for SD 2.x 768 models, which the weights cannot tell: the
``prediction`` argument, else the detector's guess (file metadata or the
folder's scheduler), else v for SD 2.x.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from core.checkpoints.boundary import CheckpointError, ChoiceError, checkpoint_boundary
from core.models.families.folders import folder_tokenizer, is_diffusers_folder, load_folder_component
from core.models.families.sd_text import (
    ENCODERS,
    SDTextEncoders,
    default_tokenizer,
    load_sd_text_encoders,
)
from core.models.families.sd_unet import build_unet, unet_weights
from core.models.families.sd_vae import (
    LATENT_RGB,
    folder_vae_handle,
    load_sd_vae_file,
    vae_dtype,
    vae_from,
)
from core.models.families.weights import loading_errors, open_tensors

__all__ = ["SD_FAMILIES", "PREDICTIONS", "load_sd", "load_sd_vae_file"]

SD_FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner")
PREDICTIONS = ("epsilon", "v_prediction")
TITLES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL base", "sdxl_refiner": "SDXL refiner"}
PREDICTION_TITLES = {"epsilon": "ε-prediction", "v_prediction": "v-prediction"}
SD2_PREDICTIONS = {"768-v": "v_prediction", "512-base": "epsilon"}  # detector variant → prediction
TOKENS = 77


@checkpoint_boundary("SD checkpoint")
def load_sd(path, family: str | None = None, *, prediction: str | None = None, clip_l=None,
            clip_g=None, vae=None, device: Any = "cpu", dtype: torch.dtype = torch.float32,
            overrides: Mapping[str, Mapping[str, Any]] | None = None):
    """SD 1.x/2.x/SDXL/refiner as a ``LoadedCheckpoint`` (MODEL, CLIP, VAE).

    ``path``: an all-in-one file, a U-Net-only file (text encoders from the
    ``clip_l`` / ``clip_g`` files — SD 2.x's OpenCLIP-H from either —, VAE
    from ``vae``), or a diffusers folder. A ``vae`` file replaces the
    checkpoint's own VAE. ``overrides`` maps ``unet``, ``vae``, ``clip_l``,
    ``clip_h``, ``clip_g`` to config values the shapes cannot tell."""
    if family is not None and family not in SD_FAMILIES:
        raise ChoiceError(f"the SD family must be one of {SD_FAMILIES}, not {family!r}")
    if prediction is not None and prediction not in PREDICTIONS:
        raise ChoiceError(f"the prediction must be one of {PREDICTIONS}, not {prediction!r}")
    overrides = overrides or {}
    if is_diffusers_folder(path):
        return _from_folder(Path(path).expanduser(), family, prediction, vae, device, dtype)
    tensors = open_tensors(path)  # refuses pickles, missing and unreadable files
    family, guessed = _family(path, family)
    if family in ("sd1", "sd2") and any(k.endswith("label_emb.0.0.weight") for k in tensors):
        raise CheckpointError(f"{path}: an {TITLES[family]} U-Net with an extra embedding input "
                              "(label_emb: an unCLIP or upscaler model), which cannot be loaded "
                              "as a plain text-to-image model")
    clip = load_sd_text_encoders(family, tensors, path, clip_l=clip_l, clip_g=clip_g, dtype=dtype,
                                 device=device, overrides=overrides)
    with loading_errors(path, "U-Net"):  # the converter raises KeyError on a partial file
        weights = unet_weights(tensors)
    if weights is None:
        raise CheckpointError(f"{path}: no U-Net in this file (neither model.diffusion_model."
                              "input_blocks… nor down_blocks… keys)")
    unet = build_unet(weights, path, family, dtype, device, _pooled_width(clip), overrides.get("unet"))
    handle = vae_from(tensors, path, vae, family, dtype, device, overrides.get("vae"))
    return assemble(unet, clip, handle, family, prediction or guessed, path)


def _family(path, family: str | None) -> tuple[str, str]:
    """(family, guessed prediction) from the header; a family given that the
    header contradicts is an error."""
    from core.checkpoints.detect import TITLES as KINDS
    from core.checkpoints.detect import detect

    found = detect(path)
    if found.family in SD_FAMILIES and family not in (None, found.family):
        raise CheckpointError(f"{path}: an {TITLES[found.family]} checkpoint, not {TITLES[family]}")
    if found.family not in SD_FAMILIES and (family is None or found.family != "unknown"):
        raise CheckpointError(f"{path}: a {KINDS.get(found.family, found.family)} file, not an "
                              "SD 1.x/2.x/SDXL checkpoint" + ("" if family else
                                                              " (or choose the family)"))
    family = family or found.family
    return family, _guess(family, found.variant if found.family == family else None)


def _guess(family: str, variant: str | None) -> str:
    """ε for every family but SD 2.x, whose 768 models (the default guess) predict v."""
    if family != "sd2":
        return "epsilon"
    return SD2_PREDICTIONS.get(variant or "", "v_prediction")


def _pooled_width(clip: SDTextEncoders) -> int | None:
    bigg = clip.encoders.get("text_encoder_2")
    return None if bigg is None else bigg.config.projection_dim


def _from_folder(folder: Path, family: str | None, prediction: str | None, vae, device, dtype):
    """A diffusers folder: each component by its own config, tokenizers from the folder."""
    from core.checkpoints.detect import detect

    found = detect(folder)
    if family is None:
        if found.base not in SD_FAMILIES:
            raise CheckpointError(f"{folder}: cannot tell which SD family this folder holds "
                                  f"(it looks like: {found.base}); choose the family")
        family = found.base
    unet = load_folder_component(folder, "unet", device, dtype)
    encoders, tokenizers = {}, {}
    for component, (kind, _) in ENCODERS[family].items():
        encoders[component] = load_folder_component(folder, component, device, dtype)
        tokenizer = component.replace("text_encoder", "tokenizer")
        tokenizers[component] = folder_tokenizer(folder, tokenizer, TOKENS) or default_tokenizer(kind)
    clip = SDTextEncoders(family, encoders, tokenizers)
    if vae is not None:
        handle = load_sd_vae_file(vae, family, device, dtype)
    else:
        autoencoder = load_folder_component(folder, "vae", device, vae_dtype(family, dtype))
        handle = folder_vae_handle(autoencoder, folder / "vae")
    return assemble(unet, clip, handle, family, prediction or _folder_prediction(folder, family),
                    folder)


def _folder_prediction(folder: Path, family: str) -> str:
    """The scheduler's ``prediction_type``, else the family's guess."""
    config = folder / "scheduler" / "scheduler_config.json"
    try:
        declared = json.loads(config.read_text(encoding="utf-8")).get("prediction_type")
    except (OSError, ValueError, AttributeError):
        declared = None
    return declared if declared in PREDICTIONS else _guess(family, None)


def assemble(unet, clip: SDTextEncoders, vae, family: str, prediction: str, source):
    """The three handles: the U-Net as an ε- or v-predicting discrete-time
    denoiser on SD's schedule, with batched classifier-free guidance."""
    from core.diffusion.denoisers import DiscreteTimeDenoiser
    from core.diffusion.schedules import make_schedule
    from core.models.builtin import LoadedCheckpoint
    from core.models.conditioned import ConditionedUNet
    from core.values import DiffusionModel

    if unet.config.in_channels != unet.config.out_channels:
        raise CheckpointError(f"{source}: a U-Net with {unet.config.in_channels} input channels "
                              "(an inpainting or other conditioned variant), which is not supported yet")
    schedule = make_schedule("scaled_linear", 1000)
    network = ConditionedUNet(unet, clip, downscale=vae.downscale)
    dtype = str(next(unet.parameters()).dtype).removeprefix("torch.")
    model = DiffusionModel(
        name=family, denoiser=DiscreteTimeDenoiser(network, schedule, prediction),
        parameterization="ve", latent_channels=unet.config.in_channels, downscale=vae.downscale,
        schedule=schedule, latent_rgb=LATENT_RGB[family], decoder=vae, batched_cfg=True,
        description=f"{TITLES[family]}: latent diffusion, {PREDICTION_TITLES[prediction]}, {dtype} "
                    f"({clip.description})",
    )
    return LoadedCheckpoint(model, clip, vae)

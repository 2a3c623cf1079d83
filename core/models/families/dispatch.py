"""Any model file a user holds → MODEL, CLIP and VAE, chosen by what its header says.

The loader nodes and the command line call :func:`load_any_checkpoint` with a
path; the header-only detector (``core.checkpoints.detect``) names the family
and the family's loader builds the networks. A file that is not a backbone
(a LoRA, a ControlNet, a VAE, a text encoder) gets a sentence naming the
node that loads it, and a pickle is refused before anything is unpickled.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from core.checkpoints.boundary import CheckpointError, ChoiceError, checkpoint_boundary

log = logging.getLogger(__name__)

SD_FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner")
PREDICTIONS = ("auto", "epsilon", "v_prediction")
VAE_KINDS = ("auto", "sd", "sdxl", "sd3", "flux")
#: Files that are not backbones, and the node that loads each.
OTHER_LOADERS = {"vae": "VAE loader", "controlnet": "ControlNet loader", "lora": "LoRA loader",
                 "text_encoder": "SD3 text encoders or Flux text encoders"}


def detected(path: str | os.PathLike):
    """The file's Detection; a pickled or damaged file is refused with its reason."""
    from core.checkpoints.detect import detect

    detection = detect(path)
    if detection.problems:
        raise CheckpointError(f"{path}: {'; '.join(detection.problems)}")
    return detection


@checkpoint_boundary("checkpoint")
def load_any_checkpoint(path: str | os.PathLike, *, prediction: str = "auto", vae=None,
                        clip_l=None, clip_g=None, t5xxl=None, device: Any = "cpu",
                        dtype: torch.dtype = torch.float32):
    """A ``LoadedCheckpoint`` of any backbone file or diffusers folder.

    ``prediction`` (``auto``, ``epsilon``, ``v_prediction``) overrides what
    shapes cannot tell for SD 2.x; ``vae``, ``clip_l``, ``clip_g`` and
    ``t5xxl`` are separate files for the parts a model-only file lacks (a
    given ``vae`` replaces the checkpoint's own for the SD family)."""
    if prediction not in PREDICTIONS:
        raise ChoiceError(f"prediction must be one of {PREDICTIONS}, not {prediction!r}")
    path = Path(path).expanduser()
    detection = detected(path)
    family = detection.base if detection.family == "diffusers_folder" else detection.family
    if family == "workbench":
        from core.models.builtin import load_model

        return load_model(str(path), device, dtype)
    if family in SD_FAMILIES:
        from core.models.families.sd_loader import load_sd

        return load_sd(path, family, prediction=None if prediction == "auto" else prediction,
                       clip_l=clip_l, clip_g=clip_g, vae=vae, device=device, dtype=dtype)
    if family == "sd3":
        from core.models.families.sd3 import VARIANTS, load_sd3

        variant = detection.variant if detection.variant in VARIANTS else "sd3_medium"
        return load_sd3(path, variant, clip_l=clip_l, clip_g=clip_g, t5xxl=t5xxl, vae=vae,
                        device=device, dtype=dtype)
    if family == "flux":
        from core.models.families.flux import VARIANTS, load_flux

        variant = detection.variant if detection.variant in VARIANTS else None
        return load_flux(path, variant, clip_l=clip_l, t5xxl=t5xxl, vae=vae, device=device,
                         dtype=dtype)
    raise CheckpointError(_not_a_backbone(path, detection, family))


def _not_a_backbone(path: Path, detection, family: str | None) -> str:
    from core.checkpoints.detect import TITLES

    if family in OTHER_LOADERS:
        return (f"{path}: this is a {TITLES.get(family, family)}, not a model to sample from: "
                f"load it with the {OTHER_LOADERS[family]} node")
    return f"{path}: not a model this workbench can load — {detection.describe()}"


@checkpoint_boundary("VAE file")
def load_any_vae(path: str | os.PathLike, kind: str = "auto", device: Any = "cpu",
                 dtype: torch.dtype = torch.float32, overrides: dict[str, Any] | None = None):
    """A standalone VAE file (or a checkpoint's VAE) as a VAE value.

    The latent scale (and shift) is not in the weights: ``kind`` says which
    family's VAE it is; ``auto`` reads the channel count and then the file
    name (``…xl…`` → SDXL, ``…sd3…`` → SD3), else SD 1.x / Flux.
    ``overrides`` set config values shapes cannot tell (a 16-channel VAE's norm groups)."""
    if kind not in VAE_KINDS:
        raise ChoiceError(f"the VAE kind must be one of {VAE_KINDS}, not {kind!r}")
    path = Path(path).expanduser()
    detection = detected(path)
    if detection.family not in ("vae", *SD_FAMILIES, "sd3", "flux", "diffusers_folder"):
        raise CheckpointError(_not_a_backbone(path, detection, detection.family))
    if kind == "auto":
        kind = guess_vae_kind(path, detection)
        log.info("%s: read as the %s VAE (choose the kind if that is wrong)", path, kind)
    if kind in ("sd3", "flux"):
        from core.models.families.vae16 import load_vae16_file

        return load_vae16_file(path, kind, dtype, device, overrides)
    from core.models.families.sd_loader import load_sd_vae_file

    return load_sd_vae_file(path, "sdxl" if kind == "sdxl" else "sd1", device, dtype)


def guess_vae_kind(path: Path, detection) -> str:
    """The VAE kind a file most likely is, from its family, channels and name."""
    family = detection.base if detection.family == "diffusers_folder" else detection.family
    if family in ("sdxl", "sdxl_refiner"):
        return "sdxl"
    if family in ("sd1", "sd2"):
        return "sd"
    if family in ("sd3", "flux"):
        return family
    name = path.name.lower()
    if str(detection.variant or "").startswith("16"):
        return "sd3" if "sd3" in name else "flux"
    return "sdxl" if "xl" in name else "sd"

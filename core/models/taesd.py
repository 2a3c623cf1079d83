"""Tiny autoencoder decoders (TAESD, TAESDXL, TAESD3, TAEF1) for cheap step previews.

madebyollin's tiny decoders turn a diffusion model's latents into a
full-size picture for a few GFLOPs, where the real VAE decoder costs as much
as a sampler step; they look far better than the linear latent → RGB map
(:mod:`core.previews`) but are not the VAE: their pictures are previews and
never a run's final image (that stays with the ``vae.decode`` node).

Files read, as users hold them:

- diffusers' ``AutoencoderTiny``: a folder (``config.json`` +
  ``diffusion_pytorch_model.safetensors``) or a file with ``decoder.layers.N…``
  keys (``encoder.…`` keys, if any, are ignored).
- the original decoder alone, as ComfyUI keeps it in ``models/vae_approx``
  (``taesd_decoder.safetensors``, ``taesdxl_decoder…``, ``taesd3_decoder…``,
  ``taef1_decoder…``): an ``nn.Sequential`` whose index 0 is the tanh clamp
  (no weights), so its keys ``1.weight``, ``3.conv.0.weight`` … ``19.weight``
  are diffusers' ``decoder.layers.0.weight``, ``decoder.layers.2.conv.0.weight``
  … ``decoder.layers.18.weight``: the same modules, one index later
  (``DecoderTiny`` applies the clamp in ``forward`` instead).

The latent channel count (4: SD 1.x/2.x/SDXL; 16: SD3/Flux) comes from the
first convolution's shape. Which of two same-width decoders a file is (taesd
vs taesdxl, taesd3 vs taef1) cannot be told from its weights.

Latent scale: every tiny decoder takes the *normalised* latents the diffusion
model samples (z = (E(x) − shift) · scale), i.e. exactly what the sampler
holds, with no scaling of its own. Sources: diffusers' pipelines decode with
``vae.decode(latents / vae.config.scaling_factor + vae.config.shift_factor)``
(``FluxPipeline``; SD/SDXL without the shift) and madebyollin's published
``AutoencoderTiny`` configs (taesd, taesdxl, taesd3, taef1) say
``scaling_factor`` 1.0 and no shift; ComfyUI's TAESD previewer
(``latent_preview.py``) feeds the model-space x̂_0 straight into the decoder
for all four. A diffusers folder whose ``config.json`` says otherwise is
honoured (z_in = z / scaling_factor + shift_factor).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from core.checkpoints.boundary import CheckpointError, checkpoint_boundary
from core.models.families.weights import (
    assign_weights,
    empty_parameters,
    finish,
    loading_errors,
    open_tensors,
    under_prefix,
)

FOLDER_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")
DIFFUSERS_PREFIX = "decoder."  # diffusers' AutoencoderTiny: decoder.layers.N…
_ORIGINAL_KEY = re.compile(r"^(\d+)\.(.+)$")  # the original nn.Sequential: N.weight, N.conv.0.weight
#: AutoencoderTiny's decoder architecture (diffusers' defaults, which every published tiny
#: decoder uses); a folder's config.json may override them.
ARCHITECTURE = {"num_decoder_blocks": (3, 3, 3, 1), "decoder_block_out_channels": (64, 64, 64, 64),
                "upsampling_scaling_factor": 2, "act_fn": "relu", "upsample_fn": "nearest",
                "out_channels": 3}


@dataclass(frozen=True)
class TinyPreviewDecoder:
    """A tiny decoder used as a model's step-preview ``decoder``: scaled latents
    → (B, 3, H, W) pixels in [0, 1], like ``VAEHandle.decode``.

    ``approximate`` tells preview code these pixels are not the VAE's; ``exact``
    is the decoder it stands in front of (the model's VAE, or None), kept so
    that anything promising exact pixels still gets them."""

    network: Any  # diffusers' DecoderTiny
    latent_channels: int
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    source: Path | None = None
    exact: Any = None
    approximate = True  # class constant, not a field

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        weight = next(self.network.parameters())
        z = latents.float() / self.scaling_factor + self.shift_factor
        pixels = self.network(z.to(weight.device, weight.dtype))  # (B, 3, 8h, 8w) in [−1, 1]
        return ((pixels.float().cpu() + 1) / 2).clamp(0, 1)

    @property
    def name(self) -> str:
        return self.source.name if self.source is not None else "tiny decoder"


@checkpoint_boundary("tiny decoder file")
def load_tiny_decoder(path, device: Any = "cpu", dtype: torch.dtype = torch.float32,
                      scaling_factor: float | None = None,
                      shift_factor: float | None = None) -> TinyPreviewDecoder:
    """A TAESD-class decoder from a diffusers folder or file, or an original
    ``*_decoder`` file; ``scaling_factor``/``shift_factor`` override the
    default (1, 0: the sampler's own latents). Raises :class:`CheckpointError`
    naming the file and what is wrong with it."""
    path = Path(path).expanduser()
    file, config = _weights_file_and_config(path)
    tensors = open_tensors(file)
    weights = _decoder_weights(tensors, file)
    architecture = {k: config.get(k, v) for k, v in ARCHITECTURE.items()}
    with loading_errors(file, "tiny decoder"):
        channels = int(weights["layers.0.weight"].shape[1])
        network = _build(channels, architecture)
        unexpected = sorted(set(weights) - set(network.state_dict()))
        if unexpected:
            raise CheckpointError(f"{file}: not a TAESD-class decoder this loader knows "
                                  f"({len(unexpected)} unexpected tensor(s): "
                                  f"{', '.join(unexpected[:4])})")
        assign_weights(network, weights, file, "tiny decoder", dtype)
    network = finish(network, file, "tiny decoder", device)
    scale = config.get("scaling_factor", 1.0) if scaling_factor is None else scaling_factor
    shift = config.get("shift_factor", 0.0) if shift_factor is None else shift_factor
    return TinyPreviewDecoder(network, channels, float(scale), float(shift or 0.0), file)


def _build(channels: int, architecture: Mapping[str, Any]) -> torch.nn.Module:
    from diffusers.models.autoencoders.vae import DecoderTiny

    with empty_parameters():
        return DecoderTiny(
            in_channels=channels, out_channels=architecture["out_channels"],
            num_blocks=tuple(architecture["num_decoder_blocks"]),
            block_out_channels=tuple(architecture["decoder_block_out_channels"]),
            upsampling_scaling_factor=architecture["upsampling_scaling_factor"],
            act_fn=architecture["act_fn"], upsample_fn=architecture["upsample_fn"])


def _weights_file_and_config(path: Path) -> tuple[Path, dict]:
    """A folder's weights file and its config.json; a file with no config."""
    if not path.is_dir():
        return path, {}
    file = next((path / name for name in FOLDER_WEIGHTS if (path / name).is_file()), None)
    if file is None:
        raise CheckpointError(f"{path}: no {FOLDER_WEIGHTS[0]} in this folder (a diffusers "
                              "AutoencoderTiny folder has one beside its config.json)")
    config_file = path / "config.json"
    if not config_file.is_file():
        return file, {}
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{config_file}: unreadable ({error})") from None
    if config.get("_class_name", "AutoencoderTiny") != "AutoencoderTiny":
        raise CheckpointError(f"{config_file}: a {config['_class_name']}, not an AutoencoderTiny "
                              "(a tiny preview decoder)")
    return file, config


def _decoder_weights(tensors: Mapping[str, torch.Tensor], file: Path) -> dict[str, torch.Tensor]:
    """The decoder's tensors under DecoderTiny's own names (``layers.N…``)."""
    if any(k.startswith(DIFFUSERS_PREFIX + "layers.") for k in tensors):
        return under_prefix(tensors, DIFFUSERS_PREFIX)
    original = {key: _ORIGINAL_KEY.match(key) for key in tensors}
    if "1.weight" in tensors and all(original.values()):  # index 0 is the weightless clamp
        return {f"layers.{int(m.group(1)) - 1}.{m.group(2)}": tensors[key]
                for key, m in original.items()}
    raise CheckpointError(f"{file}: not a TAESD-class decoder: {_what_instead(tensors)}")


def _what_instead(tensors: Mapping[str, torch.Tensor]) -> str:
    """A hint at what the file is, for the error message."""
    if any(k.endswith("decoder.conv_in.weight") or k.endswith("decoder.conv_in.conv.weight")
           for k in tensors):
        return "it holds a full VAE (decoder.conv_in …); load it with the VAE loader"
    first = tensors.get("0.weight")
    if first is not None and first.ndim == 4 and first.shape[1] == 3:
        return "it is a tiny *encoder* (its first layer reads RGB); choose the *_decoder file"
    if not tensors:
        return "it holds no tensors"
    shown = ", ".join(sorted(tensors)[:3])
    return (f"expected decoder.layers.N… (diffusers) or 1.weight, 3.conv.0.weight … "
            f"(taesd*_decoder files) keys, found {shown} …")

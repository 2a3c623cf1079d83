"""The built-in shapes models shipped in ``resources/models``, loaded by name.

Loading gives the same three things a Stable Diffusion checkpoint gives: a
MODEL (the backbone as a denoiser), a CLIP (text encoder) and a VAE.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.checkpoints import CheckpointError, load_checkpoint
from core.checkpoints.safetensors_io import component
from core.diffusion.denoisers import DiscreteTimeDenoiser
from core.diffusion.schedules import make_schedule
from core.models.text import TextEncoder, WordTokenizer, make_text_encoder
from core.models.vae import load_vae
from core.values import Conditioning, DiffusionModel

MODELS_DIR = Path(__file__).resolve().parents[2] / "resources" / "models"
CHECKPOINT_NAMES = ("shapes-ldm",)


def model_file(name_or_path: str) -> Path:
    """A built-in name (``shapes-ldm``) or a path to a model file."""
    if name_or_path in CHECKPOINT_NAMES or name_or_path == "shapes-vae":
        return MODELS_DIR / f"{name_or_path}.safetensors"
    return Path(name_or_path).expanduser()


@dataclass(frozen=True)
class VAEHandle:
    """A VAE with its latent scale: images [0, 1] ↔ scaled latents."""

    vae: Any
    scaling_factor: float
    latent_channels: int
    downscale: int

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        device = next(self.vae.parameters()).device
        dist = self.vae.encode((images[:, :3] * 2 - 1).to(device)).latent_dist
        return dist.mean * self.scaling_factor  # (B, C, H/f, W/f)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        device = next(self.vae.parameters()).device
        pixels = self.vae.decode(latents.to(device) / self.scaling_factor).sample
        return ((pixels.float().cpu() + 1) / 2).clamp(0, 1)  # (B, 3, H, W)


@dataclass(frozen=True)
class LoadedCheckpoint:
    model: DiffusionModel
    clip: TextEncoder
    vae: VAEHandle


class ConditionedUNet:
    """``network(x_t, t, cond=…)`` for a cross-attention U-Net: encodes a
    prompt with the model's own text encoder when no embeddings came along."""

    def __init__(self, unet, clip: TextEncoder) -> None:
        self.unet = unet
        self.clip = clip
        self._encoded: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning | None = None):
        context = self._context(cond or Conditioning(), x_t)
        return self.unet(x_t, t, encoder_hidden_states=context).sample

    def _context(self, cond: Conditioning, x_t: torch.Tensor) -> torch.Tensor:
        embeddings = cond.embeddings
        if embeddings is None:
            if cond.text not in self._encoded:
                if len(self._encoded) >= 32:  # a long session must not grow without bound
                    self._encoded.pop(next(iter(self._encoded)))
                self._encoded[cond.text] = self.clip.encode([cond.text], x_t.device)
            embeddings = self._encoded[cond.text]
        embeddings = embeddings.to(device=x_t.device, dtype=x_t.dtype)
        return embeddings.expand(x_t.shape[0], -1, -1) if len(embeddings) == 1 else embeddings


def load_ldm(name_or_path: str, device: Any = "cpu") -> LoadedCheckpoint:
    """A shapes-ldm file (and the VAE it names, in the same folder) as MODEL, CLIP and VAE."""
    from diffusers import UNet2DConditionModel

    path = model_file(name_or_path)
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != "ldm":
        raise CheckpointError(f"{path}: not a latent diffusion model (kind {meta.get('kind')!r})")
    parts = meta["components"]
    unet = UNet2DConditionModel(**parts["unet"]["config"])
    _load(unet, component(tensors, "unet"), path, "U-Net")
    text = parts["text_encoder"]
    encoder = make_text_encoder(text["config"])
    _load(encoder, component(tensors, "text_encoder"), path, "text encoder")
    clip = TextEncoder(WordTokenizer(text["vocabulary"], text["max_length"]),
                       encoder.to(device).eval().requires_grad_(False))
    vae, scaling = load_vae(path.parent / f"{meta['vae']}.safetensors", device)  # beside it
    schedule = make_schedule(meta["schedule"]["name"], meta["schedule"]["timesteps"])
    unet = unet.to(device).eval().requires_grad_(False)
    denoiser = DiscreteTimeDenoiser(ConditionedUNet(unet, clip), schedule, meta["prediction"])
    downscale = 2 ** (len(vae.config.block_out_channels) - 1)
    model = DiffusionModel(
        name=meta["name"], denoiser=denoiser, parameterization="ve",
        latent_channels=unet.config.in_channels, downscale=downscale, schedule=schedule,
        description=f"{meta['name']}: latent diffusion, ε-prediction",
    )
    return LoadedCheckpoint(model, clip, VAEHandle(vae, scaling, vae.config.latent_channels, downscale))


def _load(module: torch.nn.Module, weights: dict, path: Path, what: str) -> None:
    missing, unexpected = module.load_state_dict({k: v.float() for k, v in weights.items()},
                                                 strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: the {what} weights do not match its config "
                              f"({len(missing)} missing, {len(unexpected)} unexpected)")

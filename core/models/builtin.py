"""The built-in shapes models shipped in ``resources/models``, loaded by name.

Loading gives the same three things a Stable Diffusion checkpoint gives: a
MODEL (the backbone as a denoiser), a CLIP (text encoder) and a VAE.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from core.checkpoints import CheckpointError, load_checkpoint
from core.checkpoints.boundary import checkpoint_boundary, file_faults
from core.checkpoints.safetensors_io import component
from core.diffusion.denoisers import DiscreteTimeDenoiser
from core.diffusion.schedules import make_schedule
from core.latent_sizes import LatentSizes, patch_transformer_sizes
from core.models.conditioned import ConditionedTransformer, ConditionedUNet
from core.models.text import TextEncoder, WordTokenizer, make_text_encoder
from core.models.vae import load_vae
from core.paths import MODELS_DIR
from core.previews import LatentRGB
from core.values import DiffusionModel

CHECKPOINT_NAMES = ("shapes-ldm", "shapes-ddpm", "shapes-flow", "shapes-palette", "shapes-unclip",
                    "shapes-refiner", "shapes-cascade-base", "shapes-cascade-base-clip",
                    "shapes-sr", "shapes-sana", "shapes-video")
BUILTIN_NAMES = (*CHECKPOINT_NAMES, "shapes-vae", "shapes-controlnet", "shapes-classifier",
                 "shapes-clip", "shapes-prior", "shapes-t5", "shapes-dcae", "shapes-gemma")


def model_file(name_or_path: str) -> Path:
    """A built-in name (``shapes-ldm``) or a path to a model file."""
    if name_or_path in BUILTIN_NAMES:
        return MODELS_DIR / f"{name_or_path}.safetensors"
    return Path(name_or_path).expanduser()


@dataclass(frozen=True)
class VAEHandle:
    """A VAE with its latent scale: images [0, 1] ↔ scaled latents."""

    vae: Any
    scaling_factor: float
    latent_channels: int
    downscale: int
    source: Path | None = None  # the file it came from (a model's VAE is the one beside it)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        weight = next(self.vae.parameters())
        dist = self.vae.encode((images[:, :3] * 2 - 1).to(weight.device, weight.dtype)).latent_dist
        return dist.mean.float() * self.scaling_factor  # (B, C, H/f, W/f)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        weight = next(self.vae.parameters())
        pixels = self.vae.decode(latents.to(weight.device, weight.dtype) / self.scaling_factor).sample
        return ((pixels.float().cpu() + 1) / 2).clamp(0, 1)  # (B, 3, H, W)


class PixelCodec:
    """The "VAE" of a pixel-space model: pixels [0, 1] ↔ data [−1, 1], so the
    graph of a latent model (empty latent → sampler → decode) runs unchanged."""

    latent_channels = 3
    downscale = 1
    scaling_factor = 1.0

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, :3] * 2 - 1

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((latents.float().cpu() + 1) / 2).clamp(0, 1)


class _Target(NamedTuple):
    """Where loaded networks go: the device and the dtype they compute in."""

    device: Any
    dtype: torch.dtype


@dataclass(frozen=True)
class LoadedCheckpoint:
    model: DiffusionModel
    clip: TextEncoder | None  # None: the model reads no text (Palette, unCLIP's decoder)
    vae: VAEHandle


@checkpoint_boundary("model file", "name_or_path", locate=model_file)
def load_model(name_or_path: str, device: Any = "cpu",
               dtype: torch.dtype = torch.float32) -> LoadedCheckpoint:
    """Any backbone file (latent diffusion, pixel DDPM or flow) as MODEL, CLIP and
    VAE, their networks in ``dtype`` (the sampler's own arithmetic stays fp32)."""
    path = model_file(name_or_path)
    tensors, meta = load_checkpoint(path)
    loaders = {"ldm": _ldm, "pixel": _pixel, "flow": _flow, "sana": _sana, "video": _video,
               "palette": _palette, "super_resolution": _palette,
               "unclip_decoder": _unclip_decoder}
    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in loaders:
        raise CheckpointError(f"{path}: a {kind!r} file is not a backbone; the checkpoint "
                              f"loader takes {', '.join(loaders)} models")
    with file_faults(path, f"{kind} model"):
        return loaders[kind](path, tensors, meta, _Target(device, dtype))


@checkpoint_boundary("model file", "name_or_path", locate=model_file)
def load_ldm(name_or_path: str, device: Any = "cpu",
             dtype: torch.dtype = torch.float32) -> LoadedCheckpoint:
    """A latent diffusion file (and the VAE it names, in the same folder)."""
    loaded = load_model(name_or_path, device, dtype)
    if loaded.model.parameterization != "ve" or isinstance(loaded.vae, PixelCodec):
        raise CheckpointError(f"{model_file(name_or_path)}: not a latent diffusion model")
    return loaded


def _ldm(path: Path, tensors, meta, target: _Target) -> LoadedCheckpoint:
    from diffusers import UNet2DConditionModel

    unet = _build(lambda c: UNet2DConditionModel(**c), meta, "unet", tensors, path, "U-Net",
                  target)
    clip = _text_encoder(path, tensors, meta, target)
    vae, preview = _vae_beside(path, meta, target)
    schedule = make_schedule(meta["schedule"]["name"], meta["schedule"]["timesteps"])
    denoiser = DiscreteTimeDenoiser(ConditionedUNet(unet, clip), schedule, meta["prediction"])
    model = DiffusionModel(
        name=meta["name"], denoiser=denoiser, parameterization="ve",
        latent_channels=unet.config.in_channels, downscale=vae.downscale, schedule=schedule,
        description=f"{meta['name']}: latent diffusion, ε-prediction", latent_rgb=preview,
        batched_cfg=True,
    )
    return _with_decoder(model, clip, vae)


def _pixel(path: Path, tensors, meta, target: _Target) -> LoadedCheckpoint:
    from diffusers import UNet2DConditionModel

    unet = _build(lambda c: UNet2DConditionModel(**c), meta, "unet", tensors, path, "U-Net",
                  target)
    clip = _text_encoder(path, tensors, meta, target)
    schedule = make_schedule(meta["schedule"]["name"], meta["schedule"]["timesteps"])
    learned = bool(meta.get("learned_variance"))
    denoiser = DiscreteTimeDenoiser(ConditionedUNet(unet, clip), schedule, meta["prediction"],
                                    learned_variance=learned,
                                    clip_sample=meta.get("clip_sample", True))
    model = DiffusionModel(
        name=meta["name"], denoiser=denoiser, parameterization="ve",
        latent_channels=unet.config.in_channels, downscale=1, schedule=schedule,
        description=f"{meta['name']}: pixel-space DDPM, ε-prediction"
                    + (", learned variance" if learned else ""),
        batched_cfg=True,
    )
    return _with_decoder(model, clip, PixelCodec())


def _palette(path: Path, tensors, meta, target: _Target) -> LoadedCheckpoint:
    """An image-to-image model (Palette, or a cascade's super-resolution
    stage): a text-free U-Net that reads a source image stacked onto x_t;
    its CLIP output is None."""
    from diffusers import UNet2DModel

    from core.models.concat import ConcatUNet

    unet = _build(lambda c: UNet2DModel(**c), meta, "unet", tensors, path, "U-Net", target)
    condition = meta["condition"]
    augmentation = condition.get("augmentation")
    schedule = make_schedule(meta["schedule"]["name"], meta["schedule"]["timesteps"])
    network = ConcatUNet(unet, int(condition["channels"]), meta["name"],
                         None if augmentation is None else float(augmentation["max"]), schedule)
    denoiser = DiscreteTimeDenoiser(network, schedule, meta["prediction"],
                                    clip_sample=meta.get("clip_sample", True))
    what = ("super-resolution (cascade), draws over an upsampled low-resolution picture"
            if meta["kind"] == "super_resolution" else
            f"image-to-image (Palette), draws from a {condition['kind']} source image")
    model = DiffusionModel(
        name=meta["name"], denoiser=denoiser, parameterization="ve",
        latent_channels=unet.config.out_channels, downscale=1, schedule=schedule,
        description=f"{meta['name']}: pixel-space {what}", batched_cfg=True,
    )
    return _with_decoder(model, None, PixelCodec())


def _unclip_decoder(path: Path, tensors, meta, target: _Target) -> LoadedCheckpoint:
    """unCLIP's decoder (DALL·E 2 §2.1): draws from a CLIP image embedding on
    the conditioning, not from text; its CLIP output is None."""
    from diffusers import UNet2DConditionModel

    from core.models.unclip import EmbeddingUNet

    unet = _build(lambda c: UNet2DConditionModel(**c), meta, "unet", tensors, path, "U-Net",
                  target)
    schedule = make_schedule(meta["schedule"]["name"], meta["schedule"]["timesteps"])
    denoiser = DiscreteTimeDenoiser(EmbeddingUNet(unet, int(meta["embed_dim"])), schedule,
                                    meta["prediction"], clip_sample=meta.get("clip_sample", True))
    model = DiffusionModel(
        name=meta["name"], denoiser=denoiser, parameterization="ve",
        latent_channels=unet.config.out_channels, downscale=1, schedule=schedule,
        description=f"{meta['name']}: unCLIP decoder, draws from a {meta['clip']} image "
                    "embedding", batched_cfg=True,
    )
    return _with_decoder(model, None, PixelCodec())


def _flow(path: Path, tensors, meta, target: _Target) -> LoadedCheckpoint:
    from diffusers import SD3Transformer2DModel

    from core.diffusion.denoisers import FlowDenoiser

    transformer = _build(lambda c: SD3Transformer2DModel(**c), meta, "transformer", tensors,
                         path, "transformer", target)
    clip = _text_encoder(path, tensors, meta, target)
    vae, preview = _vae_beside(path, meta, target)
    denoiser = FlowDenoiser(ConditionedTransformer(transformer, clip), meta["timestep_scale"])
    model = DiffusionModel(
        name=meta["name"], denoiser=denoiser, parameterization="flow",
        latent_channels=transformer.config.in_channels, downscale=vae.downscale,
        description=f"{meta['name']}: flow matching, diffusion transformer", latent_rgb=preview,
        batched_cfg=True, latent_sizes=patch_transformer_sizes(
            transformer.config.patch_size, transformer.config.pos_embed_max_size),
    )
    return _with_decoder(model, clip, vae)


def _sana(path: Path, tensors, meta, target: _Target) -> LoadedCheckpoint:
    """Sana (Xie et al. 2024): a linear-attention DiT over a deep-compression
    autoencoder's latents, reading a frozen decoder-only LM's last layer."""
    from diffusers import SanaTransformer2DModel

    from core.diffusion.denoisers import FlowDenoiser
    from core.models.conditioned import ConditionedSana

    transformer = _build(lambda c: SanaTransformer2DModel(**c), meta, "transformer", tensors,
                         path, "transformer", target)
    clip = _text_encoder(path, tensors, meta, target)
    vae, preview = _vae_beside(path, meta, target)
    denoiser = FlowDenoiser(ConditionedSana(transformer, clip), meta["timestep_scale"])
    model = DiffusionModel(
        name=meta["name"], denoiser=denoiser, parameterization="flow",
        latent_channels=transformer.config.in_channels, downscale=vae.downscale,
        description=f"{meta['name']}: flow matching, linear-attention DiT (Sana) on a "
                    f"deep-compression autoencoder's latents", latent_rgb=preview,
        batched_cfg=True,
    )
    return _with_decoder(model, clip, vae)


#: What a video transformer may be asked for: latent sides up to 4× its
#: training size's (sine-cosine positions extrapolate, within reason), and at
#: most this many tokens (frames × patches), since full 3-D attention costs
#: the square of that: 4,096 is 16 frames at 128 px or 64 frames at 64 px.
VIDEO_LARGEST_LATENT = 64
VIDEO_MAX_TOKENS = 4096


def _video(path: Path, tensors, meta, target: _Target) -> LoadedCheckpoint:
    """A text-to-video model (CogVideoX-style transformer) over the image
    VAE's latents, frame by frame: latents (B, T, C, h, w)."""
    from diffusers import CogVideoXTransformer3DModel

    from core.diffusion.denoisers import FlowDenoiser
    from core.models.conditioned import ConditionedVideo

    transformer = _build(lambda c: CogVideoXTransformer3DModel(**c), meta, "transformer",
                         tensors, path, "transformer", target)
    clip = _text_encoder(path, tensors, meta, target)
    vae, preview = _vae_beside(path, meta, target)
    frames, patch = int(meta["frames"]), int(transformer.config.patch_size)
    denoiser = FlowDenoiser(ConditionedVideo(transformer, clip), meta["timestep_scale"])
    model = DiffusionModel(
        name=meta["name"], denoiser=denoiser, parameterization="flow",
        latent_channels=transformer.config.in_channels, downscale=vae.downscale,
        description=f"{meta['name']}: text-to-video, flow matching, a CogVideoX-style "
                    f"transformer over {frames} frames", latent_rgb=preview,
        batched_cfg=True, frames=frames,
        latent_sizes=LatentSizes(multiple=patch, largest=VIDEO_LARGEST_LATENT,
                                 max_tokens=VIDEO_MAX_TOKENS),
    )
    return _with_decoder(model, clip, vae)


def _vae_beside(path: Path, meta, target: _Target) -> tuple[VAEHandle, LatentRGB | None]:
    """A latent model's VAE: the file its metadata names, in the model's own
    folder (so a trained set of files travels together), and its preview map."""
    return load_vae_handle(path.parent / f"{meta['vae']}.safetensors", target.device,
                           target.dtype)


@checkpoint_boundary("VAE file", "vae_path")
def load_vae_handle(vae_path: Path, device: Any = "cpu",
                    dtype: torch.dtype = torch.float32) -> tuple[VAEHandle, LatentRGB | None]:
    """A workbench VAE file (a KL autoencoder or a DC-AE) as a VAE value, and
    its latent preview map."""
    if Path(vae_path).is_file() and _vae_class(vae_path) == "AutoencoderDC":
        from core.models.dcae import load_dcae

        return load_dcae(vae_path, device, dtype)
    vae, scaling, preview = load_vae(vae_path, device, with_preview=True, dtype=dtype)
    downscale = 2 ** (len(vae.config.block_out_channels) - 1)
    return VAEHandle(vae, scaling, vae.config.latent_channels, downscale, vae_path), preview


def _vae_class(path: Path) -> str | None:
    """The class the file's ``vae`` component names, from its header alone."""
    from core.checkpoints.header import read_header

    components = (read_header(path).workbench or {}).get("components")
    vae = components.get("vae") if isinstance(components, dict) else None
    return vae.get("class") if isinstance(vae, dict) else None


def _with_decoder(model: DiffusionModel, clip: TextEncoder | None, vae) -> LoadedCheckpoint:
    """The checkpoint, its model knowing its own decoder (for exact step previews)."""
    import dataclasses

    return LoadedCheckpoint(dataclasses.replace(model, decoder=vae), clip, vae)


@checkpoint_boundary("ControlNet file", "name_or_path", locate=model_file)
def load_controlnet(name_or_path: str, device: Any = "cpu", dtype: torch.dtype = torch.float32):
    """A shapes-controlnet file as diffusers' ``ControlNetModel`` in ``dtype``."""
    from diffusers import ControlNetModel

    path = model_file(name_or_path)
    tensors, meta = _expect(path, "controlnet")
    return _build(lambda c: ControlNetModel(**c), meta, "controlnet", tensors, path, "ControlNet",
                  _Target(device, dtype))


@checkpoint_boundary("classifier file", "name_or_path", locate=model_file)
def load_classifier(name_or_path: str, device: Any = "cpu"):
    """A shapes-classifier file: the network, its labels and its schedule (fp32:
    guidance differentiates it)."""
    from core.models.classifier import make_classifier

    path = model_file(name_or_path)
    tensors, meta = _expect(path, "classifier")
    network = _build(make_classifier, meta, "classifier", tensors, path, "classifier",
                     _Target(device, torch.float32))
    schedule = make_schedule(meta["schedule"]["name"], meta["schedule"]["timesteps"])
    return network, meta["labels"], schedule


class NoisyClipHandle(NamedTuple):
    """What a NOISY_CLIP link carries: the network, its tokenizer, its schedule."""

    network: Any
    tokenizer: WordTokenizer
    schedule: Any


@checkpoint_boundary("CLIP file", "name_or_path", locate=model_file)
def load_noisy_clip(name_or_path: str, device: Any = "cpu"):
    """A shapes-clip file: the noise-aware CLIP, its tokenizer and its schedule
    (fp32: guidance differentiates it)."""
    from core.models.noisy_clip import make_noisy_clip

    path = model_file(name_or_path)
    tensors, meta = _expect(path, "clip")
    network = _build(make_noisy_clip, meta, "clip", tensors, path, "CLIP",
                     _Target(device, torch.float32))
    clip = meta["components"]["clip"]
    schedule = make_schedule(meta["schedule"]["name"], meta["schedule"]["timesteps"])
    return NoisyClipHandle(network, WordTokenizer(clip["vocabulary"], clip["max_length"]),
                           schedule)


@checkpoint_boundary("prior file", "name_or_path", locate=model_file)
def load_prior(name_or_path: str, device: Any = "cpu") -> DiffusionModel:
    """unCLIP's prior (DALL·E 2 §2.2) as a diffusion model over (B, D, 1, 1)
    embeddings that predicts z_0; the caption rides on the conditioning."""
    from core.models.shapes import make_prior
    from core.models.unclip import PriorNetwork

    path = model_file(name_or_path)
    tensors, meta = _expect(path, "prior")
    prior = _build(make_prior, meta, "prior", tensors, path, "prior",
                   _Target(device, torch.float32))
    schedule = make_schedule(meta["schedule"]["name"], meta["schedule"]["timesteps"])
    return DiffusionModel(
        name=meta["name"], denoiser=DiscreteTimeDenoiser(PriorNetwork(prior), schedule, "sample"),
        parameterization="ve", latent_channels=int(meta["embed_dim"]), schedule=schedule,
        description=f"{meta['name']}: unCLIP prior, caption → {meta['clip']} image embedding",
        batched_cfg=True,
    )


def _expect(path: Path, kind: str):
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path}: not a {kind} file (it is a {meta.get('kind')!r} file)")
    return tensors, meta


def text_encoder_from(path: Path, tensors, meta, device: Any = "cpu",
                      dtype: torch.dtype = torch.float32) -> TextEncoder:
    """The ``text_encoder`` component of a model file (``load_checkpoint``'s
    tensors and metadata) as a text encoder, frozen."""
    return _text_encoder(path, tensors, meta, _Target(device, dtype))


def _text_encoder(path: Path, tensors, meta, target: _Target) -> TextEncoder:
    """The file's text encoder: the shapes CLIP text model, a frozen T5
    encoder (a cascade's base, Imagen §2.1) or a frozen decoder-only
    language model (Sana §2.3)."""
    text = meta["components"]["text_encoder"]
    if text.get("class") == "Gemma2Model":
        from core.models.shapes_gemma import (
            DecoderTextEncoder,
            DecoderWordTokenizer,
            make_gemma_encoder,
        )

        body = _build(make_gemma_encoder, meta, "text_encoder", tensors, path, "language model",
                      target)
        return DecoderTextEncoder(DecoderWordTokenizer(text["vocabulary"], text["max_length"]),
                                  body)
    if text.get("class") == "T5EncoderModel":
        from core.models.shapes_t5 import T5TextEncoder, T5WordTokenizer, make_t5_encoder

        encoder = _build(make_t5_encoder, meta, "text_encoder", tensors, path, "T5 encoder",
                         target)
        return T5TextEncoder(T5WordTokenizer(text["vocabulary"], text["max_length"]), encoder)
    encoder = _build(make_text_encoder, meta, "text_encoder", tensors, path, "text encoder", target)
    return TextEncoder(WordTokenizer(text["vocabulary"], text["max_length"]), encoder)


def _build(make, meta, name: str, tensors, path: Path, what: str, target: _Target):
    """The ``name`` component: built by ``make`` from its config in the
    metadata, holding the file's ``name.…`` tensors, checked."""
    from core.models.families.weights import build_from_config

    config = meta["components"][name]["config"]
    return build_from_config(make, config, component(tensors, name), path, what, target.device,
                             target.dtype).eval().requires_grad_(False)

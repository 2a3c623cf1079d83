"""Which latent sizes a model can sample, and the check where model meets latent.

Most backbones take any size (a U-Net pads its way down and up), but some
cannot: a diffusion transformer has a learned table of patch positions
(SD3's ``pos_embed_max_size``) and cuts its input into patches, and the ideal
denoiser compares the latent with its own images pixel for pixel. Without a
check those surface deep inside a library as "mat1 and mat2 shapes cannot be
multiplied" or "Height (24) cannot be greater than `pos_embed_max_size`".

A :class:`LatentSizes` travels on the MODEL value (``DiffusionModel.latent_sizes``),
so the Empty latent node and the sampler refuse a latent before any network
runs, with a message that names the size, the sizes allowed, and the fields
to change — in image pixels, which is what a person sets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


class LatentSizeError(ValueError):
    """A latent the model cannot sample (the message says which sizes it can)."""


@dataclass(frozen=True)
class LatentSizes:
    """The latent heights and widths (in latent pixels) a model can sample.

    ``multiple``: each side a multiple of this (a transformer's patch size);
    ``largest``: each side at most this (a learned position table's side
    times the patch size); ``exactly``: the one (height, width) allowed (a
    closed-form denoiser's images); ``max_tokens``: a video transformer's
    bound on frames × patches, since its full 3-D attention grows with the
    square of that count. The default allows every size.
    """

    multiple: int = 1
    largest: int | None = None
    exactly: tuple[int, int] | None = None
    max_tokens: int | None = None

    def tokens(self, frames: int, height: int, width: int) -> int:
        """How many patches a clip of ``frames`` latents of this size makes."""
        return frames * (height // self.multiple) * (width // self.multiple)

    def allows(self, height: int, width: int) -> bool:
        if self.exactly is not None:
            return (height, width) == tuple(self.exactly)
        sides = (height, width)
        fits = self.largest is None or max(sides) <= self.largest
        return fits and all(side % self.multiple == 0 for side in sides)

    def describe(self, downscale: int = 1) -> str:
        """The allowed sizes in image pixels (and latent pixels when they differ)."""
        if self.exactly is not None:
            height, width = self.exactly
            return f"exactly {_size(height, width, downscale)}"
        parts = []
        if self.largest is not None:
            parts.append(f"at most {_size(self.largest, self.largest, downscale)}")
        if self.multiple > 1:
            step = self.multiple * downscale
            parts.append(f"sides in multiples of {step} px")
        return ", ".join(parts) or "any size"


def _size(height: int, width: int, downscale: int) -> str:
    """Width × height in image pixels, as a person sets them (and the latent's)."""
    image = f"{width * downscale}×{height * downscale} px"
    return image if downscale == 1 else f"{image} (latents of {width}×{height})"


def check_latent(model, shape: Sequence[int], where: str) -> None:
    """Raise :class:`LatentSizeError` unless ``model`` (a ``DiffusionModel``) can
    sample a latent of ``shape`` (B, C, h, w). ``where`` says what to change
    (e.g. "the Empty latent's width and height"). A video model takes
    (B, T, C, h, w) latents and an image model (B, C, h, w) ones."""
    video = bool(getattr(model, "frames", 0))
    if video and len(shape) != 5:
        raise LatentSizeError(
            f"{model.name!r} is a video model: it samples (batch, frames, channels, height, "
            f"width) latents, not {tuple(shape)}: start from an 'Empty video latent' node")
    if not video and len(shape) == 5:
        raise LatentSizeError(
            f"{model.name!r} samples pictures, but this latent holds {shape[1]} frames: "
            "'Empty video latent' is for video models; use 'Empty latent'")
    channels, height, width = (int(side) for side in shape[-3:])
    if channels != model.latent_channels:
        raise LatentSizeError(
            f"{model.name!r} samples {model.latent_channels}-channel latents, but this one has "
            f"{channels} channels: link the model into the Empty latent node (it then takes "
            "the model's channels), or encode the image with this model's VAE")
    sizes, downscale = model.latent_sizes, model.downscale
    if video and sizes.max_tokens is not None and sizes.allows(height, width):
        tokens = sizes.tokens(int(shape[1]), height, width)
        if tokens > sizes.max_tokens:
            raise LatentSizeError(
                f"{model.name!r} attends over every frame at once: {shape[1]} frames of "
                f"{_size(height, width, downscale)} make {tokens} tokens, more than the "
                f"{sizes.max_tokens} it allows: use fewer frames or a smaller size in {where}")
    if sizes.allows(height, width):
        return
    raise LatentSizeError(
        f"{model.name!r} samples images of {sizes.describe(downscale)}, but this latent is "
        f"{_size(height, width, downscale)} (width × height): change {where} to fit")


def patch_transformer_sizes(patch_size: int, pos_embed_max_size: int | None) -> LatentSizes:
    """The sizes of an SD3-style diffusion transformer (diffusers'
    ``SD3Transformer2DModel``): whole ``patch_size`` patches, at most
    ``pos_embed_max_size`` of them a side (its learned position table)."""
    largest = None if pos_embed_max_size is None else pos_embed_max_size * patch_size
    return LatentSizes(multiple=patch_size, largest=largest)

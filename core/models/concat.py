"""Image-conditioned backbones: the source image concatenated to x_t.

Palette (Saharia et al. 2022, §3) and the super-resolution stages of
cascaded models (SR3, Saharia et al. 2021; Ho et al. 2022, §2) condition a
U-Net on an image by stacking it onto the noisy sample along the channels.
The image rides on the conditioning (``extras["concat"]``, set by the
"Image condition (concat)" node) as a :class:`ConcatImage`; this wrapper
turns it into the channels the network was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.models.conditioned import for_each_part, inference, module_dtype, _timesteps

#: ITU-R BT.601 luma weights: what "grayscale" means for a one-channel source.
LUMA = (0.299, 0.587, 0.114)
CONCAT_KEY = "concat"


@dataclass(frozen=True)
class ConcatImage:
    """A source image (B or 1, C, H, W) in [0, 1] to stack onto x_t, and the
    noise conditioning augmentation a super-resolution model reads it with
    (``cascade.py``): the level in [0, 1] and the seed of its noise."""

    image: torch.Tensor
    augmentation: float = 0.0
    seed: int = 0


def luminance(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) → (B, 1, H, W), in the images' own range."""
    weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device)
    return torch.einsum("bchw,c->bhw", images[:, :3], weights).unsqueeze(1)


def source_channels(image: torch.Tensor, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """The source as the network reads it: ``channels`` channels (1 =
    luminance, 3 = RGB) in [−1, 1], resized to x_t's ``size`` (bicubic, as SR3
    upsamples its low-resolution input)."""
    if image.shape[1] not in (1, 3, 4):
        raise ValueError(f"the source image has {image.shape[1]} channels; give a gray, RGB "
                         "or RGBA image")
    if channels == 1:
        picture = image[:, :1] if image.shape[1] == 1 else luminance(image)
    elif channels == 3:
        picture = image[:, :1].expand(-1, 3, -1, -1) if image.shape[1] == 1 else image[:, :3]
    else:
        raise ValueError(f"a {channels}-channel image condition is not supported (1 or 3)")
    if tuple(picture.shape[-2:]) != tuple(size):
        picture = F.interpolate(picture, size=size, mode="bicubic", align_corners=False,
                                antialias=picture.shape[-1] > size[-1]).clamp(0, 1)
    return picture * 2 - 1  # (B|1, channels, h, w)


class ConcatUNet:
    """diffusers' ``UNet2DModel`` taking ``cat([x_t, source])``: no text.

    ``source_channels`` is how many input channels the source fills (the
    rest are x_t's). Every part of a :class:`~core.values.ConditioningBatch`
    needs its own source; the rows of each part get that part's image."""

    def __init__(self, unet, condition_channels: int, name: str,
                 max_augmentation: float | None = None, schedule=None) -> None:
        self.unet = unet
        self.condition_channels = condition_channels
        self.name = name
        self.max_augmentation = max_augmentation  # None: trained without augmentation
        self.schedule = schedule

    @inference
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond=None):
        parts = for_each_part(cond, x_t)
        concats = [part.extras.get(CONCAT_KEY) for part, _ in parts]
        if all(c is None for c in concats):
            raise ValueError(f"{self.name} draws from a source image: connect an 'Image "
                             "condition (concat)' node to the sampler's positive input")
        if any(c is None for c in concats):  # classifier-free guidance's negative part
            raise ValueError(f"{self.name} has no unconditional model (it always sees a source "
                             "image): set the sampler's guidance to 1")
        sources, levels = zip(*(self._source(c, x_t[rows]) for c, (_, rows) in zip(concats, parts)))
        source = torch.cat(sources)  # (B, c, H, W)
        dtype = module_dtype(self.unet)
        inputs = torch.cat([x_t, source.to(x_t.device, x_t.dtype)], dim=1).to(dtype)  # Palette §3
        extra = {} if self.max_augmentation is None else \
            {"class_labels": torch.cat(levels).to(x_t.device)}  # s beside t (CDM §4.1)
        return self.unet(inputs, _timesteps(t, x_t, dtype), **extra).sample.to(x_t.dtype)

    def _source(self, concat: ConcatImage, x_rows: torch.Tensor):
        """The rows' source channels, augmented, and their augmentation timesteps."""
        image = source_channels(concat.image, self.condition_channels, tuple(x_rows.shape[-2:]))
        if len(image) not in (1, len(x_rows)):
            raise ValueError(f"{len(image)} source images for a batch of {len(x_rows)}: "
                             "give one, or one per image")
        image = image.expand(len(x_rows), -1, -1, -1)
        level = self._checked_level(concat.augmentation)
        if self.max_augmentation is None:
            return image, None
        from core.models.cascade import augment, augmentation_timesteps

        s = augmentation_timesteps(level, self.schedule.num_timesteps).expand(len(x_rows))
        generator = torch.Generator().manual_seed(int(concat.seed))  # the same at every step
        noise = torch.randn(image.shape, generator=generator, dtype=torch.float32)
        return augment(image.float(), s, self.schedule, noise).to(image.dtype), s

    def _checked_level(self, level: float) -> float:
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"the noise augmentation level is a fraction of the schedule "
                             f"(0 to 1), not {level:g}")
        if self.max_augmentation is None and level > 0:
            raise ValueError(f"{self.name} was not trained with noise augmentation: set the "
                             "image condition's augmentation to 0")
        if self.max_augmentation is not None and level > self.max_augmentation:
            raise ValueError(f"{self.name} was trained with noise augmentation up to "
                             f"{self.max_augmentation:g}; {level:g} is beyond what it knows")
        return level

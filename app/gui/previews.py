"""Tensors to QImages, done in the worker thread (never on the GUI thread).

QImage is safe to build off the GUI thread; ``.copy()`` detaches it from the
numpy buffer that would otherwise be freed under it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui

from core.video import as_strips

#: Long side of a step preview: small enough to send every step.
PREVIEW_SIZE = 128
_KEEP_ASPECT = QtCore.Qt.AspectRatioMode.KeepAspectRatio


@dataclass(frozen=True)
class StepPreview:
    """One denoising step as the GUI sees it (issue 6 draws these)."""

    run_id: str
    node_id: str
    index: int
    total: int
    t: float | None
    x0: QtGui.QImage | None   # the first batch item (kept for simple consumers)
    x_t: QtGui.QImage | None
    # Issue 6's richer payload: every batch item, the step's numbers, and the
    # tensors that on-demand decoding, export and branching need (CPU, never mutated).
    timestep: float | None = None
    parameterization: str = ""
    snr: float | None = None
    alpha_bar: float | None = None
    x_t_images: tuple[QtGui.QImage, ...] = ()
    x0_images: tuple[QtGui.QImage, ...] = ()
    eps_images: tuple[QtGui.QImage, ...] = ()
    tensors: tuple[Any, Any, Any] | None = None  # x_t, x̂_0, ε̂ (B, C, h, w) or (B, T, C, h, w)
    state: Any = None  # the sampler's exact x at this step, for branching
    decoder: Any = None  # the model's VAE handle: .decode(latents) → pixels in [0, 1]
    latent_rgb: Any = None
    nbytes: int = 0  # memory this preview holds (images and tensors), for the history bound
    frames: int = 0  # a video model's step: each image is a filmstrip of this many frames

    @property
    def level(self) -> float | None:
        """The noise level: σ for diffusion models, t for flow models."""
        return self.t


def image_to_qimage(image: Any) -> QtGui.QImage:
    """One (C, H, W) image in [0, 1] (C = 1, 3 or 4) as an 8-bit QImage."""
    array = image.detach().float().clamp(0, 1).mul(255).round().to("cpu").numpy().astype(np.uint8)
    channels, height, width = array.shape
    if channels == 1:
        pixels = np.ascontiguousarray(array[0])
        fmt = QtGui.QImage.Format.Format_Grayscale8
    elif channels == 3:
        pixels = np.ascontiguousarray(array.transpose(1, 2, 0))
        fmt = QtGui.QImage.Format.Format_RGB888
    else:
        pixels = np.ascontiguousarray(array[:4].transpose(1, 2, 0))
        fmt = QtGui.QImage.Format.Format_RGBA8888
    return QtGui.QImage(pixels.data, width, height, pixels.strides[0], fmt).copy()


@dataclass(frozen=True)
class Playback:
    """What turns a shown filmstrip back into a clip: its frame count and rate."""

    frames: int
    fps: float


def frame_of(strip: QtGui.QImage, frame: int, frames: int) -> QtGui.QImage:
    """Frame ``frame`` (0-based) of a filmstrip of ``frames`` equal frames."""
    width = strip.width() // frames
    return strip.copy(frame * width, 0, width, strip.height())


def batch_to_qimages(images: Any) -> list[QtGui.QImage]:
    """An IMAGE batch (B, C, H, W) as one QImage per item."""
    return [image_to_qimage(item) for item in images]


def signal_to_noise(parameterization: str, level: float | None) -> tuple[float | None, float | None]:
    """SNR and ᾱ of a noise level. VE: x = x_0 + σ ε, so SNR = 1/σ² and
    ᾱ = 1/(1 + σ²) (the schedule's own ᾱ_t at a table σ). Flow:
    x = (1 − t) x_0 + t ε, so SNR = ((1 − t)/t)²; ᾱ = SNR/(1 + SNR) for both."""
    if level is None:
        return None, None
    level = float(level)
    if parameterization == "flow":
        snr = math.inf if level <= 0 else ((1 - level) / level) ** 2
    else:
        snr = math.inf if level <= 0 else 1 / level**2
    alpha_bar = 1.0 if math.isinf(snr) else snr / (1 + snr)
    return snr, alpha_bar


def noise_rgb(eps: Any) -> Any:
    """ε̂ as pixels: its first three channels, ±2.5 standard deviations to [0, 1]."""
    x = eps.float()[:, :3] if eps.shape[1] >= 3 else eps.float()[:, :1].expand(-1, 3, -1, -1)
    return (x / 5 + 0.5).clamp(0, 1)


def preview_images(pixels: Any, frames: int = 0) -> tuple[QtGui.QImage, ...]:
    """(B, C, H, W) pixels in [0, 1] as one QImage per item, at most PREVIEW_SIZE
    a side (filmstrips of ``frames`` frames: each frame at most that)."""
    images = []
    width = PREVIEW_SIZE * max(1, frames)
    for image in batch_to_qimages(pixels):
        if image.width() > width or image.height() > PREVIEW_SIZE:
            image = image.scaled(width, PREVIEW_SIZE, aspectMode=_KEEP_ASPECT)
        images.append(image)
    return tuple(images)


def _tensor_bytes(*tensors: Any) -> int:
    return sum(t.nelement() * t.element_size() for t in tensors if t is not None)


def fast_pixels(x_t: Any, x0: Any, mapping: Any, tiny: Any = None) -> tuple[Any, Any]:
    """x_t and x̂_0 as preview pixels in [0, 1]: through the model's tiny preview
    decoder (TAESD) when it has one — one batched call per step on this worker
    thread, milliseconds on a GPU — else the linear latent map (or as is, for
    pixel models)."""
    from core.previews import preview_rgb

    if tiny is None:
        return preview_rgb(x_t, mapping), preview_rgb(x0, mapping)
    import torch

    with torch.no_grad():
        pixels = tiny.decode(torch.cat([x_t, x0]))  # (2B, 3, H, W)
    return pixels[:len(x_t)], pixels[len(x_t):]


def _folded(x: Any) -> Any:
    """A video's (B, T, C, h, w) with the frames folded into the batch; pictures as they are."""
    return x.flatten(0, 1) if x.ndim == 5 else x


def step_preview(event: Any) -> StepPreview:
    """Build the GUI's view of a core ``Step`` event (in the worker): every
    batch item's x_t, x̂_0 (see :func:`fast_pixels`) and ε̂ as QImages, and
    the step's numbers."""
    if event.x_t is None or event.x0 is None:  # previews off: numbers only
        return StepPreview(event.run_id, event.node_id, event.index, event.total, event.t,
                           None, None, timestep=event.extra.get("timestep"))
    extra = event.extra
    mapping = extra.get("latent_rgb")
    frames = event.x_t.shape[1] if event.x_t.ndim == 5 else 0  # a video: (B, T, C, h, w)
    x_t_pixels, x0_pixels = fast_pixels(_folded(event.x_t), _folded(event.x0), mapping,
                                        extra.get("preview_decoder"))
    x_t = preview_images(as_strips(x_t_pixels, frames), frames)
    x0 = preview_images(as_strips(x0_pixels, frames), frames)
    eps = (preview_images(as_strips(noise_rgb(_folded(event.eps)), frames), frames)
           if event.eps is not None else ())
    parameterization = extra.get("parameterization", "")
    snr, alpha_bar = signal_to_noise(parameterization, event.t)
    state = extra.get("state")
    nbytes = sum(i.sizeInBytes() for i in x_t + x0 + eps)
    nbytes += _tensor_bytes(event.x_t, event.x0, event.eps, state)
    return StepPreview(event.run_id, event.node_id, event.index, event.total, event.t,
                       x0[0], x_t[0], extra.get("timestep"), parameterization, snr, alpha_bar,
                       x_t, x0, eps, (event.x_t, event.x0, event.eps), state,
                       extra.get("decoder"), mapping, nbytes, frames)

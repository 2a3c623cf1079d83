"""Tensors to QImages, done in the worker thread (never on the GUI thread).

QImage is safe to build off the GUI thread; ``.copy()`` detaches it from the
numpy buffer that would otherwise be freed under it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui

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
    x0: QtGui.QImage | None
    x_t: QtGui.QImage | None


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


def batch_to_qimages(images: Any) -> list[QtGui.QImage]:
    """An IMAGE batch (B, C, H, W) as one QImage per item."""
    return [image_to_qimage(item) for item in images]


def latent_preview(tensor: Any) -> QtGui.QImage | None:
    """A rough look at a step's tensor: 3 channels (or 1) scaled from [−1, 1], shrunk."""
    if tensor is None or getattr(tensor, "ndim", 0) != 4:
        return None
    first = tensor[0].detach().float().to("cpu")  # (C, H, W)
    first = first[:3] if first.shape[0] >= 3 else first[:1]
    image = image_to_qimage((first + 1) / 2)
    if max(image.width(), image.height()) > PREVIEW_SIZE:
        image = image.scaled(PREVIEW_SIZE, PREVIEW_SIZE, aspectMode=_KEEP_ASPECT)
    return image



def step_preview(event: Any) -> StepPreview:
    """Build the GUI's view of a core ``Step`` event (in the worker)."""
    return StepPreview(event.run_id, event.node_id, event.index, event.total, event.t,
                       latent_preview(event.x0), latent_preview(event.x_t))

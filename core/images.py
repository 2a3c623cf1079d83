"""The IMAGE value that flows between nodes, and PNG files that carry workflows.

Convention: an IMAGE is a float32 CPU tensor of shape (B, C, H, W) with C = 1
(gray), 3 (RGB) or 4 (RGBA) and values in [0, 1]. Values outside [0, 1] are
allowed in flight and clamped only when written to a file.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from core.workflow.io import write_bytes_atomic
from core.workflow.png import png_info_with_workflow

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def check_image(image: Any, what: str = "image") -> None:
    """Raise ValueError unless ``image`` follows the IMAGE convention."""
    import torch

    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{what} is not a tensor (got {type(image).__name__})")
    if image.ndim != 4 or image.shape[1] not in _MODES:
        raise ValueError(f"{what} must have shape (B, 1|3|4, H, W), got {tuple(image.shape)}")


def to_pil(image: Any) -> Any:
    """One (C, H, W) image in [0, 1] as a PIL image (clamped, rounded to 8 bits)."""
    from PIL import Image

    pixels = image.detach().float().clamp(0, 1).mul(255).round().byte().cpu()
    array = pixels.permute(1, 2, 0).numpy()  # (H, W, C)
    if array.shape[2] == 1:
        array = array[:, :, 0]  # (H, W)
    return Image.fromarray(array, mode=_MODES[image.shape[0]])


def from_pil(picture: Any) -> Any:
    """A PIL image as a (1, 3, H, W) IMAGE (or (1, 4, H, W) if it has alpha)."""
    import numpy as np
    import torch

    mode = "RGBA" if picture.mode in ("RGBA", "LA", "PA") else "RGB"
    array = np.asarray(picture.convert(mode), dtype=np.float32) / 255.0  # (H, W, C)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)  # (1, C, H, W)


def save_png(image: Any, path: str | os.PathLike, workflow_json: str | None = None) -> Path:
    """Write one (C, H, W) image as PNG, embedding the workflow JSON if given.

    The PNG is encoded in memory and written atomically (like a saved
    workflow), so a failed write never leaves half an image where an older
    one was.
    """
    path = Path(path)
    info = png_info_with_workflow(workflow_json) if workflow_json is not None else None
    encoded = io.BytesIO()
    to_pil(image).save(encoded, format="PNG", pnginfo=info)
    write_bytes_atomic(path, encoded.getvalue())
    return path

"""Model files as safetensors with JSON metadata.

A workbench model file holds tensors under component prefixes (``unet.…``,
``text_encoder.…``) and, in the safetensors header's string metadata, the
key ``diffusion-workbench`` with a JSON object: the model's name, each
component's configuration and the training recipe. Safetensors cannot run
code when read, which is why pickled ``.ckpt``/``.pt`` files are refused.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from core.checkpoints.boundary import CheckpointError, checkpoint_boundary

__all__ = ["CheckpointError", "METADATA_KEY", "PICKLE_SUFFIXES", "component", "load_checkpoint",
           "read_tensors", "save_checkpoint", "update_metadata"]

METADATA_KEY = "diffusion-workbench"
PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl"}


def save_checkpoint(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                    metadata: Mapping[str, Any]) -> Path:
    """Write ``tensors`` and the JSON ``metadata`` atomically: into a temporary
    file beside ``path``, renamed over it only when complete; a failed write
    removes the temporary file and leaves ``path`` as it was."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    text = json.dumps(metadata, sort_keys=True)
    try:
        save_file(contiguous, str(temp), metadata={METADATA_KEY: text})
        os.chmod(temp, 0o644)  # a model file is for everyone to read
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


@checkpoint_boundary("model file")
def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, memory-mapped, in its stored dtype.

    The header is validated first (:func:`core.checkpoints.header.read_header`:
    size, nesting, dtypes, offsets, names), so the safetensors library only
    ever parses a header already known to be sound."""
    _sound_header(path)
    return _load_file(path)


@checkpoint_boundary("model file")
def load_checkpoint(path: str | os.PathLike, device: Any = "cpu"):
    """(tensors, metadata) of a workbench safetensors file, or CheckpointError."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: pickled checkpoints can run arbitrary code when loaded and are refused; "
            "convert it to .safetensors first"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    header = _sound_header(path)
    if header.workbench is None:
        raise CheckpointError(f"{path}: a safetensors file without Diffusion Workbench metadata")
    tensors = _load_file(path)
    if str(device) != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors, dict(header.workbench)


def _sound_header(path: str | os.PathLike):
    """The validated header, or "not a readable safetensors file" and why."""
    from core.checkpoints.header import HeaderError, read_header

    try:
        return read_header(path)
    except HeaderError as error:
        raise CheckpointError(f"{path}: not a readable safetensors file: {error.reason}") from None


def _load_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file "
                              f"({type(error).__name__}: {error})") from None


def component(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix.``, with the prefix removed."""
    start = prefix + "."
    return {k[len(start):]: v for k, v in tensors.items() if k.startswith(start)}


def update_metadata(path: str | os.PathLike, changes: Mapping[str, Any]) -> Path:
    """Rewrite a model file with ``changes`` merged into its metadata (same tensors)."""
    tensors, metadata = load_checkpoint(path)
    return save_checkpoint(path, tensors, {**metadata, **changes})

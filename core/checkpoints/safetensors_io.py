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

METADATA_KEY = "diffusion-workbench"
PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl"}


class CheckpointError(ValueError):
    """A model file that cannot be used; the message names the file and why."""


def save_checkpoint(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                    metadata: Mapping[str, Any]) -> Path:
    """Write ``tensors`` and the JSON ``metadata`` atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(contiguous, str(temp), metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    os.chmod(temp, 0o644)  # a model file is for everyone to read
    os.replace(temp, path)
    return path


def load_checkpoint(path: str | os.PathLike, device: Any = "cpu"):
    """(tensors, metadata) of a workbench safetensors file, or CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: pickled checkpoints can run arbitrary code when loaded and are refused; "
            "convert it to .safetensors first"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    if raw is None:
        raise CheckpointError(f"{path}: a safetensors file without Diffusion Workbench metadata")
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: damaged metadata ({error})") from None
    return tensors, metadata


def component(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix.``, with the prefix removed."""
    start = prefix + "."
    return {k[len(start):]: v for k, v in tensors.items() if k.startswith(start)}


def update_metadata(path: str | os.PathLike, changes: Mapping[str, Any]) -> Path:
    """Rewrite a model file with ``changes`` merged into its metadata (same tensors)."""
    tensors, metadata = load_checkpoint(path)
    return save_checkpoint(path, tensors, {**metadata, **changes})

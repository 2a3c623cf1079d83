"""Pickled checkpoints (``.ckpt``, ``.pt``, ``.pth``, ``.bin``): refused unless
the user allows them, and then read only with ``torch.load(weights_only=True)``.

Unpickling can run any code a file's author chose, so the workbench reads
safetensors by default and says why a pickle is refused. A user who trusts
a file allows pickles for the process (``--allow-pickle`` on the command
line, or ``DIFFUSION_WORKBENCH_ALLOW_PICKLE=1``); even then PyTorch's
restricted unpickler only rebuilds tensors and plain containers, and a file
that needs anything else is refused with PyTorch's reason.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from core.checkpoints.boundary import checkpoint_boundary
from core.checkpoints.safetensors_io import PICKLE_SUFFIXES, CheckpointError

ENV_VAR = "DIFFUSION_WORKBENCH_ALLOW_PICKLE"
_allowed: bool | None = None
NESTED_KEYS = ("state_dict", "model", "module")  # where training scripts put the weights


def allow_pickles(allowed: bool | None) -> None:
    """Allow (True), refuse (False) or follow the environment variable (None)."""
    global _allowed
    _allowed = allowed


def pickles_allowed() -> bool:
    if _allowed is not None:
        return _allowed
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes")


def is_pickle_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in PICKLE_SUFFIXES


def refusal(path: str | os.PathLike) -> str:
    return (f"{path}: a pickled checkpoint — loading it can run arbitrary code, so it is refused. "
            "Convert it to .safetensors, or if you trust the file, allow pickles "
            f"(--allow-pickle, or {ENV_VAR}=1): they are then read with "
            "torch.load(weights_only=True), which rebuilds tensors only")


@checkpoint_boundary("pickle")
def load_pickled_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of an allowed pickle, flattened from ``state_dict``-style nesting."""
    path = Path(path).expanduser()
    if not pickles_allowed():
        raise CheckpointError(refusal(path))
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # the restricted unpickler's refusals and damaged files
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True): "
                              f"{type(error).__name__}: {error}") from None
    tensors = _tensors_of(loaded)
    if not tensors:
        raise CheckpointError(f"{path}: the pickle holds no tensors")
    return tensors


def _tensors_of(loaded: Any) -> dict[str, torch.Tensor]:
    if not isinstance(loaded, Mapping):
        return {}
    for key in NESTED_KEYS:
        inner = loaded.get(key)
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            return {str(k): v for k, v in inner.items() if isinstance(v, torch.Tensor)}
    return {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}

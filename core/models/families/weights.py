"""Putting a file's tensors into a freshly built network without copying them.

Real checkpoints are gigabytes: the module is built with its parameters on
the meta device (no memory, no random init), then each tensor of the file —
memory-mapped, in the file's own dtype — becomes the parameter itself
(``load_state_dict(assign=True)``). A tensor is cast only when the requested
dtype differs, one at a time, so the whole state dict is never upcast in RAM.

Every failure names the file and the key: a missing tensor (which would
otherwise stay on the meta device and fail later with "Cannot copy out of
meta tensor"), a tensor of the wrong shape, an unreadable file.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch

from core.checkpoints import CheckpointError
from core.checkpoints.safetensors_io import PICKLE_SUFFIXES

log = logging.getLogger(__name__)
SHOWN_KEYS = 8  # how many missing keys an error message lists


def offline() -> None:
    """No hub look-ups, ever: every config and tokenizer is local."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def open_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, memory-mapped in its stored dtype (a
    pickle only when the user allowed pickles: ``core.checkpoints.pickles``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from core.checkpoints.pickles import load_pickled_tensors

    path = Path(path).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return load_pickled_tensors(path)  # refused with the reason unless allowed
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None


def under_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose key starts with ``prefix``, the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def first_prefix(tensors: Mapping[str, torch.Tensor], prefixes: Iterable[str],
                 marker: str) -> str | None:
    """The first of ``prefixes`` under which ``marker`` (a key suffix) exists."""
    return next((p for p in prefixes if p + marker in tensors), None)


@contextmanager
def empty_parameters():
    """Build modules with parameters on the meta device; buffers stay real
    (position ids and the like are computed, not stored in files)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        yield


def assign_weights(module: torch.nn.Module, weights: Mapping[str, torch.Tensor], path, what: str,
                   dtype: torch.dtype, keep_fp32: Callable[[str], bool] = lambda name: False,
                   optional: Iterable[str] = ()) -> torch.nn.Module:
    """Make ``weights`` the parameters of ``module`` (built by :func:`empty_parameters`).

    ``keep_fp32(name)`` keeps some tensors in float32 under fp16 (T5's ``wo``
    overflows in fp16, as transformers knows). Keys in ``optional`` may be
    absent (filled by the caller, e.g. tied embeddings). Raises
    :class:`CheckpointError` naming the file and the keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in weights and k not in set(optional)]
    if missing:
        raise CheckpointError(f"{path}: the {what} lacks {len(missing)} tensor(s): "
                              f"{', '.join(missing[:SHOWN_KEYS])}"
                              + (" …" if len(missing) > SHOWN_KEYS else ""))
    ready = {}
    for key, tensor in weights.items():
        if key not in expected:
            continue
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{path}: {what} tensor {key} has shape {tuple(tensor.shape)}, "
                                  f"expected {tuple(expected[key].shape)}")
        wanted = _wanted_dtype(expected[key], dtype, keep_fp32(key))
        ready[key] = tensor if tensor.dtype == wanted else tensor.to(wanted)
    unused = sorted(set(weights) - set(expected))
    if unused:
        log.debug("%s: %d %s tensor(s) not used: %s", path, len(unused), what, unused[:SHOWN_KEYS])
    module.load_state_dict(ready, strict=False, assign=True)
    return module


def _wanted_dtype(template: torch.Tensor, dtype: torch.dtype, fp32: bool) -> torch.dtype:
    if not template.is_floating_point():
        return template.dtype
    return torch.float32 if fp32 and dtype == torch.float16 else dtype


def finish(module: torch.nn.Module, path, what: str, device) -> torch.nn.Module:
    """Refuse a module with parameters left on the meta device; move it to
    ``device`` in inference mode."""
    left = [n for n, p in [*module.named_parameters(), *module.named_buffers()] if p.is_meta]
    if left:
        raise CheckpointError(f"{path}: the {what} lacks {len(left)} tensor(s): "
                              f"{', '.join(left[:SHOWN_KEYS])}" + (" …" if len(left) > SHOWN_KEYS else ""))
    return module.to(device).eval().requires_grad_(False)


@contextmanager
def loading_errors(path, what: str):
    """Turn a converter's raw KeyError/RuntimeError/… into a
    :class:`CheckpointError` naming the file and what was being read."""
    try:
        yield
    except CheckpointError:
        raise
    except (KeyError, RuntimeError, TypeError, ValueError, IndexError, AttributeError) as error:
        detail = f"missing tensor {error}" if isinstance(error, KeyError) else str(error)
        raise CheckpointError(f"{path}: cannot read the {what} "
                              f"({type(error).__name__}: {detail})") from error

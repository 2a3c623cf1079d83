"""Putting a file's tensors into a freshly built network without copying them.

Real checkpoints are gigabytes: the module is built with its parameters on
the meta device (no memory, no random init), then each tensor of the file —
memory-mapped, in the file's own dtype — becomes the parameter itself
(``load_state_dict(assign=True)``). A tensor is cast only when the requested
dtype differs, one at a time, so the whole state dict is never upcast in RAM.

Every failure names the file and the key: a missing tensor (which would
otherwise stay on the meta device and fail later with "Cannot copy out of
meta tensor"), a tensor of the wrong shape, an integer or bool tensor where
the network has a float parameter (a cast would turn it into nonsense
weights without a word), NaN or infinite weights, an unreadable file.

NaN/inf are looked for in every weight of a file up to
:data:`FINITE_CHECK_MAX_BYTES` (512 MiB: the built-in models, TAESD, VAEs,
CLIP-L; at most ~0.3 s, one ``aminmax`` pass at ~1e9 values/s on one CPU
thread), not in bigger ones: their tensors are memory-mapped views the load
never reads, and reading them all costs several times the load. Measured
on 2 shared cores with bench/load.py's 2.1 GB fp16 SD 1.5 file: the load
takes 0.76 s (median of 3; diffusers 0.85 s), a full check of its 1,066 M
weights 1.4 s (1 thread) to 9 s (2 threads on busy cores); loaded as fp32
(every tensor upcast, 11-14 s) a check of the copies adds 1.6-1.9 s (+15 %).
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from core.checkpoints.boundary import CheckpointError, file_faults
from core.checkpoints.safetensors_io import PICKLE_SUFFIXES

log = logging.getLogger(__name__)
SHOWN_KEYS = 8  # how many missing keys an error message lists
#: Files up to this size have every weight checked for NaN/inf (see the module doc).
FINITE_CHECK_MAX_BYTES = 512 * 1024 * 1024


def offline() -> None:
    """No hub look-ups, ever: every config and tokenizer is local."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def open_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, memory-mapped in its stored dtype (a
    pickle only when the user allowed pickles: ``core.checkpoints.pickles``)."""
    from core.checkpoints.pickles import load_pickled_tensors
    from core.checkpoints.safetensors_io import read_tensors

    path = Path(path).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return load_pickled_tensors(path)  # refused with the reason unless allowed
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    return read_tensors(path)


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
                   optional: Iterable[str] = (), copy: bool = False,
                   strict: bool = False) -> torch.nn.Module:
    """Make ``weights`` the parameters of ``module`` (built by :func:`empty_parameters`).

    ``keep_fp32(name)`` keeps some tensors in float32 under fp16 (T5's ``wo``
    overflows in fp16, as transformers knows). Keys in ``optional`` may be
    absent (filled by the caller, e.g. tied embeddings). ``copy`` gives the
    module its own memory (small files: no views into the file); ``strict``
    refuses tensors the module has no place for. Raises
    :class:`CheckpointError` naming the file and the keys."""
    expected = module.state_dict()
    optional = set(optional)
    missing = [k for k in expected if k not in weights and k not in optional]
    if missing:
        raise CheckpointError(f"{path}: the {what} lacks {len(missing)} tensor(s): "
                              f"{_listed(missing)}")
    unused = sorted(set(weights) - set(expected))
    if unused and strict:
        raise CheckpointError(f"{path}: {len(unused)} {what} tensor(s) have no place in the "
                              f"network its config describes: {_listed(unused)}")
    ready, finite = {}, _small_file(path)
    for key, tensor in weights.items():
        if key in expected:
            ready[key] = _fitted(tensor, expected[key], key, path, what,
                                 _wanted_dtype(expected[key], dtype, keep_fp32(key)), copy, finite)
    if unused:
        log.debug("%s: %d %s tensor(s) not used: %s", path, len(unused), what, unused[:SHOWN_KEYS])
    module.load_state_dict(ready, strict=False, assign=True)
    return module


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:SHOWN_KEYS]) + (" …" if len(keys) > SHOWN_KEYS else "")


def _fitted(tensor: torch.Tensor, template: torch.Tensor, key: str, path, what: str,
            wanted: torch.dtype, copy: bool, finite: bool) -> torch.Tensor:
    """``tensor`` checked against the module's ``template`` (shape, kind of
    dtype) and, when ``finite``, for NaN/inf; then cast to ``wanted``."""
    if tuple(tensor.shape) != tuple(template.shape):
        raise CheckpointError(f"{path}: {what} tensor {key} has shape {tuple(tensor.shape)}, "
                              f"expected {tuple(template.shape)}")
    if template.is_floating_point() and not tensor.is_floating_point():
        raise CheckpointError(f"{path}: {what} tensor {key} holds {_dtype_name(tensor.dtype)} "
                              f"values where the network has a float parameter "
                              f"({_dtype_name(template.dtype)}): not a weight of this model")
    if finite and tensor.is_floating_point() and not all_finite(tensor):
        raise CheckpointError(f"{path}: {what} tensor {key} holds NaN or infinite values "
                              "(a damaged or badly converted file)")
    if tensor.dtype == wanted and not copy:
        return tensor  # a view of the file
    return tensor.to(wanted, copy=True)


def _small_file(path) -> bool:
    """Whether ``path`` is a file small enough to check every weight of."""
    try:
        return os.path.getsize(path) <= FINITE_CHECK_MAX_BYTES
    except (OSError, TypeError, ValueError):
        return False


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN and no ±inf in a float tensor: one ``aminmax`` reduction (NaN
    propagates into both ends, an infinity shows at one end), about 4x faster
    on the CPU than ``isfinite().all()``, which writes a mask as large as the
    tensor."""
    if tensor.numel() == 0:
        return True
    if tensor.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        tensor = tensor.to(torch.float32)  # float8 kinds have no aminmax kernel
    low, high = torch.aminmax(tensor)
    return bool(torch.isfinite(low) and torch.isfinite(high))


def _wanted_dtype(template: torch.Tensor, dtype: torch.dtype, fp32: bool) -> torch.dtype:
    if not template.is_floating_point():
        return template.dtype
    return torch.float32 if fp32 and dtype == torch.float16 else dtype


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def build_from_config(make: Callable[[dict], torch.nn.Module], config: Any,
                      weights: Mapping[str, torch.Tensor], path, what: str, device: Any,
                      dtype: torch.dtype) -> torch.nn.Module:
    """A small file's network from the config its metadata states (the
    workbench's own files): the config sanity-checked against the weights,
    the network built without memory, every tensor copied in and checked
    (shape, float dtype, NaN/inf; nothing missing, nothing left over)."""
    from core.device import place

    if not isinstance(config, Mapping):
        raise CheckpointError(f"{path}: the {what}'s config is a JSON {type(config).__name__}, "
                              "not an object")
    _refuse_impossible_sizes(config, weights, path, what)
    with empty_parameters():
        module = make(dict(config))
    assign_weights(module, weights, path, what, dtype, copy=True, strict=True)
    return place(finish(module, path, what, "cpu"), device, dtype)


def _refuse_impossible_sizes(config: Mapping[str, Any], weights: Mapping[str, torch.Tensor],
                             path, what: str) -> None:
    """Refuse a config integer larger than every tensor dimension and the
    tensor count: no layer count or width of these weights can be that big,
    and building it (a million layers) would take hours before failing."""
    limit = max([len(weights), *(max(t.shape, default=1) for t in weights.values())])
    stack = list(config.items())
    while stack:
        name, value = stack.pop()
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise CheckpointError(f"{path}: the {what}'s config says {name} = {value}, more than "
                                  f"any size of its {len(weights)} tensors (at most {limit}): "
                                  "the metadata does not describe these weights")
        if isinstance(value, (list, tuple)):
            stack.extend((name, item) for item in value)
        elif isinstance(value, Mapping):
            stack.extend(value.items())


def finish(module: torch.nn.Module, path, what: str, device) -> torch.nn.Module:
    """Refuse a module with parameters left on the meta device; move it to
    ``device`` in inference mode."""
    left = [n for n, p in [*module.named_parameters(), *module.named_buffers()] if p.is_meta]
    if left:
        raise CheckpointError(f"{path}: the {what} lacks {len(left)} tensor(s): "
                              f"{_listed(left)}")
    return module.to(device).eval().requires_grad_(False)


#: A converter's raw KeyError/RuntimeError/… as a CheckpointError naming the
#: file and what was being read: the loaders' one boundary (core.checkpoints.boundary).
loading_errors = file_faults

"""Running out of memory is a user-fixable condition, not a crash.

A node that exhausts GPU memory (``torch.OutOfMemoryError``, or the
"out of memory" RuntimeErrors of other backends) or host memory
(``MemoryError``) fails with :class:`OutOfMemory`, whose message says what
to change; the executor frees its cached outputs (the loaded models) so the
next, smaller run has room, and the application stays alive.
"""
from __future__ import annotations

import gc


class OutOfMemory(MemoryError):
    """A node ran out of memory; the message suggests what to change."""


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (MemoryError, OutOfMemory)):
        return True
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def explained(error: BaseException, device) -> OutOfMemory:
    """``error`` restated with what the user can do about it."""
    where = "GPU" if getattr(device, "type", str(device)) != "cpu" else "host"
    return OutOfMemory(
        f"out of {where} memory on {device}: try a smaller batch or image size, or a "
        f"half-precision dtype (fp16/bf16); the cached models were freed to make room "
        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no details'})"
    )


def release_memory() -> None:
    """Give freed tensors back to the device (CUDA keeps them cached otherwise)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

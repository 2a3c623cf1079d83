"""Where a run happens: device choice and the dtype policy.

``auto`` picks CUDA, then Apple's MPS, then the CPU. Half precision is used
where the device computes it well (bf16 on CUDA cards that support it, else
fp16; fp16 on MPS) and fp32 on the CPU, where half precision is slow and
less accurate. Initial noise is drawn on the CPU regardless (DESIGN.md), so a
seed means the same picture on every device.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DTYPE_CHOICES = ("auto", "fp32", "fp16", "bf16")


class DeviceError(ValueError):
    """The requested device or dtype cannot be used on this machine."""


@dataclass(frozen=True)
class DeviceChoice:
    device: "torch.device"  # noqa: F821  (torch is imported lazily)
    dtype: "torch.dtype"  # noqa: F821

    def describe(self) -> tuple[str, str]:
        """Short names for events and the status bar, e.g. ('cuda:0', 'bf16')."""
        return str(self.device), dtype_name(self.dtype)


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str = "auto") -> "torch.device":  # noqa: F821
    """The torch device for ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    import torch

    base = name.split(":", 1)[0]
    if base not in DEVICE_CHOICES:
        raise DeviceError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available(torch) else torch.device("cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU here")
    if base == "mps" and not _mps_available(torch):
        raise DeviceError("device 'mps' was asked for, but Apple's MPS is not available here")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise DeviceError(f"bad device {name!r}: {error}") from None


def preferred_dtype(device: "torch.device") -> "torch.dtype":  # noqa: F821
    """The dtype policy: half precision where the device is good at it."""
    import torch

    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def resolve_dtype(name: str, device: "torch.device") -> "torch.dtype":  # noqa: F821
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name == "auto":
        return preferred_dtype(device)
    if name not in table:
        raise DeviceError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPE_CHOICES)}")
    return table[name]


@functools.lru_cache(maxsize=16)
def choose(device: str = "auto", dtype: str = "auto") -> DeviceChoice:
    """The device and dtype for a run (cached: what a machine has does not change)."""
    resolved = resolve_device(device)
    return DeviceChoice(resolved, resolve_dtype(dtype, resolved))


def dtype_name(dtype: "torch.dtype") -> str:  # noqa: F821
    import torch

    names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
    return names.get(dtype, str(dtype).removeprefix("torch."))


def place(module: "torch.nn.Module", device, dtype: "torch.dtype") -> "torch.nn.Module":  # noqa: F821
    """``module`` moved to ``device`` and cast to ``dtype``, in place. Calls
    torch's own ``Module.to``: diffusers' override logs a warning about
    fp32-only modules for any dtype, even for models that have none."""
    import torch

    return torch.nn.Module.to(module, device, dtype)

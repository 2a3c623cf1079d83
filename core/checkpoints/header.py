"""Read a safetensors file's JSON header, and nothing else.

A safetensors file is an 8-byte little-endian header length, that many bytes
of JSON (``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}``)
and then the tensor data. The header alone says every tensor's name, dtype
and shape, which is all the detector needs, so even a 22 GiB checkpoint is
classified in milliseconds without touching its data.

The header comes from a file the user picked up somewhere: it is checked as
strictly as the safetensors library checks it (size, nesting, dtypes, offsets
that tile the data region exactly), and every failure is a
:class:`CheckpointError` naming the file and the problem.
"""
from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from core.checkpoints.safetensors_io import CheckpointError

#: Headers larger than this are refused (real ones are a few hundred kB).
MAX_HEADER_BYTES = 100 * 1024 * 1024

#: Bits per element of every dtype the safetensors format defines.
DTYPE_BITS = MappingProxyType({
    "BOOL": 8, "U8": 8, "I8": 8, "U16": 16, "I16": 16, "U32": 32, "I32": 32,
    "U64": 64, "I64": 64, "F16": 16, "BF16": 16, "F32": 32, "F64": 64, "C64": 64,
    "F8_E4M3": 8, "F8_E4M3FNUZ": 8, "F8_E5M2": 8, "F8_E5M2FNUZ": 8, "F8_E8M0": 8,
    "F6_E2M3": 6, "F6_E3M2": 6, "F4": 4,
})


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header declares it."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """What a safetensors header says: tensors by name, string metadata, sizes."""

    path: Path
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str]
    file_size: int
    header_size: int  # the JSON's length in bytes (without the 8-byte length)
    data_size: int  # bytes of tensor data the header declares


def read_header(path: str | os.PathLike) -> SafetensorsHeader:
    """The validated header of ``path``; reads only its first 8 + N bytes."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            length = _header_length(path, handle.read(8), file_size)
            raw = handle.read(length)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(raw) != length:
        raise CheckpointError(f"{path}: the file ended inside its header (truncated)")
    entries = _parse_json(path, raw)
    metadata = _metadata(path, entries.pop("__metadata__", None))
    tensors, data_size = _tensors(path, entries)
    available = file_size - 8 - length
    if data_size > available:
        raise CheckpointError(
            f"{path}: truncated: its tensors need {data_size:,} bytes of data, "
            f"the file holds {available:,}")
    if data_size < available:
        raise CheckpointError(
            f"{path}: {available - data_size:,} bytes after the last tensor: the header "
            "does not describe the whole file (damaged or not a safetensors file)")
    return SafetensorsHeader(path, MappingProxyType(tensors), MappingProxyType(metadata),
                             file_size, length, data_size)


def _header_length(path: Path, prefix: bytes, file_size: int) -> int:
    if len(prefix) < 8:
        raise CheckpointError(f"{path}: {file_size} bytes: too short to be a safetensors file")
    (length,) = struct.unpack("<Q", prefix)
    if length < 2:
        raise CheckpointError(f"{path}: a header length of {length} bytes: not a safetensors file")
    if length > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{path}: declares a {length:,}-byte header (the limit is {MAX_HEADER_BYTES:,}): "
            "not a safetensors file, or a damaged one")
    if 8 + length > file_size:
        raise CheckpointError(
            f"{path}: declares a {length:,}-byte header but the file has only "
            f"{file_size:,} bytes (truncated, or not a safetensors file)")
    return length


def _parse_json(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_refuse_duplicates)
    except RecursionError:
        raise CheckpointError(f"{path}: the header's JSON is nested too deeply") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: the header is not UTF-8 text: not a safetensors file") from None
    except ValueError as error:  # JSONDecodeError and duplicate names
        raise CheckpointError(f"{path}: the header is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise CheckpointError(
            f"{path}: the header is a JSON {type(value).__name__}, not an object")
    return value


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        twice = next(name for name, _ in pairs if name in seen or seen.add(name))
        raise ValueError(f"the name {twice!r} appears twice")
    return result


def _metadata(path: Path, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise CheckpointError(f"{path}: __metadata__ must map names to strings")
    return raw


def _tensors(path: Path, entries: dict[str, Any]) -> tuple[dict[str, TensorInfo], int]:
    """Each tensor checked, and the offsets checked to tile [0, data_size) exactly."""
    tensors: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in entries.items():
        info, start, end = _tensor(path, name, entry)
        tensors[name] = info
        spans.append((start, end, name))
    spans.sort()
    position = 0
    for start, end, name in spans:
        if start != position:
            problem = "overlaps the tensor before it" if start < position else "leaves a gap"
            raise CheckpointError(
                f"{path}: tensor {name!r} at bytes {start}..{end} {problem} (the header lies)")
        position = end
    return tensors, position


def _tensor(path: Path, name: str, entry: Any) -> tuple[TensorInfo, int, int]:
    if not isinstance(entry, dict):
        raise CheckpointError(f"{path}: tensor {name!r}: its entry is not a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise CheckpointError(f"{path}: tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_natural(d) for d in shape):
        raise CheckpointError(f"{path}: tensor {name!r}: shape {shape!r} is not a list of sizes")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_natural, offsets))
            or offsets[0] > offsets[1]):
        raise CheckpointError(
            f"{path}: tensor {name!r}: data_offsets {offsets!r} are not [start, end] with "
            "0 <= start <= end")
    info = TensorInfo(dtype, tuple(shape))
    bits = info.numel * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        raise CheckpointError(
            f"{path}: tensor {name!r}: {dtype} {list(shape)} needs {bits / 8:g} bytes but "
            f"its offsets span {offsets[1] - offsets[0]} (the header lies)")
    return info, offsets[0], offsets[1]


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

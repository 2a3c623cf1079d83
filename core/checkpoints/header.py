"""Read a safetensors file's JSON header, and nothing else.

A safetensors file is an 8-byte little-endian header length, that many bytes
of JSON (``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}``)
and then the tensor data. The header alone says every tensor's name, dtype
and shape, which is all the detector needs, so even a 22 GiB checkpoint is
classified in milliseconds without touching its data.

The header comes from a file the user picked up somewhere: it is checked as
strictly as the safetensors library checks it (size, nesting, dtypes, offsets
that tile the data region exactly, names that are real Unicode text), and
every failure is a :class:`CheckpointError` naming the file and the problem.
A workbench file's own metadata (the JSON text under ``diffusion-workbench``)
is checked here too, before any loader reads it: a JSON object, nested at
most :data:`MAX_METADATA_DEPTH` deep, its strings real Unicode text.
"""
from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from core.checkpoints.boundary import CheckpointError, checkpoint_boundary
from core.checkpoints.safetensors_io import METADATA_KEY as WORKBENCH_KEY


class HeaderError(CheckpointError):
    """A header that is damaged, lies or is no safetensors header; ``reason``
    says why without the file name (loaders put it after their own words)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


#: Headers larger than this are refused (real ones are a few hundred kB).
MAX_HEADER_BYTES = 100 * 1024 * 1024
#: How deep a workbench file's metadata JSON may nest (the shipped files: 5).
MAX_METADATA_DEPTH = 32
#: A JSON escape of a UTF-16 surrogate: the only way a lone surrogate gets into a name.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

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
    workbench: Mapping[str, Any] | None = None  # the parsed workbench metadata, if any


@checkpoint_boundary("safetensors header")
def read_header(path: str | os.PathLike) -> SafetensorsHeader:
    """The validated header of ``path``; reads only its first 8 + N bytes."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            length = _header_length(path, handle.read(8), file_size)
            raw = handle.read(length)
    except OSError as error:
        raise HeaderError(path, f"cannot be read ({error.strerror or error})") from None
    if len(raw) != length:
        raise HeaderError(path, "the file ended inside its header (truncated)")
    entries = _parse_json(path, raw)
    metadata = _metadata(path, entries.pop("__metadata__", None))
    if _SURROGATE_ESCAPE.search(raw):
        _refuse_lone_surrogates(path, [*entries, *metadata, *metadata.values()], "the header")
    workbench = _workbench(path, metadata.get(WORKBENCH_KEY))
    tensors, data_size = _tensors(path, entries)
    available = file_size - 8 - length
    if data_size > available:
        raise HeaderError(
            path, f"truncated: its tensors need {data_size:,} bytes of data, "
            f"the file holds {available:,}")
    if data_size < available:
        raise HeaderError(
            path, f"{available - data_size:,} bytes after the last tensor: the header "
            "does not describe the whole file (damaged or not a safetensors file)")
    return SafetensorsHeader(path, MappingProxyType(tensors), MappingProxyType(metadata),
                             file_size, length, data_size, workbench)


def _header_length(path: Path, prefix: bytes, file_size: int) -> int:
    if len(prefix) < 8:
        raise HeaderError(path, f"{file_size} bytes: too short to be a safetensors file")
    (length,) = struct.unpack("<Q", prefix)
    if length < 2:
        raise HeaderError(path, f"a header length of {length} bytes: not a safetensors file")
    if length > MAX_HEADER_BYTES:
        raise HeaderError(
            path, f"declares a {length:,}-byte header (the limit is {MAX_HEADER_BYTES:,}): "
            "not a safetensors file, or a damaged one")
    if 8 + length > file_size:
        raise HeaderError(
            path, f"declares a {length:,}-byte header but the file has only "
            f"{file_size:,} bytes (truncated, or not a safetensors file)")
    return length


def _parse_json(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_refuse_duplicates)
    except RecursionError:
        raise HeaderError(path, "the header's JSON is nested too deeply") from None
    except UnicodeDecodeError:
        raise HeaderError(path, "the header is not UTF-8 text: not a safetensors file") from None
    except ValueError as error:  # JSONDecodeError and duplicate names
        raise HeaderError(path, f"the header is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise HeaderError(
            path, f"the header is a JSON {type(value).__name__}, not an object")
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
        raise HeaderError(path, "__metadata__ must map names to strings")
    return raw


def _refuse_lone_surrogates(path: Path, texts, where: str) -> None:
    """Names must be Unicode text: a lone surrogate (``"\\ud800"``) parses but
    cannot be printed or written back, so it would fail far from here."""
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise HeaderError(path, f"{where} holds the text {ascii(text)[:80]}, which is not "
                                    "valid Unicode (a lone UTF-16 surrogate): a damaged "
                                    "file") from None


def _workbench(path: Path, raw: str | None) -> dict[str, Any] | None:
    """The workbench metadata as a JSON object of bounded depth, or None if absent."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except RecursionError:
        raise HeaderError(path, f"damaged {WORKBENCH_KEY} metadata (nested too deeply)") from None
    except ValueError as error:
        raise HeaderError(path, f"damaged {WORKBENCH_KEY} metadata (not JSON: {error})") from None
    problem = (_shape_problem(value) if isinstance(value, dict)
               else f"a JSON {type(value).__name__}, not an object")
    if problem:
        raise HeaderError(path, f"damaged {WORKBENCH_KEY} metadata ({problem})")
    return value


def _shape_problem(value: Any) -> str | None:
    """Why a parsed JSON value is unusable (too deep, a lone surrogate), or None.
    Iterative, so a deep value cannot exhaust the stack here."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_METADATA_DEPTH:
            return f"nested deeper than {MAX_METADATA_DEPTH} levels"
        if isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"the text {ascii(item)[:60]} is not valid Unicode (a lone surrogate)"
    return None


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
            raise HeaderError(
                path, f"tensor {name!r} at bytes {start}..{end} {problem} (the header lies)")
        position = end
    return tensors, position


def _tensor(path: Path, name: str, entry: Any) -> tuple[TensorInfo, int, int]:
    if not isinstance(entry, dict):
        raise HeaderError(path, f"tensor {name!r}: its entry is not a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise HeaderError(path, f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_natural(d) for d in shape):
        raise HeaderError(path, f"tensor {name!r}: shape {shape!r} is not a list of sizes")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_natural, offsets))
            or offsets[0] > offsets[1]):
        raise HeaderError(
            path, f"tensor {name!r}: data_offsets {offsets!r} are not [start, end] with "
            "0 <= start <= end")
    info = TensorInfo(dtype, tuple(shape))
    bits = info.numel * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        raise HeaderError(
            path, f"tensor {name!r}: {dtype} {list(shape)} needs {bits / 8:g} bytes but "
            f"its offsets span {offsets[1] - offsets[0]} (the header lies)")
    return info, offsets[0], offsets[1]


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

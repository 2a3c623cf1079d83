"""Fuzz targets for model files: every loader a user's file reaches must either
load it or refuse it with a :class:`CheckpointError` (issue 12).

Three targets, each a list of small cases written into a temporary folder:

- ``checkpoint.header``: safetensors files made from scratch, with valid and
  mutated JSON headers (wrong offsets, dtypes and shapes, deep nesting, huge
  numbers, non-object and non-string metadata, lone surrogates, truncation)
  and a few tiny tensors, read by the detector, ``inspect``, the plain readers
  and the dispatching loaders.
- ``checkpoint.builtin``: structure-aware mutations of the shipped model files
  (tensors dropped, renamed, reshaped, recast to int/bool/float8, poisoned with
  NaN/inf; metadata entries deleted or given values of the wrong type or size)
  through the built-in loaders. The shipped files hold only weights their
  loader copies, so a file made invalid this way must be *refused*: a load
  that succeeds with an integer, bool or non-finite weight is unhandled too.
- ``checkpoint.layouts``: the same mutations of tiny files in the real key
  layouts (SD 1.x all-in-one, VAE, ControlNet, LoRA, CLIP-L, T5, SD3, Flux;
  ``tests/layouts``), through the real-checkpoint loaders.

Base files are made once per process (the tiny SD 1.x file takes seconds);
each case then writes one file of a few MB at most.
"""
from __future__ import annotations

import atexit
import io
import json
import math
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch
from hypothesis import strategies as st

from core.checkpoints import CheckpointError
from tests.fuzz import FuzzTarget

TORCH_DTYPES = {
    "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
NOT_FLOAT = {"I64", "I32", "I16", "I8", "U8", "BOOL"}
#: The shipped files fuzzed, and the tensor prefixes their loader reads (every one, copied).
BUILTIN_COMPONENTS = {"shapes-classifier": ("classifier.",), "shapes-controlnet": ("controlnet.",),
                      "shapes-ldm": ("unet.", "text_encoder."), "shapes-vae": ("vae.",)}
BUILTIN_BASES = tuple(BUILTIN_COMPONENTS)
WORKBENCH_KEY = "diffusion-workbench"


# ------------------------------------------------------------- a file as data

@dataclass
class Tensor:
    dtype: str
    shape: list[int]
    data: bytes

    def as_torch(self) -> torch.Tensor:
        flat = torch.frombuffer(bytearray(self.data), dtype=torch.uint8) if self.data else \
            torch.empty(0, dtype=torch.uint8)
        return flat.view(TORCH_DTYPES[self.dtype]).reshape(self.shape)

    @staticmethod
    def of(tensor: torch.Tensor, dtype: str) -> "Tensor":
        raw = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        return Tensor(dtype, list(tensor.shape), raw)


@dataclass
class Doc:
    """A safetensors file: tensors in order, string metadata, and raw edits
    applied to the header JSON (``header_edits``) and the bytes (``byte_edits``)."""

    tensors: dict[str, Tensor]
    metadata: dict[str, Any] | None
    header_edits: list[Callable[[dict], None]] = field(default_factory=list)
    byte_edits: list[Callable[[bytes], bytes]] = field(default_factory=list)

    def encode(self) -> bytes:
        header: dict[str, Any] = {}
        if self.metadata is not None:
            header["__metadata__"] = self.metadata
        position, chunks = 0, []
        for name, tensor in self.tensors.items():
            header[name] = {"dtype": tensor.dtype, "shape": tensor.shape,
                            "data_offsets": [position, position + len(tensor.data)]}
            position += len(tensor.data)
            chunks.append(tensor.data)
        for edit in self.header_edits:
            edit(header)
        text = json.dumps(header, allow_nan=True).encode("utf-8", "surrogatepass")
        text += b" " * (-len(text) % 8)
        raw = struct.pack("<Q", len(text)) + text + b"".join(chunks)
        for edit in self.byte_edits:
            raw = edit(raw)
        return raw


def parse(raw: bytes) -> Doc:
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    data = raw[8 + length:]
    metadata = header.pop("__metadata__", None)
    tensors = {name: Tensor(entry["dtype"], list(entry["shape"]),
                            data[entry["data_offsets"][0]:entry["data_offsets"][1]])
               for name, entry in header.items()}
    return Doc(tensors, metadata)


# ------------------------------------------------------------- the base files

@lru_cache(maxsize=None)
def workdir() -> Path:
    from core.models.builtin import MODELS_DIR

    folder = Path(tempfile.mkdtemp(prefix="fuzz-checkpoint-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    shutil.copy(MODELS_DIR / "shapes-vae.safetensors", folder / "shapes-vae.safetensors")
    return folder


@lru_cache(maxsize=None)
def base_bytes(name: str) -> bytes:
    """The pristine bytes of a base file: ``builtin:<name>`` or a layout name."""
    from core.models.builtin import MODELS_DIR

    if name.startswith("builtin:"):
        return (MODELS_DIR / f"{name.split(':', 1)[1]}.safetensors").read_bytes()
    path = workdir() / "bases" / f"{name}.safetensors"
    path.parent.mkdir(exist_ok=True)
    LAYOUT_MAKERS[name](path)
    return path.read_bytes()


def _make_layout(module: str, function: str, **options):
    def make(path: Path) -> None:
        import importlib

        getattr(importlib.import_module(f"tests.layouts.{module}"), function)(path, **options)
    return make


LAYOUT_MAKERS = {
    "sd1": _make_layout("files", "tiny_sd1_checkpoint"),
    "vae": _make_layout("files", "tiny_vae_file"),
    "controlnet": _make_layout("files", "tiny_controlnet_file"),
    "lora": _make_layout("files", "tiny_lora_file"),
    "clip_l": _make_layout("t5", "tiny_clip_l_file"),
    "t5": _make_layout("t5", "tiny_t5_file"),
    "sd3": _make_layout("sd3", "tiny_sd3_checkpoint", variant="sd35_medium"),
    "flux": _make_layout("flux", "tiny_flux_transformer"),
}
TINY_OVERRIDES = {"clip_l": {"num_attention_heads": 2}, "clip_g": {"num_attention_heads": 3},
                  "vae": {"norm_num_groups": 8}}


@lru_cache(maxsize=None)
def sd1_modules() -> dict[str, torch.nn.Module]:
    """The pristine tiny SD 1.x model's modules, for LoRA cases."""
    from core.models.families.dispatch import load_any_checkpoint
    from core.models.lora import torch_modules

    path = workdir() / "bases" / "sd1-for-lora.safetensors"
    path.write_bytes(base_bytes("sd1"))
    loaded = load_any_checkpoint(path)
    unet, text = torch_modules(loaded.model, loaded.clip)
    return {**unet, **text}


# ------------------------------------------------------------- mutations

DEEP = st.integers(2, 3000).map(lambda n: "[" * n + "]" * n)
ODD_VALUES = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1, 2, 3, 7, 10 ** 6, 2 ** 63, -2 ** 63, 2 ** 64,
                     10 ** 30, 1.5, -0.0, 1e308, math.nan, math.inf, "", "x", "nope", "\ud800",
                     [], {}, [1, 2], [[1]], {"a": 1}, [None], ["DownBlock2D"]]),
    st.integers(), st.floats(), st.text(max_size=8),
    st.integers(2, 400).map(lambda n: json.loads("[" * n + "]" * n)))


def _pick(items: list, index: int):
    return items[index % len(items)] if items else None


def _tensor_op(doc: Doc, op: tuple) -> None:
    """One structure-aware edit of a tensor, keeping the file itself consistent."""
    names = list(doc.tensors)
    name = _pick(names, op[1])
    if name is None:
        return
    tensor = doc.tensors[name]
    kind = op[0]
    if kind == "drop":
        del doc.tensors[name]
    elif kind == "dtype":
        doc.tensors[name] = Tensor.of(tensor.as_torch().to(TORCH_DTYPES[op[2]]), op[2])
    elif kind == "poison" and tensor.dtype not in NOT_FLOAT:
        values = tensor.as_torch().clone()
        if values.numel():
            values.reshape(-1)[op[2] % values.numel()] = op[3]
            doc.tensors[name] = Tensor.of(values, tensor.dtype)
    elif kind == "reshape":
        doc.tensors[name] = Tensor.of(torch.zeros(op[2], dtype=TORCH_DTYPES[tensor.dtype]),
                                      tensor.dtype)
    elif kind == "transpose" and len(tensor.shape) >= 2:
        doc.tensors[name] = Tensor.of(tensor.as_torch().transpose(0, 1), tensor.dtype)
    elif kind == "rename":
        doc.tensors = {(op[2](n) if n == name else n): t for n, t in doc.tensors.items()}
    elif kind == "copy_as":
        doc.tensors[op[2](name)] = tensor


RENAMES = st.sampled_from([
    lambda n: n + ".extra", lambda n: "model." + n, lambda n: n.split(".", 1)[-1],
    lambda n: n.replace("weight", "bias"), lambda n: n.replace("0", "7"),
    lambda n: "lora_unet_" + n.replace(".", "_"), lambda n: "\ud800" + n, lambda n: "",
    lambda n: n + ".alpha", lambda n: "x" * 300])
SHAPES = st.lists(st.integers(0, 9), min_size=0, max_size=5)
TENSOR_OPS = st.one_of(
    st.tuples(st.just("drop"), st.integers(0, 10 ** 4)),
    st.tuples(st.just("dtype"), st.integers(0, 10 ** 4), st.sampled_from(sorted(TORCH_DTYPES))),
    st.tuples(st.just("poison"), st.integers(0, 10 ** 4), st.integers(0, 10 ** 6),
              st.sampled_from([math.nan, math.inf, -math.inf])),
    st.tuples(st.just("reshape"), st.integers(0, 10 ** 4), SHAPES),
    st.tuples(st.just("transpose"), st.integers(0, 10 ** 4)),
    st.tuples(st.just("rename"), st.integers(0, 10 ** 4), RENAMES),
    st.tuples(st.just("copy_as"), st.integers(0, 10 ** 4), RENAMES),
)


def _json_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _json_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _json_paths(item, prefix + (index,))
    return paths


def _metadata_op(doc: Doc, op: tuple) -> None:
    """Edit the workbench metadata: delete an entry or give it an odd value."""
    if not isinstance(doc.metadata, dict) or WORKBENCH_KEY not in doc.metadata:
        return
    meta = json.loads(doc.metadata[WORKBENCH_KEY])
    path = _pick(_json_paths(meta), op[1])
    if not path:
        meta = op[2] if op[0] == "meta_set" else {}
    else:
        parent = meta
        for step in path[:-1]:
            parent = parent[step]
        if op[0] == "meta_del":
            del parent[path[-1]]
        else:
            parent[path[-1]] = op[2]
    doc.metadata[WORKBENCH_KEY] = json.dumps(meta, allow_nan=True)


def _header_op(doc: Doc, op: tuple) -> None:
    """Edit the header JSON itself (no longer consistent with the data)."""
    kind, index, value = op

    def edit(header: dict) -> None:
        names = [n for n in header if n != "__metadata__"]
        name = _pick(names, index)
        if kind == "metadata":
            header["__metadata__"] = value
        elif kind == "metadata_value" and isinstance(header.get("__metadata__"), dict):
            header["__metadata__"][_pick(list(header["__metadata__"]), index) or "k"] = value
        elif name is not None and kind == "entry":
            header[name] = value
        elif not isinstance(header.get(name), dict):
            return  # an earlier edit replaced the entry
        elif kind in ("dtype", "shape", "data_offsets"):
            header[name][kind] = value
        elif kind == "offset_shift" and isinstance(value, int):
            offsets = header[name].get("data_offsets")
            if isinstance(offsets, list) and all(isinstance(o, int) for o in offsets):
                header[name]["data_offsets"] = [o + value for o in offsets]  # else: already broken
    doc.header_edits.append(edit)


def _byte_op(doc: Doc, op: tuple) -> None:
    kind, fraction, value = op

    def edit(raw: bytes) -> bytes:
        at = int(fraction * len(raw))
        if kind != "truncate" and len(raw) < 8:
            return raw  # an earlier edit cut the length prefix
        if kind == "truncate":
            return raw[:at]
        if kind == "flip":
            return raw[:at] + bytes([value % 256]) + raw[at + 1:]
        if kind == "length":
            length = max(0, struct.unpack("<Q", raw[:8])[0] + value) % 2 ** 64
            return struct.pack("<Q", length) + raw[8:]
        if kind == "nest":  # a value nested deeper than any JSON parser's stack
            (length,) = struct.unpack("<Q", raw[:8])
            depth = abs(value) % 5000 + 2
            text = b'{"deep": ' + b"[" * depth + b"]" * depth + b", " + raw[9:8 + length]
            return struct.pack("<Q", len(text)) + text + raw[8 + length:]
        return raw + bytes(value % 64)  # "append": trailing bytes
    doc.byte_edits.append(edit)


METADATA_OPS = st.one_of(st.tuples(st.just("meta_del"), st.integers(0, 10 ** 4), st.none()),
                         st.tuples(st.just("meta_set"), st.integers(0, 10 ** 4), ODD_VALUES))
HEADER_OPS = st.tuples(
    st.sampled_from(["metadata", "metadata_value", "entry", "dtype", "shape", "data_offsets",
                     "offset_shift"]),
    st.integers(0, 10 ** 4), ODD_VALUES)
BYTE_OPS = st.tuples(st.sampled_from(["truncate", "flip", "length", "append", "nest"]),
                     st.floats(0, 1), st.integers(-2 ** 20, 2 ** 20))
MUTATION = st.one_of(TENSOR_OPS.map(lambda op: ("tensor", op)),
                     METADATA_OPS.map(lambda op: ("meta", op)),
                     HEADER_OPS.map(lambda op: ("header", op)),
                     BYTE_OPS.map(lambda op: ("bytes", op)))
APPLY = {"tensor": _tensor_op, "meta": _metadata_op, "header": _header_op, "bytes": _byte_op}


def mutated(base: str, mutations: list[tuple]) -> Doc:
    doc = parse(base_bytes(base))
    for family, op in mutations:
        APPLY[family](doc, op)
    return doc


# ------------------------------------------------------------- feeding the loaders

def write_case(raw: bytes, name: str = "case.safetensors") -> Path:
    """The case's file; the previous one is unlinked first, so tensors of an
    earlier case still mapped from it never see their file change under them."""
    path = workdir() / name
    path.unlink(missing_ok=True)
    path.write_bytes(raw)
    return path


def handled(call: Callable[[], Any]) -> bool:
    """True when ``call`` succeeded, False when it refused with CheckpointError;
    anything else propagates (unhandled)."""
    try:
        call()
    except CheckpointError:
        return False
    return True


def inspect_file(path: Path) -> None:
    """``diffusion-workbench inspect`` on the file, its output through strict
    UTF-8 streams like a real terminal's: exit 0 or 2, never an exception."""
    from app.cli.inspect import run_inspect

    streams = [io.TextIOWrapper(io.BytesIO(), encoding="utf-8") for _ in range(2)]
    for as_json in (False, True):
        status = run_inspect([str(path)], as_json=as_json, out=streams[0], err=streams[1])
        streams[0].flush()
        streams[1].flush()
        if status not in (0, 2):
            raise AssertionError(f"inspect exited {status}")


def _readers(path: Path) -> None:
    from core.checkpoints import load_checkpoint
    from core.checkpoints.detect import detect
    from core.checkpoints.safetensors_io import read_tensors

    for reader in (detect, read_tensors, load_checkpoint):
        handled(lambda: reader(path))
    inspect_file(path)


def _load_lora(path: Path) -> None:
    from core.models.lora import load_lora

    load_lora(path, sd1_modules(), {"unet": 1.0, "text_encoder": 1.0})


def _layout_loaders() -> dict[str, Callable[[Path], Any]]:
    from core.models.families.controlnet import load_controlnet_file
    from core.models.families.dispatch import load_any_checkpoint, load_any_vae
    from core.models.families.flux import load_flux
    from core.models.families.sd3 import load_sd3
    from core.models.families.text_files import load_text_encoder_file

    return {
        "sd1": load_any_checkpoint, "vae": load_any_vae, "controlnet": load_controlnet_file,
        "lora": _load_lora,
        "clip_l": lambda p: load_text_encoder_file(p, "clip_l", overrides=TINY_OVERRIDES["clip_l"]),
        "t5": lambda p: load_text_encoder_file(p, "t5xxl"),
        "sd3": lambda p: load_sd3(p, "sd35_medium", overrides=TINY_OVERRIDES),
        "flux": load_flux,  # the transformer loads, then the missing text encoders are named
    }


def _builtin_loaders() -> dict[str, Callable[[Path], Any]]:
    from core.models.builtin import load_classifier, load_controlnet, load_model, load_vae_handle

    return {"shapes-classifier": lambda p: load_classifier(str(p)),
            "shapes-vae": lambda p: load_vae_handle(p),
            "shapes-controlnet": lambda p: load_controlnet(str(p)),
            "shapes-ldm": lambda p: load_model(str(p))}


def invalid_weights(doc: Doc, prefixes: tuple[str, ...]) -> list[str]:
    """Tensors of ``doc`` under ``prefixes`` (what the loader reads) that no
    loader may accept as float weights: integer or bool ones, and float ones
    holding NaN/inf. Tensors outside them are not the model's and are ignored."""
    bad = []
    for name, tensor in doc.tensors.items():
        if not name.startswith(prefixes):
            continue
        if tensor.dtype in NOT_FLOAT:
            bad.append(f"{name} ({tensor.dtype})")
        elif tensor.data and not bool(torch.isfinite(tensor.as_torch().float()).all()):
            bad.append(f"{name} (NaN/inf)")
    return bad


def run_header_case(case: tuple) -> None:
    tensors, metadata, ops = case
    doc = Doc({name: Tensor.of(torch.arange(math.prod(shape), dtype=torch.float32)
                               .reshape(shape).to(TORCH_DTYPES[dtype]), dtype)
               for name, (dtype, shape) in tensors.items()}, metadata)
    for family, op in ops:
        APPLY[family](doc, op)
    path = write_case(doc.encode(), "header-case.safetensors")
    _readers(path)
    from core.models.families.dispatch import load_any_checkpoint

    handled(lambda: load_any_checkpoint(path))
    handled(lambda: _load_lora(path))


def run_builtin_case(case: tuple) -> None:
    base, mutations = case
    doc = mutated(f"builtin:{base}", mutations)
    path = write_case(doc.encode(), "builtin-case.safetensors")
    _readers(path)
    loaded = handled(lambda: _builtin_loaders()[base](path))
    consistent = all(family in ("tensor", "meta") for family, _ in mutations)
    bad = invalid_weights(doc, BUILTIN_COMPONENTS[base]) if loaded and consistent else []
    if bad:
        raise AssertionError(f"{base}: a file with invalid weights loaded silently: {bad[:3]}")


def run_layout_case(case: tuple) -> None:
    base, mutations = case
    path = write_case(mutated(base, mutations).encode(), f"{base}-case.safetensors")
    _readers(path)
    handled(lambda: _layout_loaders()[base](path))


NAMES = st.one_of(st.sampled_from(["w", "unet.conv_in.weight", "lora_unet_x.lora_down.weight",
                                   "model.diffusion_model.input_blocks.0.0.weight",
                                   "encoder.conv_in.weight", "__metadata__x", ""]),
                  st.text(max_size=12))
HEADER_TENSORS = st.dictionaries(NAMES, st.tuples(st.sampled_from(sorted(TORCH_DTYPES)),
                                                  st.lists(st.integers(0, 4), max_size=3)),
                                 max_size=4)
HEADER_METADATA = st.one_of(
    st.none(), st.dictionaries(st.text(max_size=8), st.text(max_size=16), max_size=3),
    st.fixed_dictionaries({WORKBENCH_KEY: st.one_of(
        st.sampled_from(['{"kind": "ldm"}', '{"kind": "vae", "components": []}', "[1]", "null",
                         '"x"', "{", '{"kind": "pixel", "components": {"unet": {"config": 1}}}']),
        DEEP.map(lambda text: '{"a": ' + text + "}"),
        st.recursive(st.none() | st.integers() | st.text(max_size=4),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                         st.text(max_size=4), inner, max_size=3)).map(json.dumps))}))
HEADER_OPS_ONLY = st.lists(st.one_of(HEADER_OPS.map(lambda op: ("header", op)),
                                     BYTE_OPS.map(lambda op: ("bytes", op))), max_size=2)

TARGETS = [
    FuzzTarget("checkpoint.header", st.tuples(HEADER_TENSORS, HEADER_METADATA, HEADER_OPS_ONLY),
               run_header_case),
    FuzzTarget("checkpoint.builtin",
               st.tuples(st.sampled_from(BUILTIN_BASES),
                         st.lists(MUTATION, min_size=1, max_size=3)),
               run_builtin_case),
    FuzzTarget("checkpoint.layouts",
               st.tuples(st.sampled_from(sorted(LAYOUT_MAKERS)),
                         st.lists(MUTATION, min_size=1, max_size=3)),
               run_layout_case),
]

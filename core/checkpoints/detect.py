"""Say what a model file is before loading it, from its safetensors header alone.

``detect(path)`` reads the JSON header (key names, dtypes, shapes; no tensor
data), so it answers in milliseconds even for a 22 GiB file: the family
(SD 1.x/2.x, SDXL base/refiner, SD3/3.5, Flux.1, VAE, ControlNet, LoRA, text
encoder, the workbench's own files, diffusers folders), the variant, which
parts the file holds, dtype, size and parameter count, and what the user must
choose because shapes cannot tell it (SD 2.x ε vs v, the VAE kind). Pickles
are reported and never unpickled.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from core.checkpoints.boundary import checkpoint_boundary
from core.checkpoints.detect_keys import Finding, Keys
from core.checkpoints.header import SafetensorsHeader, TensorInfo, read_header
from core.checkpoints.safetensors_io import METADATA_KEY, PICKLE_SUFFIXES, CheckpointError

FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner", "sd3", "flux", "vae", "controlnet", "lora",
            "text_encoder", "workbench", "diffusers_folder", "unknown")
TITLES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL base", "sdxl_refiner": "SDXL refiner",
          "sd3": "SD3", "flux": "Flux.1", "vae": "VAE", "controlnet": "ControlNet",
          "lora": "LoRA", "text_encoder": "text encoder", "workbench": "Diffusion Workbench model",
          "diffusers_folder": "diffusers folder", "unknown": "unrecognised file"}
PART_TITLES = {"unet": "the U-Net", "transformer": "the transformer", "vae": "the VAE",
               "controlnet": "the ControlNet", "prior": "the prior"}
ENCODER_TITLES = {"clip_l": "CLIP-L", "clip_g": "OpenCLIP bigG", "openclip_h": "OpenCLIP ViT-H",
                  "t5xxl": "T5-XXL"}
#: safetensors dtype -> the torch name users know.
DTYPE_NAMES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
               "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "I64": "int64",
               "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@dataclass(frozen=True)
class Detection:
    """What a model file is, from its header; ``describe()`` says it in one paragraph."""

    path: str
    family: str
    variant: str | None = None
    base: str | None = None  # ControlNet/LoRA: the model it belongs to; folders: what they hold
    layout: str | None = None  # original, diffusers, kohya, peft, ...
    components: tuple[str, ...] = ()
    text_encoders: tuple[str, ...] = ()
    dtype: str = ""  # the dominant dtype (by parameters)
    dtype_note: str = ""  # "mixed: …" when several float dtypes hold parameters
    size_bytes: int = 0
    tensor_count: int = 0
    parameters: int = 0
    prefix: str = ""
    needs_choice: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    file_variants: tuple[str, ...] = ()  # diffusers folders: fp16, bf16, ...

    @property
    def recognised(self) -> bool:
        return self.family != "unknown" and not self.problems

    def describe(self) -> str:
        from core.checkpoints.detect_text import describe

        return describe(self)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["needs_choice"] = {k: list(v) for k, v in self.needs_choice.items()}
        data["recognised"] = self.recognised
        data["description"] = self.describe()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@checkpoint_boundary("model file")
def detect(path: str | os.PathLike) -> Detection:
    """The Detection of a safetensors file, a pickle or a diffusers folder.

    Raises CheckpointError for a file that cannot be read or whose header is
    damaged or lies; a readable file of an unknown kind is ``family="unknown"``.
    """
    from core.checkpoints.detect_folder import is_diffusers_folder

    path = Path(path)
    if path.is_dir():
        if is_diffusers_folder(path):
            return _detect_folder(path)
        raise CheckpointError(f"{path}: a folder that is not a diffusers model folder "
                              "(no model_index.json, nor config.json beside weights)")
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise CheckpointError(f"{path}: not a regular file")
    if _is_pickle(path):
        return _pickle(path)
    return detect_header(read_header(path))


def detect_header(header: SafetensorsHeader) -> Detection:
    """The Detection of an already read header."""
    keys = Keys(header.tensors, header.metadata)
    finding = classify(keys)
    stats = _stats([header])
    if finding.family == "unknown":
        finding = Finding("unknown", notes=(_unknown_sentence(keys),))
    return Detection(str(header.path), **_finding_fields(finding), **stats)


def classify(keys: Keys) -> Finding:
    """The Finding of a header's keys: the workbench's own, a LoRA, a model, or unknown."""
    from core.checkpoints.detect_lora import classify_lora, is_lora
    from core.checkpoints.detect_models import classify_model

    if METADATA_KEY in keys.metadata:
        return _workbench(keys)
    if is_lora(keys):
        return classify_lora(keys)
    return classify_model(keys) or Finding("unknown")


def _workbench(keys: Keys) -> Finding:
    """The workbench's own file: its kind and name as the metadata states them
    (read_header has checked that the metadata is a JSON object); a kind or
    name that is not text is not repeated."""
    try:
        meta = json.loads(keys.metadata[METADATA_KEY])
    except (ValueError, RecursionError):
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    kind, name = (value if isinstance(value, str) else None
                  for value in (meta.get("kind"), meta.get("name")))
    parts = tuple(dict.fromkeys(k.split(".", 1)[0] for k in keys.tensors if "." in k))
    return Finding("workbench", kind, components=parts,
                   notes=(f"model {name!r}",) if name else ())


def _finding_fields(finding: Finding) -> dict[str, Any]:
    return {name: getattr(finding, name) for name in (
        "family", "variant", "base", "layout", "components", "text_encoders", "prefix",
        "needs_choice", "notes")}


def _stats(headers: Iterable[SafetensorsHeader]) -> dict[str, Any]:
    """Size, tensor and parameter counts, and the dominant dtype of the given headers."""
    headers = list(headers)
    tensors = [info for header in headers for info in header.tensors.values()]
    return {"size_bytes": sum(h.file_size for h in headers), "tensor_count": len(tensors),
            "parameters": sum(info.numel for info in tensors), **_dtype_stats(tensors)}


def _dtype_stats(tensors: Iterable[TensorInfo]) -> dict[str, str]:
    """The dominant dtype by parameters, and a note listing the shares when mixed."""
    by_dtype: dict[str, int] = {}
    for info in tensors:
        by_dtype[info.dtype] = by_dtype.get(info.dtype, 0) + info.numel
    total = sum(by_dtype.values())
    if not total:
        return {"dtype": "", "dtype_note": ""}
    ranked = sorted(by_dtype.items(), key=lambda kv: -kv[1])
    shares = [(DTYPE_NAMES.get(d, d), n / total) for d, n in ranked if n / total >= 0.001]
    note = "mixed: " + ", ".join(f"{name} {share:.1%}" for name, share in shares) \
        if len(shares) > 1 else ""
    return {"dtype": DTYPE_NAMES.get(ranked[0][0], ranked[0][0]), "dtype_note": note}


def _unknown_sentence(keys: Keys) -> str:
    from core.checkpoints.detect_models import other_family

    known = other_family(keys)
    if known:
        return f"a {known} model, which this workbench does not load"
    if not len(keys):
        return "a safetensors file with no tensors"
    starts = ", ".join(f"`{p}`" for p in keys.top_prefixes())
    return (f"a safetensors file of {len(keys):,} tensors whose keys start with {starts}: "
            "not a diffusion model, VAE, ControlNet, LoRA or text encoder this workbench can load")


def _is_pickle(path: Path) -> bool:
    """By suffix, or by pickle/zip magic where the first 8 bytes are no header length."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            start = handle.read(8)
            size = os.fstat(handle.fileno()).st_size
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror or error})") from None
    plausible_header = len(start) == 8 and struct.unpack("<Q", start)[0] <= size - 8
    return not plausible_header and any(start.startswith(magic) for magic in PICKLE_MAGIC)


def _pickle(path: Path) -> Detection:
    """A pickle is refused; a torch zip one still says what it holds (opcodes read, not run)."""
    from core.checkpoints.detect_pickle import pickled_tensors

    from core.checkpoints.pickles import pickles_allowed

    kind = path.suffix.lower() or "pickle"
    problem = (f"a {kind} pickle: refused unless allowed, because loading a pickle can run "
               "arbitrary code; convert it to .safetensors, or allow pickles you trust "
               "(--allow-pickle, or DIFFUSION_WORKBENCH_ALLOW_PICKLE=1)")
    problems, allowed = ((), (f"a {kind} pickle, read with torch.load(weights_only=True) "
                              "because pickles are allowed",)) if pickles_allowed() else ((problem,), ())
    size = path.stat().st_size
    tensors = pickled_tensors(path)
    if not tensors:
        return Detection(str(path), "unknown", variant="pickle", size_bytes=size,
                         notes=("what it holds is not read: that would mean unpickling it",
                                *allowed), problems=problems)
    keys = Keys(tensors, {})
    finding = classify(keys)
    if finding.family == "unknown":
        finding = Finding("unknown", "pickle", notes=(_unknown_sentence(keys),))
    stats = {"size_bytes": size, "tensor_count": len(tensors),
             "parameters": sum(info.numel for info in tensors.values()),
             **_dtype_stats(tensors.values())}
    fields = _finding_fields(finding)
    fields["notes"] = (*fields["notes"], *allowed)
    return Detection(str(path), **fields, **stats, problems=problems)


def _detect_folder(path: Path) -> Detection:
    from core.checkpoints.detect_folder import detect_folder

    found = detect_folder(path)
    headers = [read_header(f) for f in found.weights]
    return Detection(str(path), **_finding_fields(found.finding), **_stats(headers),
                     problems=found.problems, file_variants=found.file_variants)

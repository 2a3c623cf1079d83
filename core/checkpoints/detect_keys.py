"""What the detector's rules share: a view of the header's keys and a finding.

The rules in ``detect_models``/``detect_lora`` look at key names and shapes
only; they return a :class:`Finding` (what the file is), and ``detect`` adds
what every file has (size, dtype, parameter count).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from core.checkpoints.header import TensorInfo

#: Component slot of each text encoder kind (the diffusers pipeline's names).
ENCODER_SLOTS = {"clip_l": "text_encoder", "openclip_h": "text_encoder",
                 "clip_g": "text_encoder_2", "t5xxl": "t5"}

#: Text encoder kind by hidden width (CLIP-L 768, OpenCLIP ViT-H 1024, bigG 1280).
CLIP_KIND_BY_WIDTH = {768: "clip_l", 1024: "openclip_h", 1280: "clip_g"}

#: Base model by the cross-attention context width of its U-Net.
BASE_BY_CONTEXT = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl_refiner"}


@dataclass(frozen=True)
class Finding:
    """What the key names and shapes say a file is."""

    family: str
    variant: str | None = None
    base: str | None = None
    layout: str | None = None
    components: tuple[str, ...] = ()
    text_encoders: tuple[str, ...] = ()
    prefix: str = ""
    needs_choice: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class Keys:
    """The header's tensors with the lookups the rules need."""

    def __init__(self, tensors: Mapping[str, TensorInfo], metadata: Mapping[str, str]):
        self.tensors = tensors
        self.metadata = metadata
        self._sorted: list[str] | None = None

    def __contains__(self, key: str) -> bool:
        return key in self.tensors

    def __len__(self) -> int:
        return len(self.tensors)

    def shape(self, key: str) -> tuple[int, ...] | None:
        info = self.tensors.get(key)
        return info.shape if info is not None else None

    def dim(self, key: str, axis: int) -> int | None:
        shape = self.shape(key)
        return shape[axis] if shape is not None and len(shape) > max(axis, -axis - 1) else None

    def any_with_prefix(self, prefix: str) -> bool:
        return any(key.startswith(prefix) for key in self.tensors)

    def first(self, pattern: str) -> str | None:
        """The first key (in sorted order) that ``pattern`` (a regex) fully matches."""
        regex = re.compile(pattern)
        if self._sorted is None:
            self._sorted = sorted(self.tensors)
        return next((key for key in self._sorted if regex.fullmatch(key)), None)

    def first_of(self, keys: Iterable[str]) -> str | None:
        return next((key for key in keys if key in self.tensors), None)

    def block_count(self, prefix: str) -> int:
        """How many numbered blocks ``prefix<N>.`` there are (the highest N + 1)."""
        regex = re.compile(re.escape(prefix) + r"(\d+)\.")
        numbers = [int(m.group(1)) for key in self.tensors if (m := regex.match(key))]
        return max(numbers) + 1 if numbers else 0

    def top_prefixes(self, limit: int = 3) -> list[str]:
        """The most common first name parts (``model.``, ``foo.``), most common first."""
        counts: dict[str, int] = {}
        for key in self.tensors:
            head = key.split(".", 1)[0] + ("." if "." in key else "")
            counts[head] = counts.get(head, 0) + 1
        return [name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:limit]


# -- parts that all-in-one files bundle ---------------------------------------------------
#: (prefix, slot, kind when the width says nothing): the text encoders of each layout.
BUNDLED_ENCODERS = (
    ("cond_stage_model.transformer.", "text_encoder", "clip_l"),  # SD 1.x
    ("cond_stage_model.model.", "text_encoder", "openclip_h"),  # SD 2.x
    ("conditioner.embedders.0.transformer.", "text_encoder", "clip_l"),  # SDXL base
    ("conditioner.embedders.1.model.", "text_encoder_2", "clip_g"),  # SDXL base
    ("conditioner.embedders.0.model.", "text_encoder_2", "clip_g"),  # SDXL refiner
    ("text_encoders.clip_l.", "text_encoder", "clip_l"),  # SD3 / ComfyUI
    ("text_encoders.clip_g.", "text_encoder_2", "clip_g"),
    ("text_encoders.t5xxl.", "t5", "t5xxl"),
)

VAE_PREFIXES = ("first_stage_model.", "vae.")


def bundled_vae(keys: Keys) -> str | None:
    """The prefix of a VAE inside an all-in-one file, or None."""
    return next((p for p in VAE_PREFIXES if p + "decoder.conv_out.weight" in keys), None)


def bundled_encoders(keys: Keys) -> list[tuple[str, str]]:
    """(slot, kind) of each text encoder inside an all-in-one file, in slot order."""
    found = []
    for prefix, slot, kind in BUNDLED_ENCODERS:
        if keys.any_with_prefix(prefix):
            found.append((slot, _width_kind(keys, prefix) or kind))
    return found


def _width_kind(keys: Keys, prefix: str) -> str | None:
    """A CLIP kind read from its token embedding width, when the layout has one."""
    for name in ("text_model.embeddings.token_embedding.weight",
                 "transformer.text_model.embeddings.token_embedding.weight",
                 "transformer.embeddings.token_embedding.weight", "token_embedding.weight",
                 "model.token_embedding.weight"):
        width = keys.dim(prefix + name, 1)
        if width is not None:
            return CLIP_KIND_BY_WIDTH.get(width)
    return None


def with_bundled_parts(keys: Keys, model_slot: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(components, text encoder kinds) of a file whose model part is ``model_slot``."""
    components = [model_slot]
    if bundled_vae(keys):
        components.append("vae")
    encoders = bundled_encoders(keys)
    components.extend(slot for slot, _ in encoders if slot not in components)
    return tuple(components), tuple(kind for _, kind in encoders)

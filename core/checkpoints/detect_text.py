"""A Detection in words: the one-paragraph sentence the CLI and the loader nodes show."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.checkpoints.detect import Detection

VARIANT_TITLES = {
    "sd3_medium": "SD3 Medium", "sd35_medium": "SD3.5 Medium, dual attention",
    "sd35_large": "SD3.5 Large", "dev": "dev, guidance-distilled",
    "schnell": "schnell, timestep-distilled",
    "768-v?": "768-v or 512-base: ε- or v-prediction cannot be told from the shapes",
    "768-v": "768-v, v-prediction", "512-base": "512-base, ε-prediction",
    "inpainting": "inpainting, 9 input channels", "pix2pix": "instruct-pix2pix, 8 input channels",
    "depth": "depth-conditioned, 5 input channels", "upscale": "upscaler, 7 input channels",
    "bundle": "several encoders",
}
SLOT_TITLES = {"text_encoder": "the text encoder", "text_encoder_2": "the second text encoder",
               "t5": "the T5 encoder"}
LAYOUT_TITLES = {"peft": "PEFT", "lycoris": "LyCORIS", "open_clip": "open_clip"}
MODEL_FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner", "sd3", "flux")


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} bytes"


def short_count(count: int) -> str:
    for unit, scale in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return str(count)


def family_title(family: str | None) -> str:
    from core.checkpoints.detect import TITLES

    return TITLES.get(family or "", family or "unknown")


def describe(d: "Detection") -> str:
    """One paragraph: what it is, what it holds, its numbers, choices, notes, problems."""
    sentences = [_what(d)]
    if d.tensor_count:
        mixed = f" ({d.dtype_note})" if d.dtype_note else ""
        sentences.append(f"{human_size(d.size_bytes)} of {d.dtype} weights{mixed}: "
                         f"{d.parameters:,} parameters in {d.tensor_count:,} tensors")
    elif d.size_bytes:
        sentences.append(human_size(d.size_bytes))
    if d.file_variants:
        sentences.append("weight variants: " + ", ".join(d.file_variants))
    for name, options in d.needs_choice.items():
        sentences.append(f"choose the {name.replace('_', ' ')}: {' or '.join(options)}")
    unknown_said = d.family == "unknown" and d.variant != "pickle"  # notes[0] is the sentence
    sentences.extend(d.notes[1:] if unknown_said else d.notes)
    sentences.extend(d.problems)
    return ". ".join(_capital(s) for s in sentences) + "."


def _what(d: "Detection") -> str:
    if d.family == "unknown":
        if d.variant == "pickle":
            return "a pickled checkpoint"
        return d.notes[0] if d.notes else "an unrecognised file"
    variant = VARIANT_TITLES.get(d.variant or "", d.variant)
    if d.variant == d.layout or d.family == "text_encoder":
        variant = None  # said by the layout, or by the noun
    details = ", ".join(x for x in (variant, _layout(d)) if x)
    details = f" ({details})" if details else ""
    return f"{_noun(d)}{details}{_holding(d)}"


def _noun(d: "Detection") -> str:
    title = family_title(d.family)
    if d.family in MODEL_FAMILIES:
        model_only = set(d.components) <= {"unet", "transformer"}
        part = "U-Net" if "unet" in d.components else "transformer"
        return f"{_article(title)} {title} {part + ' file' if model_only else 'checkpoint'}"
    if d.family in ("controlnet", "lora"):
        target = f" for {family_title(d.base)}" if d.base else ""
        return f"{_article(title)} {title}{target}"
    if d.family == "text_encoder":
        kinds = " + ".join(_encoder(k) for k in d.text_encoders) or "unknown"
        return f"{_article(kinds)} {kinds} text encoder" + ("s" if len(d.text_encoders) > 1 else "")
    if d.family == "diffusers_folder":
        inner = family_title(d.base) if d.base not in (None, "unknown") else "unrecognised"
        return f"a diffusers folder of {_article(inner)} {inner} model"
    return f"{_article(title)} {title}"


def _holding(d: "Detection") -> str:
    if d.family == "text_encoder" or len(d.components) < 2 and d.family not in ("workbench", "lora"):
        return ""
    from core.checkpoints.detect import PART_TITLES

    encoders = iter(d.text_encoders)
    parts = []
    for slot in d.components:
        if slot in PART_TITLES:
            parts.append(PART_TITLES[slot])
        elif slot.startswith("text_encoder") or slot == "t5":
            kind = next(encoders, None)
            parts.append(f"the {_encoder(kind)} text encoder" if kind else SLOT_TITLES[slot])
        else:
            parts.append(slot)
    if not parts:
        return ""
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f" {'patching' if d.family == 'lora' else 'holding'} {listed}"


def _layout(d: "Detection") -> str:
    if not d.layout or d.family == "diffusers_folder":
        return ""
    if d.layout in ("original", "diffusers"):
        return f"{d.layout} layout"
    return f"{LAYOUT_TITLES.get(d.layout, d.layout)} keys"


def _encoder(kind: str) -> str:
    from core.checkpoints.detect import ENCODER_TITLES

    return ENCODER_TITLES.get(kind, kind)


def _article(word: str) -> str:
    """"an SD 1.x", "an OpenCLIP", "a VAE", "a LoRA" (by how the word is spoken)."""
    return "an" if word.startswith("SD") or word[:1].lower() in "aeiou" else "a"


def _capital(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]

"""Diffusers folders: a pipeline (``model_index.json``) or one model (``config.json``).

The JSON configs say what the headers would (``_class_name``, widths, the
U-Net's ``cross_attention_dim``, Flux's ``guidance_embeds``) and even what
shapes cannot (the scheduler's ``prediction_type``). The weights files are
listed so the caller can read their headers for dtype, size and parameters;
``.fp16``/``.bf16`` weight variants are reported.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.checkpoints.detect_keys import CLIP_KIND_BY_WIDTH, Finding
from core.checkpoints.safetensors_io import CheckpointError

#: diffusers/transformers component folder -> the detector's component slot.
WEIGHT_SLOTS = {"unet": "unet", "transformer": "transformer", "vae": "vae",
                "text_encoder": "text_encoder", "text_encoder_2": "text_encoder_2",
                "text_encoder_3": "t5", "controlnet": "controlnet", "prior": "prior"}
WEIGHT_FILE = re.compile(
    r"(?:diffusion_pytorch_model|model)(?:\.(?P<variant>\w+?))?(?:-\d+-of-\d+)?\.(?P<ext>safetensors|bin)")
MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True)
class FolderFinding:
    finding: Finding
    weights: tuple[Path, ...]  # the safetensors files a default load reads
    file_variants: tuple[str, ...]
    problems: tuple[str, ...]


def is_diffusers_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "model_index.json").is_file()
                              or (path / "config.json").is_file() and _weight_files(path))


def detect_folder(path: Path) -> FolderFinding:
    if (path / "model_index.json").is_file():
        return _pipeline(path)
    if (path / "config.json").is_file():
        return _single_model(path)
    raise CheckpointError(f"{path}: a folder without model_index.json or config.json: "
                          "not a diffusers model folder")


def _pipeline(path: Path) -> FolderFinding:
    index = read_json(path / "model_index.json")
    class_name = str(index.get("_class_name", ""))
    slots, encoders, weights, variants, problems = [], [], [], set(), []
    configs: dict[str, dict] = {}
    for name, spec in index.items():
        if name.startswith("_") or name not in WEIGHT_SLOTS or not _present(spec):
            continue
        folder = path / name
        config = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
        configs[name] = config
        slots.append(WEIGHT_SLOTS[name])
        chosen, found_variants, problem = _component_weights(folder)
        weights.extend(chosen)
        variants.update(found_variants)
        if problem:
            problems.append(problem)
        if name.startswith("text_encoder"):
            encoders.append(_encoder_kind(config))
    family, variant, choice = _pipeline_family(class_name, configs, path)
    finding = Finding("diffusers_folder", variant, base=family, layout="diffusers",
                      components=tuple(slots), text_encoders=tuple(k for k in encoders if k),
                      needs_choice=choice, notes=(f"pipeline {class_name}",) if class_name else ())
    return FolderFinding(finding, tuple(weights), tuple(sorted(variants)), tuple(problems))


def _single_model(path: Path) -> FolderFinding:
    config = read_json(path / "config.json")
    family, variant, choice = _model_family(config)
    if family is None:
        kind = config.get("_class_name") or (config.get("architectures") or ["?"])[0]
        raise CheckpointError(f"{path}: a diffusers/transformers {kind} folder, "
                              "which this workbench does not load")
    slot = {"vae": "vae", "controlnet": "controlnet", "text_encoder": "text_encoder"}.get(
        family, "transformer" if family in ("sd3", "flux") else "unet")
    encoders = ()
    if family == "text_encoder":
        encoders = (variant,)
        slot = {"clip_g": "text_encoder_2", "t5xxl": "t5"}.get(variant, "text_encoder")
    weights, variants, problem = _component_weights(path)
    base = family if family not in ("controlnet",) else _controlnet_base(config)
    finding = Finding("diffusers_folder", variant, base=base, layout="diffusers",
                      components=(slot,), text_encoders=encoders, needs_choice=choice,
                      notes=(f"model {config.get('_class_name') or 'transformers'}",))
    return FolderFinding(finding, tuple(weights), tuple(sorted(variants)),
                         (problem,) if problem else ())


def _pipeline_family(class_name: str, configs: dict[str, dict], path: Path):
    backbone = configs.get("unet") or configs.get("transformer") or {}
    family, variant, choice = _model_family(backbone)
    if family == "sd2" and variant == "768-v?":
        scheduler = path / "scheduler" / "scheduler_config.json"
        prediction = read_json(scheduler).get("prediction_type") if scheduler.is_file() else None
        if prediction in ("epsilon", "v_prediction"):
            variant, choice = ("768-v" if prediction == "v_prediction" else "512-base"), {}
    if family is None and class_name:
        family = "unknown"
    return family, variant, choice


def _model_family(config: dict[str, Any]):
    """(family, variant, choice) of one diffusers/transformers model config."""
    from core.checkpoints.detect_models import INPUT_VARIANTS, PREDICTION_CHOICE, VAE_CHOICES

    name = config.get("_class_name", "")
    if name == "UNet2DConditionModel":
        family = {2816: "sdxl", 2560: "sdxl_refiner"}.get(
            config.get("projection_class_embeddings_input_dim"))
        family = family or {768: "sd1", 1024: "sd2"}.get(_first(config.get("cross_attention_dim")))
        variant = INPUT_VARIANTS.get(config.get("in_channels"))
        if family == "sd2" and variant is None:
            return family, "768-v?", dict(PREDICTION_CHOICE)
        return family, variant, {}
    if name == "SD3Transformer2DModel":
        dual = bool(config.get("dual_attention_layers"))
        qk_norm = config.get("qk_norm") is not None
        return "sd3", "sd35_medium" if dual else "sd35_large" if qk_norm else "sd3_medium", {}
    if name == "FluxTransformer2DModel":
        return "flux", "dev" if config.get("guidance_embeds") else "schnell", {}
    if name == "AutoencoderKL":
        channels = config.get("latent_channels", 4)
        return "vae", f"{channels}-channel", dict(VAE_CHOICES.get(channels, {}))
    if name in ("ControlNetModel", "SD3ControlNetModel", "FluxControlNetModel"):
        return "controlnet", "diffusers", {}
    kind = _encoder_kind(config)
    return ("text_encoder", kind, {}) if kind else (None, None, {})


def _controlnet_base(config: dict[str, Any]) -> str | None:
    name = config.get("_class_name")
    if name != "ControlNetModel":
        return {"SD3ControlNetModel": "sd3", "FluxControlNetModel": "flux"}.get(name)
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return {768: "sd1", 1024: "sd2"}.get(_first(config.get("cross_attention_dim")))


def _encoder_kind(config: dict[str, Any]) -> str | None:
    architectures = config.get("architectures") or []
    if any(a.startswith("T5") for a in architectures) or config.get("model_type") == "t5":
        return "t5xxl" if config.get("d_model") == 4096 else "t5"
    if any(a.startswith("CLIPText") for a in architectures) or config.get("model_type") == "clip_text_model":
        return CLIP_KIND_BY_WIDTH.get(config.get("hidden_size"))
    return None


def _component_weights(folder: Path) -> tuple[list[Path], set[str], str | None]:
    """(the safetensors a default load reads, the variants there, a problem)."""
    files = _weight_files(folder)
    variants = {m.group("variant") for f in files if (m := WEIGHT_FILE.fullmatch(f.name))
                and m.group("variant")}
    safe = {f: WEIGHT_FILE.fullmatch(f.name).group("variant") for f in files
            if f.suffix == ".safetensors"}
    chosen = [f for f, variant in safe.items() if variant is None]
    if not chosen and safe:  # only variants: take one, the same one in every folder
        first = min(safe.values())
        chosen = [f for f, variant in safe.items() if variant == first]
    if chosen:
        return sorted(chosen), variants, None
    if files:
        return [], variants, f"{folder.name}: only pickled weights (.bin): refused unless allowed"
    return [], variants, f"{folder.name}: no weights file"


def _weight_files(folder: Path) -> list[Path]:
    try:
        return [f for f in folder.iterdir() if WEIGHT_FILE.fullmatch(f.name) and f.is_file()]
    except OSError:
        return []


def _present(spec: Any) -> bool:
    return isinstance(spec, list) and len(spec) == 2 and spec[0] is not None and spec[1] is not None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def read_json(path: Path) -> dict[str, Any]:
    """A small JSON object file, or CheckpointError naming it."""
    try:
        too_big = path.stat().st_size > MAX_CONFIG_BYTES
        value = None if too_big else json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CheckpointError(f"{path}: not a readable JSON file ({error})") from None
    if too_big:
        raise CheckpointError(f"{path}: over {MAX_CONFIG_BYTES:,} bytes: not a config file")
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: a JSON {type(value).__name__}, not an object")
    return value

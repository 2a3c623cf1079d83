"""Safetensors files in real single-file layouts, made on the spot for tests.

Public API (everything takes a path and writes one ``.safetensors`` file there):

``write_safetensors(path, tensors, metadata=None) -> Path``
    Plain writer (tensors made contiguous and copied to CPU).
``write_sparse_safetensors(path, specs, metadata=None) -> Path``
    A valid file whose data region is a hole: ``specs`` maps key -> (shape, dtype).
    It claims the full size but takes a few hundred kB on disk; tensors read as zeros.
``read_header(path) -> (entries, metadata)``
    The JSON header: key -> {"dtype", "shape", "data_offsets"}, and ``__metadata__``.

Tiny random-weight files (seconds to make), each returning a ``TinyFile``:
``tiny_sd1_checkpoint(path, seed=0)``, ``tiny_sd2_checkpoint(path, v=True, seed=0)``,
``tiny_sdxl_checkpoint(path, seed=0)``, ``tiny_sdxl_refiner_checkpoint(path, seed=0)``,
``tiny_vae_file(path, seed=0)``,
``tiny_controlnet_file(path, layout="original", seed=0, family="sd1")`` (SDXL: diffusers layout),
``tiny_lora_file(path, family="sd1", rank=4, alpha=2.0, seed=0)``.

``TinyFile`` holds ``path``; ``models`` (component name -> the tiny diffusers /
transformers module whose weights the file holds: "unet", "vae",
"text_encoder", "text_encoder_2", "controlnet"); ``configs`` (component ->
JSON-ready config, ``_class_name`` / ``architectures`` included); ``tensors``
(exactly what was written, by original key); ``write_config_folder(folder)``
writes ``folder/<component>/config.json`` for ``from_single_file(config=...)``.
Component names follow diffusers pipelines. Loading the file must give
``models[c].state_dict()`` exactly.

What each file holds (original key prefixes):

- SD 1.x: ``model.diffusion_model.``, ``first_stage_model.``,
  ``cond_stage_model.transformer.text_model.`` (+ ``…embeddings.position_ids``,
  int64 (1, 77)), LDM's 12 schedule buffers (``alphas_cumprod``, ``betas`` …, (1000,))
  and the scalars ``model_ema.decay`` (float) and ``model_ema.num_updates`` (int32).
- SD 2.x: the same, text encoder ``cond_stage_model.model.`` (OpenCLIP: fused
  ``in_proj_weight``, ``text_projection``, ``logit_scale``, and one resblock
  more than the transformers model uses).
- SDXL base: no buffers; ``conditioner.embedders.0.transformer.text_model.``
  (CLIP-L, no position_ids) and ``conditioner.embedders.1.model.`` (bigG).
- SDXL refiner: ``conditioner.embedders.0.model.`` (bigG only).
- VAE file: no prefix. ControlNet SD 1.x: ``control_model.`` / none / diffusers
  keys; SDXL (sparse ``controlnet_sdxl`` too): diffusers keys.
- LoRA: ``lora_unet_…``, ``lora_te_…`` (SD 1.x) or ``lora_te1_…``/``lora_te2_…``
  (SDXL; U-Net names in the original SGM layout), with ``ss_*`` metadata.

Tiny widths: U-Net blocks 32-128 channels, text encoders 32 (CLIP-L) and 64
(OpenCLIP) wide with the real 49408-token vocabulary and 77 positions, VAE
(32, 64); configs in ``unet_ldm.TINY_UNET_CONFIGS``, ``vae_ldm.TINY_VAE_CONFIG``,
``clip_ldm.TINY_*_CONFIG``, ``controlnet_ldm.TINY_CONTROLNET_CONFIG``.

Full-size layouts without data: ``sparse_full_size_file(path, family)`` for
``SPARSE_FAMILIES`` (real key names and shapes from ``core/models/configs``;
fp16, the standalone VAE fp32; LoRAs rank 32, alpha 16).
Lower level: ``tiny_models`` / ``full_size_models(family)`` (the models and
configs), ``original_layout(family, models, configs)`` (the tensors by original
key), ``full_size_specs(family)``, ``build_model(component, config)``.

Never commit the files: make them under pytest's ``tmp_path``.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from tests.layouts import published_config, randomize_

SAFETENSORS_DTYPES = {
    torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


# --------------------------------------------------------------------- writers

def write_safetensors(path, tensors: Mapping[str, torch.Tensor],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` (copied, contiguous, on CPU) with string ``metadata``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
    save_file(plain, str(path), metadata=dict(metadata) if metadata else None)
    return path


def write_sparse_safetensors(path, specs: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
                             metadata: Mapping[str, str] | None = None) -> Path:
    """A valid safetensors file of the full size whose data region is a hole.

    The header lists every tensor with its real offsets; the data is never
    written: ``truncate`` extends the file, so the filesystem stores no blocks.
    """
    header: dict[str, Any] = {}
    offset = 0
    for key in sorted(specs):
        shape, dtype = specs[key]
        size = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        header[key] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape),
                       "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = dict(metadata)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors aligns the data start to 8 bytes
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)))
        handle.write(raw)
        handle.truncate(8 + len(raw) + offset)
    return path


def read_header(path) -> tuple[dict[str, dict], dict[str, str]]:
    """(key -> {"dtype", "shape", "data_offsets"}, metadata) without reading tensor data."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    metadata = header.pop("__metadata__", {}) or {}
    return header, metadata


# ------------------------------------------------------- families, assembled
# A family is a set of diffusers/transformers models (tiny and random, or full
# size on the meta device) and the map of all of them into one file's layout.

FAMILY_FOLDERS = {"sd1": "sd1", "sd2": "sd2", "sdxl": "sdxl", "sdxl_refiner": "sdxl_refiner",
                  "vae": "sd1", "controlnet_sd1": "controlnet_sd1",
                  "controlnet_sdxl": "controlnet_sdxl", "lora_sd1": "sd1",
                  "lora_sdxl": "sdxl"}
COMPONENTS = {
    "sd1": ("unet", "vae", "text_encoder"), "sd2": ("unet", "vae", "text_encoder"),
    "sdxl": ("unet", "vae", "text_encoder", "text_encoder_2"),
    "sdxl_refiner": ("unet", "vae", "text_encoder_2"), "vae": ("vae",),
    "controlnet_sd1": ("controlnet",), "controlnet_sdxl": ("controlnet",),
    "lora_sd1": ("unet", "text_encoder"),
    "lora_sdxl": ("unet", "text_encoder", "text_encoder_2"),
}
_CLASSES = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "controlnet": "ControlNetModel"}


def _tiny_config(family: str, component: str, options: Mapping) -> dict:
    from tests.layouts import clip_ldm, controlnet_ldm, unet_ldm, vae_ldm

    base = family.removeprefix("lora_")
    if component == "unet":
        return dict(unet_ldm.TINY_UNET_CONFIGS[base])
    if component == "vae":
        scale = options.get("scaling_factor", 0.13025 if base.startswith("sdxl") else 0.18215)
        return dict(vae_ldm.TINY_VAE_CONFIG, scaling_factor=scale)
    if component == "controlnet":
        return dict(controlnet_ldm.TINY_CONTROLNET_SDXL_CONFIG if family == "controlnet_sdxl"
                    else controlnet_ldm.TINY_CONTROLNET_CONFIG)
    if component == "text_encoder_2":
        return dict(clip_ldm.TINY_OPEN_CLIP_G_CONFIG)
    return dict(clip_ldm.TINY_OPEN_CLIP_H_CONFIG if base == "sd2" else clip_ldm.TINY_CLIP_L_CONFIG)


def build_model(component: str, config: Mapping) -> torch.nn.Module:
    """The (untrained) model of ``component`` from a plain config (on the current default device)."""
    if component in ("text_encoder", "text_encoder_2"):
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        cls = CLIPTextModelWithProjection if component == "text_encoder_2" else CLIPTextModel
        return cls(CLIPTextConfig(**config))
    import diffusers

    return getattr(diffusers, _CLASSES[component])(**config)


def _json_config(component: str, config: Mapping) -> dict:
    if component.startswith("text_encoder"):
        name = "CLIPTextModelWithProjection" if component == "text_encoder_2" else "CLIPTextModel"
        return {"architectures": [name], "model_type": "clip_text_model", **config}
    return {"_class_name": _CLASSES[component], **config}


def tiny_models(family: str, seed: int, **options) -> tuple[dict, dict]:
    """(component -> seeded tiny model, component -> JSON-ready config) of ``family``."""
    models, configs = {}, {}
    for index, component in enumerate(COMPONENTS[family]):
        config = _tiny_config(family, component, options)
        models[component] = randomize_(build_model(component, config), 1000 * seed + index)
        configs[component] = _json_config(component, config)
    if family in ("sd1", "sd2", "sdxl", "sdxl_refiner"):
        configs["scheduler"] = _scheduler_config(family, options.get("v_prediction", False))
    return models, configs


def _scheduler_config(family: str, v_prediction: bool) -> dict:
    from tests.layouts import CONFIG_ROOT

    config = json.loads((CONFIG_ROOT / FAMILY_FOLDERS[family] / "scheduler.json").read_text())
    config.pop("_diffusers_version", None)
    if v_prediction:
        config["prediction_type"] = "v_prediction"
    return config


def full_size_models(family: str) -> tuple[dict, dict]:
    """(component -> full-size model on the meta device, component -> published config)."""
    folder = FAMILY_FOLDERS[family]
    models, configs = {}, {}
    for component in COMPONENTS[family]:
        configs[component] = published_config(folder, component)
        with torch.device("meta"):
            models[component] = build_model(component, configs[component])
    return models, configs


def seeded_maker(seed: int):
    """``make(shape, dtype=, device=)`` filling tensors a model lacks with seeded noise."""
    generator = torch.Generator().manual_seed(10_000 + seed)

    def make(shape, dtype=torch.float32, device="cpu"):
        return (0.05 * torch.randn(tuple(shape), generator=generator)).to(dtype=dtype, device=device)
    return make


def empty_maker(shape, dtype=torch.float32, device="meta"):
    """Shapes only: always on the meta device, whatever ``device`` says."""
    return torch.empty(tuple(shape), dtype=dtype, device="meta")


def original_layout(family: str, models: Mapping[str, torch.nn.Module], configs: Mapping[str, dict],
                    make=empty_maker, **options) -> dict[str, torch.Tensor]:
    """Every tensor of ``family`` under the key names and shapes of its original file."""
    from tests.layouts.controlnet_ldm import controlnet_file_layout
    from tests.layouts.lora_kohya import kohya_lora
    from tests.layouts.unet_ldm import LDM_EMA_SCALARS, ldm_schedule_buffers, unet_to_ldm
    from tests.layouts.vae_ldm import vae_to_ldm

    states = {name: model.state_dict() for name, model in models.items()}
    if family == "vae":
        return vae_to_ldm(states["vae"], configs["vae"], prefix="")
    if family.startswith("controlnet_"):
        default = "diffusers" if family == "controlnet_sdxl" else "original"
        return controlnet_file_layout(states["controlnet"], configs["controlnet"],
                                      options.get("layout", default))
    if family.startswith("lora_"):
        return kohya_lora(family.removeprefix("lora_"), models, configs,
                          options.get("rank", 4), options.get("alpha", 2.0), make)
    result = unet_to_ldm(states["unet"], configs["unet"])
    result.update(vae_to_ldm(states["vae"], configs["vae"]))
    result.update(_text_encoders_layout(family, states, configs, make))
    if family in ("sd1", "sd2"):
        result.update(ldm_schedule_buffers())
        result.update(LDM_EMA_SCALARS)
    return result


def _text_encoders_layout(family: str, states: Mapping[str, Mapping], configs: Mapping[str, dict],
                          make) -> dict[str, torch.Tensor]:
    """The text encoders of an all-in-one checkpoint under their original names."""
    from tests.layouts import clip_ldm as clip

    if family == "sd1":
        return clip.clip_l_to_ldm(states["text_encoder"], clip.SD1_CLIP_PREFIX)
    component = "text_encoder" if family == "sd2" else "text_encoder_2"
    text = configs[component]
    device = next(iter(states[component].values())).device
    extras = clip.open_clip_extras(
        text["hidden_size"], text["intermediate_size"],
        projection_dim=text["hidden_size"] if family == "sd2" else None,  # SD 2.x: unused projection
        unused_layer=text["num_hidden_layers"] if family == "sd2" else None,  # and unused last layer
        make=make, device=device)
    prefix = {"sd2": clip.SD2_OPEN_CLIP_PREFIX, "sdxl": clip.SDXL_OPEN_CLIP_PREFIX,
              "sdxl_refiner": clip.REFINER_OPEN_CLIP_PREFIX}[family]
    result = clip.open_clip_to_ldm(states[component], prefix, extras)
    if family == "sdxl":
        # No position_ids: with them the layout no longer matches the published
        # file sizes (base and refiner then differ from them by the same ~37.9 kB).
        result.update(clip.clip_l_to_ldm(states["text_encoder"], clip.SDXL_CLIP_L_PREFIX,
                                         position_ids=False))
    return result


def full_size_specs(family: str, dtype: torch.dtype | None = None):
    """(key -> (shape, dtype), metadata) of ``family`` at full size.

    Float tensors in fp16 (``dtype``), except the standalone VAE (fp32, as the
    published VAE files); integer tensors (position_ids) keep int64.
    """
    from tests.layouts.lora_kohya import kohya_metadata

    models, configs = full_size_models(family)
    tensors = original_layout(family, models, configs, rank=LORA_RANK, alpha=LORA_RANK / 2)
    dtype = dtype or (torch.float32 if family == "vae" else torch.float16)
    specs = {k: (tuple(v.shape), v.dtype if not v.is_floating_point() else dtype)
             for k, v in tensors.items()}
    base = family.removeprefix("lora_")
    metadata = kohya_metadata(base, LORA_RANK, LORA_RANK / 2) if family.startswith("lora_") else None
    return specs, metadata


LORA_RANK = 32  # the full-size sparse LoRAs: rank 32, alpha 16


# ------------------------------------------------------------------ tiny files

@dataclass
class TinyFile:
    """A tiny file and the diffusers-side source of every tensor in it."""

    path: Path
    models: dict[str, torch.nn.Module]
    configs: dict[str, dict]
    tensors: dict[str, torch.Tensor] = field(repr=False)

    def state_dict(self, component: str) -> dict[str, torch.Tensor]:
        return self.models[component].state_dict()

    def write_config_folder(self, folder) -> Path:
        """``folder/<component>/config.json`` for each component, diffusers-style
        (``scheduler/scheduler_config.json`` for the scheduler)."""
        folder = Path(folder)
        for component, config in self.configs.items():
            name = "scheduler_config.json" if component == "scheduler" else "config.json"
            target = folder / component / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(config, indent=2, sort_keys=True))
        return folder


def _tiny_file(path, family: str, seed: int, metadata=None, **options) -> TinyFile:
    models, configs = tiny_models(family, seed, **options)
    tensors = original_layout(family, models, configs, make=seeded_maker(seed),
                                       **options)
    written = write_safetensors(path, tensors, metadata)
    return TinyFile(written, models, configs, tensors)


def tiny_sd1_checkpoint(path, seed: int = 0) -> TinyFile:
    """SD 1.x all-in-one: U-Net, VAE, CLIP-L (+ position_ids and the LDM schedule buffers)."""
    return _tiny_file(path, "sd1", seed)


def tiny_sd2_checkpoint(path, v: bool = True, seed: int = 0) -> TinyFile:
    """SD 2.x all-in-one with OpenCLIP (its unused final layer included).

    ``v`` only sets ``configs["scheduler"]["prediction_type"]``: the file
    cannot tell ε from v, as a real one cannot.
    """
    return _tiny_file(path, "sd2", seed, v_prediction=v)


def tiny_sdxl_checkpoint(path, seed: int = 0) -> TinyFile:
    """SDXL base: U-Net with text_time embedding, VAE, CLIP-L (32 wide) and bigG (64 wide)."""
    return _tiny_file(path, "sdxl", seed)


def tiny_sdxl_refiner_checkpoint(path, seed: int = 0) -> TinyFile:
    """SDXL refiner: U-Net (4 blocks, aesthetic-score embedding), VAE, bigG only."""
    return _tiny_file(path, "sdxl_refiner", seed)


def tiny_vae_file(path, seed: int = 0, scaling_factor: float = 0.18215) -> TinyFile:
    """A standalone VAE file: original names without prefix (``encoder.``, ``decoder.`` …)."""
    return _tiny_file(path, "vae", seed, scaling_factor=scaling_factor)


def tiny_controlnet_file(path, layout: str = "original", seed: int = 0,
                         family: str = "sd1") -> TinyFile:
    """A ControlNet for the tiny ``family`` ("sd1" | "sdxl") U-Net.

    SD 1.x ``layout``: "original" (``control_model.`` prefix), "original_bare"
    (the same without prefix, as ControlNet-v1-1 files) or "diffusers" (the
    diffusers model's own keys). SDXL: "diffusers" only, as published.
    """
    if family == "sdxl" and layout != "diffusers":
        raise ValueError("SDXL ControlNets exist in the diffusers layout only; pass layout='diffusers'")
    return _tiny_file(path, f"controlnet_{family}", seed, layout=layout)


def tiny_lora_file(path, family: str = "sd1", rank: int = 4, alpha: float = 2.0,
                   seed: int = 0) -> TinyFile:
    """A kohya LoRA for the tiny ``family`` ("sd1" | "sdxl") checkpoint of the same seed.

    ``models`` are that checkpoint's U-Net and text encoders (the weights the
    LoRA patches); ``tensors`` the ``lora_down``/``lora_up``/``alpha`` triples.
    """
    from tests.layouts.lora_kohya import kohya_metadata

    return _tiny_file(path, f"lora_{family}", seed, kohya_metadata(family, rank, alpha),
                      rank=rank, alpha=alpha)


# ---------------------------------------------------------- full-size sparse

SPARSE_FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner", "vae", "controlnet_sd1",
                   "controlnet_sdxl", "lora_sd1", "lora_sdxl")


def sparse_full_size_file(path, family: str) -> Path:
    """Real key names and full shapes of ``family``, without data (see module doc)."""
    if family not in SPARSE_FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {SPARSE_FAMILIES}")
    specs, metadata = full_size_specs(family)
    return write_sparse_safetensors(path, specs, metadata)

"""Full-size random-weight checkpoints and diffusers config folders for the benchmarks.

``make_checkpoint(path, family="sd1")`` writes a full-size all-in-one
``.safetensors`` file in the original single-file layout of ``family``
("sd1": SD 1.5, about 2.1 GB fp16; "sdxl": SDXL base, about 6.9 GB fp16):
the real key names and shapes (``tests/layouts/files.py``'s
``full_size_specs``), the data region filled with N(0, 0.02²) values streamed
in 32 MB chunks, so memory stays low whatever the file's size; LDM's schedule
buffers (SD 1.x) hold their real values, position_ids 0…76.

``config_folder(folder, family="sd1")`` writes a diffusers-style config folder
(``model_index.json`` and ``<component>/config.json``) from
``core/models/configs/<family>``, for ``from_single_file(path, config=folder,
local_files_only=True)`` without network (no weights, no tokenizer files).

Used by ``bench/load.py`` and ``bench/peer_full.py``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 1 << 24  # values per random chunk (32 MB in fp16)
PIPELINE_INDEX = {  # model_index.json of runwayml/stable-diffusion-v1-5
    "_class_name": "StableDiffusionPipeline",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "requires_safety_checker": False,
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
SDXL_PIPELINE_INDEX = {  # model_index.json of stabilityai/stable-diffusion-xl-base-1.0
    "_class_name": "StableDiffusionXLPipeline",
    "force_zeros_for_empty_prompt": True,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
INDEXES = {"sd1": PIPELINE_INDEX, "sdxl": SDXL_PIPELINE_INDEX}
COMPONENTS = {"sd1": ("unet", "vae", "text_encoder", "scheduler"),
              "sdxl": ("unet", "vae", "text_encoder", "text_encoder_2", "scheduler")}


def make_checkpoint(path: Path, seed: int = 0, family: str = "sd1", dtype=None) -> Path:
    """The full-size ``family`` file: real header, random weights (fp16 unless
    ``dtype``), streamed."""
    import torch

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.layouts.files import full_size_specs, read_header, write_sparse_safetensors
    from tests.layouts.unet_ldm import LDM_EMA_SCALARS, ldm_schedule_buffers

    specs, metadata = full_size_specs(family, dtype or torch.float16)
    write_sparse_safetensors(path, specs, metadata)  # the header; the data region is a hole
    entries, _ = read_header(path)
    with open(path, "rb") as handle:
        start = 8 + int.from_bytes(handle.read(8), "little")
    exact = {**ldm_schedule_buffers(), **LDM_EMA_SCALARS}  # LDM's tables, as real files hold
    generator = torch.Generator().manual_seed(seed)
    with open(path, "r+b") as handle:
        handle.seek(start)
        written = 0
        for key, entry in sorted(entries.items(), key=lambda item: item[1]["data_offsets"][0]):
            begin, end = entry["data_offsets"]
            assert begin == written, f"{key}: the data region is not contiguous"
            shape, dtype = specs[key]
            count = torch.Size(shape).numel()
            if key in exact:
                _write(handle, exact[key].to(dtype).reshape(-1))
            elif not dtype.is_floating_point:  # position_ids 0…76
                _write(handle, torch.arange(count, dtype=dtype))
            else:
                for done in range(0, count, CHUNK):
                    size = min(CHUNK, count - done)
                    values = torch.empty(size, dtype=dtype).normal_(0.0, 0.02, generator=generator)
                    _write(handle, values)
            written = end
        handle.flush()
        os.fsync(handle.fileno())  # no write-back running while the loaders are timed
    return path


def _write(handle, tensor) -> None:
    handle.write(memoryview(tensor.contiguous().numpy()).cast("B"))


def config_folder(folder: Path, family: str = "sd1") -> Path:
    """A diffusers-style config folder of ``family`` ("sd1" or "sdxl") from the
    shipped configs (no weights, no tokenizer files)."""
    source = ROOT / "core" / "models" / "configs" / family
    (folder / "model_index.json").parent.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(INDEXES[family], indent=2))
    for component in COMPONENTS[family]:
        name = "scheduler_config.json" if component == "scheduler" else "config.json"
        target = folder / component / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((source / f"{component}.json").read_text(encoding="utf-8"))
    return folder

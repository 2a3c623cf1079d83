"""The models folders: where they come from, the scan, its cache, choices, resolve."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from core.checkpoints import CheckpointError, library
from tests.test_detect import FILES, raw_file, sparse_file


@pytest.fixture(autouse=True)
def fresh_library(monkeypatch):
    monkeypatch.delenv(library.ENV_VAR, raising=False)
    library.set_models_dirs(None)
    library.clear_cache()
    yield
    library.set_models_dirs(None)
    library.clear_cache()


@pytest.fixture
def models(tmp_path):
    root = tmp_path / "models"
    for folder in ("checkpoints", "vae", "loras/styles", "controlnet", ".trash"):
        (root / folder).mkdir(parents=True)
    sparse_file(root / "checkpoints" / "sd15.safetensors", FILES["sd1"])
    sparse_file(root / "checkpoints" / "flux-dev.safetensors", FILES["flux_dev"])
    sparse_file(root / "vae" / "ae.safetensors", FILES["vae_flux_diffusers"])
    sparse_file(root / "loras" / "styles" / "ink.safetensors", FILES["lora_kohya_sdxl"])
    sparse_file(root / "controlnet" / "canny.safetensors", FILES["controlnet_original"])
    sparse_file(root / ".trash" / "old.safetensors", FILES["sd1"])
    raw_file(root / "checkpoints" / "broken.safetensors", b"{", 0)
    (root / "notes.txt").write_text("not a model")
    return root


def test_folders_come_from_the_setting_then_the_env_var(tmp_path, monkeypatch):
    assert library.models_dirs() == []
    monkeypatch.setenv(library.ENV_VAR, os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert library.models_dirs() == [tmp_path / "a", tmp_path / "b"]
    library.set_models_dirs([tmp_path / "c", tmp_path / "a"])
    assert library.models_dirs() == [tmp_path / "c", tmp_path / "a", tmp_path / "b"]


def test_scan_finds_models_skips_hidden_and_reports_broken(models):
    entries = {e.name: e for e in library.scan([models])}
    assert sorted(entries) == ["checkpoints/broken.safetensors", "checkpoints/flux-dev.safetensors",
                               "checkpoints/sd15.safetensors", "controlnet/canny.safetensors",
                               "loras/styles/ink.safetensors", "vae/ae.safetensors"]
    assert entries["checkpoints/sd15.safetensors"].family == "sd1"
    broken = entries["checkpoints/broken.safetensors"]
    assert broken.detection is None and "not valid JSON" in broken.error


def test_choices_by_category_and_family(models):
    library.set_models_dirs([models])
    assert library.choices("checkpoint") == ["checkpoints/flux-dev.safetensors",
                                             "checkpoints/sd15.safetensors"]
    assert library.choices("flux") == ["checkpoints/flux-dev.safetensors"]
    assert library.choices("vae") == ["vae/ae.safetensors"]
    assert library.choices("lora") == ["loras/styles/ink.safetensors"]
    assert library.choices(["controlnet", "vae"]) == ["controlnet/canny.safetensors",
                                                      "vae/ae.safetensors"]
    assert len(library.choices()) == 5  # everything readable


def test_a_rescan_of_an_unchanged_folder_reads_no_header(models, monkeypatch):
    calls = []
    real = library.detect
    monkeypatch.setattr(library, "detect", lambda path: calls.append(path) or real(path))
    library.scan([models])
    assert len(calls) == 6
    calls.clear()
    library.scan([models])
    assert calls == []
    sparse_file(models / "vae" / "ae.safetensors", FILES["vae_sd"])  # changed: size differs
    assert library.choices("vae", [models]) == ["vae/ae.safetensors"]
    assert calls == [models / "vae" / "ae.safetensors"]
    assert library.scan([models])[-1].detection.variant == "4-channel"


def test_resolve_display_names_back_to_paths(models, tmp_path):
    library.set_models_dirs([tmp_path / "empty", models])
    assert library.resolve("vae/ae.safetensors") == models / "vae" / "ae.safetensors"
    absolute = models / "checkpoints" / "sd15.safetensors"
    assert library.resolve(str(absolute)) == absolute
    with pytest.raises(CheckpointError, match="not found in the models folders"):
        library.resolve("vae/none.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        library.resolve("../models/vae/ae.safetensors")


def test_the_first_folder_wins_a_name(models, tmp_path):
    other = tmp_path / "other" / "vae"
    other.mkdir(parents=True)
    sparse_file(other / "ae.safetensors", FILES["vae_sd"])
    entries = library.scan([other.parent, models])
    names = [e.name for e in entries]
    assert names.count("vae/ae.safetensors") == 1
    assert entries[names.index("vae/ae.safetensors")].detection.variant == "4-channel"


def test_symlink_loops_and_depth_are_safe(models):
    (models / "loras" / "styles" / "loop").symlink_to(models, target_is_directory=True)
    deep = models.joinpath(*[f"d{i}" for i in range(library.MAX_DEPTH + 2)])
    deep.mkdir(parents=True)
    sparse_file(deep / "too-deep.safetensors", FILES["vae_sd"])
    names = [e.name for e in library.scan([models])]
    assert len(names) == len(set(names)) == 6


def diffusers_pipeline(root, fp16_only=False):
    """A tiny SDXL-style pipeline folder: model_index.json, configs, sparse weights."""
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "image_encoder": [None, None]}))
    configs = {
        "unet": {"_class_name": "UNet2DConditionModel", "cross_attention_dim": 2048,
                 "projection_class_embeddings_input_dim": 2816, "in_channels": 4},
        "vae": {"_class_name": "AutoencoderKL", "latent_channels": 4},
        "text_encoder": {"architectures": ["CLIPTextModel"], "hidden_size": 768},
        "text_encoder_2": {"architectures": ["CLIPTextModelWithProjection"], "hidden_size": 1280},
    }
    for name, config in configs.items():
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps(config))
        stem = "diffusion_pytorch_model" if "_class_name" in config else "model"
        sparse_file(root / name / f"{stem}.fp16.safetensors", {f"{name}.w": (4, 4)})
        if not fp16_only:
            sparse_file(root / name / f"{stem}.safetensors", {f"{name}.w": ("F32", (4, 4))})
    return root


def test_diffusers_folders_are_detected_and_listed(models):
    from core.checkpoints.detect import detect

    folder = diffusers_pipeline(models / "checkpoints" / "sdxl-base")
    found = detect(folder)
    assert (found.family, found.base, found.variant) == ("diffusers_folder", "sdxl", None)
    assert found.components == ("unet", "vae", "text_encoder", "text_encoder_2")
    assert found.text_encoders == ("clip_l", "clip_g") and found.file_variants == ("fp16",)
    assert found.dtype == "float32" and found.tensor_count == 4 and found.parameters == 64
    assert found.describe().startswith("A diffusers folder of an SDXL base model holding the U-Net")
    assert "checkpoints/sdxl-base" in library.choices("checkpoint", [models])
    assert "checkpoints/sdxl-base/unet" not in library.choices(dirs=[models])
    shutil.rmtree(folder)
    only_fp16 = detect(diffusers_pipeline(folder, fp16_only=True))
    assert only_fp16.dtype == "float16" and only_fp16.tensor_count == 4

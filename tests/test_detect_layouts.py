"""The detector on real key names and shapes: the diffusers/transformers layouts of the
shipped family configs and the original single-file layouts of ``tests/layouts`` at full
size (sparse files), and the tiny random-weight files the loader tests use."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from core.checkpoints.detect import detect
from tests.test_detect import assert_header_only, sparse_file


# -- diffusers/transformers layouts at full size, from the shipped family configs ----------
CONFIGS = Path(__file__).resolve().parents[1] / "core" / "models" / "configs"
DIFFUSERS_EXPECTED = {  # config file -> (family, variant, base, components, text encoders)
    "sd1/unet": ("sd1", None, None, ("unet",), ()),
    "sd2/unet": ("sd2", "768-v?", None, ("unet",), ()),
    "sdxl/unet": ("sdxl", None, None, ("unet",), ()),
    "sdxl_refiner/unet": ("sdxl_refiner", None, None, ("unet",), ()),
    "sd1/vae": ("vae", "4-channel", None, ("vae",), ()),
    "flux_dev/vae": ("vae", "16-channel", None, ("vae",), ()),
    "controlnet_sd1/controlnet": ("controlnet", "diffusers", "sd1", ("controlnet",), ()),
    "controlnet_sdxl/controlnet": ("controlnet", "diffusers", "sdxl", ("controlnet",), ()),
    "sd3_medium/transformer": ("sd3", "sd3_medium", None, ("transformer",), ()),
    "sd35_medium/transformer": ("sd3", "sd35_medium", None, ("transformer",), ()),
    "sd35_large/transformer": ("sd3", "sd35_large", None, ("transformer",), ()),
    "flux_dev/transformer": ("flux", "dev", None, ("transformer",), ()),
    "flux_schnell/transformer": ("flux", "schnell", None, ("transformer",), ()),
    "sd1/text_encoder": ("text_encoder", "clip_l", None, ("text_encoder",), ("clip_l",)),
    "sd2/text_encoder": ("text_encoder", "openclip_h", None, ("text_encoder",), ("openclip_h",)),
    "sdxl/text_encoder_2": ("text_encoder", "clip_g", None, ("text_encoder_2",), ("clip_g",)),
    "sd3_medium/text_encoder": ("text_encoder", "clip_l", None, ("text_encoder",), ("clip_l",)),
    "flux_dev/text_encoder_2": ("text_encoder", "t5xxl", None, ("t5",), ("t5xxl",)),
}


def meta_shapes(config_path: Path) -> dict[str, tuple[int, ...]]:
    """Real key names and shapes of a component, built on the meta device (no memory)."""
    import diffusers
    import torch
    import transformers

    config = json.loads(config_path.read_text())
    with torch.device("meta"):
        if "_class_name" in config:
            model = getattr(diffusers, config["_class_name"]).from_config(config)
        else:
            cls = getattr(transformers, config["architectures"][0])
            model = cls(cls.config_class(**config))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(DIFFUSERS_EXPECTED))
def test_diffusers_layout_files_at_full_size(tmp_path, name):
    config = CONFIGS / f"{name}.json"
    if not config.is_file():
        pytest.fail(f"the shipped config {config} is missing")
    shapes = meta_shapes(config)
    found = detect(sparse_file(tmp_path / "model.safetensors", shapes))
    family, variant, base, components, encoders = DIFFUSERS_EXPECTED[name]
    assert (found.family, found.variant, found.base) == (family, variant, base)
    assert (found.components, found.text_encoders) == (components, encoders)
    assert found.parameters == sum(math.prod(s) for s in shapes.values())


# -- the original single-file layouts at full size (tests/layouts: real names and shapes) --
LAYOUT_EXPECTED = {  # (module, family) -> (family, variant, base, components, text encoders, dtype)
    ("files", "sd1"): ("sd1", None, None, ("unet", "vae", "text_encoder"), ("clip_l",), "float16"),
    ("files", "sd2"): ("sd2", "768-v?", None, ("unet", "vae", "text_encoder"), ("openclip_h",),
                       "float16"),
    ("files", "sdxl"): ("sdxl", None, None, ("unet", "vae", "text_encoder", "text_encoder_2"),
                        ("clip_l", "clip_g"), "float16"),
    ("files", "sdxl_refiner"): ("sdxl_refiner", None, None, ("unet", "vae", "text_encoder_2"),
                                ("clip_g",), "float16"),
    ("files", "vae"): ("vae", "4-channel", None, ("vae",), (), "float32"),
    ("files", "controlnet_sd1"): ("controlnet", "original", "sd1", ("controlnet",), (), "float16"),
    ("files", "controlnet_sdxl"): ("controlnet", "diffusers", "sdxl", ("controlnet",), (), "float16"),
    ("files", "lora_sd1"): ("lora", "kohya", "sd1", ("unet", "text_encoder"), (), "float16"),
    ("files", "lora_sdxl"): ("lora", "kohya", "sdxl", ("unet", "text_encoder", "text_encoder_2"), (),
                             "float16"),
    ("sd3", "sd3_medium"): ("sd3", "sd3_medium", None,
                            ("transformer", "vae", "text_encoder", "text_encoder_2", "t5"),
                            ("clip_l", "clip_g", "t5xxl"), "float16"),
    ("sd3", "sd35_medium"): ("sd3", "sd35_medium", None, ("transformer",), (), "float16"),
    ("sd3", "sd35_large"): ("sd3", "sd35_large", None, ("transformer",), (), "float16"),
    ("sd3", "flux_dev"): ("flux", "dev", None, ("transformer",), (), "bfloat16"),
    ("sd3", "flux_schnell"): ("flux", "schnell", None, ("transformer",), (), "bfloat16"),
    ("sd3", "t5xxl"): ("text_encoder", "t5xxl", None, ("t5",), ("t5xxl",), "float16"),
    ("sd3", "clip_l"): ("text_encoder", "clip_l", None, ("text_encoder",), ("clip_l",), "float16"),
    ("sd3", "clip_g"): ("text_encoder", "clip_g", None, ("text_encoder_2",), ("clip_g",), "float16"),
    ("sd3", "vae16"): ("vae", "16-channel", None, ("vae",), (), "float32"),
}
#: Published parameter counts a whole file must show (the file is that one model).
PUBLISHED_PARAMETERS = {"flux_dev": 11_901_408_320, "t5xxl": 4_762_310_656}


def test_every_sparse_layout_family_has_an_expectation():
    import importlib

    for module in ("files", "sd3"):
        families = importlib.import_module(f"tests.layouts.{module}").SPARSE_FAMILIES
        assert {(module, f) for f in families} <= set(LAYOUT_EXPECTED), module


@pytest.mark.parametrize("module, name", sorted(LAYOUT_EXPECTED))
def test_full_size_original_layouts_are_detected(tmp_path, module, name):
    import importlib

    layouts = importlib.import_module(f"tests.layouts.{module}")
    path = layouts.sparse_full_size_file(tmp_path / f"{name}.safetensors", name)
    assert path.stat().st_blocks * 512 < 8 << 20, "the data region must be a hole"
    found = detect(path)
    family, variant, base, components, encoders, dtype = LAYOUT_EXPECTED[(module, name)]
    assert (found.family, found.variant, found.base) == (family, variant, base)
    assert (found.components, found.text_encoders, found.dtype) == (components, encoders, dtype)
    assert found.recognised and found.size_bytes == path.stat().st_size
    if name in PUBLISHED_PARAMETERS:
        assert found.parameters == PUBLISHED_PARAMETERS[name]
    assert_header_only(path)  # full size, yet nothing past the header is read


# -- the tiny random-weight files the loader tests use: detected by structure, not width ----
def _tiny(module: str, function: str, **options):
    def make(path):
        import importlib

        return getattr(importlib.import_module(f"tests.layouts.{module}"), function)(path, **options)
    return make


TINY_EXPECTED = {  # name -> (maker, family, variant, base, components)
    "sd1": (_tiny("files", "tiny_sd1_checkpoint"), "sd1", None, None,
            ("unet", "vae", "text_encoder")),
    "sd2": (_tiny("files", "tiny_sd2_checkpoint"), "sd2", "768-v?", None,
            ("unet", "vae", "text_encoder")),
    "sdxl": (_tiny("files", "tiny_sdxl_checkpoint"), "sdxl", None, None,
             ("unet", "vae", "text_encoder", "text_encoder_2")),
    "sdxl_refiner": (_tiny("files", "tiny_sdxl_refiner_checkpoint"), "sdxl_refiner", None, None,
                     ("unet", "vae", "text_encoder_2")),
    "vae": (_tiny("files", "tiny_vae_file"), "vae", "4-channel", None, ("vae",)),
    "controlnet": (_tiny("files", "tiny_controlnet_file"), "controlnet", "original", None,
                   ("controlnet",)),
    "controlnet_bare": (_tiny("files", "tiny_controlnet_file", layout="original_bare"),
                        "controlnet", "original", None, ("controlnet",)),
    "controlnet_diffusers": (_tiny("files", "tiny_controlnet_file", layout="diffusers"),
                             "controlnet", "diffusers", None, ("controlnet",)),
    "lora_sd1": (_tiny("files", "tiny_lora_file"), "lora", "kohya", "sd1", ("unet", "text_encoder")),
    "lora_sdxl": (_tiny("files", "tiny_lora_file", family="sdxl"), "lora", "kohya", "sdxl",
                  ("unet", "text_encoder", "text_encoder_2")),
    "sd3": (_tiny("sd3", "tiny_sd3_checkpoint"), "sd3", "sd3_medium", None,
            ("transformer", "vae", "text_encoder", "text_encoder_2", "t5")),
    "sd35_medium": (_tiny("sd3", "tiny_sd3_checkpoint", variant="sd35_medium",
                          with_text_encoders=False), "sd3", "sd35_medium", None,
                    ("transformer", "vae")),
    "sd35_large": (_tiny("sd3", "tiny_sd3_checkpoint", variant="sd35_large",
                         with_text_encoders=False), "sd3", "sd35_large", None, ("transformer", "vae")),
    "vae16": (_tiny("sd3", "tiny_vae16_file"), "vae", "16-channel", None, ("vae",)),
    "flux_dev": (_tiny("flux", "tiny_flux_transformer"), "flux", "dev", None, ("transformer",)),
    "flux_schnell_comfy": (_tiny("flux", "tiny_flux_transformer", variant="schnell",
                                 comfy_prefix=True), "flux", "schnell", None, ("transformer",)),
    "flux_all_in_one": (_tiny("flux", "tiny_flux_checkpoint"), "flux", "dev", None,
                        ("transformer", "vae", "text_encoder", "t5")),
}


@pytest.mark.parametrize("name", sorted(TINY_EXPECTED))
def test_tiny_layout_files_are_detected(tmp_path, name):
    make, family, variant, base, components = TINY_EXPECTED[name]
    path = tmp_path / f"{name}.safetensors"
    make(path)
    found = detect(path)
    assert (found.family, found.variant, found.base, found.components) == (
        family, variant, base, components)

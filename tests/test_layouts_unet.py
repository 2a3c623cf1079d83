"""The test-side original layouts of the U-Net families are the real ones.

Proof by diffusers' own converters (original -> diffusers, in
``diffusers/loaders/single_file_utils.py``): run on our tiny files they must
give back the tiny models' state dicts exactly; run on the full-size sparse
files (as meta tensors) they must give the full models' keys and shapes, and
diffusers' family detector must name the right family. The full configs must
give the published parameter counts.
"""
from __future__ import annotations

import json
import os
import struct

import pytest
import torch

from tests.layouts import published_config
from tests.layouts import files as layout_files

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_model(folder: str, component: str) -> torch.nn.Module:
    with torch.device("meta"):
        return layout_files.build_model(component, published_config(folder, component))


# Published parameter counts (model cards, diffusers/transformers repos).
PUBLISHED_COUNTS = [
    ("sd1", "unet", 859_520_964),
    ("sd1", "vae", 83_653_863),
    ("sd1", "text_encoder", 123_060_480),
    ("sd2", "unet", 865_910_724),
    ("sd2", "text_encoder", 340_387_840),
    ("sdxl", "unet", 2_567_463_684),
    ("sdxl", "vae", 83_653_863),
    ("sdxl", "text_encoder", 123_060_480),
    ("sdxl", "text_encoder_2", 694_659_840),
]
# Derived here from the published configs; pinned so a config edit shows up.
DERIVED_COUNTS = [
    ("sdxl_refiner", "unet", 2_259_526_660),
    ("controlnet_sd1", "controlnet", 361_279_120),
    ("controlnet_sdxl", "controlnet", 1_251_014_160),
]


@pytest.mark.parametrize("folder, component, expected", PUBLISHED_COUNTS + DERIVED_COUNTS)
def test_full_size_configs_give_the_parameter_counts(folder, component, expected):
    assert _count(_meta_model(folder, component)) == expected


# ------------------------------------------------------------------ tiny files

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_layouts")
    return {
        "sd1": layout_files.tiny_sd1_checkpoint(folder / "sd1.safetensors", seed=1),
        "sd2": layout_files.tiny_sd2_checkpoint(folder / "sd2.safetensors", v=True, seed=2),
        "sdxl": layout_files.tiny_sdxl_checkpoint(folder / "sdxl.safetensors", seed=3),
        "sdxl_refiner": layout_files.tiny_sdxl_refiner_checkpoint(folder / "refiner.safetensors", seed=4),
        "vae": layout_files.tiny_vae_file(folder / "vae.safetensors", seed=5),
    }


def _load(tiny_file) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(tiny_file.path))


def _assert_same(converted: dict, expected: dict) -> None:
    assert sorted(converted) == sorted(expected)
    for key, tensor in expected.items():
        assert converted[key].shape == tensor.shape, key
        assert torch.equal(converted[key], tensor), key


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "sdxl_refiner"])
def test_diffusers_converts_the_tiny_unet_back_exactly(tiny, family):
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    made = tiny[family]
    converted = convert_ldm_unet_checkpoint(_load(made), made.configs["unet"])
    _assert_same(converted, made.state_dict("unet"))


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "sdxl_refiner", "vae"])
def test_diffusers_converts_the_tiny_vae_back_exactly(tiny, family):
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    made = tiny[family]
    checkpoint = _load(made)
    prefix = "" if family == "vae" else "first_stage_model."
    if family == "vae":  # a standalone VAE file has no prefix
        roots = {k.split(".")[0] for k in checkpoint}
        assert roots == {"encoder", "decoder", "quant_conv", "post_quant_conv"}
    q = checkpoint[prefix + "encoder.mid.attn_1.q.weight"]
    assert q.shape == (64, 64, 1, 1)  # a 1x1 conv in the original layout
    _assert_same(convert_ldm_vae_checkpoint(checkpoint, made.configs["vae"]), made.state_dict("vae"))


@pytest.mark.parametrize("family, prefix", [("sd1", "cond_stage_model.transformer."),
                                            ("sdxl", "conditioner.embedders.0.transformer.")])
def test_diffusers_converts_the_tiny_clip_l_back_exactly(tiny, family, prefix):
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint

    made = tiny[family]
    checkpoint = _load(made)
    converted = {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(checkpoint).items()}
    position_ids = converted.pop("embeddings.position_ids", None)
    if family == "sd1":  # SD 1.x files carry the buffer; transformers 5 does not persist it
        assert position_ids.dtype == torch.int64 and torch.equal(position_ids, torch.arange(77)[None])
    else:
        assert position_ids is None
    assert all(k.startswith(prefix + "text_model.") for k in checkpoint if "transformer.text_model" in k)
    _assert_same(converted, made.state_dict("text_encoder"))


@pytest.mark.parametrize("family, component, prefix", [
    ("sd2", "text_encoder", "cond_stage_model.model."),
    ("sdxl", "text_encoder_2", "conditioner.embedders.1.model."),
    ("sdxl_refiner", "text_encoder_2", "conditioner.embedders.0.model."),
])
def test_diffusers_converts_the_tiny_open_clip_back_exactly(tiny, family, component, prefix):
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    made = tiny[family]
    model = made.models[component]
    checkpoint = _load(made)
    assert checkpoint[prefix + "transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * 64, 64)
    assert checkpoint[prefix + "logit_scale"].shape == ()
    converted = convert_open_clip_checkpoint(model, checkpoint, prefix=prefix)
    if component == "text_encoder":  # CLIPTextModel is flat in transformers 5
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
        # SD 2.x: the file holds the unused last layer; diffusers drops it by
        # its full-size name only (resblocks.23), so a loader must drop it itself.
        unused = model.config.num_hidden_layers
        assert prefix + f"transformer.resblocks.{unused}.mlp.c_fc.weight" in checkpoint
        extra = {k for k in converted if k.startswith(f"encoder.layers.{unused}.")}
        assert len(extra) == 16
        converted = {k: v for k, v in converted.items() if k not in extra}
    else:
        stored = checkpoint[prefix + "text_projection"]  # (width, projection): transposed
        assert torch.equal(stored.T, made.state_dict(component)["text_projection.weight"])
    _assert_same(converted, made.state_dict(component))


def test_sd2_v_flag_only_sets_the_scheduler(tiny):
    assert tiny["sd2"].configs["scheduler"]["prediction_type"] == "v_prediction"
    assert tiny["sd1"].configs["scheduler"]["prediction_type"] == "epsilon"


@pytest.mark.parametrize("layout", ["original", "original_bare", "diffusers"])
def test_diffusers_converts_the_tiny_controlnet_back_exactly(tmp_path, layout):
    """SD 1.x ControlNets come in all three layouts."""
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    made = layout_files.tiny_controlnet_file(tmp_path / "cn.safetensors", layout=layout, seed=6)
    checkpoint = _load(made)
    marker = {"original": "control_model.input_hint_block.14.weight",
              "original_bare": "zero_convs.0.0.weight",
              "diffusers": "controlnet_cond_embedding.conv_out.weight"}[layout]
    assert marker in checkpoint
    _assert_same(convert_controlnet_checkpoint(checkpoint, made.configs["controlnet"]),
                 made.state_dict("controlnet"))


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_tiny_controlnet_steers_the_tiny_unet_of_its_family(tiny, tmp_path, family):
    """The tiny ControlNet's residuals fit the tiny U-Net of the same family."""
    made = layout_files.tiny_controlnet_file(tmp_path / "cn.safetensors", layout="diffusers",
                                             seed=7, family=family)
    unet = tiny[family].models["unet"]
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=generator)
    hint = torch.rand(1, 3, 64, 64, generator=generator)  # 8x the latent size
    extra = {}
    if family == "sdxl":
        extra = {"added_cond_kwargs": {"text_embeds": torch.randn(1, 64, generator=generator),
                                       "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}}
    with torch.no_grad():
        down, mid = made.models["controlnet"](latents, 10, context, hint, return_dict=False, **extra)
        plain = unet(latents, 10, context, **extra).sample
        steered = unet(latents, 10, context, down_block_additional_residuals=down,
                       mid_block_additional_residual=mid, **extra).sample
    assert steered.shape == plain.shape == latents.shape
    assert torch.isfinite(steered).all() and not torch.allclose(steered, plain)


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_kohya_lora_loads_through_diffusers_and_peft_exactly(tmp_path, family):
    """Every kohya triple lands on its module with delta = alpha/rank · up @ down."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from peft.tuners.lora import LoraLayer

    from tests.layouts.lora_kohya import lora_targets

    made = layout_files.tiny_lora_file(tmp_path / "lora.safetensors", family=family, rank=4, alpha=2.0)
    tensors = _load(made)
    targets = lora_targets(family, made.models, made.configs)  # before peft renames the weights
    pipeline = StableDiffusionPipeline if family == "sd1" else StableDiffusionXLPipeline
    state, alphas = pipeline.lora_state_dict(dict(tensors), unet_config=made.models["unet"].config)[:2]
    pipeline.load_lora_into_unet(state, alphas, made.models["unet"])
    for component in ("text_encoder", "text_encoder_2"):
        if component in made.models:
            pipeline.load_lora_into_text_encoder(state, alphas, made.models[component], prefix=component)
    wrapped = {(c, name) for c, model in made.models.items()
               for name, module in model.named_modules() if isinstance(module, LoraLayer)}
    assert wrapped == {(t.component, t.module) for t in targets.values()}
    for name, target in targets.items():
        module = made.models[target.component].get_submodule(target.module)
        delta = module.get_delta_weight(next(iter(module.lora_A)))
        up, down = tensors[f"{name}.lora_up.weight"], tensors[f"{name}.lora_down.weight"]
        manual = (float(tensors[f"{name}.alpha"]) / down.shape[0]) * (up.flatten(1) @ down.flatten(1))
        torch.testing.assert_close(delta, manual.reshape(delta.shape), atol=1e-6, rtol=1e-5)


def test_config_folder_is_readable_by_diffusers(tiny, tmp_path):
    from diffusers import UNet2DConditionModel

    folder = tiny["sdxl"].write_config_folder(tmp_path / "cfg")
    config = UNet2DConditionModel.load_config(folder / "unet")
    assert config["addition_embed_type"] == "text_time"
    assert (folder / "text_encoder_2" / "config.json").is_file()
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "EulerDiscreteScheduler"


# ---------------------------------------------------------- full-size sparse

def _meta_checkpoint(path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    from tests.layouts.files import read_header

    header, _ = read_header(path)
    dtypes = {v: k for k, v in layout_files.SAFETENSORS_DTYPES.items()}
    with safe_open(str(path), framework="pt") as handle:  # safetensors itself accepts the file
        assert sorted(handle.keys()) == sorted(header)
    return {k: torch.empty(v["shape"], dtype=dtypes[v["dtype"]], device="meta") for k, v in header.items()}


def _expected_bytes(checkpoint) -> int:
    return sum(t.numel() * t.element_size() for t in checkpoint.values())


SPARSE_EXPECTED = {  # family: (keys, parameters incl. buffers, diffusers' detected type)
    "sd1": (1145, 1_066_247_386, "v1"),
    "sd2": (1242, 1_303_609_230, "v2"),
    "sdxl": (2514, 3_468_837_868, "xl_base"),
    "sdxl_refiner": (1858, 3_037_840_364, "xl_refiner"),
    "vae": (248, 83_653_863, None),
    "controlnet_sd1": (340, 361_279_120, "controlnet"),
    "controlnet_sdxl": (844, 1_251_014_160, "controlnet_xl_large"),
    "lora_sd1": (792, 18_874_632, None),
    "lora_sdxl": (2958, 114_017_242, None),
}


@pytest.mark.parametrize("family", layout_files.SPARSE_FAMILIES)
def test_sparse_full_size_file_claims_full_size_but_holds_no_data(tmp_path, family):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    path = layout_files.sparse_full_size_file(tmp_path / f"{family}.safetensors", family)
    checkpoint = _meta_checkpoint(path)
    keys, parameters, detected = SPARSE_EXPECTED[family]
    assert len(checkpoint) == keys
    assert sum(t.numel() for t in checkpoint.values()) == parameters
    with open(path, "rb") as handle:
        (header_length,) = struct.unpack("<Q", handle.read(8))
    assert path.stat().st_size == 8 + header_length + _expected_bytes(checkpoint)
    assert path.stat().st_blocks * 512 < 1 << 20  # a hole: under 1 MiB on disk
    if detected:
        assert infer_diffusers_model_type(checkpoint) == detected


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "sdxl_refiner"])
def test_diffusers_converts_sparse_checkpoints_to_the_full_models(tmp_path, family):
    from diffusers.loaders import single_file_utils as sfu

    path = layout_files.sparse_full_size_file(tmp_path / f"{family}.safetensors", family)
    checkpoint = _meta_checkpoint(path)
    models, configs = layout_files.full_size_models(family)

    def same_shapes(converted, component):
        expected = models[component].state_dict()
        assert sorted(converted) == sorted(expected), component
        assert all(converted[k].shape == v.shape for k, v in expected.items()), component

    same_shapes(sfu.convert_ldm_unet_checkpoint(checkpoint, configs["unet"]), "unet")
    same_shapes(sfu.convert_ldm_vae_checkpoint(checkpoint, configs["vae"]), "vae")
    if "text_encoder" in models:
        if family == "sd2":
            converted = sfu.convert_open_clip_checkpoint(models["text_encoder"], checkpoint)
        else:
            converted = sfu.convert_ldm_clip_checkpoint(checkpoint)
            converted.pop("text_model.embeddings.position_ids", None)
        same_shapes({k.removeprefix("text_model."): v for k, v in converted.items()}, "text_encoder")
    if "text_encoder_2" in models:
        prefix = f"conditioner.embedders.{1 if family == 'sdxl' else 0}.model."
        converted = sfu.convert_open_clip_checkpoint(models["text_encoder_2"], checkpoint, prefix=prefix)
        same_shapes(converted, "text_encoder_2")


def test_diffusers_converts_the_sparse_controlnet_to_the_full_model(tmp_path):
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    path = layout_files.sparse_full_size_file(tmp_path / "cn.safetensors", "controlnet_sd1")
    converted = convert_controlnet_checkpoint(_meta_checkpoint(path), published_config("controlnet_sd1",
                                                                                       "controlnet"))
    expected = _meta_model("controlnet_sd1", "controlnet").state_dict()
    assert sorted(converted) == sorted(expected)
    assert all(converted[k].shape == v.shape for k, v in expected.items())

"""SD3/SD3.5, Flux.1, T5 and CLIP-L/G file layouts, full-size configs, and our Flux converter.

The layout makers (``tests/layouts/{sd3,flux,t5}.py``) are checked against
diffusers' own converters (original → diffusers), which real files are known to
load through; our Flux converter is checked against the tiny diffusers model and,
at full size with meta tensors, against diffusers' converter and model.
"""
from __future__ import annotations

import json
import os
import struct

import pytest
import torch

from core.checkpoints import CheckpointError
from core.checkpoints.flux_convert import (convert_flux_transformer, flux_config_from_state_dict,
                                           flux_rope_axes)
from tests.layouts import flux, sd3
from tests.layouts import t5 as text

DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}


def _load(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _meta_state_dict(path) -> dict[str, torch.Tensor]:
    """Meta tensors with the names, shapes and dtypes of a safetensors header."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return {k: torch.empty(v["shape"], dtype=DTYPES[v["dtype"]], device="meta") for k, v in header.items()}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied parameters count once


def _assert_same(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    different = [k for k in expected if not torch.equal(actual[k], expected[k])]
    assert not different, different[:5]


def _under(tensors: dict, prefix: str) -> dict:
    return {k: v for k, v in tensors.items() if k.startswith(prefix)}


def _strip_config(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_")}


# ----------------------------------------------------------- full-size configs

def test_full_configs_give_published_parameter_counts():
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    with torch.device("meta"):
        flux_dev = FluxTransformer2DModel.from_config(text.load_config("flux_dev", "transformer"))
        sd3_medium = SD3Transformer2DModel.from_config(text.load_config("sd3_medium", "transformer"))
        t5 = T5EncoderModel(T5Config(**text.load_config("sd3_medium", "text_encoder_3")))
        clip_l = CLIPTextModel(CLIPTextConfig(**text.load_config("flux_dev", "text_encoder")))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**text.load_config("sd3_medium", "text_encoder_2")))
    t5.tie_weights()
    assert _count(flux_dev) == 11_901_408_320
    assert _count(sd3_medium) == 2_028_328_000
    assert _count(t5) == 4_762_310_656
    assert _count(clip_l) == 123_060_480
    assert _count(clip_g) == 694_659_840


def test_config_folders_are_complete_and_consistent():
    for variant in ("sd3_medium", "sd35_medium", "sd35_large"):
        transformer = text.load_config(variant, "transformer")
        assert transformer["joint_attention_dim"] == text.load_config(variant, "text_encoder_3")["d_model"]
        pooled = (text.load_config(variant, "text_encoder")["projection_dim"]
                  + text.load_config(variant, "text_encoder_2")["projection_dim"])
        assert transformer["pooled_projection_dim"] == pooled
        assert text.load_config(variant, "scheduler")["shift"] == 3.0
        assert text.load_config(variant, "vae")["latent_channels"] == 16
    for variant in ("flux_dev", "flux_schnell"):
        transformer = text.load_config(variant, "transformer")
        assert transformer["guidance_embeds"] == (variant == "flux_dev")
        assert transformer["joint_attention_dim"] == text.load_config(variant, "text_encoder_2")["d_model"]
        assert transformer["pooled_projection_dim"] == text.load_config(variant, "text_encoder")["hidden_size"]
        assert text.load_config(variant, "vae")["shift_factor"] == 0.1159
    assert text.load_config("flux_dev", "scheduler")["use_dynamic_shifting"] is True
    assert text.load_config("flux_schnell", "scheduler")["use_dynamic_shifting"] is False


# --------------------------------------------------------------------- SD3 files

@pytest.mark.parametrize("variant", sd3.VARIANTS)
def test_diffusers_converters_reproduce_tiny_sd3_exactly(tmp_path, variant):
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_vae_checkpoint,
                                                     convert_sd3_t5_checkpoint_to_diffusers,
                                                     convert_sd3_transformer_checkpoint_to_diffusers)

    tiny = sd3.tiny_sd3_checkpoint(tmp_path / "sd3.safetensors", variant)
    tensors = _load(tiny.path)
    prefixes = {k.split(".")[0] if not k.startswith("text_encoders.") else ".".join(k.split(".")[:2])
                for k in tensors}
    assert prefixes == {"model", "first_stage_model", "text_encoders.clip_l", "text_encoders.clip_g",
                        "text_encoders.t5xxl"}
    transformer = convert_sd3_transformer_checkpoint_to_diffusers(_under(tensors, sd3.TRANSFORMER_PREFIX))
    _assert_same(transformer, tiny.state_dict("transformer"))
    _assert_same(convert_ldm_vae_checkpoint(tensors, tiny.configs["vae"]), tiny.state_dict("vae"))
    clip_l = convert_ldm_clip_checkpoint(tensors, sd3.CLIP_L_PREFIX)
    clip_l["text_projection.weight"] = torch.eye(text.TINY_CLIP_L["hidden_size"])  # what diffusers does
    _assert_same(clip_l, tiny.state_dict("text_encoder"))
    _assert_same(convert_ldm_clip_checkpoint(tensors, sd3.CLIP_G_PREFIX), tiny.state_dict("text_encoder_2"))
    t5 = convert_sd3_t5_checkpoint_to_diffusers(tensors)
    expected_t5 = {k: v for k, v in tiny.state_dict("text_encoder_3").items() if k != text.T5_TIED_KEY}
    _assert_same(t5, expected_t5)


def test_diffusers_single_file_path_loads_tiny_sd3_offline(tmp_path, monkeypatch):
    """The user's path: ``from_single_file`` with a local config folder, no network."""
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModelWithProjection

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny = sd3.tiny_sd3_checkpoint(tmp_path / "sd35m.safetensors", "sd35_medium")
    folder = tiny.write_config_folder(tmp_path / "config")
    transformer = SD3Transformer2DModel.from_single_file(str(tiny.path), config=str(folder),
                                                         subfolder="transformer", local_files_only=True)
    _assert_same(transformer.state_dict(), tiny.state_dict("transformer"))
    tensors = _load(tiny.path)
    for name in ("text_encoder", "text_encoder_2"):  # diffusers picks CLIP-L or CLIP-G by width
        clip = create_diffusers_clip_model_from_ldm(CLIPTextModelWithProjection, tensors, subfolder=name,
                                                    config=str(folder), local_files_only=True)
        _assert_same(clip.state_dict(), tiny.state_dict(name))


def test_tiny_sd3_variants_keep_their_structure(tmp_path):
    keys = {v: set(sd3.tiny_sd3_checkpoint(tmp_path / f"{v}.safetensors", v, with_text_encoders=False,
                                           with_vae=False, prefix="").tensors) for v in sd3.VARIANTS}
    assert all(not any(k.startswith("model.") for k in ks) for ks in keys.values())
    assert "joint_blocks.0.x_block.attn2.qkv.weight" in keys["sd35_medium"]
    assert "joint_blocks.2.x_block.attn2.qkv.weight" not in keys["sd35_medium"]
    assert not any("attn2" in k for k in keys["sd35_large"] | keys["sd3_medium"])
    assert "joint_blocks.0.x_block.attn.ln_q.weight" in keys["sd35_large"]
    assert not any(".ln_q." in k for k in keys["sd3_medium"])
    last = "joint_blocks.1.context_block."
    assert f"{last}adaLN_modulation.1.weight" in keys["sd3_medium"]
    assert not any(k.startswith(f"{last}mlp") or k.startswith(f"{last}attn.proj") for k in keys["sd3_medium"])


def test_standalone_text_encoder_and_vae_files(tmp_path):
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    t5 = text.tiny_t5_file(tmp_path / "t5xxl.safetensors")
    t5_tensors = _load(t5.path)
    assert "shared.weight" in t5_tensors and text.T5_TIED_KEY not in t5_tensors
    assert "encoder.block.0.layer.0.SelfAttention.q.weight" in t5_tensors
    clip_l = text.tiny_clip_l_file(tmp_path / "clip_l.safetensors")
    clip_g = text.tiny_clip_g_file(tmp_path / "clip_g.safetensors")
    clip_l_tensors, clip_g_tensors = _load(clip_l.path), _load(clip_g.path)
    assert "text_projection.weight" not in clip_l_tensors
    assert all(k.startswith("text_model.") for k in clip_l_tensors)
    assert clip_g_tensors["text_projection.weight"].shape == (48, 48)
    widths = {clip_l_tensors["text_model.embeddings.position_embedding.weight"].shape[-1],
              clip_g_tensors["text_model.embeddings.position_embedding.weight"].shape[-1]}
    assert len(widths) == 2  # diffusers tells CLIP-L from CLIP-G by width
    model = type(t5.models["t5xxl"])(t5.models["t5xxl"].config)
    missing, unexpected = model.load_state_dict(t5_tensors, strict=False)
    assert list(missing) == [text.T5_TIED_KEY] and not unexpected
    vae = sd3.tiny_vae16_file(tmp_path / "ae.safetensors", "flux")
    assert vae.configs["vae"]["shift_factor"] == 0.1159
    _assert_same(convert_ldm_vae_checkpoint(_load(vae.path), vae.configs["vae"]), vae.state_dict("vae"))


# ------------------------------------------------------------ Flux converter

@pytest.mark.parametrize("variant", flux.VARIANTS)
@pytest.mark.parametrize("comfy_prefix", [False, True])
def test_flux_converter_reproduces_tiny_model_and_config(tmp_path, variant, comfy_prefix):
    tiny = flux.tiny_flux_transformer(tmp_path / "flux.safetensors", variant, comfy_prefix=comfy_prefix)
    tensors = _load(tiny.path)
    assert any(k.startswith("guidance_in.") or ".guidance_in." in k for k in tensors) == (variant == "dev")
    assert all(k.startswith("model.diffusion_model.") for k in tensors) == comfy_prefix
    before = dict(tensors)
    _assert_same(convert_flux_transformer(tensors), tiny.state_dict("transformer"))
    assert tensors.keys() == before.keys()  # the input is left alone
    assert flux_config_from_state_dict(tensors) == _strip_config(tiny.configs["transformer"])


def test_converted_flux_weights_load_strictly_and_run_the_same(tmp_path):
    from diffusers import FluxTransformer2DModel

    tiny = flux.tiny_flux_transformer(tmp_path / "flux.safetensors", "dev")
    tensors = _load(tiny.path)
    model = FluxTransformer2DModel(**flux_config_from_state_dict(tensors)).eval()
    model.load_state_dict(convert_flux_transformer(tensors), strict=True)
    generator = torch.Generator().manual_seed(0)
    inputs = dict(hidden_states=torch.randn(1, 4, 64, generator=generator),
                  encoder_hidden_states=torch.randn(1, 3, 96, generator=generator),
                  pooled_projections=torch.randn(1, 32, generator=generator),
                  timestep=torch.tensor([0.5]), guidance=torch.tensor([3.5]),
                  img_ids=torch.zeros(4, 3), txt_ids=torch.zeros(3, 3))
    with torch.no_grad():
        ours, source = model(**inputs).sample, tiny.models["transformer"](**inputs).sample
    assert torch.equal(ours, source)


def test_flux_converter_names_missing_and_misshapen_keys(tmp_path):
    tensors = _load(flux.tiny_flux_transformer(tmp_path / "f.safetensors", "schnell", comfy_prefix=True).path)
    missing = {k: v for k, v in tensors.items() if not k.endswith("single_blocks.1.linear2.bias")}
    with pytest.raises(CheckpointError, match=r"model\.diffusion_model\.single_blocks\.1\.linear2\.bias"):
        convert_flux_transformer(missing)
    key = "model.diffusion_model.double_blocks.0.txt_attn.qkv.weight"
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        convert_flux_transformer({**tensors, key: tensors[key][:-1]})
    with pytest.raises(CheckpointError, match=r"missing tensors of 'model\.diffusion_model\.double_blocks\.0'"):
        convert_flux_transformer({k: v for k, v in tensors.items() if ".double_blocks.0." not in k})
    with pytest.raises(CheckpointError, match="not understood"):
        convert_flux_transformer({**tensors, "model.diffusion_model.img_in.scale_weight": torch.ones(1)})
    wide = "model.diffusion_model.double_blocks.0.img_mlp.0.weight"
    with pytest.raises(CheckpointError, match="MLP ratio"):
        flux_config_from_state_dict({**tensors, wide: torch.zeros(96, 32)})


def test_tiny_flux_all_in_one_matches_diffusers_and_our_converter(tmp_path):
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_ldm_vae_checkpoint

    tiny = flux.tiny_flux_checkpoint(tmp_path / "flux-aio.safetensors", "schnell")
    tensors = _load(tiny.path)
    assert "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight" in tensors  # ComfyUI's probes
    assert "text_encoders.t5xxl.transformer.encoder.final_layer_norm.weight" in tensors
    _assert_same(convert_flux_transformer(tensors), tiny.state_dict("transformer"))  # other prefixes ignored
    _assert_same(convert_ldm_vae_checkpoint(tensors, tiny.configs["vae"]), tiny.state_dict("vae"))
    clip_l = convert_ldm_clip_checkpoint(tensors, flux.CLIP_L_PREFIX)
    _assert_same({k.removeprefix("text_model."): v for k, v in clip_l.items()}, tiny.state_dict("text_encoder"))
    t5 = {k.removeprefix(flux.T5_PREFIX): v for k, v in tensors.items() if k.startswith(flux.T5_PREFIX)}
    t5_expected = {k: v for k, v in tiny.state_dict("text_encoder_2").items() if k != text.T5_TIED_KEY}
    _assert_same(t5, t5_expected)


def test_flux_rope_axes_rule():
    assert flux_rope_axes(128) == [16, 56, 56]
    assert flux_rope_axes(16) == [4, 6, 6]
    assert all(sum(flux_rope_axes(d)) == d and all(a % 2 == 0 for a in flux_rope_axes(d)) for d in (8, 24, 64))


# ----------------------------------------------------- full-size sparse files

def test_sparse_files_are_full_size_but_small_on_disk(tmp_path):
    path = sd3.sparse_full_size_file(tmp_path / "flux1-dev.safetensors", "flux_dev")
    meta = _meta_state_dict(path)
    nbytes = sum(t.numel() * t.element_size() for t in meta.values())
    assert nbytes == 2 * 11_901_408_320 and os.path.getsize(path) > nbytes
    assert os.stat(path).st_blocks * 512 < 2_000_000
    assert {t.dtype for t in meta.values()} == {torch.bfloat16}


@pytest.mark.parametrize("family, expected", [("sd3_medium", "sd3"), ("sd35_medium", "sd35_medium"),
                                              ("sd35_large", "sd35_large"), ("flux_dev", "flux-dev"),
                                              ("flux_schnell", "flux-schnell")])
def test_diffusers_detects_full_size_sparse_files(tmp_path, family, expected):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    meta = _meta_state_dict(sd3.sparse_full_size_file(tmp_path / "f.safetensors", family))
    assert infer_diffusers_model_type(meta) == expected


@pytest.mark.parametrize("variant", flux.VARIANTS)
def test_flux_converter_on_full_size_header_matches_diffusers(tmp_path, variant):
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    meta = _meta_state_dict(sd3.sparse_full_size_file(tmp_path / "f.safetensors", f"flux_{variant}"))
    config = text.load_config(f"flux_{variant}", "transformer")
    assert flux_config_from_state_dict(meta) == _strip_config(config)
    with torch.device("meta"):
        expected = FluxTransformer2DModel(**_strip_config(config)).state_dict()
    ours = convert_flux_transformer(meta)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    # values: real biases where diffusers splits and swaps, meta tensors elsewhere
    generator = torch.Generator().manual_seed(0)
    probes = ["final_layer.adaLN_modulation.1.bias", "single_blocks.0.linear1.bias",
              "double_blocks.0.img_attn.qkv.bias"]
    mixed = {**meta, **{k: torch.randn(meta[k].shape, generator=generator) for k in probes}}
    reference = convert_flux_transformer_checkpoint_to_diffusers(dict(mixed))
    ours = convert_flux_transformer(mixed)
    assert sorted(reference) == sorted(ours)
    real = [k for k, v in reference.items() if v.device.type != "meta"]
    assert len(real) == 1 + 4 + 3  # norm_out bias, single q/k/v/mlp, double q/k/v
    assert all(torch.equal(ours[k], reference[k]) for k in real)


def test_full_size_sd3_header_converts_to_the_real_models(tmp_path):
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint,
                                                     convert_sd3_t5_checkpoint_to_diffusers,
                                                     convert_sd3_transformer_checkpoint_to_diffusers)
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    meta = _meta_state_dict(sd3.sparse_full_size_file(tmp_path / "sd3.safetensors", "sd3_medium"))
    with torch.device("meta"):
        transformer = SD3Transformer2DModel.from_config(text.load_config("sd3_medium", "transformer"))
        t5 = T5EncoderModel(T5Config(**text.load_config("sd3_medium", "text_encoder_3")))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**text.load_config("sd3_medium", "text_encoder_2")))

    def shapes(tensors):
        return {k: tuple(v.shape) for k, v in tensors.items()}

    converted = convert_sd3_transformer_checkpoint_to_diffusers(_under(meta, sd3.TRANSFORMER_PREFIX))
    assert shapes(converted) == shapes(transformer.state_dict())
    t5_expected = {k: v for k, v in t5.state_dict().items() if k != text.T5_TIED_KEY}
    assert shapes(convert_sd3_t5_checkpoint_to_diffusers(meta)) == shapes(t5_expected)
    assert shapes(convert_ldm_clip_checkpoint(meta, sd3.CLIP_G_PREFIX)) == shapes(clip_g.state_dict())
    assert meta["first_stage_model.encoder.conv_out.weight"].shape == (32, 512, 3, 3)  # 2 × 16 latent channels

"""The header-only detector: every family from a handful of real key names and
shapes, written as sparse files (a real header, the data region a hole), the
damaged/lying headers it must refuse, and its speed on a 20 GiB file."""
from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path

import pytest

from core.checkpoints import CheckpointError
from core.checkpoints.detect import detect
from core.checkpoints.header import DTYPE_BITS, read_header

U = "model.diffusion_model."
GIB = 1 << 30


def sparse_file(path: Path, tensors: dict[str, tuple], metadata: dict | None = None,
                dtype: str = "F16") -> Path:
    """A valid safetensors file whose data region is a hole: (shape) or (dtype, shape)."""
    header, offset = {}, 0
    for name, spec in tensors.items():
        kind, shape = (spec if isinstance(spec[0], str) else (dtype, spec))
        size = math.prod(shape) * DTYPE_BITS[kind] // 8
        header[name] = {"dtype": kind, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    return raw_file(path, json.dumps(header).encode(), offset)


def raw_file(path: Path, header: bytes, data_size: int, declared: int | None = None) -> Path:
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header) if declared is None else declared) + header)
        handle.truncate(8 + len(header) + data_size)
    return path


# -- families: a handful of real key names and shapes each -------------------------------
SD_VAE = {"first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3),
          "first_stage_model.encoder.conv_out.weight": (8, 512, 3, 3),
          "first_stage_model.decoder.conv_in.weight": (512, 4, 3, 3),
          "first_stage_model.decoder.conv_out.weight": (3, 128, 3, 3),
          "first_stage_model.post_quant_conv.weight": (4, 4, 1, 1)}
CLIP_L_SD1 = {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
              "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 768)}


def unet(in_channels=4, context=768, width=320, label=None, block=1):
    keys = {U + "input_blocks.0.0.weight": (width, in_channels, 3, 3),
            U + f"input_blocks.{block}.1.transformer_blocks.0.attn2.to_k.weight": (width * (block // 3 + 1), context),
            U + "out.2.weight": (4, width, 3, 3),
            U + "time_embed.0.weight": (width * 4, width)}
    if label:
        keys[U + "label_emb.0.0.weight"] = (width * 4, label)
    return keys


FILES = {
    "sd1": {**unet(), **SD_VAE, **CLIP_L_SD1},
    "sd1_inpainting": {**unet(in_channels=9), **SD_VAE, **CLIP_L_SD1},
    "sd1_unet_only": unet(),
    "sd2": {**unet(context=1024), **SD_VAE,
            "cond_stage_model.model.token_embedding.weight": (49408, 1024),
            "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (3072, 1024)},
    "sdxl": {**unet(context=2048, label=2816, block=4), **SD_VAE,
             "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
             "conditioner.embedders.1.model.token_embedding.weight": (49408, 1280),
             "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,)},
    "sdxl_refiner": {**unet(context=1280, label=2560, width=384, block=4), **SD_VAE,
                     "conditioner.embedders.0.model.token_embedding.weight": (49408, 1280),
                     "conditioner.embedders.0.model.text_projection": (1280, 1280)},
}


def sd3(depth=24, width=1536, dual=0, qk_norm=False, prefix=U, encoders=()):
    keys = {prefix + "pos_embed": (1, 36864, width), prefix + "x_embedder.proj.weight": (width, 16, 2, 2)}
    for i in range(depth):
        keys[prefix + f"joint_blocks.{i}.context_block.adaLN_modulation.1.bias"] = (6 * width,)
        keys[prefix + f"joint_blocks.{i}.x_block.attn.qkv.weight"] = (3 * width, width)
        if qk_norm:
            keys[prefix + f"joint_blocks.{i}.x_block.attn.ln_q.weight"] = (64,)
        if i < dual:
            keys[prefix + f"joint_blocks.{i}.x_block.attn2.qkv.weight"] = (3 * width, width)
    if "clip_l" in encoders:
        keys["text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight"] = (49408, 768)
    if "clip_g" in encoders:
        keys["text_encoders.clip_g.transformer.text_model.embeddings.token_embedding.weight"] = (49408, 1280)
    if "t5xxl" in encoders:
        keys["text_encoders.t5xxl.transformer.shared.weight"] = (32128, 4096)
        keys["text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.weight"] = (4096, 4096)
    return keys


def flux(guidance=True, prefix="", img_in=64):
    keys = {prefix + "img_in.weight": (3072, img_in),
            prefix + "double_blocks.0.img_attn.norm.key_norm.scale": (128,),
            prefix + "single_blocks.37.linear2.bias": (3072,)}
    if guidance:
        keys[prefix + "guidance_in.in_layer.weight"] = (3072, 256)
    return keys


def vae(channels=4, layout="original"):
    block = "encoder.down.0.block.0.conv1.weight" if layout == "original" else \
        "encoder.down_blocks.0.resnets.0.conv1.weight"
    return {"encoder.conv_in.weight": (128, 3, 3, 3), block: (128, 128, 3, 3),
            "encoder.conv_out.weight": (2 * channels, 512, 3, 3),
            "decoder.conv_in.weight": (512, channels, 3, 3), "decoder.conv_out.weight": (3, 128, 3, 3)}


# family, variant, base, components, text encoders, needs_choice keys
CASES = {
    "sd1": ("sd1", None, None, ("unet", "vae", "text_encoder"), ("clip_l",), ()),
    "sd1_inpainting": ("sd1", "inpainting", None, ("unet", "vae", "text_encoder"), ("clip_l",), ()),
    "sd1_unet_only": ("sd1", None, None, ("unet",), (), ()),
    "sd2": ("sd2", "768-v?", None, ("unet", "vae", "text_encoder"), ("openclip_h",), ("prediction",)),
    "sdxl": ("sdxl", None, None, ("unet", "vae", "text_encoder", "text_encoder_2"),
             ("clip_l", "clip_g"), ()),
    "sdxl_refiner": ("sdxl_refiner", None, None, ("unet", "vae", "text_encoder_2"), ("clip_g",), ()),
}
FILES.update({
    "sd3_medium_aio": {**sd3(encoders=("clip_l", "clip_g", "t5xxl")), **SD_VAE},
    "sd3_medium_clips": {**sd3(encoders=("clip_l", "clip_g")), **SD_VAE},
    "sd35_medium": sd3(dual=13, qk_norm=True, prefix=""),
    "sd35_large": {**sd3(depth=38, width=2432, qk_norm=True), **SD_VAE},
    "flux_dev": flux(),
    "flux_schnell_prefixed": flux(guidance=False, prefix=U),
    "flux_fill": flux(img_in=384),
    "vae_sd": vae(),
    "vae_flux_diffusers": vae(16, "diffusers"),
    "controlnet_original": {
        "control_model.input_hint_block.0.weight": (16, 3, 3, 3),
        "control_model.time_embed.0.weight": (1280, 320),
        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        "control_model.zero_convs.0.0.weight": (320, 320, 1, 1)},
    "controlnet_diffusers_sdxl": {
        "controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3),
        "add_embedding.linear_1.weight": (1280, 2816),
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": (640, 2048)},
    "lora_kohya_sd1": {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": (320, 4),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha": ("F32", ()),
        "lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_down.weight": (4, 768)},
    "lora_kohya_sdxl": {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": (8, 2048),
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight": (640, 8),
        "lora_te1_text_model_encoder_layers_0_self_attn_k_proj.lora_down.weight": (8, 768),
        "lora_te2_text_model_encoder_layers_0_self_attn_k_proj.lora_down.weight": (8, 1280)},
    "lora_peft_sdxl": {
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (16, 2048),
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": (640, 16)},
    "lora_peft_flux": {
        "transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight": (16, 3072),
        "transformer.single_transformer_blocks.0.attn.to_k.lora_B.weight": (3072, 16)},
    "clip_l": {"text_model.embeddings.token_embedding.weight": (49408, 768),
               "text_model.encoder.layers.0.self_attn.q_proj.weight": (768, 768)},
    "clip_g_tf5": {"embeddings.token_embedding.weight": (49408, 1280),
                   "encoder.layers.0.self_attn.q_proj.weight": (1280, 1280),
                   "text_projection.weight": (1280, 1280)},
    "t5xxl": {"shared.weight": (32128, 4096),
              "encoder.block.0.layer.0.SelfAttention.q.weight": (4096, 4096)},
    "openclip_h": {"token_embedding.weight": (49408, 1024),
                   "transformer.resblocks.0.attn.in_proj_weight": (3072, 1024)},
})
CASES.update({
    "sd3_medium_aio": ("sd3", "sd3_medium", None, ("transformer", "vae", "text_encoder",
                                                   "text_encoder_2", "t5"),
                       ("clip_l", "clip_g", "t5xxl"), ()),
    "sd3_medium_clips": ("sd3", "sd3_medium", None, ("transformer", "vae", "text_encoder",
                                                     "text_encoder_2"), ("clip_l", "clip_g"), ()),
    "sd35_medium": ("sd3", "sd35_medium", None, ("transformer",), (), ()),
    "sd35_large": ("sd3", "sd35_large", None, ("transformer", "vae"), (), ()),
    "flux_dev": ("flux", "dev", None, ("transformer",), (), ()),
    "flux_schnell_prefixed": ("flux", "schnell", None, ("transformer",), (), ()),
    "flux_fill": ("flux", "fill", None, ("transformer",), (), ()),
    "vae_sd": ("vae", "4-channel", None, ("vae",), (), ("vae_kind",)),
    "vae_flux_diffusers": ("vae", "16-channel", None, ("vae",), (), ("vae_kind",)),
    "controlnet_original": ("controlnet", "original", "sd1", ("controlnet",), (), ()),
    "controlnet_diffusers_sdxl": ("controlnet", "diffusers", "sdxl", ("controlnet",), (), ()),
    "lora_kohya_sd1": ("lora", "kohya", "sd1", ("unet", "text_encoder"), (), ()),
    "lora_kohya_sdxl": ("lora", "kohya", "sdxl", ("unet", "text_encoder", "text_encoder_2"), (), ()),
    "lora_peft_sdxl": ("lora", "peft", "sdxl", ("unet",), (), ()),
    "lora_peft_flux": ("lora", "peft", "flux", ("transformer",), (), ()),
    "clip_l": ("text_encoder", "clip_l", None, ("text_encoder",), ("clip_l",), ()),
    "clip_g_tf5": ("text_encoder", "clip_g", None, ("text_encoder_2",), ("clip_g",), ()),
    "t5xxl": ("text_encoder", "t5xxl", None, ("t5",), ("t5xxl",), ()),
    "openclip_h": ("text_encoder", "openclip_h", None, ("text_encoder",), ("openclip_h",), ()),
})


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_family_is_detected_from_its_header(tmp_path, name):
    family, variant, base, components, encoders, choices = CASES[name]
    found = detect(sparse_file(tmp_path / f"{name}.safetensors", FILES[name]))
    assert (found.family, found.variant, found.base) == (family, variant, base)
    assert found.components == components
    assert found.text_encoders == encoders
    assert tuple(found.needs_choice) == choices
    assert found.recognised and found.problems == ()
    assert found.tensor_count == len(FILES[name])
    assert found.parameters == sum(math.prod(s[-1] if isinstance(s[0], str) else s)
                                   for s in FILES[name].values())
    text = found.describe()
    assert text.endswith(".") and "\n" not in text


def test_sd1_numbers_prefix_and_sentence(tmp_path):
    found = detect(sparse_file(tmp_path / "v1.safetensors", FILES["sd1"]))
    assert found.prefix == U and found.layout == "original"
    assert found.dtype == "float16" and found.dtype_note == ""
    assert found.size_bytes == (tmp_path / "v1.safetensors").stat().st_size
    text = found.describe()
    assert text.startswith("An SD 1.x checkpoint (original layout) holding the U-Net, the VAE "
                           "and the CLIP-L text encoder. 73.90 MiB of float16 weights: ")
    assert f"{found.parameters:,} parameters" in text


def test_sd2_says_prediction_cannot_be_told_unless_metadata_says(tmp_path):
    found = detect(sparse_file(tmp_path / "v2.safetensors", FILES["sd2"]))
    assert found.needs_choice == {"prediction": ("epsilon", "v_prediction")}
    assert "cannot be told" in found.describe()
    declared = detect(sparse_file(tmp_path / "v2v.safetensors", FILES["sd2"],
                                  {"modelspec.prediction_type": "v"}))
    assert (declared.variant, declared.needs_choice) == ("768-v", {})


def test_vae_kind_is_a_choice_with_a_reason(tmp_path):
    found = detect(sparse_file(tmp_path / "ae.safetensors", FILES["vae_flux_diffusers"]))
    assert found.needs_choice == {"vae_kind": ("sd3", "flux")} and found.layout == "diffusers"
    assert "SD3 and Flux VAEs have the same shapes" in found.describe()


def test_mixed_dtypes_are_noted(tmp_path):
    keys = {**FILES["lora_kohya_sd1"], "lora_te_x.lora_down.weight": ("F32", (1, 1))}
    found = detect(sparse_file(tmp_path / "l.safetensors", keys))
    assert found.dtype == "float16"
    mixed = detect(sparse_file(tmp_path / "m.safetensors",
                               {**FILES["vae_sd"], "decoder.conv_in.weight": ("F32", (512, 4, 3, 3))}))
    assert mixed.dtype_note.startswith("mixed: float16") and "float32" in mixed.dtype_note


def test_workbench_file(tmp_path):
    meta = {"diffusion-workbench": json.dumps({"name": "shapes-ldm", "kind": "ldm"})}
    found = detect(sparse_file(tmp_path / "w.safetensors",
                               {"unet.conv_in.weight": (32, 4, 3, 3),
                                "text_encoder.embed.weight": (40, 32)}, meta))
    assert (found.family, found.variant, found.components) == ("workbench", "ldm",
                                                                ("unet", "text_encoder"))


def test_the_shipped_model_is_a_workbench_file():
    path = Path(__file__).resolve().parents[1] / "resources" / "models" / "shapes-ldm.safetensors"
    found = detect(path)
    assert found.family == "workbench" and found.recognised and found.parameters > 0


def test_unknown_file_gets_a_sentence(tmp_path):
    keys = {f"foo.layer{i}.weight": (3, 3) for i in range(12)}
    found = detect(sparse_file(tmp_path / "x.safetensors", keys))
    assert found.family == "unknown" and not found.recognised
    assert found.describe().startswith(
        "A safetensors file of 12 tensors whose keys start with `foo.`: not a diffusion model, "
        "VAE, ControlNet, LoRA or text encoder this workbench can load")
    other = detect(sparse_file(tmp_path / "wan.safetensors", {"head.modulation": (1, 2, 5120)}))
    assert other.family == "unknown" and "Wan" in other.describe()


def test_pickles_are_reported_not_unpickled(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04 this would be a pickle; it must never be loaded")
    found = detect(ckpt)
    assert found.family == "unknown" and found.variant == "pickle" and not found.recognised
    assert "refused unless allowed" in found.problems[0]
    disguised = tmp_path / "zip.safetensors"
    disguised.write_bytes(b"PK\x03\x04 a torch zip archive")
    assert detect(disguised).variant == "pickle"


# -- damaged and lying headers -------------------------------------------------------------
def good_header() -> bytes:
    return json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"\x01\x02"), "too short"),
    (lambda p: raw_file(p, good_header(), 8, declared=10_000), "declares a 10,000-byte header"),
    (lambda p: raw_file(p, good_header(), 8, declared=1 << 40), "the limit is"),
    (lambda p: raw_file(p, good_header(), 4), "truncated"),
    (lambda p: raw_file(p, good_header(), 12), "bytes after the last tensor"),
    (lambda p: raw_file(p, b"{not json", 0), "not valid JSON"),
    (lambda p: raw_file(p, b"[1, 2]", 0), "a JSON list, not an object"),
    (lambda p: raw_file(p, b"[" * 100_000 + b"]" * 100_000, 0), "nested too deeply"),
    (lambda p: raw_file(p, b"\xff\xfe{}", 0), "not UTF-8"),
    (lambda p: raw_file(p, json.dumps({"a": {"dtype": "F12", "shape": [2], "data_offsets": [0, 8]}})
                        .encode(), 8), "unknown dtype 'F12'"),
    (lambda p: raw_file(p, json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})
                        .encode(), 8), "data_offsets"),
    (lambda p: raw_file(p, json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                       "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})
                        .encode(), 12), "overlaps"),
    (lambda p: raw_file(p, json.dumps({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})
                        .encode(), 8), "needs 12 bytes"),
    (lambda p: raw_file(p, json.dumps({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})
                        .encode(), 8), "not a list of sizes"),
    (lambda p: raw_file(p, b'{"__metadata__": {"x": 1}}', 0), "__metadata__"),
    (lambda p: raw_file(p, b'{"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, '
                           b'"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}', 0),
     "appears twice"),
])
def test_damaged_headers_are_refused_with_the_file_named(tmp_path, make, message):
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(CheckpointError) as caught:
        detect(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_missing_file_and_plain_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        detect(tmp_path / "nothing.safetensors")
    with pytest.raises(CheckpointError, match="not a diffusers model folder"):
        detect(tmp_path)


def test_header_reader_agrees_with_safetensors(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "real.safetensors"
    save_file({"x": torch.zeros(3, 5, dtype=torch.bfloat16), "y": torch.zeros(7)}, str(path),
              metadata={"k": "v"})
    header = read_header(path)
    assert {k: (v.dtype, v.shape) for k, v in header.tensors.items()} == {
        "x": ("BF16", (3, 5)), "y": ("F32", (7,))}
    assert dict(header.metadata) == {"k": "v"} and header.data_size == 3 * 5 * 2 + 7 * 4


def best_time(action, repeats: int = 3) -> float:
    """The fastest of a few runs: the cores are shared, so one run can be descheduled."""
    import gc

    gc.collect()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


#: What reading a header may cost beyond the header itself: Python's read buffer
#: (8 KiB) and the probe's own read of /proc; a tensor read would cost megabytes.
READ_SLACK = 64 << 10
THREAD_IO = Path("/proc/thread-self/io")


def bytes_read(action) -> int:
    """Bytes this thread passed through read(2) and kin while ``action`` ran: the
    kernel's ``rchar`` count (Linux), so no file handle of the detector is missed."""
    if not THREAD_IO.exists():
        pytest.skip("counting bytes read needs Linux's /proc/thread-self/io")

    def rchar() -> int:
        fields = dict(line.split(":") for line in THREAD_IO.read_text().splitlines())
        return int(fields["rchar"])

    before = rchar()
    action()
    return rchar() - before


def assert_header_only(path: Path) -> None:
    """Detecting ``path`` (warmed up once) reads its header and nothing of its data."""
    detect(path)  # warms the imports and whatever the detector reads once per process
    with open(path, "rb") as handle:
        header_bytes = 8 + struct.unpack("<Q", handle.read(8))[0]
    read = bytes_read(lambda: detect(path))
    assert read <= header_bytes + READ_SLACK, (
        f"detecting {path.name} read {read:,} bytes; its header is {header_bytes:,}")


def test_a_sparse_20_gib_file_is_detected_from_its_header_alone(tmp_path):
    keys = {**flux(), "double_blocks.0.img_mlp.0.weight": (10 * GIB // 3072, 3072)}
    path = sparse_file(tmp_path / "big.safetensors", keys)
    assert path.stat().st_size > 20 * GIB and path.stat().st_blocks * 512 < 1 << 20
    found = detect(path)
    assert found.family == "flux" and found.size_bytes > 20 * GIB
    assert_header_only(path)


@pytest.mark.perf
def test_a_sparse_20_gib_file_is_detected_in_milliseconds(tmp_path):
    keys = {**flux(), "double_blocks.0.img_mlp.0.weight": (10 * GIB // 3072, 3072)}
    path = sparse_file(tmp_path / "big.safetensors", keys)
    detect(path)  # warms the imports
    assert best_time(lambda: detect(path)) < 0.05


def test_lora_base_from_text_encoder_width_or_metadata(tmp_path):
    te_only = {"lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_down.weight": (4, 1024),
               "lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_up.weight": (1024, 4)}
    assert detect(sparse_file(tmp_path / "a.safetensors", te_only)).base == "sd2"
    conv_only = {"lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight": (4, 320, 3, 3)}
    unknown = detect(sparse_file(tmp_path / "b.safetensors", conv_only))
    assert unknown.base is None and "could not be told" in unknown.describe()
    declared = detect(sparse_file(tmp_path / "c.safetensors", conv_only,
                                  {"ss_base_model_version": "sdxl_base_v1-0"}))
    assert declared.base == "sdxl"


def test_a_fifo_is_refused_not_read(tmp_path):
    import os

    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        detect(fifo)

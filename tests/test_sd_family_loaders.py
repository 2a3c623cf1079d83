"""SD 1.x / 2.x / SDXL / SDXL refiner loaders: tiny random-weight files in the
real original layouts (``tests/layouts``) go through the code path a user's
file takes. Loaded weights must equal the source models exactly; the U-Net
must compute what the source U-Net computes (a wrong head count would not);
text encodings and SDXL's added conditioning must follow diffusers' pipelines.
Full-size layouts are checked from headers alone, on the meta device.
"""
from __future__ import annotations

import json
import types

import pytest
import safetensors.torch
import torch

from core.checkpoints import CheckpointError
from core.models.families.sd_loader import SD_FAMILIES, load_sd, load_sd_vae_file
from core.values import Conditioning, ConditioningBatch
from tests.layouts import files as layouts

TINY = {"clip_l": {"num_attention_heads": 2}}  # 32-wide CLIP-L: heads are not in any shape
PROMPT = "a red circle on a blue background"
MAKERS = {"sd1": layouts.tiny_sd1_checkpoint, "sd2": layouts.tiny_sd2_checkpoint,
          "sdxl": layouts.tiny_sdxl_checkpoint, "sdxl_refiner": layouts.tiny_sdxl_refiner_checkpoint}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd_files")
    tiny = {family: make(folder / f"{family}.safetensors") for family, make in MAKERS.items()}
    return types.SimpleNamespace(**tiny, vae=layouts.tiny_vae_file(folder / "vae.safetensors", seed=3),
                                 folder=folder)


@pytest.fixture(scope="module")
def loaded(made):
    return {family: load_sd(getattr(made, family).path, overrides=TINY) for family in SD_FAMILIES}


def assert_same_weights(module, source: torch.nn.Module):
    state, expected = module.state_dict(), source.state_dict()
    assert set(state) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key


def unet_of(checkpoint):
    return checkpoint.model.denoiser.network.unet


def added_kwargs(pooled, time_ids):
    return {"text_embeds": pooled, "time_ids": torch.tensor(time_ids, dtype=torch.float32)}


def unet_inputs(family, batch=1):
    generator = torch.Generator().manual_seed(1)
    width = {"sd1": 32, "sd2": 64, "sdxl": 96, "sdxl_refiner": 64}[family]
    x = torch.randn(batch, 4, 8, 8, generator=generator)
    context = torch.randn(batch, 77, width, generator=generator)
    extra = {}
    if family.startswith("sdxl"):
        ids = [[16, 24, 2, 0, 16, 16]] if family == "sdxl" else [[16, 24, 2, 0, 6.0]]
        extra["added_cond_kwargs"] = added_kwargs(torch.randn(batch, 64, generator=generator),
                                                  ids * batch)
    return x, torch.full((batch,), 421.0), context, extra


# --- all-in-one files ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", SD_FAMILIES)
def test_all_in_one_file_loads_exactly_and_computes_the_same(made, loaded, family):
    source, checkpoint = getattr(made, family), loaded[family]
    assert_same_weights(unet_of(checkpoint), source.models["unet"])
    assert_same_weights(checkpoint.vae.vae, source.models["vae"])
    assert set(checkpoint.clip.encoders) == {c for c in source.models if c.startswith("text_encoder")}
    for component, module in checkpoint.clip.encoders.items():
        assert_same_weights(module, source.models[component])
    x, t, context, extra = unet_inputs(family)
    with torch.no_grad():
        expected = source.models["unet"](x, t, encoder_hidden_states=context, **extra).sample
        got = unet_of(checkpoint)(x, t, encoder_hidden_states=context, **extra).sample
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    model = checkpoint.model
    assert model.name == family and model.batched_cfg and model.parameterization == "ve"
    assert model.decoder is checkpoint.vae and model.latent_rgb.channels == 4
    assert "float32" in model.description and ("v-prediction" if family == "sd2" else "ε-") \
        in model.description
    assert checkpoint.vae.scaling_factor == (0.13025 if family.startswith("sdxl") else 0.18215)


def test_sd2_prediction_from_argument_metadata_and_default(made, tmp_path):
    made_sd2 = made.sd2
    assert load_sd(made_sd2.path, "sd2").model.denoiser.prediction == "v_prediction"  # 768 guess
    chosen = load_sd(made_sd2.path, prediction="epsilon")
    assert chosen.model.denoiser.prediction == "epsilon" and "ε-prediction" in chosen.model.description
    declared = layouts.write_safetensors(tmp_path / "base.safetensors", made_sd2.tensors,
                                         {"modelspec.prediction_type": "epsilon"})
    assert load_sd(declared).model.denoiser.prediction == "epsilon"
    assert load_sd(made.sd1.path, overrides=TINY).model.denoiser.prediction == "epsilon"


# --- text encoders ------------------------------------------------------------------------------

def reference_ids(texts, pad):
    from core.models.tokenizers import END, clip_token_ids

    return clip_token_ids(list(texts), END if pad == "end" else "!")


@torch.no_grad()
def test_text_conventions_follow_the_pipelines(made, loaded):
    texts = [PROMPT, ""]
    ids_l, ids_g = reference_ids(texts, "end"), reference_ids(texts, "!")
    assert ids_l[1, -1] == 49407 and ids_g[1, -1] == 0  # CLIP-L pads with <|endoftext|>, bigG with "!"
    # SD 1.x and 2.x: the last hidden state, final layer norm applied
    for family, ids in (("sd1", ids_l), ("sd2", ids_g)):
        hidden, _ = loaded[family].clip.encode_pooled(texts)
        reference = getattr(made, family).models["text_encoder"](input_ids=ids)
        torch.testing.assert_close(hidden, reference.last_hidden_state, atol=1e-6, rtol=0)
    # SDXL: CLIP-L ⊕ bigG penultimate states, pooled = bigG's projected text_embeds
    models = made.sdxl.models
    hidden, pooled = loaded["sdxl"].clip.encode_pooled(texts)
    clip_l = models["text_encoder"](input_ids=ids_l, output_hidden_states=True)
    big_g = models["text_encoder_2"](input_ids=ids_g, output_hidden_states=True)
    assert hidden.shape == (2, 77, 32 + 64) and hidden.dtype == torch.float32
    penultimate = torch.cat([clip_l.hidden_states[-2], big_g.hidden_states[-2]], -1)
    torch.testing.assert_close(hidden, penultimate, atol=1e-6, rtol=0)
    torch.testing.assert_close(pooled, big_g.text_embeds, atol=1e-6, rtol=0)
    # refiner: bigG alone
    hidden, pooled = loaded["sdxl_refiner"].clip.encode_pooled(texts)
    big_g = made.sdxl_refiner.models["text_encoder_2"](input_ids=ids_g, output_hidden_states=True)
    torch.testing.assert_close(hidden, big_g.hidden_states[-2], atol=1e-6, rtol=0)
    torch.testing.assert_close(pooled, big_g.text_embeds, atol=1e-6, rtol=0)


# --- SDXL added conditioning --------------------------------------------------------------------

@torch.no_grad()
@pytest.mark.parametrize("family", ["sdxl", "sdxl_refiner"])
def test_sdxl_added_conditioning_and_batched_parts(made, loaded, family):
    checkpoint = loaded[family]
    network, unet = checkpoint.model.denoiser.network, made.__dict__[family].models["unet"]
    assert checkpoint.vae.downscale == 2  # the tiny VAE: latent 8×8 ↔ 16×16 pixels
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([700.0, 700.0])
    positive = Conditioning(PROMPT)
    negative = Conditioning("", extras={"original_size": (32, 24), "crop": (4, 2),
                                        "target_size": (16, 8), "aesthetic_score": 2.5})
    expected_ids = {"sdxl": ([16, 16, 0, 0, 16, 16], [32, 24, 4, 2, 16, 8]),
                    "sdxl_refiner": ([16, 16, 0, 0, 6.0], [32, 24, 4, 2, 2.5])}[family]
    outputs = []
    for row, (cond, ids) in enumerate(zip((positive, negative), expected_ids)):
        hidden, pooled = checkpoint.clip.encode_pooled([cond.text])
        expected = unet(x[row:row + 1], t[:1], encoder_hidden_states=hidden,
                        added_cond_kwargs=added_kwargs(pooled, [ids])).sample
        got = network(x[row:row + 1], t[:1], cond)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
        outputs.append(got)
    batched = network(x, t, ConditioningBatch((positive, negative)))  # one call, two parts
    torch.testing.assert_close(batched, torch.cat(outputs), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_sdxl_controlnet_gets_the_added_conditioning(made, loaded, tmp_path):
    from core.models.conditioned import ControlHint
    from core.models.families.controlnet import TimedControlHint, load_controlnet_file

    checkpoint = loaded["sdxl"]
    network, unet = checkpoint.model.denoiser.network, made.sdxl.models["unet"]
    made_cn = layouts.tiny_controlnet_file(tmp_path / "cn.safetensors", layout="diffusers",
                                           family="sdxl")
    controlnet = load_controlnet_file(made_cn.path, overrides={"addition_time_embed_dim": 8})
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    hint = TimedControlHint(controlnet, image, strength=0.7)
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5)), torch.tensor([600.0] * 2)
    hidden, pooled = checkpoint.clip.encode_pooled([PROMPT])
    added = added_kwargs(pooled, [[16, 16, 0, 0, 16, 16]])
    down, mid = controlnet(x[:1], t[:1], encoder_hidden_states=hidden, controlnet_cond=image,  # 8 × 8 latent
                           conditioning_scale=0.7, added_cond_kwargs=added, return_dict=False)
    expected = unet(x[:1], t[:1], encoder_hidden_states=hidden, added_cond_kwargs=added,
                    down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
    positive = Conditioning(PROMPT, extras={"control": (hint,)})
    torch.testing.assert_close(network(x[:1], t[:1], positive), expected, atol=1e-5, rtol=0)
    plain_hint = Conditioning(PROMPT, extras={"control": (ControlHint(controlnet, image, 0.7),)})
    torch.testing.assert_close(network(x[:1], t[:1], plain_hint), expected, atol=1e-5, rtol=0)
    plain = network(x[1:], t[1:], Conditioning(""))
    batched = network(x, t, ConditioningBatch((positive, Conditioning(""))))  # hint on one part only
    torch.testing.assert_close(batched, torch.cat([expected, plain]), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_hints_outside_their_steps_leave_the_unet_alone(made, loaded, tmp_path):
    from core.models.families.controlnet import TimedControlHint, load_controlnet_file

    network = loaded["sd1"].model.denoiser.network
    controlnet = load_controlnet_file(layouts.tiny_controlnet_file(tmp_path / "cn.safetensors").path)
    late = TimedControlHint(controlnet, torch.rand(1, 3, 64, 64), 1.0, 0.5, 1.0).for_steps([900.0, 100.0])
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([900.0, 900.0])  # step 0: not controlled
    positive, negative = Conditioning(PROMPT, extras={"control": (late,)}), Conditioning("")
    plain = network(x, t, ConditioningBatch((Conditioning(PROMPT), negative)))
    for cond in (ConditioningBatch((positive, negative)),  # per-part hints, none acting
                 ConditioningBatch((positive, Conditioning("", extras={"control": (late,)})))):  # shared
        torch.testing.assert_close(network(x, t, cond), plain, atol=0, rtol=0)
    always = TimedControlHint(controlnet, torch.rand(1, 3, 64, 64), 0.8)
    one = Conditioning(PROMPT, extras={"control": (always,)})
    both = Conditioning(PROMPT, extras={"control": (always, late)})  # the late one adds nothing yet
    torch.testing.assert_close(network(x[:1], t[:1], both), network(x[:1], t[:1], one), atol=0, rtol=0)


# --- precision, separate files, folders ---------------------------------------------------------

def test_half_precision_requests_give_those_dtypes(made):
    bf16 = load_sd(made.sd1.path, dtype=torch.bfloat16, overrides=TINY)
    modules = (unet_of(bf16), bf16.vae.vae, bf16.clip.model)
    assert {p.dtype for m in modules for p in m.parameters()} == {torch.bfloat16}
    assert "bfloat16" in bf16.model.description
    out = bf16.model.denoiser.network(torch.randn(1, 4, 8, 8), torch.tensor([300.0]), Conditioning(PROMPT))
    assert out.dtype == torch.float32 and out.isfinite().all()
    fp16 = load_sd(made.sdxl.path, dtype=torch.float16, overrides=TINY)
    assert {p.dtype for p in unet_of(fp16).parameters()} == {torch.float16}
    assert {p.dtype for p in fp16.clip.encoders["text_encoder_2"].parameters()} == {torch.float16}
    assert {p.dtype for p in fp16.vae.vae.parameters()} == {torch.float32}  # SDXL's VAE: force_upcast


def test_standalone_vae_files(made, tmp_path):
    vae = load_sd_vae_file(made.vae.path)
    assert_same_weights(vae.vae, made.vae.models["vae"])
    assert vae.scaling_factor == 0.18215 and vae.latent_channels == 4 and vae.downscale == 2
    assert load_sd_vae_file(made.vae.path, "sdxl").scaling_factor == 0.13025
    diffusers_keys = layouts.write_safetensors(tmp_path / "diffusers_vae.safetensors",
                                               made.vae.models["vae"].state_dict())
    assert_same_weights(load_sd_vae_file(diffusers_keys).vae, made.vae.models["vae"])
    assert_same_weights(load_sd_vae_file(made.sd1.path).vae, made.sd1.models["vae"])  # first_stage_model.
    replaced = load_sd(made.sd1.path, vae=made.vae.path, overrides=TINY)
    assert_same_weights(replaced.vae.vae, made.vae.models["vae"])
    assert replaced.vae.source == made.vae.path and replaced.model.decoder is replaced.vae
    made.vae.models["vae"].save_pretrained(tmp_path / "vae_folder")
    folder_vae = load_sd_vae_file(tmp_path / "vae_folder", "sdxl")
    assert_same_weights(folder_vae.vae, made.vae.models["vae"])
    assert folder_vae.scaling_factor == 0.18215  # the folder's config says its scale
    with pytest.raises(CheckpointError, match="clip_l.safetensors"):
        load_sd_vae_file(layouts.write_safetensors(tmp_path / "clip_l.safetensors",
                                                   made.sd1.models["text_encoder"].state_dict()))


def split_sdxl(made, folder):
    """SDXL as a bare original-layout U-Net file, a transformers CLIP-L file, a
    bare OpenCLIP bigG file and a bare original-layout VAE file."""
    def part(prefix, name):
        tensors = {k[len(prefix):]: v for k, v in made.sdxl.tensors.items() if k.startswith(prefix)}
        return layouts.write_safetensors(folder / name, tensors)

    return types.SimpleNamespace(
        unet=part("model.diffusion_model.", "unet.safetensors"),
        clip_l=layouts.write_safetensors(folder / "clip_l.safetensors",
                                         made.sdxl.models["text_encoder"].state_dict()),
        clip_g=part("conditioner.embedders.1.model.", "clip_g.safetensors"),
        vae=part("first_stage_model.", "sdxl_vae.safetensors"))


def test_unet_only_file_with_separate_text_encoder_and_vae_files(made, tmp_path):
    parts = split_sdxl(made, tmp_path)
    with pytest.raises(CheckpointError, match=r"unet\.safetensors.*CLIP-L.*clip_l.*bigG.*clip_g"):
        load_sd(parts.unet, "sdxl", overrides=TINY)
    with pytest.raises(CheckpointError, match=r"unet\.safetensors.*no VAE"):
        load_sd(parts.unet, "sdxl", clip_l=parts.clip_l, clip_g=parts.clip_g, overrides=TINY)
    checkpoint = load_sd(parts.unet, "sdxl", clip_l=parts.clip_l, clip_g=parts.clip_g, vae=parts.vae,
                         overrides=TINY)
    assert_same_weights(unet_of(checkpoint), made.sdxl.models["unet"])
    assert_same_weights(checkpoint.vae.vae, made.sdxl.models["vae"])
    for component in ("text_encoder", "text_encoder_2"):
        assert_same_weights(checkpoint.clip.encoders[component], made.sdxl.models[component])


def test_sd2_unet_only_file_with_an_open_clip_h_file(made, tmp_path):
    def part(prefix, name):
        tensors = {k[len(prefix):]: v for k, v in made.sd2.tensors.items() if k.startswith(prefix)}
        return layouts.write_safetensors(tmp_path / name, tensors)

    unet = part("model.diffusion_model.", "unet.safetensors")
    clip = part("cond_stage_model.model.", "open_clip_h.safetensors")
    checkpoint = load_sd(unet, "sd2", clip_l=clip, vae=made.vae.path, prediction="epsilon")
    assert_same_weights(checkpoint.clip.model, made.sd2.models["text_encoder"])  # 24th block dropped
    assert_same_weights(unet_of(checkpoint), made.sd2.models["unet"])
    assert checkpoint.model.denoiser.prediction == "epsilon"


def test_sdxl_diffusers_folder(made, loaded, tmp_path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from core.models.tokenizers import END, clip_tokenizer

    models = made.sdxl.models
    pipe = StableDiffusionXLPipeline(
        vae=models["vae"], text_encoder=models["text_encoder"], text_encoder_2=models["text_encoder_2"],
        tokenizer=clip_tokenizer(END), tokenizer_2=clip_tokenizer("!"), unet=models["unet"],
        scheduler=EulerDiscreteScheduler.from_config(made.sdxl.configs["scheduler"]))
    pipe.save_pretrained(tmp_path / "folder")
    checkpoint = load_sd(tmp_path / "folder", "sdxl")
    assert_same_weights(unet_of(checkpoint), models["unet"])
    assert_same_weights(checkpoint.vae.vae, models["vae"])
    assert checkpoint.vae.scaling_factor == 0.13025 and checkpoint.model.denoiser.prediction == "epsilon"
    assert_same_weights(load_sd_vae_file(tmp_path / "folder", "sdxl").vae, models["vae"])
    ours, theirs = checkpoint.clip.encode_pooled([PROMPT]), loaded["sdxl"].clip.encode_pooled([PROMPT])
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)  # the folder's tokenizers, same ids
    scheduler = tmp_path / "folder" / "scheduler" / "scheduler_config.json"
    config = {**json.loads(scheduler.read_text()), "prediction_type": "v_prediction"}
    scheduler.write_text(json.dumps(config))
    assert load_sd(tmp_path / "folder", "sdxl").model.denoiser.prediction == "v_prediction"
    # issue 12: integer weights in a folder were cast to float without a word
    weights = next((tmp_path / "folder" / "vae").glob("*.safetensors"))
    tensors = safetensors.torch.load_file(weights)
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.ndim == 4)
    tensors[key] = tensors[key].to(torch.int32)
    safetensors.torch.save_file(tensors, weights)
    with pytest.raises(CheckpointError, match=f"vae tensor {key} holds I32 values"):
        load_sd(tmp_path / "folder", "sdxl")


# --- errors -------------------------------------------------------------------------------------

def test_bad_files_are_checkpoint_errors_naming_the_file(made, tmp_path):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(made.sd1.path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated.safetensors"):
        load_sd(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="garbage.safetensors"):
        load_sd(garbage, "sd1")
    pickled = tmp_path / "model.ckpt"
    pickled.write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(CheckpointError, match=r"model\.ckpt.*pickle"):
        load_sd(pickled, "sd1")
    for family in (None, "sd1"):
        with pytest.raises(CheckpointError, match=r"vae\.safetensors.*VAE file, not an SD"):
            load_sd(made.vae.path, family)
    with pytest.raises(CheckpointError, match=r"sdxl\.safetensors.*SDXL base checkpoint, not SD 1"):
        load_sd(made.sdxl.path, "sd1")
    for kind, reason in (("weight", "cannot read the U-Net"), ("bias", "U-Net lacks 1 tensor")):
        key = f"model.diffusion_model.input_blocks.1.0.in_layers.2.{kind}"
        broken = layouts.write_safetensors(tmp_path / "broken.safetensors",
                                           {k: v for k, v in made.sd1.tensors.items() if k != key})
        with pytest.raises(CheckpointError, match=rf"broken\.safetensors.*{reason}.*"
                                                  rf"down_blocks\.0\.resnets\.0\.conv1\.{kind}"):
            load_sd(broken, overrides=TINY)


# --- end to end ---------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_two_sampler_steps_with_guidance_then_decode(loaded, family):
    from core.diffusion.timesteps import sampling_sigmas
    from core.sampling import run_sampler
    from core.values import SamplingSchedule

    checkpoint = loaded[family]
    table = checkpoint.model.schedule
    schedule = SamplingSchedule(table.name, "ve", sampling_sigmas(table, 2, "karras"), table)
    calls = []
    unet_of(checkpoint).register_forward_pre_hook(lambda *_: calls.append(1))
    latents, _ = run_sampler(checkpoint.model, schedule, torch.zeros(1, 4, 8, 8), sampler="euler",
                             positive=Conditioning(PROMPT), negative=Conditioning(""), guidance=5.0, seed=3)
    assert latents.shape == (1, 4, 8, 8) and latents.isfinite().all()
    assert len(calls) == 2  # batched classifier-free guidance: one U-Net call per step
    pixels = checkpoint.vae.decode(latents)
    assert pixels.shape == (1, 3, 16, 16) and 0 <= pixels.min() <= pixels.max() <= 1


def test_sdxl_lora_patches_both_text_encoders(made, loaded, tmp_path):
    from core.models.lora import apply_lora, torch_modules

    checkpoint = loaded["sdxl"]
    _, text = torch_modules(checkpoint.model, checkpoint.clip)
    assert set(text) == {"text_encoder", "text_encoder_2"}
    lora = layouts.tiny_lora_file(tmp_path / "lora.safetensors", family="sdxl")
    model, clip = apply_lora(checkpoint.model, checkpoint.clip, lora.path, 1.0, 1.0)
    before_h, before_p = checkpoint.clip.encode_pooled([PROMPT])
    after_h, after_p = clip.encode_pooled([PROMPT])
    assert not torch.equal(before_h[..., :32], after_h[..., :32])  # CLIP-L patched
    assert not torch.equal(before_h[..., 32:], after_h[..., 32:]) and not torch.equal(before_p, after_p)


# --- full size, from headers only ---------------------------------------------------------------

FULL_SIZE = {  # README of core/models/configs: parameters of the published models
    "sd1": (859_520_964, {"text_encoder": 123_060_480}),
    "sd2": (865_910_724, {"text_encoder": 340_387_840}),
    "sdxl": (2_567_463_684, {"text_encoder": 123_060_480, "text_encoder_2": 694_659_840}),
    "sdxl_refiner": (2_259_526_660, {"text_encoder_2": 694_659_840}),
}
UNET_KEYS = ("block_out_channels", "layers_per_block", "transformer_layers_per_block",
             "cross_attention_dim", "attention_head_dim", "in_channels", "out_channels",
             "down_block_types", "up_block_types", "use_linear_projection",
             "addition_embed_type", "addition_time_embed_dim", "projection_class_embeddings_input_dim")
TEXT_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "vocab_size", "max_position_embeddings", "hidden_act")


def meta_tensors(path):
    from core.checkpoints.header import read_header

    return {k: torch.empty(info.shape, device="meta") for k, info in read_header(path).tensors.items()}


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("family", SD_FAMILIES)
def test_full_size_headers_give_the_published_configs(family, tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from core.models.families import sd_text
    from core.models.families.sd_unet import unet_config, unet_weights
    from core.models.families.sd_vae import sd_vae_config
    from core.models.families.text_files import clip_config, clip_weights, published_config
    from core.models.families.vae16 import vae_weights

    tensors = meta_tensors(layouts.sparse_full_size_file(tmp_path / "full.safetensors", family))
    unet_count, text_counts = FULL_SIZE[family]
    pooled = 1280 if family.startswith("sdxl") else None
    config = unet_config(unet_weights(tensors), family, pooled)
    published = published_config(family, "unet")
    assert {k: config.get(k) for k in UNET_KEYS} == \
        {k: published.get(k, config.get(k)) for k in UNET_KEYS}  # SD 1.x's config omits some
    with torch.device("meta"):
        assert parameter_count(UNet2DConditionModel(**config)) == unet_count
        vae = sd_vae_config(vae_weights(tensors), family)
        assert parameter_count(AutoencoderKL(**vae)) == 83_653_863
    for component, count in text_counts.items():
        kind = sd_text.ENCODERS[family][component][0]
        weights = sd_text._inside(tensors, family, component, kind)
        if kind == "clip_h":
            weights = sd_text._without_last_block(weights)
        text = clip_config(clip_weights(weights), "clip_l" if kind == "clip_l" else "clip_g")
        reference = published_config(family, component)
        assert {k: text[k] for k in TEXT_KEYS} == {k: reference[k] for k in TEXT_KEYS}
        cls = CLIPTextModelWithProjection if kind == "clip_g" else CLIPTextModel
        with torch.device("meta"):
            assert parameter_count(cls(CLIPTextConfig(**text))) == count


def test_an_sd2_unet_with_an_extra_embedding_is_refused_not_misread(tmp_path):
    """unCLIP and upscaler U-Nets carry ``label_emb``: loading them as plain SD 2.x
    once dropped it silently and sampled with the wrong network."""
    import torch

    from core.models.families.sd_loader import load_sd
    from tests.layouts.files import tiny_sd2_checkpoint, write_safetensors

    made = tiny_sd2_checkpoint(tmp_path / "plain.safetensors")
    width = made.tensors["model.diffusion_model.time_embed.0.weight"].shape[0]
    extra = {"model.diffusion_model.label_emb.0.0.weight": torch.randn(width, 48),
             "model.diffusion_model.label_emb.0.0.bias": torch.randn(width)}
    path = write_safetensors(tmp_path / "unclip.safetensors", {**made.tensors, **extra})
    with pytest.raises(CheckpointError, match="unclip.safetensors.*label_emb"):
        load_sd(path)


def test_an_sdxl_file_missing_half_of_an_embedding_is_a_checkpoint_error(tmp_path):
    """diffusers' converter raised a bare KeyError for a partial ``label_emb``."""
    from core.models.families.sd_loader import load_sd
    from tests.layouts.files import tiny_sdxl_checkpoint, write_safetensors

    made = tiny_sdxl_checkpoint(tmp_path / "full.safetensors")
    tensors = {k: v for k, v in made.tensors.items() if "label_emb.0.2" not in k}
    path = write_safetensors(tmp_path / "partial.safetensors", tensors)
    with pytest.raises(CheckpointError, match="partial.safetensors.*U-Net"):
        load_sd(path)

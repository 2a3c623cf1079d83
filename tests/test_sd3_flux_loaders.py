"""SD3/SD3.5 and Flux.1 loaders, their text-encoder files, T5's tokenizer and
16-channel VAEs: tiny random-weight files in the real key layouts
(``tests/layouts``) go through the code path a user's file takes; the loaded
weights must equal the source exactly, and our sampler must land where
diffusers' pipeline lands on the same weights, noise, time grid and guidance.
"""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from core.checkpoints import CheckpointError
from core.diffusion.noise import cpu_generator
from core.diffusion.timesteps import flow_times
from core.latent_sizes import LatentSizeError
from core.sampling import run_sampler
from core.values import Conditioning, SamplingSchedule
from tests.layouts import t5 as text_layouts
from tests.layouts.flux import tiny_flux_transformer
from tests.layouts.sd3 import tiny_sd3_checkpoint, tiny_vae16_file

PROMPT = "a red circle on a blue background"
STEPS = 3
LATENT = (1, 16, 8, 8)  # 16×16 pixels through the tiny two-level VAE
CLIP_HEADS = {"clip_l": {"num_attention_heads": 2}, "clip_g": {"num_attention_heads": 3}}
TINY = {**CLIP_HEADS, "vae": {"norm_num_groups": 8}}  # what the tiny shapes cannot tell


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text_files")
    return types.SimpleNamespace(
        clip_l=text_layouts.tiny_clip_l_file(folder / "clip_l.safetensors", seed=1),
        clip_g=text_layouts.tiny_clip_g_file(folder / "clip_g.safetensors", seed=2),
        t5=text_layouts.tiny_t5_file(folder / "t5xxl.safetensors", seed=3),
        vae_flux=tiny_vae16_file(folder / "ae.safetensors", family="flux", seed=4),
        vae_sd3=tiny_vae16_file(folder / "vae_sd3.safetensors", family="sd3", seed=5),
        folder=folder,
    )


def assert_same_weights(module, source_state: dict):
    state = module.state_dict()
    assert set(state) == set(source_state)
    for key, tensor in source_state.items():
        assert torch.equal(state[key], tensor), key


def noise_latents():
    return torch.randn(LATENT, generator=cpu_generator(0))


def our_latents(loaded, shift, guidance=1.0, positive=None, negative=None):
    schedule = SamplingSchedule("flow", "flow", flow_times(STEPS, shift))
    result, _ = run_sampler(loaded.model, schedule, torch.zeros(LATENT), sampler="flow_euler",
                            positive=positive or Conditioning(text=PROMPT),
                            negative=negative or Conditioning(text=""), guidance=guidance, seed=0)
    return result


def exact_sigmas(shift: float) -> list[float]:
    """Our float32 levels, for a pipeline whose scheduler then shifts by 1
    (a no-op): both sides feed the network bit-identical times. That the
    pipelines' own shifted grids are these levels is tested separately
    (:func:`test_flow_grids_equal_the_pipelines_schedulers`); a 1-ulp
    difference in t moves the timestep embedding by ~1e-4 at t·1000."""
    return flow_times(STEPS, shift)[:-1].float().tolist()


def t5_tokenizer_for_pipeline():
    from transformers import T5TokenizerFast

    from core.models.t5_tokenizer import TOKENIZER_FILE

    return T5TokenizerFast(tokenizer_file=str(TOKENIZER_FILE))


# --- T5 tokenizer -----------------------------------------------------------------------------

def flow_schedule():
    return SamplingSchedule("flow", "flow", flow_times(2))


def test_t5_tokenizer_is_offline_and_matches_transformers():
    from core.models.t5_tokenizer import T5Tokenizer

    ids = T5Tokenizer(8)(["Hello world", "a very long prompt about many cats and dogs sitting"])
    assert ids[0].tolist() == [8774, 296, 1, 0, 0, 0, 0, 0]
    assert ids[1, -1] == 1  # cut to length, the end token kept
    prompts = [PROMPT, "", "Ünïcode, punctuation!  and   spaces"]
    ours = T5Tokenizer(256)(prompts)
    theirs = t5_tokenizer_for_pipeline()(prompts, padding="max_length", max_length=256,
                                         truncation=True, return_tensors="pt").input_ids
    assert torch.equal(ours, theirs)


# --- text-encoder files -----------------------------------------------------------------------

@pytest.mark.parametrize("role, projection", [("clip_l", "none"), ("clip_g", "file"), ("t5xxl", "file")])
def test_text_encoder_files_load_exactly(files, role, projection):
    from core.models.families.text_files import load_text_encoder_file

    made = {"clip_l": files.clip_l, "clip_g": files.clip_g, "t5xxl": files.t5}[role]
    model = load_text_encoder_file(made.path, role, projection=projection,
                                   overrides=CLIP_HEADS.get(role))
    assert_same_weights(model, made.state_dict(role))
    assert not model.training
    assert not any(p.is_meta for p in model.parameters())
    if role == "t5xxl":
        assert model.encoder.embed_tokens.weight is model.shared.weight  # tied
        ids = torch.tensor([[8774, 296, 1, 0]])
        torch.testing.assert_close(model(ids).last_hidden_state,
                                   made.models[role](ids).last_hidden_state, atol=1e-5, rtol=0)


def test_half_precision_requests_give_those_dtypes(files):
    from core.models.families.text_files import load_text_encoder_file

    t5 = load_text_encoder_file(files.t5.path, "t5xxl", dtype=torch.float16)
    for name, parameter in t5.named_parameters():
        # T5's feed-forward output stays fp32 under fp16, as transformers keeps it
        assert parameter.dtype == (torch.float32 if ".wo." in name else torch.float16), name
    clip_g = load_text_encoder_file(files.clip_g.path, "clip_g", dtype=torch.bfloat16,
                                    overrides=CLIP_HEADS["clip_g"])
    assert {p.dtype for p in clip_g.parameters()} == {torch.bfloat16}


def test_missing_or_misshapen_tensor_names_file_and_key(files, tmp_path):
    from core.models.families.text_files import load_text_encoder_file

    tensors = dict(files.t5.tensors)
    missing = "encoder.block.1.layer.1.DenseReluDense.wo.weight"
    del tensors[missing]
    broken = text_layouts.write_safetensors(tmp_path / "t5_missing.safetensors", tensors)
    with pytest.raises(CheckpointError, match=missing) as caught:
        load_text_encoder_file(broken, "t5xxl")
    assert str(broken) in str(caught.value)

    tensors = dict(files.clip_g.tensors)
    key = "text_model.encoder.layers.1.mlp.fc2.weight"
    tensors[key] = tensors[key][:, :-1]
    misshapen = text_layouts.write_safetensors(tmp_path / "clip_g_shape.safetensors", tensors)
    with pytest.raises(CheckpointError, match="encoder.layers.1.mlp.fc2.weight") as caught:
        load_text_encoder_file(misshapen, "clip_g", overrides=CLIP_HEADS["clip_g"])
    assert str(misshapen) in str(caught.value)

    not_there = tmp_path / "nothing.safetensors"
    with pytest.raises(CheckpointError, match="no such model file"):
        load_text_encoder_file(not_there, "clip_l")


def test_vae16_file_loads_exactly_with_scale_and_shift(files):
    from core.models.families.vae16 import load_vae16_file

    handle = load_vae16_file(files.vae_flux.path, "flux", overrides=TINY["vae"])
    assert_same_weights(handle.vae, files.vae_flux.state_dict("vae"))
    assert (handle.scaling_factor, handle.shift_factor, handle.latent_channels) == (0.3611, 0.1159, 16)
    images = torch.rand(1, 3, 16, 16)
    source = files.vae_flux.models["vae"]
    with torch.no_grad():
        expected = (source.encode(images * 2 - 1).latent_dist.mean - 0.1159) * 0.3611
    torch.testing.assert_close(handle.encode(images), expected, atol=1e-5, rtol=0)
    assert handle.decode(handle.encode(images)).shape == (1, 3, 16, 16)


# --- SD3 --------------------------------------------------------------------------------------

def sd3_pipeline(made, with_t5=True):
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    from core.models.tokenizers import END, clip_tokenizer

    pipe = StableDiffusion3Pipeline(
        transformer=made.models["transformer"], vae=made.models["vae"],
        text_encoder=made.models["text_encoder"], tokenizer=clip_tokenizer(END),
        text_encoder_2=made.models["text_encoder_2"], tokenizer_2=clip_tokenizer("!"),
        text_encoder_3=made.models["text_encoder_3"] if with_t5 else None,
        tokenizer_3=t5_tokenizer_for_pipeline() if with_t5 else None,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd3_pipeline_latents(pipe, guidance):
    return pipe(PROMPT, negative_prompt="", height=16, width=16, num_inference_steps=STEPS,
                guidance_scale=guidance, latents=noise_latents(), sigmas=exact_sigmas(3.0),
                output_type="latent").images


def sd3_overrides(variant):
    # without qk-norm weights (SD3-medium) the head width is not in any shape
    return {**TINY, "transformer": {"attention_head_dim": 16}} if variant == "sd3_medium" else TINY


@pytest.mark.parametrize("variant", ["sd3_medium", "sd35_medium", "sd35_large"])
def test_sd3_all_in_one_file_matches_diffusers_pipeline(tmp_path, variant):
    from core.models.families.sd3 import load_sd3

    made = tiny_sd3_checkpoint(tmp_path / f"{variant}.safetensors", variant=variant)
    loaded = load_sd3(made.path, variant, overrides=sd3_overrides(variant))
    assert_same_weights(loaded.model.denoiser.network.transformer, made.state_dict("transformer"))
    assert_same_weights(loaded.vae.vae, made.state_dict("vae"))
    for name, module in (("text_encoder", loaded.clip.clip_l), ("text_encoder_2", loaded.clip.clip_g),
                         ("text_encoder_3", loaded.clip.t5)):
        assert_same_weights(module, made.state_dict(name))
    assert loaded.model.batched_cfg and loaded.model.parameterization == "flow"
    assert loaded.model.latent_rgb.channels == 16 and loaded.model.decoder is loaded.vae
    config = made.configs["transformer"]  # past its position table: our message, not diffusers'
    largest = config["pos_embed_max_size"] * config["patch_size"]
    with pytest.raises(LatentSizeError, match=r"change .* to fit"):
        run_sampler(loaded.model, flow_schedule(), torch.zeros(1, 16, largest + 2, largest + 2))
    expected = sd3_pipeline_latents(sd3_pipeline(made), guidance=4.0)
    torch.testing.assert_close(our_latents(loaded, 3.0, guidance=4.0), expected, atol=1e-5, rtol=0)


def test_sd3_transformer_only_with_separate_files_and_without_t5(tmp_path, files):
    from core.models.families.sd3 import load_sd3

    made = tiny_sd3_checkpoint(tmp_path / "model.safetensors", variant="sd35_large",
                               with_text_encoders=False, with_vae=False)
    with pytest.raises(CheckpointError, match="clip_l and clip_g"):
        load_sd3(made.path, "sd35_large", vae=files.vae_sd3.path, overrides=TINY)
    loaded = load_sd3(made.path, "sd35_large", clip_l=files.clip_l.path, clip_g=files.clip_g.path,
                      vae=files.vae_sd3.path, overrides=TINY)
    assert loaded.clip.t5 is None and "no T5" in loaded.clip.description
    hidden, pooled = loaded.clip.encode_pooled([PROMPT])
    assert hidden.shape == (1, 77 + 256, made.configs["transformer"]["joint_attention_dim"])
    assert not hidden[:, 77:].any() and pooled.shape == (1, 32 + 48)
    # SD3's CLIP-L enters with an identity projection whatever the file holds
    assert torch.equal(loaded.clip.clip_l.text_projection.weight, torch.eye(32))

    from transformers import CLIPTextModelWithProjection

    source = files.clip_l.models["clip_l"]  # a plain CLIPTextModel: SD3 gives it an identity projection
    clip_l = CLIPTextModelWithProjection(source.config).eval()
    with torch.no_grad():
        clip_l.text_model.load_state_dict(source.state_dict())
        clip_l.text_projection.weight.copy_(torch.eye(32))
    made.models.update(vae=files.vae_sd3.models["vae"], text_encoder=clip_l,
                       text_encoder_2=files.clip_g.models["clip_g"])
    expected = sd3_pipeline_latents(sd3_pipeline(made, with_t5=False), guidance=3.0)
    torch.testing.assert_close(our_latents(loaded, 3.0, guidance=3.0), expected, atol=1e-5, rtol=0)


def test_sd3_missing_transformer_tensor_names_file_and_key(tmp_path):
    from core.models.families.sd3 import load_sd3

    made = tiny_sd3_checkpoint(tmp_path / "sd3.safetensors", variant="sd35_large",
                               with_text_encoders=False, with_vae=False)
    key = "joint_blocks.1.x_block.mlp.fc2.weight"
    tensors = {k: v for k, v in made.tensors.items() if not k.endswith(key)}
    broken = text_layouts.write_safetensors(tmp_path / "broken.safetensors", tensors)
    with pytest.raises(CheckpointError, match=key) as caught:
        load_sd3(broken, "sd35_large")
    assert str(broken) in str(caught.value)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(made.path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated.safetensors"):
        load_sd3(truncated, "sd35_large")


def test_sd3_diffusers_folder_and_bf16(tmp_path):
    from core.models.families.sd3 import load_sd3

    made = tiny_sd3_checkpoint(tmp_path / "sd3.safetensors", variant="sd35_medium")
    pipe = sd3_pipeline(made)
    pipe.save_pretrained(tmp_path / "folder")
    loaded = load_sd3(tmp_path / "folder", "sd35_medium")
    assert_same_weights(loaded.model.denoiser.network.transformer, made.state_dict("transformer"))
    assert loaded.vae.shift_factor == pytest.approx(0.0609)
    torch.testing.assert_close(our_latents(loaded, 3.0, guidance=4.0),
                               sd3_pipeline_latents(pipe, guidance=4.0), atol=1e-5, rtol=0)

    half = load_sd3(made.path, "sd35_medium", dtype=torch.bfloat16, overrides=TINY)
    modules = (half.model.denoiser.network.transformer, half.vae.vae, half.clip.clip_g)
    assert {p.dtype for m in modules for p in m.parameters()} == {torch.bfloat16}
    assert our_latents(half, 3.0).dtype == torch.float32  # the sampler stays in float32


# --- Flux -------------------------------------------------------------------------------------

def flux_pipeline(transformer, files):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from core.models.tokenizers import END, clip_tokenizer

    scheduler = dict(shift=1.0, use_dynamic_shifting=False)  # fed exact_sigmas()
    pipe = FluxPipeline(transformer=transformer, vae=files.vae_flux.models["vae"],
                        text_encoder=files.clip_l.models["clip_l"], tokenizer=clip_tokenizer(END),
                        text_encoder_2=files.t5.models["t5xxl"], tokenizer_2=t5_tokenizer_for_pipeline(),
                        scheduler=FlowMatchEulerDiscreteScheduler(**scheduler))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flux_pipeline_latents(pipe, variant, shift, **options):
    from core.models.families.flux import pack_latents, unpack_latents

    packed = pipe(PROMPT, height=16, width=16, num_inference_steps=STEPS,
                  latents=pack_latents(noise_latents()),
                  output_type="latent", max_sequence_length=512 if variant == "dev" else 256,
                  sigmas=exact_sigmas(shift),
                  **options).images  # (1, 16, 64)
    return unpack_latents(packed, *LATENT[-2:])


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_flux_matches_diffusers_pipeline(tmp_path, files, variant):
    from core.models.families.flux import flux_shift, load_flux
    from nodes.flux import flux_guidance

    made = tiny_flux_transformer(tmp_path / "flux.safetensors", variant=variant, comfy_prefix=True)
    loaded = load_flux(made.path, clip_l=files.clip_l.path, t5xxl=files.t5.path,
                       vae=files.vae_flux.path, overrides=TINY)
    assert loaded.model.name == f"flux-{variant}"  # the variant is told by the guidance weights
    assert loaded.model.latent_rgb.channels == 16 and loaded.model.latent_channels == 16
    with pytest.raises(LatentSizeError, match=r"change .* to fit"):  # 2×2 packing needs even sides
        run_sampler(loaded.model, flow_schedule(), torch.zeros(1, 16, 9, 8))
    assert_same_weights(loaded.model.denoiser.network.transformer, made.state_dict("transformer"))
    assert_same_weights(loaded.clip.clip_l, files.clip_l.state_dict("clip_l"))
    assert_same_weights(loaded.clip.t5, files.t5.state_dict("t5xxl"))
    pipe = flux_pipeline(made.models["transformer"], files)
    shift = flux_shift(16, 16, downscale=2) if variant == "dev" else 1.0
    expected = flux_pipeline_latents(pipe, variant, shift, guidance_scale=5.0)
    positive = flux_guidance(None, Conditioning(text=PROMPT), 5.0)
    torch.testing.assert_close(our_latents(loaded, shift, positive=positive), expected, atol=1e-5, rtol=0)
    if variant == "dev":  # the distilled guidance really is an input
        assert not torch.allclose(our_latents(loaded, shift), expected, atol=1e-3)


def test_flux_true_cfg_batched_matches_pipeline(tmp_path, files):
    from core.models.families.flux import flux_shift, load_flux

    made = tiny_flux_transformer(tmp_path / "flux.safetensors", variant="dev")
    loaded = load_flux(made.path, "dev", clip_l=files.clip_l.path, t5xxl=files.t5.path,
                       vae=files.vae_flux.path, overrides=TINY)
    pipe = flux_pipeline(made.models["transformer"], files)
    shift = flux_shift(16, 16, downscale=2)
    expected = flux_pipeline_latents(pipe, "dev", shift, guidance_scale=3.5, true_cfg_scale=2.0,
                                     negative_prompt="green square")
    ours = our_latents(loaded, shift, guidance=2.0,
                       negative=Conditioning(text="green square"))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_flux_batch_of_parts_equals_separate_calls(tmp_path, files):
    """A ConditioningBatch whose parts differ in T5 length and guidance runs
    part by part; one of equal parts runs as one call: the same numbers."""
    from core.models.families.flux import GUIDANCE_KEY, load_flux
    from core.values import ConditioningBatch

    made = tiny_flux_transformer(tmp_path / "flux.safetensors", variant="dev")
    loaded = load_flux(made.path, clip_l=files.clip_l.path, t5xxl=files.t5.path,
                       vae=files.vae_flux.path, overrides=TINY)
    network = loaded.model.denoiser.network
    hidden, pooled = loaded.clip.encode_pooled([PROMPT])
    short = Conditioning(PROMPT, hidden[:, :40], {"pooled": pooled, GUIDANCE_KEY: 2.0})
    full = Conditioning(PROMPT, hidden, {"pooled": pooled})
    x, t = torch.randn(4, 16, 4, 6), torch.tensor([0.7, 0.7, 0.4, 0.4])
    batched = network(x, t, cond=ConditioningBatch((short, full)))
    torch.testing.assert_close(batched[:2], network(x[:2], t[:2], cond=short), atol=1e-5, rtol=0)
    torch.testing.assert_close(batched[2:], network(x[2:], t[2:], cond=full), atol=1e-5, rtol=0)
    same = network(x, t, cond=ConditioningBatch((full, Conditioning(text=PROMPT))))
    torch.testing.assert_close(same[2:], network(x[2:], t[2:], cond=full), atol=1e-5, rtol=0)
    assert not torch.allclose(batched[:2], network(x[:2], t[:2], cond=full), atol=1e-4)


def test_flow_grids_equal_the_pipelines_schedulers():
    """Our flow_times(N, shift) is the grid SD3's and Flux's pipelines build
    from sigmas = linspace(1, 1/N, N) (FlowMatchEuler's default grid, without
    explicit sigmas, shifts its smallest σ twice and differs)."""
    import json

    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    from core.models.families.flux import flux_shift
    from core.models.families.text_files import CONFIGS

    steps, linear = 28, np.linspace(1.0, 1 / 28, 28)
    sd3 = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sd3.set_timesteps(sigmas=linear)
    torch.testing.assert_close(sd3.sigmas.double(), flow_times(steps, 3.0), atol=1e-6, rtol=0)
    config = json.loads((CONFIGS / "flux_dev" / "scheduler.json").read_text())
    config.pop("_class_name")
    flux = FlowMatchEulerDiscreteScheduler(**config)
    flux.set_timesteps(sigmas=linear, mu=calculate_shift((1024 // 16) * (768 // 16)))
    torch.testing.assert_close(flux.sigmas.double(), flow_times(steps, flux_shift(1024, 768)),
                               atol=1e-6, rtol=0)


def test_flux_shift_packing_and_ids_follow_the_pipeline():
    from diffusers import FluxPipeline
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    from core.models.families.flux import flux_shift, image_ids, pack_latents, unpack_latents

    for height, width in ((1024, 1024), (512, 768), (1536, 640)):
        tokens = (height // 16) * (width // 16)
        assert flux_shift(height, width) == pytest.approx(np.exp(calculate_shift(tokens)))
    assert flux_shift(1024, 1024) == pytest.approx(np.exp(1.15))
    x = torch.randn(2, 16, 6, 4)
    packed = pack_latents(x)
    assert torch.equal(packed, FluxPipeline._pack_latents(x, 2, 16, 6, 4))
    assert torch.equal(unpack_latents(packed, 6, 4), x)
    assert torch.equal(image_ids(6, 4), FluxPipeline._prepare_latent_image_ids(2, 3, 2, "cpu", torch.float32))
    with pytest.raises(ValueError, match="even"):
        pack_latents(torch.zeros(1, 16, 5, 4))


def test_flux_diffusers_folder_and_missing_parts(tmp_path, files):
    from core.models.families.flux import flux_shift, load_flux

    made = tiny_flux_transformer(tmp_path / "flux.safetensors", variant="dev")
    pipe = flux_pipeline(made.models["transformer"], files)
    pipe.save_pretrained(tmp_path / "folder")
    loaded = load_flux(tmp_path / "folder")
    assert loaded.model.name == "flux-dev"
    assert_same_weights(loaded.model.denoiser.network.transformer, made.state_dict("transformer"))
    assert_same_weights(loaded.clip.t5, files.t5.state_dict("t5xxl"))
    shift = flux_shift(16, 16, downscale=2)
    torch.testing.assert_close(our_latents(loaded, shift), flux_pipeline_latents(pipe, "dev", shift),
                               atol=1e-5, rtol=0)
    # diffusers' own layout in a single file (a transformer folder's weights) loads too, in bf16
    single = tmp_path / "folder" / "transformer" / "diffusion_pytorch_model.safetensors"
    half = load_flux(single, "dev", clip_l=files.clip_l.path, t5xxl=files.t5.path,
                     vae=files.vae_flux.path, dtype=torch.bfloat16, overrides=TINY)
    assert {p.dtype for p in half.model.denoiser.network.transformer.parameters()} == {torch.bfloat16}
    assert our_latents(half, shift).dtype == torch.float32
    with pytest.raises(CheckpointError, match="t5xxl"):
        load_flux(made.path, clip_l=files.clip_l.path, vae=files.vae_flux.path, overrides=TINY)
    with pytest.raises(CheckpointError, match="VAE"):
        load_flux(made.path, clip_l=files.clip_l.path, t5xxl=files.t5.path, overrides=TINY)


def test_text_encoder_nodes_build_clip_values(files):
    from nodes.flux import (
        NODES,
        flux_time_shift,
        load_flux_text_encoders_node,
        load_sd3_text_encoders_node,
    )

    ctx = types.SimpleNamespace(device="cpu", dtype=torch.float32)
    assert {n.type_id for n in NODES} == {"flux.guidance", "flux.time_shift", "loaders.sd3_text_encoders",
                                          "loaders.flux_text_encoders"}
    assert flux_time_shift(ctx, 1024, 1024) == pytest.approx(np.exp(1.15))
    flux = load_flux_text_encoders_node(ctx, str(files.clip_l.path), str(files.t5.path), "schnell")
    hidden, pooled = flux.encode_pooled([PROMPT])
    assert hidden.shape == (1, 256, 96) and pooled.shape == (1, 32)
    sd3 = load_sd3_text_encoders_node(ctx, str(files.clip_l.path), str(files.clip_g.path), "")
    assert sd3.t5 is None and sd3.encode_pooled([PROMPT])[0].shape == (1, 77 + 256, 4096)
    with pytest.raises(ValueError, match="CLIP-G"):
        load_sd3_text_encoders_node(ctx, str(files.clip_l.path), "", "")
    with pytest.raises(CheckpointError, match="no such model file"):
        load_flux_text_encoders_node(ctx, str(files.clip_l.path),
                                     str(files.folder / "nope.safetensors"), "dev")


# --- full-size layouts, shapes only -----------------------------------------------------------

def meta_tensors(shapes: dict) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # tied parameters once


@pytest.mark.parametrize("variant", ["sd3_medium", "sd35_medium", "sd35_large"])
def test_full_size_sd3_shapes_give_the_published_config(variant):
    from core.models.families.sd3 import sd3_config, transformer_weights
    from core.models.families.text_files import published_config
    from tests.layouts.sd3 import full_size_sd3_shapes

    weights = transformer_weights(meta_tensors(full_size_sd3_shapes(variant)))
    config = sd3_config(weights, variant)
    published = published_config(variant, "transformer")
    published["dual_attention_layers"] = tuple(published["dual_attention_layers"])
    assert {key: config[key] for key in published} == published


def test_full_size_text_encoder_and_vae_shapes_give_the_published_configs():
    from diffusers import AutoencoderKL
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        T5Config,
        T5EncoderModel,
    )

    from core.models.families.text_files import clip_config, clip_weights, published_config, t5_config
    from core.models.families.vae16 import vae_config
    from tests.layouts.sd3 import full_size_vae16_shapes

    t5 = t5_config(meta_tensors(text_layouts.full_size_t5_shapes()))
    assert t5 == {**published_config("sd3_medium", "text_encoder_3"), "is_gated_act": True}
    with torch.device("meta"):
        assert parameter_count(T5EncoderModel(T5Config(**t5))) == 4_762_310_656
    published_counts = {"clip_l": (CLIPTextModel, 123_060_480),  # CLIP-L text, no projection
                        "clip_g": (CLIPTextModelWithProjection, 694_659_840)}  # bigG with it
    for role, component in (("clip_l", "text_encoder"), ("clip_g", "text_encoder_2")):
        config = clip_config(clip_weights(meta_tensors(text_layouts.full_size_clip_shapes(role))), role)
        assert config == published_config("sd3_medium", component)
        cls, count = published_counts[role]
        with torch.device("meta"):
            assert parameter_count(cls(CLIPTextConfig(**config))) == count
    vae = vae_config(meta_tensors(full_size_vae16_shapes()), "flux")
    assert vae == published_config("flux_dev", "vae")
    with torch.device("meta"):
        AutoencoderKL(**vae)  # builds


def test_full_size_flux_shapes_give_the_published_config():
    from core.models.families.flux import transformer_weights
    from core.models.families.text_files import published_config
    from tests.layouts.flux import full_size_flux_shapes

    for variant in ("dev", "schnell"):
        _, config = transformer_weights(meta_tensors(full_size_flux_shapes(variant)))
        published = published_config(f"flux_{variant}", "transformer")
        assert {key: config[key] for key in published} == published

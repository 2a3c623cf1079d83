"""Our graph's picture equals diffusers' pipeline's (issue 10): SD 1.x, SD 2.x
(v-prediction), SDXL base and the SDXL refiner, loaded from tiny random-weight
files in the real original single-file layouts through :func:`load_sd` (the
path a user's file takes), sampled with our Euler sampler and classifier-free
guidance, against ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline`` /
``StableDiffusionXLImg2ImgPipeline`` built from the very modules the files hold.

Both sides visit the same timesteps: diffusers' ``EulerDiscreteScheduler`` on
the shipped scheduler config with ``timestep_spacing="trailing"`` (whose
``init_noise_sigma`` is σ_max, so its x_T = σ_max·ε is our start
0 + σ_0·ε) and our "trailing" schedule. ("leading" would not do: the SD
pipelines force ``steps_offset=1``: 801 … 1 in 5 steps, ours 800 … 0.) The
initial noise is the same draw: our ``seed`` and the pipeline's
``torch.Generator().manual_seed(seed)``. The pipelines' own σ grid is used
unchanged (from a float32 ᾱ cumprod, σ_max is 6e-6 off our float64 table's).

Tolerances. The decoded images are compared absolutely, within 1e-5 (pixels
in [0, 1]). The latents are compared within 1e-5 *of their largest value*:
random U-Nets under guidance drive them to |x| ≈ 60, where one float32 ulp
is 4–8e-6, and every 1-ulp difference in the U-Net's input (our x·(σ²+1)^−½
from a float64 level against diffusers' float32 x/√(σ²+1)) comes out ~10×
larger from a random network; measured differences are 1.2–2.2e-6 relative.
Each test also shows that changing one convention (guidance, prediction,
time ids, aesthetic score) moves the result far outside the tolerance.
"""
from __future__ import annotations

import types

import pytest
import torch

from core.models.families.sd_loader import load_sd
from core.models.tokenizers import END, clip_tokenizer
from core.sampling import run_sampler
from core.values import Conditioning
from tests.layouts import files as layouts

# diffusers' Euler turns a tensor into a numpy array the deprecated way
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TINY = {"clip_l": {"num_attention_heads": 2}}  # 32-wide CLIP-L: heads are not in any shape
PROMPT = "a red circle on a blue background"
SEED = 0
RELATIVE = 1e-5  # of the largest latent value
PIXELS = 1e-5  # absolute, images in [0, 1]
MAKERS = {"sd1": layouts.tiny_sd1_checkpoint, "sd2": layouts.tiny_sd2_checkpoint,
          "sdxl": layouts.tiny_sdxl_checkpoint,
          "sdxl_refiner": layouts.tiny_sdxl_refiner_checkpoint}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd_pipelines")
    return types.SimpleNamespace(**{family: make(folder / f"{family}.safetensors")
                                    for family, make in MAKERS.items()})


@pytest.fixture(scope="module")
def loaded(made):
    return {family: load_sd(getattr(made, family).path, overrides=TINY) for family in MAKERS}


# --- helpers ------------------------------------------------------------------------------------

def euler_scheduler(tiny, **changes):
    """diffusers' Euler on the family's shipped scheduler config (``tiny.configs
    ["scheduler"]`` is core/models/configs/<family>/scheduler.json, with the
    file's prediction type), with trailing spacing."""
    from diffusers import EulerDiscreteScheduler

    config = {k: v for k, v in tiny.configs["scheduler"].items() if k != "_class_name"}
    return EulerDiscreteScheduler.from_config({**config, "timestep_spacing": "trailing", **changes})


def our_run(checkpoint, shape, steps, guidance, negative=None, positive=None):
    """Our sampler on the model's own table, trailing spacing: (latents, trajectory)."""
    from nodes.diffusion import make_sampling_schedule

    table = checkpoint.model.schedule
    schedule = make_sampling_schedule(None, table.name, table.num_timesteps, False, "trailing",
                                      steps, 1.0)
    return run_sampler(checkpoint.model, schedule, torch.zeros(shape), sampler="euler",
                       positive=positive or Conditioning(PROMPT),
                       negative=negative or Conditioning(""), guidance=guidance, seed=SEED)


def pipeline_run(pipe, **call):
    """One pipeline run from the same seed: (final latents, decoded images in [0, 1])."""
    final = {}

    def keep(pipeline, step, timestep, tensors):
        final["latents"] = tensors["latents"].clone()
        return tensors

    images = pipe(**call, generator=torch.Generator().manual_seed(SEED), output_type="pt",
                  callback_on_step_end=keep).images
    return final["latents"], images


def relative_difference(ours, theirs) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


def assert_same_picture(checkpoint, pipe, ours, trajectory, theirs, images):
    """Same timesteps and σ grid, latents within RELATIVE of their range, the
    decoded images within PIXELS."""
    assert [step.timestep for step in trajectory.steps] == pipe.scheduler.timesteps.tolist()
    torch.testing.assert_close(pipe.scheduler.sigmas.double(), trajectory.levels, rtol=1e-6, atol=0)
    assert ours.shape == theirs.shape
    difference = relative_difference(ours, theirs)
    print(f"latents: max |Δ| {float((ours - theirs).abs().max()):.2e} of max |x| "
          f"{float(theirs.abs().max()):.1f} (relative {difference:.2e})")
    assert difference <= RELATIVE
    pictures = checkpoint.vae.decode(ours)
    assert pictures.shape == images.shape
    print(f"images: max |Δ| {float((pictures - images).abs().max()):.2e}")
    torch.testing.assert_close(pictures, images, atol=PIXELS, rtol=0)


def sd_pipeline(tiny, scheduler, pad):
    from diffusers import StableDiffusionPipeline

    models = tiny.models
    pipe = StableDiffusionPipeline(
        unet=models["unet"], vae=models["vae"], text_encoder=models["text_encoder"],
        tokenizer=clip_tokenizer(pad), scheduler=scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sdxl_pipeline(tiny, scheduler):
    from diffusers import StableDiffusionXLPipeline

    models = tiny.models
    pipe = StableDiffusionXLPipeline(
        vae=models["vae"], text_encoder=models["text_encoder"],
        text_encoder_2=models["text_encoder_2"], tokenizer=clip_tokenizer(END),
        tokenizer_2=clip_tokenizer("!"), unet=models["unet"], scheduler=scheduler,
        force_zeros_for_empty_prompt=False,  # no negative prompt: encode "", as our graph does
        add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def refiner_pipeline(tiny, scheduler):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    models = tiny.models
    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=models["vae"], text_encoder=None, text_encoder_2=models["text_encoder_2"],
        tokenizer=None, tokenizer_2=clip_tokenizer("!"), unet=models["unet"], scheduler=scheduler,
        requires_aesthetics_score=True, force_zeros_for_empty_prompt=False, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- SD 1.x / 2.x -------------------------------------------------------------------------------

def test_sd1_euler_with_guidance_matches_the_pipeline(made, loaded):
    """SD 1.x, ε-prediction: our Euler step on x = x_0 + σε with guidance
    mixed on x̂_0 (negative part first in one batched call) is diffusers'
    Euler on ε̂ = ε_u + g(ε_c − ε_u); the prompt is CLIP-L's last hidden
    state padded with <|endoftext|>; two pictures from one seed are the
    pipeline's ``num_images_per_prompt=2`` draw."""
    checkpoint, shape, steps, guidance = loaded["sd1"], (2, 4, 16, 16), 5, 4.0
    assert checkpoint.model.denoiser.prediction == "epsilon"
    pipe = sd_pipeline(made.sd1, euler_scheduler(made.sd1), END)
    call = dict(prompt=PROMPT, negative_prompt="", height=32, width=32, num_images_per_prompt=2,
                num_inference_steps=steps, guidance_scale=guidance)
    theirs, images = pipeline_run(pipe, **call)
    ours, trajectory = our_run(checkpoint, shape, steps, guidance)
    assert_same_picture(checkpoint, pipe, ours, trajectory, theirs, images)
    other, _ = our_run(checkpoint, shape, steps, guidance + 0.05)
    assert relative_difference(other, theirs) > 10 * RELATIVE  # the test sees g change by 1 %


def test_sd2_v_prediction_matches_the_pipeline(made, loaded):
    """SD 2.x, v-prediction (guessed for an SD 2 file without metadata):
    x̂_0 = √ᾱ x_t − √(1−ᾱ) v̂ is diffusers' Euler with ``prediction_type
    ="v_prediction"``; OpenCLIP-H's prompt is padded with "!". With ε the
    pipeline's picture is another one."""
    checkpoint, shape, steps, guidance = loaded["sd2"], (1, 4, 16, 16), 5, 5.0
    assert checkpoint.model.denoiser.prediction == "v_prediction"
    assert made.sd2.configs["scheduler"]["prediction_type"] == "v_prediction"
    call = dict(prompt=PROMPT, negative_prompt="", height=32, width=32, num_inference_steps=steps,
                guidance_scale=guidance)
    pipe = sd_pipeline(made.sd2, euler_scheduler(made.sd2), "!")
    theirs, images = pipeline_run(pipe, **call)
    ours, trajectory = our_run(checkpoint, shape, steps, guidance)
    assert_same_picture(checkpoint, pipe, ours, trajectory, theirs, images)
    epsilon = sd_pipeline(made.sd2, euler_scheduler(made.sd2, prediction_type="epsilon"), "!")
    assert relative_difference(ours, pipeline_run(epsilon, **call)[0]) > 10 * RELATIVE


# --- SDXL ---------------------------------------------------------------------------------------

def test_sdxl_base_matches_the_pipeline(made, loaded):
    """SDXL base: CLIP-L ⊕ bigG penultimate states, bigG's pooled embedding,
    and the time ids (original size, crop (0, 0), target size) in pixels,
    taken from the latent size × the VAE's downscale — the pipeline's
    ``height``/``width``. The negative is "" encoded (not zeros). With
    another original size in the pipeline's time ids the picture differs.
    (Without a negative prompt the pipeline encodes "" only with
    ``force_zeros_for_empty_prompt=False``; diffusers' default, True, gives
    zero embeddings instead.)"""
    checkpoint, steps, guidance = loaded["sdxl"], 5, 4.0
    factor = 2 ** (len(made.sdxl.models["vae"].config.block_out_channels) - 1)
    assert checkpoint.vae.downscale == factor == 2
    shape = (1, 4, 16, 12)  # not square: height and width must not be swapped
    call = dict(prompt=PROMPT, height=16 * factor, width=12 * factor,  # no negative prompt: ""
                num_inference_steps=steps, guidance_scale=guidance)
    pipe = sdxl_pipeline(made.sdxl, euler_scheduler(made.sdxl))
    theirs, images = pipeline_run(pipe, **call)
    ours, trajectory = our_run(checkpoint, shape, steps, guidance)
    assert_same_picture(checkpoint, pipe, ours, trajectory, theirs, images)
    moved, _ = pipeline_run(pipe, **call, original_size=(16 * factor, 12 * factor + 8))
    assert relative_difference(ours, moved) > 10 * RELATIVE


def test_sdxl_refiner_matches_img2img_at_full_strength(made, loaded):
    """SDXL refiner as text-to-image: ``StableDiffusionXLImg2ImgPipeline`` at
    strength 1 on a zero latent starts from 0 + σ_max·ε, as we do. bigG
    alone conditions; the time ids are (original size, crop, aesthetic
    score): 6.0 for the prompt and, set on our negative, diffusers' 2.5 for
    the negative prompt. Leaving ours at 6.0 changes the picture."""
    checkpoint, steps, guidance = loaded["sdxl_refiner"], 6, 4.0
    shape = (1, 4, 16, 8)
    negative = Conditioning("", extras={"aesthetic_score": 2.5})
    call = dict(prompt=PROMPT, image=torch.zeros(shape), strength=1.0,
                num_inference_steps=steps, guidance_scale=guidance)  # size from the latent
    pipe = refiner_pipeline(made.sdxl_refiner, euler_scheduler(made.sdxl_refiner))
    theirs, images = pipeline_run(pipe, **call)
    ours, trajectory = our_run(checkpoint, shape, steps, guidance, negative=negative)
    assert_same_picture(checkpoint, pipe, ours, trajectory, theirs, images)
    six, _ = our_run(checkpoint, shape, steps, guidance)  # the negative at the default 6.0
    assert relative_difference(six, theirs) > 10 * RELATIVE


# --- decoding -----------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_decoding_is_the_pipelines(made, loaded, family):
    """The VAE decode: latents / scaling factor (0.18215 for SD, 0.13025 for
    SDXL) → decoder → (x + 1)/2 clamped to [0, 1], as the pipelines' decode
    and ``VaeImageProcessor.postprocess(output_type="pt")``. A wrong factor
    would not pass."""
    from diffusers.image_processor import VaeImageProcessor

    checkpoint, vae = loaded[family], getattr(made, family).models["vae"]
    latents = 2 * torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    factors = {"sd1": 0.18215, "sdxl": 0.13025}
    assert checkpoint.vae.scaling_factor == vae.config.scaling_factor == factors[family]

    @torch.no_grad()
    def pipeline_decode(factor):  # the pipelines' last lines, output_type="pt"
        decoded = vae.decode(latents / factor).sample
        return VaeImageProcessor(vae_scale_factor=2).postprocess(decoded, output_type="pt")

    expected, ours = pipeline_decode(vae.config.scaling_factor), checkpoint.vae.decode(latents)
    inside = ((expected > 0) & (expected < 1)).float().mean()
    assert inside > 0.5  # mostly unclamped: the comparison is not of saturated pixels
    print(f"decode: max |Δ| {float((ours - expected).abs().max()):.2e}")
    torch.testing.assert_close(ours, expected, atol=PIXELS, rtol=0)
    other_factor = factors["sdxl" if family == "sd1" else "sd1"]
    assert (pipeline_decode(other_factor) - ours).abs().max() > 100 * PIXELS

"""Image-to-image by concatenation (Palette): the source image's channels,
the ConcatUNet wrapper, the nodes around it and a shapes-palette file."""
from __future__ import annotations

import pytest
import torch

from core.models.concat import CONCAT_KEY, ConcatImage, ConcatUNet, luminance, source_channels
from core.values import Conditioning, ConditioningBatch


class RecordingUNet(torch.nn.Module):
    """Stands in for UNet2DModel: remembers its input, returns its first 3 channels."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, sample, timestep):
        self.seen.append((sample.clone(), timestep.clone()))
        return type("Out", (), {"sample": sample[:, :3] + self.weight})()


def gray_and_colour():
    colour = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return colour, luminance(colour)


def test_luminance_uses_bt601_weights():
    pixel = torch.tensor([0.2, 0.6, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(luminance(pixel), torch.tensor(0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 1.0))


def test_the_source_is_reduced_to_the_channels_the_model_reads():
    colour, gray = gray_and_colour()
    assert torch.allclose(source_channels(colour, 1, (8, 8)), gray * 2 - 1)
    assert torch.allclose(source_channels(gray, 1, (8, 8)), gray * 2 - 1)
    assert torch.allclose(source_channels(gray, 3, (8, 8)), (gray * 2 - 1).expand(-1, 3, -1, -1))
    rgba = torch.cat([colour, torch.ones(2, 1, 8, 8)], dim=1)
    assert torch.allclose(source_channels(rgba, 3, (8, 8)), colour * 2 - 1)
    resized = source_channels(gray, 1, (16, 16))  # a smaller source is upsampled (SR3)
    assert resized.shape == (2, 1, 16, 16) and resized.min() >= -1 and resized.max() <= 1
    with pytest.raises(ValueError, match="2-channel image condition is not supported"):
        source_channels(gray, 2, (8, 8))
    with pytest.raises(ValueError, match="has 2 channels"):
        source_channels(torch.zeros(1, 2, 8, 8), 1, (8, 8))


def test_the_network_sees_x_t_with_the_source_stacked_on_it():
    colour, gray = gray_and_colour()
    unet = RecordingUNet()
    model = ConcatUNet(unet, 1, "shapes-palette")
    x = torch.randn(2, 3, 8, 8)
    out = model(x, torch.tensor(500), cond=Conditioning(extras={CONCAT_KEY: ConcatImage(colour)}))
    sample, t = unet.seen[-1]
    assert sample.shape == (2, 4, 8, 8)
    assert torch.equal(sample[:, :3], x) and torch.allclose(sample[:, 3:], gray * 2 - 1)
    assert t.tolist() == [500, 500] and torch.equal(out, x)
    # one source serves the whole batch
    model(x, torch.tensor(10), cond=Conditioning(extras={CONCAT_KEY: ConcatImage(colour[:1])}))
    assert torch.allclose(unet.seen[-1][0][1, 3:], gray[0] * 2 - 1)
    with pytest.raises(ValueError, match="2 source images for a batch of 3"):
        model(torch.randn(3, 3, 8, 8), torch.tensor(10),
              cond=Conditioning(extras={CONCAT_KEY: ConcatImage(colour)}))


def test_batched_parts_each_take_their_own_source():
    colour, gray = gray_and_colour()
    unet = RecordingUNet()
    model = ConcatUNet(unet, 1, "m")
    parts = ConditioningBatch((Conditioning(extras={CONCAT_KEY: ConcatImage(colour[:1])}),
                               Conditioning(extras={CONCAT_KEY: ConcatImage(colour[1:])})))
    model(torch.zeros(4, 3, 8, 8), torch.tensor(1), cond=parts)
    stacked = unet.seen[-1][0][:, 3:]
    assert torch.allclose(stacked[:2], (gray[:1] * 2 - 1).expand(2, -1, -1, -1))
    assert torch.allclose(stacked[2:], (gray[1:] * 2 - 1).expand(2, -1, -1, -1))


def test_a_missing_source_names_the_node_to_connect():
    model = ConcatUNet(RecordingUNet(), 1, "shapes-palette")
    with pytest.raises(ValueError, match=r"shapes-palette draws from a source image: connect an "
                                         r"'Image condition \(concat\)' node"):
        model(torch.zeros(1, 3, 8, 8), torch.tensor(1), cond=None)
    batch = ConditioningBatch((Conditioning(), Conditioning(extras={
        CONCAT_KEY: ConcatImage(torch.zeros(1, 1, 8, 8))})))
    with pytest.raises(ValueError, match="has no unconditional model .*: set the sampler's "
                                         "guidance to 1"):
        model(torch.zeros(2, 3, 8, 8), torch.tensor(1), cond=batch)


def test_the_image_condition_node_keeps_the_prompt_and_adds_the_image():
    from nodes.conditioning import image_condition

    image = torch.rand(1, 3, 8, 8)
    alone = image_condition(None, image)
    assert alone.extras[CONCAT_KEY].image is image and alone.text == ""
    prompt = Conditioning(text="a red circle", extras={"pooled": torch.zeros(1, 4)})
    both = image_condition(None, image, prompt)
    assert both.text == "a red circle" and "pooled" in both.extras and CONCAT_KEY in both.extras
    assert CONCAT_KEY not in prompt.extras  # the input is not changed
    with pytest.raises(ValueError, match=r"must have shape \(B, 1\|3\|4, H, W\)"):
        image_condition(None, torch.zeros(3, 8, 8))


def test_the_grayscale_node_gives_three_equal_channels():
    from nodes.images import grayscale

    colour, gray = gray_and_colour()
    out = grayscale(None, colour)
    assert out.shape == (2, 3, 8, 8) and torch.allclose(out, gray.expand(-1, 3, -1, -1))
    assert torch.equal(grayscale(None, gray), gray.expand(-1, 3, -1, -1))


def test_a_checkpoint_without_a_text_encoder_says_so_when_asked_to_encode():
    from nodes.conditioning import encode_text

    with pytest.raises(ValueError, match="this checkpoint has no text encoder"):
        encode_text(None, None, "a red circle")


@pytest.fixture(scope="module")
def tiny_palette(tmp_path_factory):
    from core.training.recipes import MODELS_DIR, run_training

    out = tmp_path_factory.mktemp("palette") / "palette.safetensors"
    return run_training("shapes-palette", steps=2, batch=2, out=out, resume=None, device="cpu",
                        pool=8, models_dir=MODELS_DIR)


def test_a_palette_file_loads_as_a_text_free_pixel_model(tiny_palette):
    from core.models.builtin import PixelCodec, load_model
    from nodes.loaders import load_checkpoint_node

    loaded = load_model(str(tiny_palette))
    assert loaded.clip is None and isinstance(loaded.vae, PixelCodec)
    assert loaded.model.latent_channels == 3 and loaded.model.downscale == 1
    assert "image-to-image (Palette)" in loaded.model.description
    ctx = type("Ctx", (), {"device": "cpu", "dtype": torch.float32})()
    outputs = load_checkpoint_node(ctx, "file…", str(tiny_palette))
    assert outputs["clip"] is None and outputs["model"].name == "shapes-palette"


def test_sampling_a_palette_file_without_a_source_fails_with_the_fix(tiny_palette):
    from core.models.builtin import load_model
    from core.sampling import run_sampler
    from core.values import SamplingSchedule
    from nodes.diffusion import make_sampling_schedule

    loaded = load_model(str(tiny_palette))
    schedule = SamplingSchedule.discrete(loaded.model.schedule, 2, "leading")
    made = make_sampling_schedule(None, "cosine", 1000, False, "leading", 2, 1.0)  # the node's
    assert torch.equal(schedule.levels, made.levels) and schedule.spacing == made.spacing
    with pytest.raises(ValueError, match="connect an 'Image condition"):
        run_sampler(loaded.model, schedule, torch.zeros(1, 3, 8, 8), sampler="ddim")
    source = Conditioning(extras={CONCAT_KEY: ConcatImage(torch.rand(1, 3, 8, 8))})
    result, _ = run_sampler(loaded.model, schedule, torch.zeros(1, 3, 8, 8), sampler="ddim",
                            positive=source)
    assert result.shape == (1, 3, 8, 8) and torch.isfinite(result).all()

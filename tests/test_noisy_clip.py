"""shapes-clip: the multi-positive contrastive loss, partial captions, the
noise-aware CLIP network, ClipTarget and the CLIP guidance node."""
from __future__ import annotations

import math
import random

import pytest
import torch

from core.data.shapes import random_scene
from core.diffusion.schedules import make_schedule
from core.models.noisy_clip import ClipTarget, NoisyCLIP
from core.models.text import WordTokenizer, shapes_vocabulary, text_encoder_config
from core.training.clip_task import fits, multi_positive_clip_loss, positives
from core.training.data import dropped_caption, partial_caption

TOKENIZER = WordTokenizer(shapes_vocabulary())


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    image = dict(sample_size=8, in_channels=3, block_out_channels=(8, 16),
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), layers_per_block=1,
                 norm_num_groups=4, attention_head_dim=8, pooling="spatial", spatial_channels=4)
    return NoisyCLIP(image, text_encoder_config(len(TOKENIZER.vocabulary)), 16).eval()


@pytest.fixture(scope="module")
def schedule():
    return make_schedule("cosine", 1000)


# -- the loss --------------------------------------------------------------------
def test_with_one_match_per_row_the_loss_is_clips_symmetric_cross_entropy():
    logits = torch.randn(5, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(5)
    clip_loss = (torch.nn.functional.cross_entropy(logits, labels)
                 + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(multi_positive_clip_loss(logits, torch.eye(5, dtype=torch.bool)),
                          clip_loss)


def test_shared_captions_spread_the_target_over_every_match():
    """Two pairs with the same caption: plain CLIP would call the off-diagonal
    pair a negative; here both count, with half the target each."""
    logits = torch.tensor([[2.0, 1.0], [0.5, 3.0]])
    matches = torch.ones(2, 2, dtype=torch.bool)
    rows = -(0.5 * logits.log_softmax(1)).sum(1).mean()
    columns = -(0.5 * logits.log_softmax(0)).sum(0).mean()
    assert torch.allclose(multi_positive_clip_loss(logits, matches), (rows + columns) / 2)
    # equal logits for both matches are then the best the model can do
    assert multi_positive_clip_loss(torch.zeros(2, 2), matches) < \
        multi_positive_clip_loss(torch.tensor([[5.0, 0.0], [0.0, 5.0]]), matches)


def test_a_partial_caption_fits_every_scene_that_agrees_with_what_it_says():
    rng = random.Random(3)
    scenes = [random_scene(rng) for _ in range(60)]
    captions = [partial_caption(scene, random.Random(i)) for i, scene in enumerate(scenes)]
    for scene, (text, kept) in zip(scenes, captions):
        assert kept["shape"] == scene.shape and fits(scene, kept)
        for value in kept.values():
            assert value in text
    matches = positives(scenes, [kept for _, kept in captions])
    assert matches.diagonal().all()
    assert matches.sum() > len(scenes)  # shared captions are common in this world
    i, j = next((i, j) for i in range(60) for j in range(60) if i != j and matches[i, j])
    assert all(getattr(scenes[i], a) == v for a, v in captions[j][1].items())


def test_dropped_captions_are_the_same_stream_as_before():
    """Captions of the shipped models' training: the refactor into
    partial_caption must not change what a seed gives (pinned)."""
    rng = random.Random(7)
    scene = random_scene(random.Random(1))
    got = [dropped_caption(scene, rng) for _ in range(6)]
    assert got == ['a small red triangle at the top right',
                   'a small red triangle at the top right on a black background', '', '',
                   'a red triangle at the top right', 'a red triangle on a black background']


# -- the network -----------------------------------------------------------------
def test_both_towers_give_unit_vectors_and_the_image_side_reads_t(clip):
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        early = clip.encode_image(x, torch.tensor([10.0] * 3))
        late = clip.encode_image(x, torch.tensor([900.0] * 3))
        text = clip.encode_text(TOKENIZER(["a red circle", "a blue square", ""]))
    assert early.shape == (3, 16) and text.shape == (3, 16)
    assert torch.allclose(early.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(text.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(early, late, atol=1e-4)
    assert math.isclose(float(clip.temperature()), 1 / 0.07, rel_tol=1e-5)


def test_spatial_pooling_keeps_where_things_are(clip):
    """The head reads every cell of the last feature map (position and size
    are prompt words), not its mean as the classifier does."""
    network = clip.image_encoder
    assert network.config["pooling"] == "spatial"
    assert network.heads["embedding"].in_features == 4 * 4 * 4  # 4 channels × 4×4 cells


# -- ClipTarget --------------------------------------------------------------------
def test_the_target_is_the_temperature_times_the_cosine(clip, schedule):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    sigma = schedule.sigmas[[100, 700]].float()
    target = ClipTarget(clip, TOKENIZER, schedule, "a large green triangle")
    with torch.no_grad():
        got = target(x, sigma)
        image = clip.encode_image(x, torch.tensor([100.0, 700.0]))
        text = clip.encode_text(TOKENIZER(["a large green triangle"]))
    assert torch.allclose(got, clip.temperature() * (image @ text.T)[:, 0], atol=1e-3)


def test_one_prompt_per_row_equals_single_calls(clip, schedule):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    sigma = schedule.sigmas[[300, 300]].float()
    prompts = ["a red circle", "a blue square at the top left"]
    with torch.no_grad():
        together = ClipTarget(clip, TOKENIZER, schedule, prompts)(x, sigma)
        alone = [ClipTarget(clip, TOKENIZER, schedule, p)(x[i:i + 1], sigma[i:i + 1])
                 for i, p in enumerate(prompts)]
    assert torch.allclose(together, torch.cat(alone), atol=1e-5)
    with pytest.raises(ValueError, match="2 prompts for a batch of 3"):
        ClipTarget(clip, TOKENIZER, schedule, prompts)(torch.zeros(3, 3, 8, 8), sigma[[0, 0, 0]])


def test_unknown_words_and_empty_prompts_are_refused(clip, schedule):
    with pytest.raises(ValueError, match=r"does not know 'dragon'.*\(it knows: a, at,"):
        ClipTarget(clip, TOKENIZER, schedule, "a red dragon")
    with pytest.raises(ValueError, match="needs a prompt"):
        ClipTarget(clip, TOKENIZER, schedule, "  ")


def test_a_picture_of_another_size_is_refused_with_the_size_to_use(clip, schedule):
    """Spatial pooling fixes the grid: a 16×16 x_t hit a raw "mat1 and mat2
    shapes cannot be multiplied" in the head (found by the extremes sweep)."""
    target = ClipTarget(clip, TOKENIZER, schedule, "a red circle")
    with pytest.raises(ValueError, match=r"reads 8×8 images .* this one is 16×16: set the "
                                         r"Empty latent to 8×8"):
        target(torch.zeros(1, 3, 16, 16), schedule.sigmas[[10]].float())


def test_the_gradient_reaches_x_t(clip, schedule):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    ClipTarget(clip, TOKENIZER, schedule, "a circle")(x, schedule.sigmas[[50, 50]].float()).sum() \
        .backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# -- the node ----------------------------------------------------------------------
def test_the_clip_guidance_node_refuses_models_it_cannot_steer(clip, schedule):
    from core.diffusion.denoisers import DiscreteTimeDenoiser, FlowDenoiser
    from core.models.builtin import NoisyClipHandle
    from core.values import DiffusionModel
    from nodes.models import clip_guidance

    handle = NoisyClipHandle(clip, TOKENIZER, schedule)
    flow = DiffusionModel("f", FlowDenoiser(lambda x, t, **k: x), "flow", 3)
    with pytest.raises(ValueError, match="not a flow-matching one"):
        clip_guidance(None, flow, handle, "a red circle", 3.0)
    latent = DiffusionModel("ldm", lambda x, level, **k: x, "ve", 4)
    with pytest.raises(ValueError, match="reads 3-channel images but 'ldm' samples 4"):
        clip_guidance(None, latent, handle, "a red circle", 3.0)
    schedule_denoiser = DiscreteTimeDenoiser(lambda x, t, **k: torch.zeros_like(x), schedule)
    pixel = DiffusionModel("pixel", schedule_denoiser, "ve", 3, description="d")
    guided = clip_guidance(None, pixel, handle, "a red circle", 3.0)
    assert "CLIP-guided toward 'a red circle' (s = 3.0)" in guided.description

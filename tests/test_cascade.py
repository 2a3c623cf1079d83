"""The cascade (issue 13): shapes-t5's span corruption and tokenizer, the
frozen-encoder base, noise conditioning augmentation in the SR wrapper,
the resize and image-condition nodes, and tiny trained files end to end."""
from __future__ import annotations

import random

import pytest
import torch

from core.diffusion.forward import q_sample
from core.diffusion.schedules import make_schedule
from core.models.cascade import augment, augmentation_timesteps, downsample
from core.models.concat import CONCAT_KEY, ConcatImage, ConcatUNet
from core.models.shapes_t5 import (
    T5TextEncoder,
    T5WordTokenizer,
    make_t5_encoder,
    t5_config,
    t5_vocabulary,
)
from core.models.text import EOS, PAD
from core.training.t5_task import corrupt, noise_spans
from core.values import Conditioning

CAPTION = "a small red circle at the top left on a gray background"


def test_span_corruption_hides_spans_behind_sentinels_and_the_targets_restore_them():
    vocabulary = t5_vocabulary()
    tokenizer = T5WordTokenizer(vocabulary)
    rng = random.Random(3)
    for length in range(2, 13):
        for _ in range(50):
            spans = noise_spans(length, rng)
            assert spans and all(0 <= a < b <= length for a, b in spans)
            assert all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1))
            assert sum(b - a for a, b in spans) < length  # something is always left to read
    words = tokenizer.word_ids(CAPTION)
    sentinels = {tokenizer.ids[f"<extra_id_{i}>"] for i in range(8)}
    for _ in range(50):
        source, target = corrupt(words, rng, vocabulary)
        assert source[-1] == EOS and target[-1] == EOS
        # put the targets' spans back where their sentinels stand: the caption again
        spans, current = {}, None
        for token in target[:-1]:
            if token in sentinels:
                current = token
                spans[current] = []
            else:
                spans[current].append(token)
        restored = [w for token in source[:-1] for w in (spans[token] if token in sentinels else [token])]
        assert restored == words


def test_the_t5_tokenizer_ends_with_eos_pads_with_pad_and_masks_the_padding():
    tokenizer = T5WordTokenizer(t5_vocabulary(), max_length=8)
    ids, mask = tokenizer(["a red circle", ""])
    assert ids[0, :4].tolist()[-1] == EOS and ids[0, 4:].eq(PAD).all()
    assert mask[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert ids[1, 0] == EOS and mask[1].sum() == 1  # the empty prompt: <eos> alone
    long_ids, _ = tokenizer([CAPTION])  # 12 words cut to 7, <eos> kept
    assert long_ids[0, -1] == EOS


def test_the_t5_encoder_zeroes_the_padded_states():
    torch.manual_seed(0)
    encoder = T5TextEncoder(T5WordTokenizer(t5_vocabulary()),
                            make_t5_encoder(t5_config(len(t5_vocabulary()))).eval())
    with torch.no_grad():
        hidden, pooled = encoder.encode_pooled(["a red circle", "a blue square on a white background"])
    assert hidden.shape == (2, 16, 64) and pooled.shape == (2, 64)
    assert hidden[0, 4:].abs().max() == 0 and hidden[0, :4].abs().sum(-1).gt(0).all()
    assert torch.allclose(pooled[0], hidden[0, :4].mean(0))


def test_augmentation_is_the_forward_process_on_the_condition_and_level_zero_keeps_it():
    schedule = make_schedule("cosine", 1000)
    source, noise = torch.rand(3, 3, 8, 8) * 2 - 1, torch.randn(3, 3, 8, 8)
    s = augmentation_timesteps(torch.tensor([0.0, 0.1, 0.5]), 1000)
    assert s.tolist() == [0, 100, 500]
    out = augment(source, s, schedule, noise)
    assert torch.equal(out[0], source[0])
    assert torch.allclose(out[1:], q_sample(source[1:], s[1:], schedule, noise[1:]))


def test_box_downsampling_averages_blocks():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    assert downsample(image, 2).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]


class LabelledUNet(torch.nn.Module):
    """Stands in for UNet2DModel with a class embedding: remembers its inputs."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, sample, timestep, class_labels=None):
        self.seen.append((sample.clone(), class_labels))
        return type("Out", (), {"sample": sample[:, :3] + self.weight})()


def sr_wrapper(max_augmentation=0.5):
    return ConcatUNet(LabelledUNet(), 3, "shapes-sr", max_augmentation,
                      make_schedule("cosine", 1000))


def test_the_sr_wrapper_augments_its_source_the_same_way_at_every_step():
    model = sr_wrapper()
    low = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    cond = Conditioning(extras={CONCAT_KEY: ConcatImage(low, 0.25, seed=7)})
    x = torch.zeros(2, 3, 8, 8)
    model(x, torch.tensor(900), cond=cond)
    model(x, torch.tensor(10), cond=cond)
    (first, labels), (second, _) = model.unet.seen
    assert labels.tolist() == [250, 250]
    assert torch.equal(first[:, 3:], second[:, 3:])  # augmented once, in effect
    clean = ConcatImage(low, 0.0)
    model(x, torch.tensor(10), cond=Conditioning(extras={CONCAT_KEY: clean}))
    plain, zero = model.unet.seen[-1]
    assert zero.tolist() == [0, 0] and not torch.allclose(plain[:, 3:], first[:, 3:])
    assert plain[:, 3:].min() >= -1 and plain[:, 3:].max() <= 1  # no noise at level 0


def test_the_sr_wrapper_refuses_levels_it_was_not_trained_on():
    low = torch.rand(1, 3, 4, 4)
    x = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="up to 0.5; 0.7 is beyond"):
        sr_wrapper()(x, torch.tensor(1), cond=Conditioning(extras={CONCAT_KEY: ConcatImage(low, 0.7)}))
    palette = ConcatUNet(LabelledUNet(), 3, "shapes-palette")
    with pytest.raises(ValueError, match="not trained with noise augmentation"):
        palette(x, torch.tensor(1), cond=Conditioning(extras={CONCAT_KEY: ConcatImage(low, 0.1)}))


def test_the_image_condition_node_carries_the_augmentation_and_checks_it():
    from nodes.conditioning import image_condition

    image = torch.rand(1, 3, 16, 16)
    cond = image_condition(None, image, augmentation=0.2, seed=5)
    source = cond.extras[CONCAT_KEY]
    assert source.augmentation == 0.2 and source.seed == 5 and source.image is image
    with pytest.raises(ValueError, match="fraction of the schedule"):
        image_condition(None, image, augmentation=1.5)


def test_the_resize_node_scales_with_each_method_and_names_bad_input():
    from nodes.images import resize

    image = torch.rand(2, 3, 16, 16)
    for method in ("bicubic", "bilinear", "area", "nearest"):
        out = resize(None, image, 64, 32, method)
        assert out.shape == (2, 3, 32, 64) and out.min() >= 0 and out.max() <= 1
    nearest = resize(None, image, 64, 64, "nearest")
    assert torch.equal(nearest[:, :, ::4, ::4], image)
    assert resize(None, image, 16, 16, "bicubic") is image
    with pytest.raises(ValueError, match="unknown resize method 'lanczos'"):
        resize(None, image, 8, 8, "lanczos")
    with pytest.raises(ValueError, match="positive size"):
        resize(None, image, 0, 8, "area")


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """shapes-t5, a base on it and shapes-sr, each trained for one step on 8 scenes."""
    from core.training.cascade_task import CascadeBaseTask, SuperResolutionTask
    from core.training.data import ShapesPool
    from core.training.t5_task import T5PretrainTask

    folder = tmp_path_factory.mktemp("cascade")
    pool = ShapesPool.render(8, seed=5, pixels=64)
    generator = torch.Generator().manual_seed(0)
    t5 = T5PretrainTask(pool, 4, "cpu")
    assert torch.isfinite(t5.loss(generator))
    t5.export(folder / "shapes-t5.safetensors", t5.modules(), {"steps": 1})
    base = CascadeBaseTask(pool, 4, "cpu", folder / "shapes-t5.safetensors")
    assert torch.isfinite(base.loss(generator))
    base.export(folder / "base.safetensors", base.modules(), {"steps": 1})
    sr = SuperResolutionTask(pool, 2, "cpu")
    assert torch.isfinite(sr.loss(generator))
    sr.export(folder / "sr.safetensors", sr.modules(), {"steps": 1})
    return folder


def test_the_base_loads_as_a_pixel_model_that_reads_its_frozen_t5(tiny_files):
    from core.models.builtin import load_model

    loaded = load_model(str(tiny_files / "base.safetensors"))
    assert isinstance(loaded.clip, T5TextEncoder) and loaded.model.latent_channels == 3
    from core.training.cascade_task import FrozenText

    frozen = FrozenText(tiny_files / "shapes-t5.safetensors", "cpu")
    with torch.no_grad():  # the file's encoder is shapes-t5's, unchanged by the base's training
        assert torch.allclose(loaded.clip.encode([CAPTION]), frozen.states([CAPTION]), atol=1e-2)


def test_a_cascade_runs_base_then_sr_and_the_sr_file_knows_its_augmentation(tiny_files):
    from core.evaluation.cascade_eval import super_resolve
    from core.evaluation.evaluate import Setup, generate
    from core.models.builtin import load_model

    base = load_model(str(tiny_files / "base.safetensors"))
    low = generate(base, ["a red circle"], Setup("ddim", "leading", 2), 3.0, 0, "cpu", size=16)
    assert low.shape == (1, 3, 16, 16)
    sr = load_model(str(tiny_files / "sr.safetensors"))
    assert "super-resolution" in sr.model.description and sr.clip is None
    high = super_resolve(sr, low, 0.2, "ddim", "leading", 2, 0, "cpu")
    assert high.shape == (1, 3, 64, 64) and high.min() >= 0 and high.max() <= 1
    with pytest.raises(ValueError, match="beyond what it knows"):
        super_resolve(sr, low, 0.9, "ddim", "leading", 2, 0, "cpu")


def test_the_base_refuses_a_text_encoder_file_of_another_kind(tiny_files):
    from core.checkpoints import CheckpointError
    from core.training.cascade_task import FrozenText

    with pytest.raises(CheckpointError, match="not a text encoder"):
        FrozenText(tiny_files / "sr.safetensors", "cpu")


def test_the_clip_arm_reads_shapes_clips_text_tower_frozen():
    """Imagen's comparison: the same base on CLIP's text encoder; its states
    are shapes-clip's own (the tower, not the projection)."""
    from core.models.builtin import load_noisy_clip
    from core.paths import MODELS_DIR
    from core.training.cascade_task import FrozenText

    frozen = FrozenText(MODELS_DIR / "shapes-clip.safetensors", "cpu")
    assert frozen.component["class"] == "CLIPTextModel"
    assert not any(p.requires_grad for p in frozen.model.parameters())
    clip = load_noisy_clip("shapes-clip")
    ids = clip.tokenizer([CAPTION])
    with torch.no_grad():
        expected = clip.network.text_encoder(input_ids=ids).last_hidden_state
    assert torch.allclose(frozen.states([CAPTION]), expected, atol=1e-5)


def test_the_sr_target_is_v_and_the_denoiser_reads_x0_back_from_it():
    """v = √ᾱ ε − √(1−ᾱ) x_0, so x_0 = √ᾱ x_t − √(1−ᾱ) v (Salimans & Ho 2022):
    what DiscreteTimeDenoiser computes for a v_prediction file."""
    from core.training.cascade_task import velocity

    schedule = make_schedule("cosine", 1000)
    x0, noise = torch.rand(4, 3, 8, 8) * 2 - 1, torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 300, 700, 999])
    v = velocity(x0, noise, t, schedule)
    alpha_bar = schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    x_t = q_sample(x0, t, schedule, noise)
    assert torch.allclose(alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * v, x0, atol=1e-5)
    assert torch.allclose(v[3], -x0[3], atol=0.02)  # at t = T the target is the picture

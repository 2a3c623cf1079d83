"""Sana (issue 14): the decoder-only language model's tokenizer and states,
the deep-compression autoencoder as a VAE value, the linear-attention DiT
loaded from a file with its frozen parts, and batched guidance through it."""
from __future__ import annotations

import pytest
import torch

from core.models.shapes_gemma import (
    DecoderTextEncoder,
    DecoderWordTokenizer,
    body_weights,
    gemma_config,
    make_gemma_encoder,
    make_gemma_lm,
)
from core.models.text import BOS, EOS, PAD, shapes_vocabulary
from core.values import Conditioning, ConditioningBatch

CAPTION = "a small red circle at the top left on a gray background"


def test_the_tokenizer_lays_out_bos_words_eos_then_padding_with_its_mask():
    tokenizer = DecoderWordTokenizer(shapes_vocabulary(), max_length=8)
    ids, mask = tokenizer(["a red circle", ""])
    assert ids[0, :5].tolist() == [BOS, tokenizer.ids["a"], tokenizer.ids["red"],
                                   tokenizer.ids["circle"], EOS]
    assert ids[0, 5:].eq(PAD).all() and mask[0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert ids[1, :2].tolist() == [BOS, EOS] and mask[1].sum() == 2  # the empty prompt
    long_ids, long_mask = tokenizer([CAPTION])  # 12 words cut to 6, <eos> kept
    assert long_ids[0, -1] == EOS and long_mask.all()


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    vocabulary = shapes_vocabulary()
    return DecoderTextEncoder(DecoderWordTokenizer(vocabulary),
                              make_gemma_encoder(gemma_config(len(vocabulary))).eval())


def test_the_states_zero_the_padding_and_the_pooled_vector_is_the_eos_state(encoder):
    with torch.no_grad():
        hidden, pooled = encoder.encode_pooled(["a red circle", "a blue square on a white background"])
    assert hidden.shape == (2, 16, 64) and pooled.shape == (2, 64)
    assert hidden[0, 5:].abs().max() == 0 and hidden[0, :5].abs().sum(-1).gt(0).all()
    assert torch.equal(pooled[0], hidden[0, 4]) and torch.equal(pooled[1], hidden[1, 8])


def test_attention_is_causal_so_a_word_state_ignores_the_words_after_it(encoder):
    with torch.no_grad():
        short = encoder.encode(["a red circle"])
        longer = encoder.encode(["a red square"])
    assert torch.allclose(short[0, :3], longer[0, :3], atol=1e-6)  # <bos> a red: the same
    assert not torch.allclose(short[0, 3], longer[0, 3], atol=1e-3)


def test_the_shipped_body_is_the_pretrained_models_body():
    torch.manual_seed(1)
    config = gemma_config(len(shapes_vocabulary()))
    lm = make_gemma_lm(config).eval()
    body = make_gemma_encoder(config).eval()
    body.load_state_dict(body_weights(lm))
    ids = torch.tensor([[BOS, 5, 6, EOS]])
    with torch.no_grad():
        expected = lm(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        assert torch.allclose(body(input_ids=ids).last_hidden_state, expected, atol=1e-6)


def test_the_dcae_handle_is_deterministic_and_compresses_by_eight():
    from core.models.dcae import DCAEHandle
    from core.models.shapes import make_dcae

    torch.manual_seed(0)
    handle = DCAEHandle(make_dcae().eval(), 0.5, 16, 8)
    images = torch.rand(2, 3, 64, 64)
    first, second = handle.encode(images), handle.encode(images)
    assert first.shape == (2, 16, 8, 8) and torch.equal(first, second)  # no sampling
    with torch.no_grad():
        raw = handle.vae.encode(images * 2 - 1).latent
    assert torch.allclose(first, raw * 0.5)
    decoded = handle.decode(first)
    assert decoded.shape == (2, 3, 64, 64) and decoded.min() >= 0 and decoded.max() <= 1


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """shapes-gemma, shapes-dcae and shapes-sana on them, one step each on 8 scenes."""
    from core.training.data import ShapesPool
    from core.training.dcae_task import DCAETask
    from core.training.gemma_task import GemmaPretrainTask
    from core.training.sana_task import SanaTask

    folder = tmp_path_factory.mktemp("sana")
    pool = ShapesPool.render(8, seed=5, pixels=64)
    generator = torch.Generator().manual_seed(0)
    for task in (GemmaPretrainTask(pool, 4, "cpu"), DCAETask(pool, 2, "cpu")):
        assert torch.isfinite(task.loss(generator))
        task.export(folder / f"{task.name}.safetensors", task.modules(), {"steps": 1})
    sana = SanaTask(pool, 4, "cpu", folder / "shapes-dcae.safetensors",
                    folder / "shapes-gemma.safetensors")
    assert torch.isfinite(sana.loss(generator))
    sana.export(folder / "shapes-sana.safetensors", sana.modules(), {"steps": 1})
    return folder


def test_the_vae_loader_tells_a_dcae_file_from_a_kl_one(tiny_files):
    from core.models.builtin import load_vae_handle
    from core.models.dcae import DCAEHandle
    from core.paths import MODELS_DIR

    dcae, preview = load_vae_handle(tiny_files / "shapes-dcae.safetensors")
    assert isinstance(dcae, DCAEHandle) and dcae.downscale == 8 and dcae.latent_channels == 16
    assert preview is not None and len(preview.factors) == 16
    kl, _ = load_vae_handle(MODELS_DIR / "shapes-vae.safetensors")
    assert not isinstance(kl, DCAEHandle) and kl.downscale == 4


def test_sana_loads_with_its_frozen_language_model_and_autoencoder(tiny_files):
    from core.models.builtin import load_model
    from core.models.dcae import DCAEHandle
    from core.training.cascade_task import FrozenText

    loaded = load_model(str(tiny_files / "shapes-sana.safetensors"))
    assert loaded.model.parameterization == "flow" and loaded.model.latent_channels == 16
    assert loaded.model.downscale == 8 and isinstance(loaded.vae, DCAEHandle)
    assert isinstance(loaded.clip, DecoderTextEncoder) and "Sana" in loaded.model.description
    frozen = FrozenText(tiny_files / "shapes-gemma.safetensors", "cpu")
    with torch.no_grad():  # the file's language model is shapes-gemma's, unchanged by training
        assert torch.allclose(loaded.clip.encode([CAPTION]), frozen.states([CAPTION]), atol=1e-2)


def test_guidance_runs_both_prompts_in_one_call_with_the_same_result(tiny_files):
    from core.models.builtin import load_model

    network = load_model(str(tiny_files / "shapes-sana.safetensors")).model.denoiser.network
    calls = []
    network.transformer.register_forward_hook(lambda *args: calls.append(1))
    x, t = torch.randn(4, 16, 8, 8), torch.full((4,), 700.0)
    parts = (Conditioning(text=""), Conditioning(text="a red circle"))
    together = network(x, t, cond=ConditioningBatch(parts))
    assert len(calls) == 1
    apart = torch.cat([network(x[:2], t[:2], cond=parts[0]), network(x[2:], t[2:], cond=parts[1])])
    assert torch.allclose(together, apart, atol=1e-5)


def test_sana_samples_at_sizes_it_never_saw(tiny_files):
    """No positional embedding (Sana's DiT relies on its Mix-FFN convolution),
    so any latent size runs: 64 px and 128 px."""
    from core.evaluation.evaluate import Setup, generate
    from core.models.builtin import load_model

    loaded = load_model(str(tiny_files / "shapes-sana.safetensors"))
    for size in (64, 128):
        images = generate(loaded, ["a red circle"], Setup("euler", "flow", 2), 3.0, 0, "cpu",
                          size=size)
        assert images.shape == (1, 3, size, size) and torch.isfinite(images).all()


def test_the_sana_task_refuses_an_autoencoder_file_that_is_not_one(tiny_files):
    from core.checkpoints import CheckpointError
    from core.training.data import ShapesPool
    from core.training.sana_task import SanaTask

    with pytest.raises(CheckpointError, match="no autoencoder"):
        SanaTask(ShapesPool.render(2, seed=1, pixels=64), 2, "cpu",
                 tiny_files / "shapes-gemma.safetensors", tiny_files / "shapes-gemma.safetensors")

"""unCLIP (DALL·E 2): slerp, the prior and decoder wrappers, the nodes, and
tiny trained files through the loaders, the prior sampler and ``eval``."""
from __future__ import annotations

import math

import pytest
import torch

from core.models.unclip import (
    EMBEDDING_KEY,
    EmbeddingUNet,
    PriorNetwork,
    embedding_scale,
    slerp,
    text_mask,
)
from core.values import Conditioning, ConditioningBatch


def unit(*rows):
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


# -- slerp ---------------------------------------------------------------------------
def test_slerp_goes_along_the_great_circle():
    a, b = unit([1.0, 0.0, 0.0]), unit([0.0, 1.0, 0.0])
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    assert torch.allclose(slerp(a, b, 0.5), unit([1.0, 1.0, 0.0]), atol=1e-6)
    third = slerp(a, b, 1 / 3)  # a third of the 90° angle: 30° from a
    assert math.isclose(float(third[0, 0]), math.cos(math.pi / 6), abs_tol=1e-6)
    assert torch.allclose(third.norm(dim=-1), torch.ones(1), atol=1e-6)


def test_slerp_of_a_direction_with_itself_is_that_direction_and_broadcasts():
    a = unit([0.3, -0.2, 0.9])
    assert torch.allclose(slerp(a, a.clone(), 0.7), a, atol=1e-6)
    many = unit([1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    assert slerp(many, unit([0.0, 1.0, 0.0]), 0.5).shape == (2, 3)


def test_the_text_mask_covers_the_tokens_up_to_the_first_eos():
    ids = torch.tensor([[1, 5, 6, 2, 2, 2], [1, 2, 2, 2, 2, 2]])
    assert text_mask(ids, eos=2).tolist() == [[True] * 4 + [False] * 2, [True] * 2 + [False] * 4]


# -- the decoder wrapper ----------------------------------------------------------------
class RecordingUNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls = []

    def forward(self, sample, timestep, encoder_hidden_states, class_labels):
        self.calls.append((encoder_hidden_states.clone(), class_labels.clone()))
        return type("Out", (), {"sample": sample + self.weight})()


def test_the_decoder_sees_the_embedding_times_root_d_as_token_and_class_label():
    unet = RecordingUNet()
    z = unit([1.0, 2.0, 2.0, 0.0])
    EmbeddingUNet(unet, 4)(torch.zeros(2, 3, 8, 8), torch.tensor(5),
                           cond=Conditioning(extras={EMBEDDING_KEY: z}))
    tokens, labels = unet.calls[-1]
    assert tokens.shape == (2, 1, 4) and torch.allclose(labels, (z * 2).expand(2, -1))
    assert embedding_scale(4) == 2.0


def test_a_part_without_an_embedding_is_the_unconditional_model():
    unet = RecordingUNet()
    z = unit([0.0, 1.0, 0.0, 0.0])
    both = ConditioningBatch((Conditioning(), Conditioning(extras={EMBEDDING_KEY: z})))
    EmbeddingUNet(unet, 4)(torch.zeros(2, 3, 8, 8), torch.tensor(5), cond=both)
    _, labels = unet.calls[-1]
    assert torch.equal(labels[0], torch.zeros(4)) and torch.allclose(labels[1], z[0] * 2)


def test_wrong_embeddings_are_refused_with_what_to_do():
    model = EmbeddingUNet(RecordingUNet(), 4)
    with pytest.raises(ValueError, match="a 3-dimensional embedding for a decoder of 4"):
        model(torch.zeros(1, 3, 8, 8), torch.tensor(1),
              cond=Conditioning(extras={EMBEDDING_KEY: unit([1.0, 0.0, 0.0])}))
    with pytest.raises(ValueError, match="2 embeddings for a batch of 3"):
        model(torch.zeros(3, 3, 8, 8), torch.tensor(1),
              cond=Conditioning(extras={EMBEDDING_KEY: torch.zeros(2, 4)}))


def test_the_prior_needs_a_caption_on_its_conditioning():
    network = PriorNetwork(torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="the prior needs a caption"):
        network(torch.zeros(1, 4, 1, 1), torch.tensor(1), cond=Conditioning())


# -- tiny trained files ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """shapes-clip, -prior and -unclip trained two steps each, in one folder."""
    from core.training.recipes import run_training

    folder = tmp_path_factory.mktemp("unclip")
    for name in ("shapes-clip", "shapes-prior", "shapes-unclip"):
        run_training(name, steps=2, batch=2, out=folder / f"{name}.safetensors", resume=None,
                     device="cpu", pool=16, models_dir=folder)
    return folder


def test_the_files_load_as_prior_and_text_free_decoder(tiny):
    from core.checkpoints import load_checkpoint
    from core.models.builtin import load_model, load_prior

    prior = load_prior(str(tiny / "shapes-prior.safetensors"))
    assert prior.latent_channels == 64 and prior.denoiser.prediction == "sample"
    loaded = load_model(str(tiny / "shapes-unclip.safetensors"))
    assert loaded.clip is None and loaded.model.latent_channels == 3
    meta = load_checkpoint(tiny / "shapes-unclip.safetensors")[1]
    assert meta["clip"] == "shapes-clip" and meta["embed_dim"] == 64


def test_prior_samples_are_unit_vectors_one_per_prompt_and_seeded(tiny):
    from core.models.builtin import load_noisy_clip, load_prior
    from core.models.unclip import sample_embeddings

    prior = load_prior(str(tiny / "shapes-prior.safetensors"))
    clip = load_noisy_clip(str(tiny / "shapes-clip.safetensors"))
    prompts = ["a red circle", "a blue square", "a red circle"]
    z = sample_embeddings(prior, clip, prompts, steps=3, guidance=2.0, seed=4, device="cpu")
    again = sample_embeddings(prior, clip, prompts, steps=3, guidance=2.0, seed=4, device="cpu")
    assert z.shape == (3, 64) and torch.allclose(z.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(z, again)
    alone = sample_embeddings(prior, clip, ["a blue square"], steps=3, guidance=2.0, seed=4,
                              device="cpu")
    assert alone.shape == (1, 64)
    with pytest.raises(ValueError, match="needs a caption"):
        sample_embeddings(prior, clip, [" "], steps=3, guidance=1.0, seed=0, device="cpu")
    with pytest.raises(ValueError, match=r"does not know 'dragon' \(it knows: a, at,"):
        sample_embeddings(prior, clip, ["a red dragon"], steps=3, guidance=1.0, seed=0,
                          device="cpu")


def test_the_nodes_encode_mix_and_condition(tiny):
    from core.models.builtin import load_noisy_clip
    from nodes.unclip import embedding_condition, encode_image, mix_embeddings

    clip = load_noisy_clip(str(tiny / "shapes-clip.safetensors"))
    pictures = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    z = encode_image(None, clip, pictures)  # resized to CLIP's 32×32
    assert z.shape == (2, 64) and torch.allclose(z.norm(dim=-1), torch.ones(2), atol=1e-5)
    halfway = mix_embeddings(None, z[:1], z[1:], 0.5)
    assert torch.allclose(halfway, slerp(z[:1], z[1:], 0.5))
    with pytest.raises(ValueError, match="cannot mix a 64- and a 3-dimensional"):
        mix_embeddings(None, z, torch.zeros(2, 3), 0.5)
    with pytest.raises(ValueError, match="2 and 3 embeddings"):
        mix_embeddings(None, z, torch.zeros(3, 64), 0.5)
    cond = embedding_condition(None, z, Conditioning(text="kept"))
    assert cond.text == "kept" and cond.extras[EMBEDDING_KEY] is z
    with pytest.raises(ValueError, match=r"an embedding is a \(B, D\) tensor"):
        embedding_condition(None, torch.zeros(64))


def test_a_prior_and_a_clip_of_other_widths_are_refused(tiny):
    import dataclasses

    from core.models.builtin import load_noisy_clip, load_prior
    from core.models.unclip import sample_embeddings

    prior = dataclasses.replace(load_prior(str(tiny / "shapes-prior.safetensors")),
                                latent_channels=32)
    clip = load_noisy_clip(str(tiny / "shapes-clip.safetensors"))
    with pytest.raises(ValueError, match="makes 32-dimensional embeddings but this CLIP's are 64"):
        sample_embeddings(prior, clip, ["a red circle"], 2, 1.0, 0, "cpu")


def test_eval_measures_the_prior_and_the_decoder(tiny, tmp_path, capsys):
    from app.cli.main import main

    grid = tmp_path / "grid.png"
    decoder = str(tiny / "shapes-unclip.safetensors")
    assert main(["eval", decoder, "--prior", str(tiny / "shapes-prior.safetensors"),
                 "--samples", "2", "--steps", "2", "--grid", str(grid), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "cosine(prior's z, picture's z)" in out and "cosine(text embedding" in out
    assert "| image → decoder |" in out and "| position |" in out and grid.exists()

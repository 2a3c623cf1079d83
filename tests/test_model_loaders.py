"""The shipped model files through their loaders and nodes: load_model for
every backbone kind, ControlNet and classifier files, clear errors for the
wrong or damaged file, ControlNet hints and the conditioning nodes."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch

from core.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from core.diffusion.guidance import ClassifierGuidedDenoiser
from core.models.builtin import (
    MODELS_DIR,
    PixelCodec,
    VAEHandle,
    load_classifier,
    load_controlnet,
    load_model,
)
from core.models.conditioned import ConditionedTransformer, ConditionedUNet, ControlHint
from core.values import Conditioning
from nodes.conditioning import apply_controlnet, encode_text
from nodes.models import classifier_guidance

CTX = SimpleNamespace(device="cpu")


@pytest.fixture(scope="module")
def loaded():
    return {name: load_model(name) for name in ("shapes-ldm", "shapes-ddpm", "shapes-flow")}


@pytest.fixture(scope="module")
def controlnet():
    return load_controlnet("shapes-controlnet")


@pytest.fixture(scope="module")
def classifier():
    return load_classifier("shapes-classifier")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name, parameterization, channels, downscale", [
    ("shapes-ldm", "ve", 4, 4), ("shapes-ddpm", "ve", 3, 1), ("shapes-flow", "flow", 4, 4)])
def test_each_backbone_loads_as_its_kind(loaded, name, parameterization, channels, downscale):
    model = loaded[name].model
    assert model.name == name
    assert model.parameterization == parameterization
    assert model.denoiser.parameterization == parameterization
    assert model.latent_channels == channels and model.downscale == downscale
    vae = loaded[name].vae
    assert vae.latent_channels == channels and vae.downscale == downscale
    if name == "shapes-ddpm":
        assert isinstance(vae, PixelCodec)
        assert model.denoiser.learned_variance is True
        assert model.schedule.name == "cosine" and model.schedule.num_timesteps == 1000
    else:
        assert isinstance(vae, VAEHandle)
    if name == "shapes-ldm":
        assert model.denoiser.learned_variance is False
        assert isinstance(model.denoiser.network, ConditionedUNet)
    if name == "shapes-flow":
        assert model.schedule is None and isinstance(model.denoiser.network, ConditionedTransformer)


def test_the_pixel_model_returns_x0_and_a_variance_of_its_channels(loaded):
    model = loaded["shapes-ddpm"].model
    x = torch.randn(2, 3, 32, 32, generator=gen(0)) * 2
    cond = Conditioning(text="a red circle")
    x0, v = model.denoiser(x, torch.tensor(2.0), cond=cond)  # a Denoised: x̂_0 and v
    assert x0.shape == (2, 3, 32, 32) and v.shape == (2, 3, 32, 32)
    assert torch.isfinite(x0).all() and torch.isfinite(v).all()


@pytest.mark.parametrize("name, kind", [
    ("shapes-controlnet", "controlnet"), ("shapes-classifier", "classifier"), ("shapes-vae", "vae")])
def test_the_checkpoint_loader_refuses_non_backbones_naming_the_file(name, kind):
    with pytest.raises(CheckpointError, match=rf"{name}\.safetensors: a '{kind}' file is not a backbone"):
        load_model(name)


def test_the_special_loaders_refuse_the_wrong_kind_naming_the_file():
    with pytest.raises(CheckpointError, match=r"shapes-ldm\.safetensors: not a controlnet file .*'ldm'"):
        load_controlnet("shapes-ldm")
    with pytest.raises(CheckpointError, match=r"shapes-controlnet\.safetensors: not a classifier file"):
        load_classifier("shapes-controlnet")


@pytest.mark.parametrize("loader", [load_model, load_controlnet, load_classifier])
def test_a_truncated_file_fails_naming_it(tmp_path, loader):
    broken = tmp_path / "cut-short.safetensors"
    broken.write_bytes((MODELS_DIR / "shapes-classifier.safetensors").read_bytes()[:20000])
    with pytest.raises(CheckpointError, match=r"cut-short\.safetensors: not a readable safetensors"):
        loader(str(broken))


def test_a_file_whose_weights_do_not_fit_its_config_fails_naming_it(tmp_path):
    tensors, meta = load_checkpoint(MODELS_DIR / "shapes-classifier.safetensors")
    dropped = dict(list(tensors.items())[1:])
    save_checkpoint(tmp_path / "short.safetensors", dropped, meta)
    with pytest.raises(CheckpointError, match=r"short\.safetensors: the classifier lacks 1 "
                                              r"tensor\(s\): conv_in\.bias"):
        load_classifier(str(tmp_path / "short.safetensors"))
    extra = {**tensors, "classifier.surplus.weight": torch.zeros(2)}
    save_checkpoint(tmp_path / "long.safetensors", extra, meta)
    with pytest.raises(CheckpointError, match=r"long\.safetensors: 1 classifier tensor\(s\) have no "
                                              r"place in the network its config describes: surplus"):
        load_classifier(str(tmp_path / "long.safetensors"))
    save_checkpoint(tmp_path / "bare.safetensors", {"x": torch.zeros(1)}, {"kind": "pixel"})
    with pytest.raises(CheckpointError, match=r"bare\.safetensors: cannot read the pixel model "
                                              r"\(KeyError: no 'components' entry\)"):
        load_model(str(tmp_path / "bare.safetensors"))


def test_a_latent_model_needs_its_vae_beside_it(tmp_path):
    shutil.copy(MODELS_DIR / "shapes-flow.safetensors", tmp_path / "flow.safetensors")
    with pytest.raises(CheckpointError, match=r"shapes-vae\.safetensors: no such model file"):
        load_model(str(tmp_path / "flow.safetensors"))


def test_the_classifier_file_loads_with_labels_and_schedule(classifier):
    network, labels, schedule = classifier
    assert labels["shape"] == ["circle", "square", "triangle"] and len(labels["color"]) == 6
    assert schedule.name == "cosine" and schedule.num_timesteps == 1000
    assert network.config["in_channels"] == 3
    assert not any(p.requires_grad for p in network.parameters())
    with torch.no_grad():
        logits = network(torch.zeros(2, 3, 32, 32), torch.tensor(500.0))
    assert logits["shape"].shape == (2, 3) and logits["color"].shape == (2, 6)


def test_the_pixel_codec_round_trips():
    codec = PixelCodec()
    images = torch.randint(0, 256, (2, 4, 8, 8), generator=gen(1)).float() / 255  # with alpha
    data = codec.encode(images)
    assert data.shape == (2, 3, 8, 8)
    assert data.min() >= -1 and data.max() <= 1
    assert torch.allclose(data, images[:, :3] * 2 - 1)
    assert torch.allclose(codec.decode(data), images[:, :3], atol=1e-6)
    assert codec.decode(torch.full((1, 3, 2, 2), 5.0)).max() == 1  # decoded images are clamped


# -- ControlNet hints -------------------------------------------------------------------
@pytest.fixture(scope="module")
def ldm_inputs(loaded):
    ldm = loaded["shapes-ldm"]
    hidden, pooled = ldm.clip.encode_pooled(["a red circle"])
    x_t = torch.randn(1, 4, 16, 16, generator=gen(2))
    outline = torch.zeros(1, 3, 64, 64)
    outline[:, :, 16:48, 16] = outline[:, :, 16:48, 47] = 1
    outline[:, :, 16, 16:48] = outline[:, :, 47, 16:48] = 1  # a square's edges
    return ldm.model.denoiser.network, hidden, pooled, x_t, torch.tensor([400.0]), outline


def test_a_hint_at_strength_zero_changes_nothing_and_at_one_it_does(ldm_inputs, controlnet):
    unet, hidden, pooled, x_t, t, outline = ldm_inputs
    plain = unet(x_t, t, cond=Conditioning("a red circle", hidden, {"pooled": pooled}))

    def with_hint(*strengths):
        hints = tuple(ControlHint(controlnet, outline, s) for s in strengths)
        return unet(x_t, t, cond=Conditioning("a red circle", hidden, {"pooled": pooled, "control": hints}))

    assert torch.equal(with_hint(0.0), plain)
    full = with_hint(1.0)
    assert (full - plain).abs().max() > 1e-3
    # residuals are linear in the strength and several hints add up
    assert torch.allclose(with_hint(0.5, 0.5), full, atol=1e-4)
    # a hint of another size is resized to the latent's (×4 for this ControlNet)
    small = ControlHint(controlnet, torch.nn.functional.interpolate(outline, size=(32, 32)), 1.0)
    down, mid = small.residuals(x_t, t, hidden)
    assert mid.shape[0] == 1 and torch.isfinite(mid).all()


def test_apply_controlnet_attaches_the_hint_to_both_prompts_and_stacks(controlnet):
    positive = Conditioning("a red circle", torch.zeros(1, 16, 64), {"pooled": torch.ones(1, 64)})
    image = torch.rand(1, 4, 64, 64)
    out = apply_controlnet(CTX, positive, None, controlnet, image, 0.7)
    pos, neg = out["positive"], out["negative"]
    assert len(pos.extras["control"]) == 1 and neg.extras["control"] == pos.extras["control"]
    hint = pos.extras["control"][0]
    assert hint.controlnet is controlnet and hint.strength == 0.7 and hint.image.shape == (1, 3, 64, 64)
    assert torch.equal(pos.extras["pooled"], torch.ones(1, 64)) and pos.embeddings is positive.embeddings
    assert neg.text == "" and neg.embeddings is None
    assert "control" not in positive.extras  # the input is left as it was
    again = apply_controlnet(CTX, pos, neg, controlnet, image[:, :3], 0.3)
    assert [h.strength for h in again["positive"].extras["control"]] == [0.7, 0.3]
    assert [h.strength for h in again["negative"].extras["control"]] == [0.7, 0.3]
    with pytest.raises(ValueError, match="shape"):
        apply_controlnet(CTX, positive, None, controlnet, torch.rand(3, 64, 64), 1.0)


# -- classifier guidance node -------------------------------------------------------------
def test_classifier_guidance_node_refuses_flow_and_mismatched_channels(loaded, classifier):
    with pytest.raises(ValueError, match="needs a diffusion model, not a flow-matching one"):
        classifier_guidance(CTX, loaded["shapes-flow"].model, classifier, "circle", "red", 3.0)
    with pytest.raises(ValueError, match=r"reads 3-channel images but 'shapes-ldm' samples 4 channels"):
        classifier_guidance(CTX, loaded["shapes-ldm"].model, classifier, "circle", "red", 3.0)
    with pytest.raises(ValueError, match="choose at least one class"):
        classifier_guidance(CTX, loaded["shapes-ddpm"].model, classifier, "any", "any", 3.0)


def test_classifier_guidance_node_wraps_the_pixel_model(loaded, classifier):
    base = loaded["shapes-ddpm"].model
    guided = classifier_guidance(CTX, base, classifier, "any", "blue", 2.0)
    assert isinstance(guided.denoiser, ClassifierGuidedDenoiser)
    assert guided.denoiser.model is base.denoiser and guided.denoiser.scale == 2.0
    assert guided.denoiser.model.learned_variance is True
    assert list(guided.denoiser.log_prob.indices) == ["color"]
    assert "guided toward blue (s = 2.0)" in guided.description
    assert guided.latent_channels == 3 and guided.schedule is base.schedule


# -- text encoding ---------------------------------------------------------------------------
def test_encode_node_carries_the_pooled_embedding(loaded):
    clip = loaded["shapes-ldm"].clip
    cond = encode_text(CTX, clip, "  a red circle ")
    assert cond.text == "a red circle"
    assert cond.embeddings.shape == (1, 16, 64) and cond.extras["pooled"].shape == (1, 64)
    # the pooled embedding is the hidden state at the first <eos>: <bos> a red circle <eos>
    assert torch.equal(cond.extras["pooled"], cond.embeddings[:, 4])
    hidden, pooled = clip.encode_pooled(["a circle", "a large red circle at the center"])
    assert torch.equal(pooled[0], hidden[0, 3]) and torch.equal(pooled[1], hidden[1, 8])


def test_the_transformer_needs_a_pooled_embedding(loaded):
    network = loaded["shapes-flow"].model.denoiser.network
    x = torch.randn(1, 4, 16, 16, generator=gen(3))
    hidden, pooled = loaded["shapes-flow"].clip.encode_pooled(["a blue square"])
    with pytest.raises(ValueError, match="needs a pooled text embedding"):
        network(x, torch.tensor([500.0]), cond=Conditioning("a blue square", hidden))
    from_text = network(x, torch.tensor([500.0]), cond=Conditioning("a blue square"))
    given = network(x, torch.tensor([500.0]),
                    cond=Conditioning("a blue square", hidden, {"pooled": pooled}))
    assert from_text.shape == (1, 4, 16, 16) and torch.allclose(from_text, given, atol=1e-5)


def test_network_calls_run_in_inference_mode_and_return_ordinary_tensors(loaded):
    """The U-Net runs under inference mode (faster than no_grad); what comes back
    is an ordinary tensor that samplers may update in place and autograd may read."""
    network = loaded["shapes-ldm"].model.denoiser.network
    seen = []
    network.unet.register_forward_hook(lambda *args: seen.append(torch.is_inference_mode_enabled()))
    x = torch.randn(2, 4, 16, 16, generator=gen(0))
    out = network(x, torch.tensor(500.0), Conditioning(text="a red circle"))
    assert seen == [True]
    assert not out.is_inference()
    out.add_(1.0)  # an inference tensor would refuse this outside inference mode
    with torch.no_grad():
        reference = network.unet(x, torch.full((2,), 500.0),
                                 encoder_hidden_states=network.prompts(
                                     Conditioning(text="a red circle"), x)[0]).sample
    torch.testing.assert_close(out - 1.0, reference)

"""The noise-aware classifier, ClassTarget and ClassifierGuidedDenoiser
(Dhariwal & Nichol 2021): shapes, label checks, and the guidance shift."""
from __future__ import annotations

import math

import pytest
import torch

from core.diffusion.denoisers import DiscreteTimeDenoiser, FlowDenoiser
from core.diffusion.guidance import ClassifierGuidedDenoiser
from core.diffusion.schedules import make_schedule
from core.models.classifier import ClassTarget, NoisyClassifier

F64 = torch.float64
LABELS = {"shape": ["circle", "square", "triangle"],
          "color": ["red", "orange", "yellow", "green", "blue", "purple"]}


@pytest.fixture(scope="module")
def schedule():
    return make_schedule("cosine", 1000)


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return NoisyClassifier(sample_size=8, in_channels=3, block_out_channels=(8, 16),
                           down_block_types=("DownBlock2D", "AttnDownBlock2D"), layers_per_block=1,
                           norm_num_groups=4, attention_head_dim=8,
                           heads={"shape": 3, "color": 6}).eval()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- NoisyClassifier -------------------------------------------------------------
def test_the_classifier_gives_logits_per_head_and_reads_the_timestep(classifier):
    x = torch.randn(3, 3, 8, 8, generator=gen(0))
    with torch.no_grad():
        logits = classifier(x, torch.tensor(10.0))  # a scalar t is broadcast
        per_row = classifier(x, torch.tensor([10.0, 10.0, 10.0]))
        later = classifier(x, torch.tensor([900.0, 900.0, 900.0]))
    assert set(logits) == {"shape", "color"}
    assert logits["shape"].shape == (3, 3) and logits["color"].shape == (3, 6)
    assert torch.allclose(logits["shape"], per_row["shape"], atol=1e-6)
    assert not torch.allclose(logits["color"], later["color"], atol=1e-4)  # t matters
    assert classifier.config["heads"] == {"shape": 3, "color": 6}


# -- ClassTarget -------------------------------------------------------------------
def test_unknown_labels_are_refused_with_what_is_known(classifier, schedule):
    with pytest.raises(ValueError, match=r"no shape 'dragon' \(it knows: circle, square, triangle\)"):
        ClassTarget(classifier, LABELS, schedule, {"shape": "dragon"})
    with pytest.raises(ValueError, match=r"no color 'teal'.*red, orange"):
        ClassTarget(classifier, LABELS, schedule, {"shape": ["circle", "square"],
                                                   "color": ["red", "teal"]})
    with pytest.raises(ValueError, match=r"no size 'large' \(it knows: none\)"):
        ClassTarget(classifier, LABELS, schedule, {"size": "large"})


def test_all_any_is_refused(classifier, schedule):
    with pytest.raises(ValueError, match="choose at least one class"):
        ClassTarget(classifier, LABELS, schedule, {"shape": None, "color": None})


def test_the_target_is_the_summed_log_softmax_at_the_matching_timestep(classifier, schedule):
    x = torch.randn(2, 3, 8, 8, generator=gen(1))
    sigma = schedule.sigmas[[250, 600]].float()
    target = ClassTarget(classifier, LABELS, schedule, {"shape": "square", "color": "blue"})
    with torch.no_grad():
        got = target(x, sigma)
        logits = classifier(x, torch.tensor([250.0, 600.0]))
    expected = (logits["shape"].log_softmax(1)[:, 1] + logits["color"].log_softmax(1)[:, 4])
    assert got.shape == (2,)
    assert torch.allclose(got, expected, atol=1e-4)
    assert (got < 0).all()
    # "any" leaves a head out
    shape_only = ClassTarget(classifier, LABELS, schedule, {"shape": "square", "color": None})
    with torch.no_grad():
        assert torch.allclose(shape_only(x, sigma), logits["shape"].log_softmax(1)[:, 1], atol=1e-4)


def test_a_per_row_list_equals_single_row_calls(classifier, schedule):
    x = torch.randn(3, 3, 8, 8, generator=gen(2))
    sigma = schedule.sigmas[[100, 400, 800]].float()
    rows = {"shape": ["circle", "triangle", "square"], "color": ["green", "red", "purple"]}
    with torch.no_grad():
        together = ClassTarget(classifier, LABELS, schedule, rows)(x, sigma)
        alone = torch.cat([
            ClassTarget(classifier, LABELS, schedule,
                        {"shape": rows["shape"][i], "color": rows["color"][i]})(
                x[i:i + 1], sigma[i:i + 1])
            for i in range(3)])
        # a plain string applies to every row
        mixed = ClassTarget(classifier, LABELS, schedule, {"shape": rows["shape"], "color": "red"})(x, sigma)
        first = ClassTarget(classifier, LABELS, schedule, {"shape": "circle", "color": "red"})(x, sigma)
    assert torch.allclose(together, alone, atol=1e-5)
    assert not torch.allclose(together, together[[1, 2, 0]], atol=1e-4)
    assert torch.allclose(mixed[0], first[0], atol=1e-6)


def test_the_gradient_reaches_x_t(classifier, schedule):
    x = torch.randn(2, 3, 8, 8, generator=gen(3)).requires_grad_(True)
    target = ClassTarget(classifier, LABELS, schedule, {"shape": "circle"})
    target(x, schedule.sigmas[[50, 50]].float()).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_sigma_is_mapped_to_the_classifiers_own_timestep(schedule):
    seen = []

    def network(x_t, t):
        seen.append(t)
        return {"shape": torch.zeros(x_t.shape[0], 3)}

    target = ClassTarget(network, LABELS, schedule, {"shape": "circle"})
    values = target(torch.zeros(2, 3, 4, 4), schedule.sigmas[[7, 321]].float())
    assert torch.allclose(seen[0], torch.tensor([7.0, 321.0]), atol=1e-2)
    assert torch.allclose(values, torch.full((2,), -math.log(3)))  # uniform over 3 shapes


# -- ClassifierGuidedDenoiser --------------------------------------------------------
class FakeUNet:
    """ε̂ and v from a fixed function of (x_t, t): 2C channels, as shapes-ddpm."""

    def __call__(self, x_t, t, **extra):
        eps = torch.tanh(x_t) * 0.5
        v = torch.sin(x_t + t.reshape(-1, 1, 1, 1) / 1000)
        return torch.cat([eps, v], dim=1)


@pytest.fixture()
def inner(schedule):
    return DiscreteTimeDenoiser(FakeUNet(), schedule, "epsilon", learned_variance=True)


def test_scale_zero_is_the_inner_model_exactly(inner, schedule):
    calls = []

    def log_prob(x_t, sigma):
        calls.append(1)
        return -x_t.sum(dim=(1, 2, 3))

    guided = ClassifierGuidedDenoiser(inner, log_prob, 0.0)
    assert guided.parameterization == "ve"
    x = torch.randn(2, 3, 4, 4, generator=gen(4), dtype=F64)
    level = schedule.sigmas[[30, 700]]
    x0, variance = guided(x, level)
    want_x0, want_variance = inner(x, level)
    assert torch.equal(x0, want_x0) and torch.equal(variance, want_variance)
    assert calls == []  # no gradient is taken when there is no guidance


def quadratic_log_prob(centre):
    """log p(y | x_t) = −½‖x_t − c‖²: its gradient is c − x_t."""
    def log_prob(x_t, sigma):
        return -0.5 * ((x_t - centre) ** 2).sum(dim=(1, 2, 3))
    return log_prob


@pytest.mark.parametrize("scale", [1.0, 3.5])
def test_the_shift_is_scale_times_one_minus_alpha_bar_over_root_alpha_bar_times_the_gradient(
        inner, schedule, scale):
    x = 3 * torch.randn(2, 3, 4, 4, generator=gen(5), dtype=F64)
    centre = torch.randn(1, 3, 4, 4, generator=gen(6), dtype=F64)
    level = schedule.sigmas[[40, 600]]
    guided = ClassifierGuidedDenoiser(inner, quadratic_log_prob(centre), scale)
    x0, variance = guided(x, level)
    base_x0, base_variance = inner(x, level)
    sigma = level.reshape(-1, 1, 1, 1)
    alpha_bar = 1 / (1 + sigma**2)
    x_t = x * alpha_bar.sqrt()  # the VP-scaled sample the classifier sees
    grad = centre - x_t
    assert torch.allclose(x0 - base_x0, scale * (1 - alpha_bar) / alpha_bar.sqrt() * grad,
                          rtol=1e-9, atol=1e-12)
    assert torch.equal(variance, base_variance)
    # As the paper writes it: ε̂' = ε̂ − s √(1 − ᾱ) ∇ log p, then x̂_0 = x − σ ε̂'
    eps = (x - base_x0) / sigma
    eps_guided = eps - scale * (1 - alpha_bar).sqrt() * grad
    assert torch.allclose(x0, x - sigma * eps_guided, rtol=1e-9, atol=1e-10)


def test_a_plain_denoiser_gets_no_variance(schedule):
    plain = DiscreteTimeDenoiser(lambda x_t, t: 0.1 * x_t, schedule)
    guided = ClassifierGuidedDenoiser(plain, quadratic_log_prob(torch.zeros(1)), 2.0)
    x = torch.randn(1, 3, 4, 4, generator=gen(7), dtype=F64)
    x0, variance = guided(x, schedule.sigmas[100])
    assert variance is None
    assert not torch.allclose(x0, plain(x, schedule.sigmas[100]).x0)


def test_flow_models_are_refused():
    with pytest.raises(ValueError, match="diffusion .VE. denoisers"):
        ClassifierGuidedDenoiser(FlowDenoiser(lambda x, t: x), quadratic_log_prob(0), 1.0)

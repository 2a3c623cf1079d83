"""The diffusion math checked against closed forms.

Forward process vs its closed form, samplers' convergence orders on data whose
probability-flow ODE is solvable exactly, the ideal denoiser, guidance on a
Gaussian-mixture toy where conditional and unconditional denoisers and the
classifier are all exact, the sampler callback protocol, editing and noise.
(Sampler-vs-diffusers trajectories live in test_diffusion_oracle.py.)
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from core.diffusion import (
    SAMPLERS,
    STOP,
    CFGDenoiser,
    ClassifierGuidedDenoiser,
    DiscreteTimeDenoiser,
    FlowDenoiser,
    GaussianDenoiser,
    IdealDenoiser,
    InpaintDenoiser,
    StepInfo,
    flow_times,
    img2img_start,
    initial_noise,
    karras_sigmas,
    make_schedule,
    noised_to_level,
    predicted_noise,
    q_posterior,
    q_sample,
    q_step,
    sampling_sigmas,
)

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: on shared cores torch's intra-op threads only add
    wake-up latency (a (32, 48) softmax took 0.5–7 ms with 2 threads, 9 µs with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def log2_slopes(errors: list[float]) -> list[float]:
    return [math.log2(a / b) for a, b in zip(errors, errors[1:])]


# -- forward process ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_q_step_chain_reaches_q_sample_in_distribution(name):
    schedule = make_schedule(name)
    n, x0 = 20000, 1.5
    g = gen(0)
    x = torch.full((n,), x0, dtype=F64)
    checks = {9: None, 99: None, 499: None, 999: None}
    for t in range(1000):
        x = q_step(x, t, schedule, torch.randn(n, generator=g, dtype=F64))
        if t in checks:
            checks[t] = x.clone()
    for t, chain in checks.items():
        ab = float(schedule.alphas_cumprod[t])
        mean, var = math.sqrt(ab) * x0, 1 - ab
        jump = q_sample(torch.full((n,), x0, dtype=F64), t, schedule,
                        torch.randn(n, generator=g, dtype=F64))
        for sample in (chain, jump):
            assert abs(float(sample.mean()) - mean) < 4 * math.sqrt(var / n), (name, t)
            assert abs(float(sample.var()) - var) < 4 * var * math.sqrt(2 / (n - 1)), (name, t)


def test_q_sample_and_q_step_formulas_per_sample_t():
    schedule = make_schedule("scaled_linear")
    g = gen(1)
    x0 = torch.randn(4, 3, 2, 2, generator=g)
    noise = torch.randn(4, 3, 2, 2, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    out = q_sample(x0, t, schedule, noise)
    assert out.dtype == torch.float32
    for i, ti in enumerate(t.tolist()):
        ab = float(schedule.alphas_cumprod[ti])
        expected = math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * noise[i]
        assert torch.allclose(out[i], expected, atol=1e-6)
        assert torch.allclose(q_sample(x0[i:i + 1], ti, schedule, noise[i:i + 1])[0], expected, atol=1e-6)
        b = float(schedule.betas[ti])
        step = q_step(x0, t, schedule, noise)[i]
        assert torch.allclose(step, math.sqrt(1 - b) * x0[i] + math.sqrt(b) * noise[i], atol=1e-6)


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "cosine"])
def test_q_posterior_is_the_bayes_conditional(name):
    """q(x_{t−1} | x_t, x_0) ∝ q(x_t | x_{t−1}) q(x_{t−1} | x_0): a product of two
    1-D Gaussians, precision and mean added by hand."""
    schedule = make_schedule(name)
    x0 = torch.tensor([0.7, -1.2, 0.0], dtype=F64)
    x_t = torch.tensor([0.3, 2.0, -0.5], dtype=F64)
    for t in (1, 2, 50, 500, 999):
        ab_prev = float(schedule.alphas_cumprod[t - 1])
        alpha, beta = float(schedule.alphas[t]), float(schedule.betas[t])
        # prior x_{t−1} ~ N(√ᾱ_{t−1} x_0, 1 − ᾱ_{t−1}); likelihood x_t ~ N(√α_t x_{t−1}, β_t)
        precision = 1 / (1 - ab_prev) + alpha / beta
        var = 1 / precision
        mean = var * (math.sqrt(ab_prev) * x0 / (1 - ab_prev) + math.sqrt(alpha) * x_t / beta)
        got_mean, got_var, got_log_var = q_posterior(x0, x_t, t, schedule)
        assert torch.allclose(got_mean, mean, rtol=1e-10, atol=1e-12), (name, t)
        assert float(got_var) == pytest.approx(var, rel=1e-10)
        assert float(got_log_var) == pytest.approx(math.log(var), rel=1e-10)
    # per-sample t on an image batch
    t = torch.tensor([5, 600])
    mean, var, _ = q_posterior(torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2), t, schedule)
    assert var.shape == (2, 1, 1, 1)
    assert torch.allclose(mean[:, 0, 0, 0], schedule.posterior_mean_coef1[t].float())


# -- exact probability-flow solutions ---------------------------------------------------
class FlowGaussian:
    """E[x_0 | x_t] for x_0 ~ N(μ, s²) under x_t = (1 − t) x_0 + t ε.

    x_t ~ N((1 − t) μ, r(t)²) with r² = (1 − t)² s² + t², so
    E[x_0 | x_t] = μ + (1 − t) s² / r² · (x_t − (1 − t) μ). The flow ODE
    dx/dt = (x − x̂_0)/t then equals m′ + (r′/r)(x − m) with m = (1 − t) μ: it
    keeps (x − m)/r fixed, so from t = 1 (x = ε) it ends at x(0) = μ + s ε.
    """

    parameterization = "flow"

    def __init__(self, mean: float, std: float) -> None:
        self.mean, self.std = mean, std

    def __call__(self, x, level, **_):
        t = level.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        r2 = (1 - t) ** 2 * self.std**2 + t**2
        return self.mean + (1 - t) * self.std**2 / r2 * (x - (1 - t) * self.mean)

    def solution(self, x_start, t_start: float, t_end: float):
        r = lambda t: math.sqrt((1 - t) ** 2 * self.std**2 + t**2)  # noqa: E731
        return (1 - t_end) * self.mean + (x_start - (1 - t_start) * self.mean) * r(t_end) / r(t_start)


def test_gaussian_ode_solution_solves_the_ode():
    den = GaussianDenoiser(0.3, 0.5)
    x = torch.tensor([[-40.0], [3.0], [80.0]], dtype=F64)
    # composition: a → b → c equals a → c; the identity at b = a
    mid = den.ode_solution(x, 80.0, 2.0)
    assert torch.allclose(den.ode_solution(mid, 2.0, 0.0), den.ode_solution(x, 80.0, 0.0), rtol=1e-14)
    assert torch.equal(den.ode_solution(x, 5.0, 5.0), x)
    # dx/dσ = (x − D(x; σ))/σ, by central differences
    for sigma in (0.05, 0.7, 10.0):
        h = sigma * 1e-5
        xs = den.ode_solution(x, 80.0, sigma)
        dx = (den.ode_solution(x, 80.0, sigma + h) - den.ode_solution(x, 80.0, sigma - h)) / (2 * h)
        slope = (xs - den(xs, torch.tensor(sigma, dtype=F64))) / sigma
        assert torch.allclose(dx, slope, rtol=1e-6, atol=1e-9)
    # the Gaussian denoiser is E[x_0 | x] for x_0 ~ N(μ, s²): s²/(s² + σ²) shrinkage
    assert float(den(torch.tensor([[1.3]], dtype=F64), torch.tensor(0.5, dtype=F64))) == pytest.approx(
        0.3 + 0.25 / 0.5 * 1.0)


def test_flow_gaussian_solution_solves_the_flow_ode():
    den = FlowGaussian(0.3, 0.5)
    x = torch.tensor([[-2.0], [0.1], [1.7]], dtype=F64)
    for t in (0.05, 0.5, 0.9):
        h = 1e-6
        xt = den.solution(x, 1.0, t)
        dx = (den.solution(x, 1.0, t + h) - den.solution(x, 1.0, t - h)) / (2 * h)
        slope = (xt - den(xt, torch.tensor([t], dtype=F64).expand(3))) / t
        assert torch.allclose(dx, slope, rtol=1e-6, atol=1e-8)
    assert torch.allclose(den.solution(x, 1.0, 0.0), 0.3 + 0.5 * x)


VE_ORDERS = {"euler": (0.8, 1.3), "ddim": (0.8, 1.3), "heun": (1.7, 2.6), "dpmpp_2m": (1.7, 2.6)}


@pytest.mark.parametrize("sampler", VE_ORDERS)
def test_convergence_order_on_gaussian_data(sampler):
    den = GaussianDenoiser(0.3, 0.5)
    x = 80.0 * torch.randn(32, 1, 2, 2, generator=gen(2), dtype=F64)
    exact = den.ode_solution(x, 80.0, 0.0)
    errors = []
    for steps in (10, 20, 40, 80):
        out = SAMPLERS[sampler].fn(den, x.clone(), karras_sigmas(0.002, 80.0, steps))
        errors.append(float((out - exact).abs().max()))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    low, high = VE_ORDERS[sampler]
    for slope in log2_slopes(errors)[-2:]:
        assert low <= slope <= high, (sampler, errors)
    kwargs = {"eta": 0.0} if sampler == "ddim" else {}
    assert float((SAMPLERS[sampler].fn(den, x.clone(), karras_sigmas(0.002, 80.0, 80), **kwargs)
                  - exact).abs().max()) == errors[-1]


def test_ddim_eta0_is_euler():
    den = GaussianDenoiser(0.3, 0.5)
    x = 80.0 * torch.randn(8, 1, 2, 2, generator=gen(3), dtype=F64)
    levels = karras_sigmas(0.002, 80.0, 15)
    a = SAMPLERS["ddim"].fn(den, x.clone(), levels, eta=0.0)
    b = SAMPLERS["euler"].fn(den, x.clone(), levels)
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


FLOW_ORDERS = {"euler": (0.8, 1.3), "flow_euler": (0.8, 1.3), "heun": (1.7, 2.6)}


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("sampler", FLOW_ORDERS)
def test_convergence_order_on_flow_gaussian(sampler, shift):
    den = FlowGaussian(0.3, 0.5)
    eps = torch.randn(32, 1, 2, 2, generator=gen(4), dtype=F64)
    exact = den.solution(eps, 1.0, 0.0)
    errors = []
    for steps in (10, 20, 40, 80):
        out = SAMPLERS[sampler].fn(den, eps.clone(), flow_times(steps, shift))
        errors.append(float((out - exact).abs().max()))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    low, high = FLOW_ORDERS[sampler]
    for slope in log2_slopes(errors)[-2:]:
        assert low <= slope <= high, (sampler, shift, errors)


def test_flow_denoiser_turns_velocity_into_x0():
    """A network predicting the exact velocity v = (x − x̂_0)/t, wrapped by
    FlowDenoiser, gives back x̂_0, and heun solves the flow exactly enough."""
    exact = FlowGaussian(0.3, 0.5)
    seen = []

    def velocity(x, timestep):
        seen.append(timestep.clone())
        t = timestep / 1000.0
        return (x - exact(x, t)) / t.reshape(-1, 1, 1, 1)

    den = FlowDenoiser(velocity)
    assert den.parameterization == "flow"
    x = torch.randn(4, 1, 2, 2, generator=gen(5), dtype=F64)
    t = torch.tensor([0.2, 0.4, 0.6, 1.0], dtype=F64)
    assert torch.allclose(den(x, t).x0, exact(x, t), rtol=1e-12, atol=1e-12)
    assert torch.equal(seen[-1], t * 1000.0)
    out = SAMPLERS["heun"].fn(den, x.clone(), flow_times(200))
    assert torch.allclose(out, exact.solution(x, 1.0, 0.0), atol=1e-4)


# -- the ideal denoiser ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def four_images() -> torch.Tensor:
    return torch.rand(4, 3, 4, 4, generator=gen(6)) * 2 - 1


def posterior_mean(images, x, scale, spread):
    """E[x_0 | x] over the set, by brute force in float64: w_i ∝ exp(−‖x − s·y_i‖² / 2τ²)."""
    flat = images.flatten(1).double()
    q = x.flatten(1).double()
    d = ((q[:, None] - scale * flat[None]) ** 2).sum(-1)
    return (torch.softmax(-d / (2 * spread**2), 1) @ flat).reshape(x.shape)


@pytest.mark.parametrize("sampler", ["euler", "ddim", "heun", "dpmpp_2m"])
def test_ideal_denoiser_sampling_converges(sampler, four_images):
    """Differences between N and 2N steps shrink at the sampler's order (median
    over the batch: a start near the boundary of two images' basins converges
    late), and the full run to σ = 0 ends on one of the images."""
    den = IdealDenoiser(four_images)
    x = 80.0 * torch.randn(32, 3, 4, 4, generator=gen(7))
    outs = [SAMPLERS[sampler].fn(den, x.clone(), karras_sigmas(0.05, 80.0, n)[:-1])
            for n in (20, 40, 80, 160, 320)]
    diffs = [float((a - b).flatten(1).abs().amax(1).median()) for a, b in zip(outs, outs[1:])]
    assert all(a > b for a, b in zip(diffs, diffs[1:])), diffs
    low, high = {"euler": (0.8, 1.5), "ddim": (0.8, 1.5)}.get(sampler, (1.7, 3.0))
    for slope in log2_slopes(diffs)[-2:]:
        assert low <= slope <= high, (sampler, diffs)
    final = SAMPLERS[sampler].fn(den, x.clone(), karras_sigmas(0.002, 80.0, 40))
    nearest = (final.flatten(1)[:, None] - four_images.flatten(1)[None]).abs().amax(-1).min(1).values
    assert float(nearest.max()) < 1e-4
    # and not all on the same image: the ODE maps noise onto the whole set
    picked = (final.flatten(1)[:, None] - four_images.flatten(1)[None]).abs().amax(-1).argmin(1)
    assert len(set(picked.tolist())) >= 3


def test_ideal_denoiser_limits(four_images):
    den = IdealDenoiser(four_images)
    g = gen(8)
    near = four_images[[2, 0, 3]] + 0.05 * torch.randn(3, 3, 4, 4, generator=g)
    out = den(near, torch.tensor(1e-3))
    assert torch.allclose(out, four_images[[2, 0, 3]], atol=1e-6)
    assert torch.allclose(den(near, torch.tensor(0.0)), four_images[[2, 0, 3]])  # σ = 0 too
    far = 1e6 * torch.randn(3, 3, 4, 4, generator=g)
    mean = four_images.mean(0, keepdim=True).expand(3, -1, -1, -1)
    assert torch.allclose(den(far, torch.tensor(1e6)), mean, atol=1e-4)
    # in between: the softmax-weighted mean, per-sample levels
    x = torch.randn(3, 3, 4, 4, generator=g)
    levels = torch.tensor([0.3, 1.0, 3.0])
    expected = torch.stack([posterior_mean(four_images, x[i:i + 1], 1.0, float(s))[0]
                            for i, s in enumerate(levels)])
    assert torch.allclose(den(x, levels).double(), expected, atol=2e-5)
    assert den(x.double(), levels).dtype == F64


def test_ideal_denoiser_captions(four_images):
    captions = ["a red circle", "a blue circle", "a red square", "a blue square"]
    den = IdealDenoiser(four_images, captions)
    x = torch.randn(2, 3, 4, 4, generator=gen(9))
    huge = torch.tensor(1e6)
    mean = lambda idx: four_images[idx].mean(0).expand(2, -1, -1, -1)  # noqa: E731
    assert torch.allclose(den(x, huge, cond="red"), mean([0, 2]), atol=1e-4)
    assert torch.allclose(den(x, huge, cond="a blue"), mean([1, 3]), atol=1e-4)
    assert torch.allclose(den(x, huge, cond="square"), mean([2, 3]), atol=1e-4)
    assert torch.allclose(den(x, huge, cond=""), mean([0, 1, 2, 3]), atol=1e-4)
    assert torch.allclose(den(x, huge), mean([0, 1, 2, 3]), atol=1e-4)
    # a single match is returned at any level; cond may carry a .text
    for level in (0.01, 1.0, 100.0):
        assert torch.equal(den(x, torch.tensor(level), cond="Blue CIRCLE"),
                           four_images[1].expand(2, -1, -1, -1))
    assert torch.equal(den(x, huge, cond=SimpleNamespace(text="red square")),
                       four_images[2].expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="'green triangle'"):
        den(x, huge, cond="green triangle")
    with pytest.raises(ValueError, match="'red triangle'"):
        den(x, huge, cond="red triangle")
    # without captions the condition is ignored
    assert torch.equal(IdealDenoiser(four_images)(x, huge, cond="green"), IdealDenoiser(four_images)(x, huge))
    with pytest.raises(ValueError, match="one caption per image"):
        IdealDenoiser(four_images, captions[:3])
    with pytest.raises(ValueError, match="non-empty"):
        IdealDenoiser(four_images[:0])


def test_ideal_denoiser_flow(four_images):
    den = IdealDenoiser(four_images, parameterization="flow")
    assert den.parameterization == "flow"
    g = gen(10)
    eps = torch.randn(4, 3, 4, 4, generator=g)
    t = torch.tensor([1e-4, 0.3, 0.7, 1.0])
    x = (1 - t.reshape(-1, 1, 1, 1)) * four_images + t.reshape(-1, 1, 1, 1) * eps
    out = den(x, t)
    assert torch.allclose(out[0], four_images[0], atol=1e-6)  # t → 0: the image itself
    assert torch.allclose(out[3], four_images.mean(0), atol=1e-6)  # t = 1: no information left
    for i in (1, 2):
        expected = posterior_mean(four_images, x[i:i + 1], 1 - float(t[i]), float(t[i]))[0]
        assert torch.allclose(out[i].double(), expected, atol=2e-5)
    # sampling the flow lands on images
    final = SAMPLERS["heun"].fn(den, torch.randn(8, 3, 4, 4, generator=g), flow_times(30, 3.0))
    nearest = (final.flatten(1)[:, None] - four_images.flatten(1)[None]).abs().amax(-1).min(1).values
    assert float(nearest.max()) < 1e-4


# -- guidance on a Gaussian mixture --------------------------------------------------------
class MixtureToy:
    """Two classes, x_0 | y ~ N(μ_y, s_y² I) in D dims, priors π_y; VE denoisers.

    E[x_0 | x, y] = μ_y + s_y²/(s_y² + σ²)(x − μ_y) (a Gaussian denoiser per class);
    E[x_0 | x] = Σ_y p(y | x) E[x_0 | x, y] with p(y | x) ∝ π_y N(x; μ_y, (s_y² + σ²) I).
    """

    parameterization = "ve"

    def __init__(self, dims: int = 2) -> None:
        self.means = torch.stack([torch.linspace(-1.0, 0.5, dims, dtype=F64),
                                  torch.linspace(1.2, -0.3, dims, dtype=F64)])  # (2, D)
        self.stds = torch.tensor([0.4, 0.7], dtype=F64)
        self.priors = torch.tensor([0.3, 0.7], dtype=F64)
        self.calls = 0

    def class_log_posterior(self, x_ve, sigma):
        """log p(y | x) for both classes: (B, 2)."""
        flat = x_ve.flatten(1)  # (B, D)
        var = self.stds[None] ** 2 + sigma.reshape(-1, 1) ** 2  # (B, 2)
        sq = ((flat[:, None] - self.means[None]) ** 2).sum(-1)  # (B, 2)
        log_joint = self.priors.log()[None] - 0.5 * sq / var - 0.5 * flat.shape[1] * var.log()
        return log_joint - log_joint.logsumexp(1, keepdim=True)

    def class_denoiser(self, x, sigma, y):
        shape = (-1, *([1] * (x.ndim - 1)))
        mu = self.means[y].reshape(1, *x.shape[1:])
        shrink = self.stds[y] ** 2 / (self.stds[y] ** 2 + sigma.reshape(shape) ** 2)
        return mu + shrink * (x - mu)

    def __call__(self, x, level, cond=None, **_):
        self.calls += 1
        sigma = level.to(F64).expand(x.shape[0]) if level.ndim == 0 else level.to(F64)
        if cond is not None:
            return self.class_denoiser(x, sigma, cond)
        weights = self.class_log_posterior(x, sigma).exp()  # (B, 2)
        shape = (-1, *([1] * (x.ndim - 1)))
        return sum(weights[:, y].reshape(shape) * self.class_denoiser(x, sigma, y) for y in (0, 1))

    def classifier(self, y):
        """log p(y | x_t) of the VP-scaled x_t = x_ve / √(1 + σ²), differentiable."""
        def log_prob(x_t, sigma):
            x_ve = x_t * (1 + sigma.reshape(-1, *([1] * (x_t.ndim - 1))) ** 2).sqrt()
            return self.class_log_posterior(x_ve, sigma)[:, y]
        return log_prob


def test_mixture_unconditional_is_the_prior_weighted_posterior():
    toy = MixtureToy()
    x = torch.randn(64, 2, generator=gen(11), dtype=F64) * 2
    sigma = torch.tensor(0.8, dtype=F64)
    # Monte-Carlo free check: E[x_0|x] = Σ_y p(y|x) E[x_0|x,y] and the Tweedie
    # identity D(x) = x + σ² ∇ log p(x), with ∇ log p(x) by autograd
    xg = x.clone().requires_grad_(True)
    var = toy.stds ** 2 + sigma**2
    log_px = (toy.priors.log() - ((xg[:, None] - toy.means[None]) ** 2).sum(-1) / (2 * var)
              - var.log()).logsumexp(1)  # D = 2: −(D/2) log var = −log var
    score = torch.autograd.grad(log_px.sum(), xg)[0]
    assert torch.allclose(toy(x, sigma), x + sigma**2 * score, rtol=1e-10, atol=1e-12)
    assert torch.allclose(toy(x, sigma, cond=1), x + sigma**2 * (toy.means[1] - x) / var[1], atol=1e-12)


@pytest.mark.parametrize("y", [0, 1])
def test_cfg_scale_one_is_the_conditional_model(y):
    toy = MixtureToy()
    x = torch.randn(16, 2, generator=gen(12), dtype=F64) * 3
    for sigma in (0.1, 1.0, 10.0):
        level = torch.tensor(sigma, dtype=F64)
        cfg = CFGDenoiser(toy, positive=y, negative=None, scale=1.0)
        toy.calls = 0
        assert torch.equal(cfg(x, level).x0, toy(x, level, cond=y))
        assert toy.calls == 2  # one for cfg (no unconditional pass), one for the comparison
        zero = CFGDenoiser(toy, positive=y, negative=None, scale=0.0)
        assert torch.allclose(zero(x, level).x0, toy(x, level), atol=1e-14)
        guided = CFGDenoiser(toy, positive=y, negative=None, scale=3.5)(x, level).x0
        expected = toy(x, level) + 3.5 * (toy(x, level, cond=y) - toy(x, level))
        assert torch.allclose(guided, expected, atol=1e-12)


@pytest.mark.parametrize("dims_shape", [(2,), (3, 2, 2)])
def test_classifier_guidance_equals_cfg_with_an_exact_classifier(dims_shape):
    """∇ log p(x_t | y) = ∇ log p(x_t) + ∇ log p(y | x_t): with the exact classifier,
    classifier guidance at scale s is CFG at scale g = s (Dhariwal & Nichol
    eq. 14 vs Ho & Salimans eq. 6)."""
    dims = math.prod(dims_shape)
    toy = MixtureToy(dims)
    x = torch.randn(24, *dims_shape, generator=gen(13), dtype=F64) * 1.5
    for y in (0, 1):
        for scale in (0.0, 1.0, 2.0, 7.5):
            guided = ClassifierGuidedDenoiser(toy, toy.classifier(y), scale)
            cfg = CFGDenoiser(toy, positive=y, negative=None, scale=scale)
            for sigma in (0.05, 0.3, 1.0, 4.0, 20.0):
                level = torch.tensor(sigma, dtype=F64)
                assert torch.allclose(guided(x, level).x0, cfg(x, level).x0, rtol=0, atol=1e-5), \
                    (y, scale, sigma)
    # per-sample levels
    level = torch.tensor([0.1, 1.0, 10.0] * 8, dtype=F64)
    a = ClassifierGuidedDenoiser(toy, toy.classifier(1), 3.0)(x, level).x0
    b = CFGDenoiser(toy, positive=1, negative=None, scale=3.0)(x, level).x0
    assert torch.allclose(a, b, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="diffusion"):
        ClassifierGuidedDenoiser(SimpleNamespace(parameterization="flow"), toy.classifier(0), 1.0)


def test_guidance_rescale():
    toy = MixtureToy(48)
    x = torch.randn(6, 3, 4, 4, generator=gen(14), dtype=F64) * 2
    level = torch.tensor([0.2, 0.5, 1.0, 2.0, 5.0, 9.0], dtype=F64)
    plain = CFGDenoiser(toy, positive=0, negative=None, scale=7.0)(x, level).x0
    assert torch.equal(CFGDenoiser(toy, 0, None, 7.0, rescale=0.0)(x, level).x0, plain)
    cond = toy(x, level, cond=0)
    eps_cond = predicted_noise("ve", x, cond, level)
    eps_plain = predicted_noise("ve", x, plain, level)
    dims = [1, 2, 3]
    assert not torch.allclose(eps_plain.std(dim=dims), eps_cond.std(dim=dims), rtol=1e-3)
    full = CFGDenoiser(toy, 0, None, 7.0, rescale=1.0)(x, level).x0
    eps_full = predicted_noise("ve", x, full, level)
    assert torch.allclose(eps_full.std(dim=dims), eps_cond.std(dim=dims), rtol=1e-10)
    # the rescale only rescales: same direction as the plain guided ε
    ratio = eps_full.flatten(1) / eps_plain.flatten(1)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-9)
    half = CFGDenoiser(toy, 0, None, 7.0, rescale=0.5)(x, level).x0
    eps_half = predicted_noise("ve", x, half, level)
    assert torch.allclose(eps_half, 0.5 * eps_full + 0.5 * eps_plain, rtol=1e-10, atol=1e-12)


def test_guidance_rescale_flow(four_images):
    den = IdealDenoiser(four_images, ["red circle", "blue circle", "red square", "blue square"],
                        parameterization="flow")
    x = torch.randn(3, 3, 4, 4, generator=gen(15))
    t = torch.tensor([0.3, 0.6, 0.9])
    cond = den(x, t, cond="red")
    full = CFGDenoiser(den, "red", "", 5.0, rescale=1.0)(x, t).x0
    dims = [1, 2, 3]
    eps_cond, eps_full = predicted_noise("flow", x, cond, t), predicted_noise("flow", x, full, t)
    assert torch.allclose(eps_full.std(dim=dims), eps_cond.std(dim=dims), rtol=1e-4)
    assert not torch.allclose(full, CFGDenoiser(den, "red", "", 5.0)(x, t).x0, atol=1e-3)


# -- the sampler protocol --------------------------------------------------------------------
class Recorder:
    """Wraps a denoiser, keeping every (x, level, x̂_0) it is called with."""

    def __init__(self, model) -> None:
        self.model = model
        self.parameterization = model.parameterization
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __call__(self, x, level, **extra):
        out = self.model(x, level, **extra)
        self.calls.append((x.clone(), level.clone(), out.clone()))
        return out


def sampler_setups():
    """(name, denoiser, levels, start x, kwargs) for every registered sampler."""
    g = gen(16)
    for name, info in SAMPLERS.items():
        kwargs = {"generator": gen(17)}
        if "ve" in info.parameterizations:
            levels = karras_sigmas(0.002, 80.0, 8)
            yield name, GaussianDenoiser(0.2, 0.6), levels, float(levels[0]) * torch.randn(
                3, 2, 4, 4, generator=g, dtype=F64), kwargs
        if "flow" in info.parameterizations:
            yield f"{name}/flow", FlowGaussian(0.2, 0.6), flow_times(8, 3.0), torch.randn(
                3, 2, 4, 4, generator=g, dtype=F64), kwargs


SETUPS = list(sampler_setups())
IDS = [s[0] for s in SETUPS]


def test_every_sampler_is_covered():
    names = {s[0].split("/")[0] for s in SETUPS}
    assert names == set(SAMPLERS)
    # every stochastic sampler has a seeding test below
    assert {name for name, info in SAMPLERS.items() if info.stochastic} <= {n for n, _ in STOCHASTIC}


@pytest.mark.parametrize("name,den,levels,x,kwargs", SETUPS, ids=IDS)
def test_callback_sees_every_step(name, den, levels, x, kwargs):
    model = Recorder(den)
    infos: list[StepInfo] = []
    latest = []  # the model call each report follows

    def callback(info):
        infos.append(info)
        latest.append(model.calls[-1])

    out = SAMPLERS[name.split("/")[0]].fn(model, x.clone(), levels, callback=callback, **kwargs)
    total = len(levels) - 1
    assert [i.index for i in infos] == list(range(total))
    assert all(i.total == total for i in infos)
    assert [i.level for i in infos] == levels[:-1].tolist()
    assert all(isinstance(i.level, float) for i in infos)
    for info, (x_in, level, x0) in zip(infos, latest):
        # the report is about the model call just made, at the step's own level
        assert torch.equal(level, torch.full_like(level, info.level))
        assert torch.equal(info.x, x_in) and torch.equal(info.x0, x0)
        if model.parameterization == "flow":
            rebuilt = (1 - info.level) * info.x0 + info.level * info.eps
        else:
            rebuilt = info.x0 + info.level * info.eps
        assert torch.allclose(rebuilt, info.x, rtol=1e-10, atol=1e-10)
    assert len(model.calls) == (2 * total - 1 if name.startswith("heun") else total)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name,den,levels,x,kwargs", SETUPS, ids=IDS)
def test_callback_stop_ends_at_once(name, den, levels, x, kwargs):
    model = Recorder(den)
    at_stop = {}

    def callback(info):
        if info.index == 3:
            at_stop["calls"] = len(model.calls)
            at_stop["x"] = info.x
            return STOP
        return None

    out = SAMPLERS[name.split("/")[0]].fn(model, x.clone(), levels, callback=callback, **kwargs)
    assert len(model.calls) == at_stop["calls"]  # no model call after STOP
    expected_calls = 4 if name.split("/")[0] not in ("heun",) else 2 * 3 + 1
    assert len(model.calls) == expected_calls
    assert torch.equal(out, at_stop["x"])  # the current x, not a further step


@pytest.mark.parametrize("name,den,levels,x,kwargs", SETUPS, ids=IDS)
def test_callback_exception_propagates(name, den, levels, x, kwargs):
    class Cancelled(Exception):
        pass

    model = Recorder(den)

    def callback(info):
        if info.index == 1:
            raise Cancelled("stop now")

    with pytest.raises(Cancelled, match="stop now"):
        SAMPLERS[name.split("/")[0]].fn(model, x.clone(), levels, callback=callback, **kwargs)
    assert len(model.calls) == (2 if not name.startswith("heun") else 3)


STOCHASTIC = [("ddpm", {}), ("ddpm", {"variance": "fixed_large"}), ("ddim", {"eta": 1.0}),
              ("ddim", {"eta": 0.5}), ("euler_ancestral", {}), ("euler_ancestral", {"eta": 0.5})]


@pytest.mark.parametrize("name,options", STOCHASTIC)
def test_stochastic_samplers_are_seeded(name, options):
    den = GaussianDenoiser(0.2, 0.6)
    levels = karras_sigmas(0.002, 80.0, 10)
    x = 80.0 * torch.randn(4, 2, 4, 4, generator=gen(18))
    run = lambda seed: SAMPLERS[name].fn(den, x.clone(), levels, generator=gen(seed), **options)  # noqa: E731
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)
    with pytest.raises(ValueError, match="torch.Generator"):
        SAMPLERS[name].fn(den, x.clone(), levels, **options)


def test_ddim_eta1_is_ddpm_fixed_small():
    """FACTS: DDIM with η = 1 has exactly DDPM's fixed-small variance (and mean)."""
    den = GaussianDenoiser(0.2, 0.6)
    levels = karras_sigmas(0.002, 80.0, 12)
    x = 80.0 * torch.randn(4, 2, 4, 4, generator=gen(19), dtype=F64)
    a = SAMPLERS["ddim"].fn(den, x.clone(), levels, generator=gen(3), eta=1.0)
    b = SAMPLERS["ddpm"].fn(den, x.clone(), levels, generator=gen(3))
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)


def test_ddpm_learned_variance():
    schedule = make_schedule("linear")
    levels = sampling_sigmas(schedule, 10, "leading")
    x = float(levels[0]) * torch.randn(2, 3, 4, 4, generator=gen(20), dtype=F64)

    def network(v):
        return lambda x_t, t: torch.cat([0.5 * x_t, torch.full_like(x_t, v)], 1)

    runs = {}
    for v in (-1.0, 1.0):
        den = DiscreteTimeDenoiser(network(v), schedule, learned_variance=True)
        infos = []
        runs[v] = SAMPLERS["ddpm"].fn(den, x.clone(), levels, generator=gen(4), variance="learned",
                                      callback=infos.append)
        assert [i.index for i in infos] == list(range(10))
    plain = DiscreteTimeDenoiser(lambda x_t, t: 0.5 * x_t, schedule)
    small = SAMPLERS["ddpm"].fn(plain, x.clone(), levels, generator=gen(4), variance="fixed_small")
    large = SAMPLERS["ddpm"].fn(plain, x.clone(), levels, generator=gen(4), variance="fixed_large")
    assert torch.allclose(runs[-1.0], small, rtol=1e-10, atol=1e-10)  # v = −1: β̃
    assert torch.allclose(runs[1.0], large, rtol=1e-10, atol=1e-10)  # v = +1: β
    assert not torch.allclose(small, large, atol=1e-3)
    with pytest.raises(ValueError, match="learned"):
        SAMPLERS["ddpm"].fn(GaussianDenoiser(0.0, 1.0), x.clone(), levels, generator=gen(4),
                            variance="learned")
    with pytest.raises(ValueError, match="learned"):
        SAMPLERS["ddpm"].fn(plain, x.clone(), levels, generator=gen(4), variance="learned")
    with pytest.raises(ValueError, match="unknown variance 'tiny'"):
        SAMPLERS["ddpm"].fn(plain, x.clone(), levels, generator=gen(4), variance="tiny")


@pytest.mark.parametrize("spacing", ["trailing", "karras", "linspace"])
def test_every_ve_sampler_runs_from_a_zero_snr_start(spacing):
    schedule = make_schedule("scaled_linear", zero_snr=True)
    levels = sampling_sigmas(schedule, 12, spacing)
    assert float(levels[0]) == pytest.approx(schedule.sigma_max, rel=1e-12)
    den = GaussianDenoiser(0.2, 0.6)
    x = float(levels[0]) * torch.randn(64, 1, 4, 4, generator=gen(21))
    for name, info in SAMPLERS.items():
        if "ve" not in info.parameterizations:
            continue
        out = info.fn(den, x.clone(), levels, generator=gen(22))
        assert torch.isfinite(out).all(), (name, spacing)
        # roughly samples of N(0.2, 0.6²), 1024 values: nothing blew up from σ ≈ 4519
        # (12 steps are coarse here: the spread comes out between 0.3 and 0.9)
        assert abs(float(out.mean()) - 0.2) < 0.1 and 0.25 < float(out.std()) < 1.0, (name, spacing)


# -- editing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["euler", "ddpm", "heun", "dpmpp_2m", "euler_ancestral"])
def test_inpainting_keeps_the_known_region(sampler, four_images):
    den = IdealDenoiser(four_images)
    g = gen(23)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 2:] = 1  # generate the right half
    known = four_images[1:2].expand(6, -1, -1, -1).clone()
    noise = torch.randn(6, 3, 4, 4, generator=g)
    inpaint = InpaintDenoiser(den, known, mask, noise)
    assert inpaint.parameterization == "ve"
    x = 80.0 * torch.randn(6, 3, 4, 4, generator=g)
    out = SAMPLERS[sampler].fn(inpaint, x, karras_sigmas(0.002, 80.0, 20), generator=gen(24))
    keep = (mask == 0).expand_as(out)
    assert torch.equal(out[keep], known[keep])
    # the generated half is the right half of one of the images
    right = out[..., 2:].flatten(1)
    halves = four_images[..., 2:].flatten(1)
    assert float((right[:, None] - halves[None]).abs().amax(-1).min(1).values.max()) < 1e-4


def test_inpaint_denoiser_model_input():
    seen = {}

    class Spy:
        parameterization = "flow"

        def __call__(self, x, level, **_):
            seen["x"] = x.clone()
            return torch.full_like(x, 7.0)

    known, noise = torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    out = InpaintDenoiser(Spy(), known, mask, noise)(torch.zeros(1, 1, 2, 2), torch.tensor([0.25])).x0
    # known region of the input: (1 − t)·1 + t·3 = 1.5; elsewhere the sampler's x
    assert seen["x"].flatten().tolist() == [0.0, 1.5, 1.5, 0.0]
    assert out.flatten().tolist() == [7.0, 1.0, 1.0, 7.0]


def test_noised_to_level():
    x0 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    noise = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    level = torch.tensor([0.5, 2.0])
    assert noised_to_level(x0, noise, level, "ve").tolist() == [[6.0, 12.0], [63.0, 84.0]]
    t = torch.tensor([0.25, 1.0])
    assert noised_to_level(x0, noise, t, "flow").tolist() == [[3.25, 6.5], [30.0, 40.0]]
    assert torch.equal(noised_to_level(x0, noise, 0.0, "flow"), x0)
    assert torch.equal(noised_to_level(x0, noise, 0.0, "ve"), x0)
    # a VE level σ is the VP x_t = √ᾱ x_0 + √(1 − ᾱ) ε scaled by √(1 + σ²)
    schedule = make_schedule("scaled_linear")
    sigma = float(schedule.sigmas[400])
    ve = noised_to_level(x0.double(), noise.double(), sigma, "ve")
    vp = q_sample(x0.double(), 400, schedule, noise.double())
    assert torch.allclose(ve / math.sqrt(1 + sigma**2), vp, rtol=1e-12)


@pytest.mark.parametrize("name", [n for n, i in SAMPLERS.items() if "ve" in i.parameterizations])
def test_img2img_strength_zero_gives_the_input_back(name, four_images):
    den = Recorder(IdealDenoiser(four_images))
    levels = karras_sigmas(0.002, 80.0, 10)
    noise = torch.randn(4, 3, 4, 4, generator=gen(25))
    start = img2img_start(10, 0.0)
    x = noised_to_level(four_images, noise, levels[start], "ve")
    out = SAMPLERS[name].fn(den, x, levels[start:], generator=gen(26))
    assert torch.equal(out, four_images) and not den.calls
    # strength 0.5: half the steps, from the input noised to the middle level
    start = img2img_start(10, 0.5)
    x = noised_to_level(four_images, noise, levels[start], "ve")
    out = SAMPLERS[name].fn(den, x, levels[start:], generator=gen(26))
    assert float(den.calls[0][1][0]) == pytest.approx(float(levels[5]), rel=1e-6)
    assert len(den.calls) == (9 if name == "heun" else 5)
    assert torch.isfinite(out).all()


# -- noise --------------------------------------------------------------------------------------
def test_initial_noise():
    a = initial_noise(42, (2, 4, 8, 8))
    assert a.dtype == torch.float32 and a.shape == (2, 4, 8, 8) and a.device.type == "cpu"
    assert torch.equal(a, initial_noise(42, [2, 4, 8, 8]))
    assert torch.equal(a, torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(42)))
    assert not torch.equal(a, initial_noise(43, (2, 4, 8, 8)))
    b = initial_noise(42, (2, 4, 8, 8), dtype=F64)
    assert b.dtype == F64 and torch.equal(b, a.double())  # drawn in float32, then converted


def test_samplers_hand_table_levels_over_exactly_so_networks_get_whole_timesteps():
    """Regression: levels used to reach the denoiser in x's float32, so the
    network saw timesteps like 320.99997 instead of 321."""
    from core.diffusion.denoisers import DiscreteTimeDenoiser
    from core.diffusion.samplers import SAMPLERS
    from core.diffusion.schedules import make_schedule
    from core.diffusion.timesteps import sampling_sigmas

    schedule = make_schedule("scaled_linear")
    seen = []

    def network(x_t, t, **_):
        seen.extend(t.tolist())
        return torch.zeros_like(x_t)

    model = DiscreteTimeDenoiser(network, schedule)
    levels = sampling_sigmas(schedule, 7, "linspace")
    for name in ("euler", "heun", "ddim", "dpmpp_2m"):
        seen.clear()
        SAMPLERS[name].fn(model, torch.randn(2, 1, 4, 4) * levels[0], levels)
        assert seen and all(t == round(t) for t in seen), (name, seen)

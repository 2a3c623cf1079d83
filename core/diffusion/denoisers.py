"""Model wrappers: every network becomes one *denoiser* D(x, level) → x̂_0
(with the model's learned variance alongside, when it has one: :class:`Denoised`).

Samplers see only this interface (k-diffusion's ``external.py`` habit), so
they never branch on what the network predicts. Two parameterizations of
the noisy sample exist, and a denoiser says which one it speaks:

- ``"ve"`` (diffusion models): x = x_0 + σ ε, level σ ∈ [0, ∞). A network
  trained on the variance-preserving x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε sees
  x_t = x / √(1 + σ²) and the timestep whose σ_t = σ (Karras et al. 2022, §2).
- ``"flow"`` (flow matching): x = (1 − t) x_0 + t ε, level t ∈ [0, 1]
  (Lipman et al. 2023; Esser et al. 2024).

Prediction conversions, in VP notation with a = √ᾱ_t and s = √(1 − ᾱ_t):

    ε-prediction   x̂_0 = (x_t − s ε̂) / a          (Ho et al. 2020, eq. 15)
    v-prediction   x̂_0 = a x_t − s v̂              (Salimans & Ho 2022, §4; v = a ε − s x_0)
    x0-prediction  x̂_0 = network output
    velocity       x̂_0 = x − t v̂                  (flow: v = ε − x_0)
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

import torch

from core.diffusion.registry import PARAMETERIZATIONS  # noqa: F401  (re-exported)
from core.diffusion.schedules import Schedule

PREDICTIONS = ("epsilon", "v_prediction", "sample")


class Denoised(NamedTuple):
    """What a denoiser returns: x̂_0 and, from a model trained with a learned
    variance, its interpolation v ∈ [−1, 1] of the reverse-process
    log-variance, Σ = exp(v' log β + (1 − v') log β̃) with v' = (v + 1)/2
    (Nichol & Dhariwal 2021, eq. 15). Every wrapper (guidance, inpainting,
    LoRA) hands the variance on, so DDPM can use it whatever wraps the model.
    """

    x0: torch.Tensor  # (B, C, H, W)
    variance: torch.Tensor | None = None  # (B, C, H, W) v, or None


class Denoiser(Protocol):
    """What every sampler calls: ``model(x, level, **extra)`` → :class:`Denoised`.

    A denoiser without a variance (closed-form ones, test fakes) may return
    x̂_0 alone; :func:`as_denoised` reads both forms.
    """

    parameterization: str

    def __call__(self, x: torch.Tensor, level: torch.Tensor,
                 **extra: Any) -> Denoised | torch.Tensor: ...


def as_denoised(result: Denoised | torch.Tensor) -> Denoised:
    """A denoiser's result as :class:`Denoised` (a bare tensor is x̂_0 without a variance)."""
    return result if isinstance(result, Denoised) else Denoised(result)


def expand_level(level, x: torch.Tensor) -> torch.Tensor:
    """A level as a (B,) tensor in x's dtype and device."""
    level = torch.as_tensor(level, dtype=x.dtype, device=x.device)
    return level.expand(x.shape[0]) if level.ndim == 0 else level


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (x.ndim - 1)))  # (B, 1, 1, 1)


# -- the state at σ = ∞ ---------------------------------------------------------------
# At ᾱ = 0 (zero terminal SNR, Lin et al. 2023) the VE sample x_0 + σ ε is
# infinite; a sampler that starts there carries its limit in the VP scale,
# x / √(1 + σ²) → x_T = ε, instead. The helpers below read x that way at σ = ∞.
def to_model_scale(parameterization: str, x: torch.Tensor, level) -> torch.Tensor:
    """x as the network (and a person) sees it: VP-scaled for ``ve``, as is for
    ``flow``. At σ = ∞, x already is the VP sample x_T."""
    if parameterization == "flow":
        return x
    sigma = _per_sample(expand_level(level, x), x)
    scale = (sigma**2 + 1).sqrt()
    return x / torch.where(torch.isinf(sigma), torch.ones_like(scale), scale)


def predicted_noise(parameterization: str, x, x0, level) -> torch.Tensor:
    """ε̂ implied by a denoised estimate (for previews and for guidance rescale).
    At σ = ∞ the VP sample is pure noise: ε̂ = x_T whatever x̂_0 is."""
    level = _per_sample(expand_level(level, x), x)
    if parameterization == "flow":
        return (x - (1 - level) * x0) / level
    return torch.where(torch.isinf(level), x, (x - x0) / level)


def x0_from_noise(parameterization: str, x, eps, level) -> torch.Tensor:
    """The inverse of :func:`predicted_noise` (not defined at σ = ∞, where ε̂ says
    nothing about x_0)."""
    level = _per_sample(expand_level(level, x), x)
    if parameterization == "flow":
        return (x - level * eps) / (1 - level)
    return x - level * eps


class DiscreteTimeDenoiser:
    """Wraps a network trained on a discrete VP schedule: ``network(x_t, t, **extra)``.

    ``prediction`` is one of :data:`PREDICTIONS`. With ``learned_variance``
    the network returns 2C channels, the second half being Nichol & Dhariwal's
    v ∈ [−1, 1] that interpolates the reverse-process log-variance; it comes
    back as :attr:`Denoised.variance`.
    ``clip_sample`` clamps x̂_0 to [−1, 1], as DDPM and Improved DDPM sample
    pixel-space models (diffusers' ``clip_sample``): near t = T, where ᾱ_t ≈ 0,
    x̂_0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t multiplies any error in ε̂ by 1/√ᾱ_t
    (about 6000 on the cosine schedule's last step) and would carry it into
    every later step. Latent models leave it off: their data is not bounded.

    At σ = ∞ (ᾱ_T = 0 of a zero-terminal-SNR schedule) x is the VP sample x_T
    and the network is called at t = T − 1: a v-model then gives x̂_0 = −v̂
    exactly and an x0-model its output; an ε-model cannot (x̂_0 = (x_T − ε̂)/0).
    """

    parameterization = "ve"

    def __init__(
        self,
        network: Callable[..., torch.Tensor],
        schedule: Schedule,
        prediction: str = "epsilon",
        learned_variance: bool = False,
        clip_sample: bool = False,
    ) -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")
        self.network = network
        self.schedule = schedule
        self.prediction = prediction
        self.learned_variance = learned_variance
        self.clip_sample = clip_sample

    def __call__(self, x: torch.Tensor, level, **extra: Any) -> Denoised:
        sigma64 = torch.as_tensor(level).detach().to("cpu", torch.float64).expand(x.shape[0])
        pure_noise = _per_sample(torch.isinf(sigma64).to(x.device), x)  # (B, 1, 1, 1): ᾱ = 0
        if self.prediction == "epsilon" and bool(pure_noise.any()):
            raise ValueError(
                "an ε-prediction model cannot predict x̂_0 at ᾱ_T = 0 (zero terminal SNR; Lin "
                "et al. 2023 use v-prediction): turn zero_snr off on the Schedule node, or use "
                "a sampler that starts at σ_max (euler, euler_ancestral, heun, dpmpp_2m)")
        sigma = sigma64.to(device=x.device, dtype=x.dtype)  # (B,)
        a = _per_sample((sigma64**2 + 1).rsqrt().to(device=x.device, dtype=x.dtype), x)  # √ᾱ_t
        s = torch.where(pure_noise, torch.ones_like(a), _per_sample(sigma, x) * a)  # √(1 − ᾱ_t)
        x_t = torch.where(pure_noise, x, x * a)  # (B, C, H, W) in the network's VP scale
        # The timestep from the float64 level, so table levels give whole timesteps.
        t = self.schedule.sigma_to_t(sigma64).to(device=x.device, dtype=x.dtype)  # (B,)
        out = self.network(x_t, t, **extra)
        variance = None
        if self.learned_variance:
            out, variance = out.split(x.shape[1], dim=1)  # (B, C, H, W) each
        if self.prediction == "epsilon":
            x0 = x - _per_sample(sigma, x) * out  # x = x_0 + σ ε
        elif self.prediction == "v_prediction":
            x0 = a * x_t - s * out  # Salimans & Ho 2022, §4
        else:
            x0 = out
        return Denoised(x0.clamp(-1, 1) if self.clip_sample else x0, variance)


class FlowDenoiser:
    """Wraps a flow-matching network ``network(x_t, t · timestep_scale, **extra) -> v̂``."""

    parameterization = "flow"

    def __init__(self, network: Callable[..., torch.Tensor], timestep_scale: float = 1000.0):
        self.network = network
        self.timestep_scale = timestep_scale

    def __call__(self, x: torch.Tensor, level, **extra: Any) -> Denoised:
        t = expand_level(level, x)  # (B,)
        velocity = self.network(x, t * self.timestep_scale, **extra)
        return Denoised(x - _per_sample(t, x) * velocity)  # x̂_0 = x_t − t v̂

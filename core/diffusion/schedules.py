"""Noise schedules: the β_t of the forward process and everything derived from it.

Notation (Ho et al. 2020, "DDPM"; Nichol & Dhariwal 2021, "Improved DDPM"),
with t an index 0 … T−1 as in diffusers (the papers count 1 … T):

    betas[t]            β_t          variance added by step t of q(x_t | x_{t−1})
    alphas[t]           α_t = 1 − β_t
    alphas_cumprod[t]   ᾱ_t = ∏_{s≤t} α_s   (DDPM eq. 4: q(x_t | x_0) = N(√ᾱ_t x_0, (1−ᾱ_t) I))
    sigmas[t]           σ_t = √((1−ᾱ_t)/ᾱ_t)  the noise level of x_t / √ᾱ_t = x_0 + σ_t ε
                                             (Karras et al. 2022, the "VE" view)
    snr[t]              SNR_t = ᾱ_t / (1−ᾱ_t) = 1/σ_t²
    posterior_variance  β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t) · β_t         (DDPM eq. 7)
    posterior_mean_coef1/2  μ̃_t = coef1 · x_0 + coef2 · x_t      (DDPM eq. 7)

Every table is float64 and computed once, when the schedule is built (the
habit of improved-diffusion's ``GaussianDiffusion``). Names are permanent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from core.diffusion.registry import MAX_TIMESTEPS, SCHEDULE_NAMES

#: What ᾱ_T becomes where a zero-terminal-SNR schedule is sampled along σ:
#: σ_T = ∞ cannot start the Euler family, so their first noise level is
#: clamped here (the same value ComfyUI uses). DDIM and DDPM start at ᾱ_T = 0
#: exactly (``core.sampling``); the tables themselves keep ᾱ_T = 0 exactly.
ZERO_SNR_SAMPLING_ALPHA_BAR = 4.8973451890853435e-08

# Why a schedule has at most MAX_TIMESTEPS (5000) timesteps: the β end points
# are fixed (chosen for T = 1000), so ᾱ_T = ∏(1 − β_t) shrinks like
# exp(−T·mean β). At T = 5000 the linear schedule's σ_max is already 1e11
# (2e13 rescaled to zero SNR); at 10 000 it is 1e22, whose square overflows
# float32 (Heun then gives inf), and at 100 000 ᾱ_T underflows float64 to 0
# (σ_max = inf; DPM++ 2M's log σ fails with "math domain error").


@dataclass(frozen=True, eq=False)
class Schedule:
    """A discrete noise schedule of T steps and its precomputed tables."""

    name: str
    betas: torch.Tensor  # (T,) float64
    zero_snr: bool = False
    alphas: torch.Tensor = field(init=False)
    alphas_cumprod: torch.Tensor = field(init=False)
    alphas_cumprod_prev: torch.Tensor = field(init=False)
    sigmas: torch.Tensor = field(init=False)
    log_sigmas: torch.Tensor = field(init=False)
    snr: torch.Tensor = field(init=False)
    posterior_variance: torch.Tensor = field(init=False)
    posterior_log_variance_clipped: torch.Tensor = field(init=False)
    posterior_mean_coef1: torch.Tensor = field(init=False)
    posterior_mean_coef2: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        betas = self.betas.to(torch.float64)
        if betas.ndim != 1 or len(betas) < 2:
            raise ValueError("a schedule needs at least two betas")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("every beta must lie in (0, 1]")
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        put("betas", betas)
        # q(x_t | x_{t−1}) and its closed form q(x_t | x_0).
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        put("alphas", alphas)
        put("alphas_cumprod", alphas_cumprod)
        put("alphas_cumprod_prev", torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]]))
        # The VE noise level and the signal-to-noise ratio.
        put("sigmas", ((1 - alphas_cumprod) / alphas_cumprod).sqrt())
        put("log_sigmas", self.sigmas.log())
        put("snr", alphas_cumprod / (1 - alphas_cumprod))
        # The posterior q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I), DDPM eq. 6–7.
        prev = self.alphas_cumprod_prev
        variance = betas * (1 - prev) / (1 - alphas_cumprod)
        put("posterior_variance", variance)
        # β̃_0 = 0: clip the log at β̃_1, as improved-diffusion does.
        put("posterior_log_variance_clipped", torch.cat([variance[1:2], variance[1:]]).log())
        put("posterior_mean_coef1", betas * prev.sqrt() / (1 - alphas_cumprod))
        put("posterior_mean_coef2", (1 - prev) * alphas.sqrt() / (1 - alphas_cumprod))

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        """The largest finite noise level a sampler may start from."""
        top = float(self.sigmas[-1])
        if math.isinf(top):
            clamp = math.sqrt((1 - ZERO_SNR_SAMPLING_ALPHA_BAR) / ZERO_SNR_SAMPLING_ALPHA_BAR)
            below, lower = float(self.sigmas[-2]), float(self.sigmas[-3])
            if clamp > below:
                return clamp
            # Where the last finite σ already exceeds the clamp (linear and sigmoid
            # rescaled to zero SNR: σ_{T−2} ≈ 15 400), continue the table
            # geometrically instead, so σ stays strictly increasing in t.
            return below * below / lower
        return top

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """The (fractional) timestep whose noise level is ``sigma``: linear
        interpolation in log σ between table entries (k-diffusion's
        ``DiscreteSchedule``); exact for σ values taken from the table."""
        log_sigmas = self.log_sigmas.clamp(max=math.log(self.sigma_max))
        log_sigma = torch.as_tensor(sigma, dtype=torch.float64).clamp(min=1e-30).log()
        log_sigma = log_sigma.clamp(float(log_sigmas[0]), float(log_sigmas[-1]))
        high = torch.searchsorted(log_sigmas, log_sigma.reshape(-1)).clamp(1, len(log_sigmas) - 1)
        low = high - 1
        frac = (log_sigma.reshape(-1) - log_sigmas[low]) / (log_sigmas[high] - log_sigmas[low])
        return (low + frac.clamp(0, 1)).reshape(log_sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """The noise level at a (fractional) timestep, interpolating log σ."""
        t = torch.as_tensor(t, dtype=torch.float64).clamp(0, self.num_timesteps - 1)
        low = t.floor().long()
        high = (low + 1).clamp(max=self.num_timesteps - 1)
        frac = t - low
        log_sigmas = self.log_sigmas.clamp(max=math.log(self.sigma_max))
        return ((1 - frac) * log_sigmas[low] + frac * log_sigmas[high]).exp()


# -- named schedules ------------------------------------------------------------
def linear_betas(timesteps: int = 1000, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    """Ho et al. 2020, §4: β linear from 1e-4 to 0.02 (for T = 1000)."""
    return torch.linspace(start, end, timesteps, dtype=torch.float64)


def scaled_linear_betas(
    timesteps: int = 1000, start: float = 0.00085, end: float = 0.012
) -> torch.Tensor:
    """Stable Diffusion's schedule: √β linear (what SD's code calls "linear")."""
    return torch.linspace(start**0.5, end**0.5, timesteps, dtype=torch.float64) ** 2


def cosine_betas(timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s))·π/2);
    β_t = 1 − ᾱ(t+1)/ᾱ(t), capped at 0.999 to avoid a singularity at t = T."""
    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / timesteps) / alpha_bar(i / timesteps), max_beta)
        for i in range(timesteps)
    ]
    return torch.tensor(betas, dtype=torch.float64)


def sigmoid_betas(timesteps: int = 1000, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    """β following a sigmoid over [−6, 6] between ``start`` and ``end`` (GeoDiff;
    diffusers' ``sigmoid``): slow at both ends, fast in the middle."""
    ramp = torch.linspace(-6, 6, timesteps, dtype=torch.float64)
    return torch.sigmoid(ramp) * (end - start) + start


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024, Algorithm 1: shift and scale √ᾱ so that ᾱ_T = 0
    (the last step is pure noise) while ᾱ_0 stays what it was."""
    sqrt_ab = torch.cumprod(1 - betas.to(torch.float64), dim=0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    alphas_cumprod = sqrt_ab**2
    alphas = torch.cat([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    return 1 - alphas


_BETAS = {
    "linear": linear_betas,
    "scaled_linear": scaled_linear_betas,
    "cosine": cosine_betas,
    "sigmoid": sigmoid_betas,
}


def make_schedule(name: str, timesteps: int = 1000, zero_snr: bool = False) -> Schedule:
    """A named schedule of ``timesteps`` steps, optionally rescaled to zero terminal SNR."""
    if name not in _BETAS:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")
    if timesteps < 2:
        raise ValueError("a schedule needs at least 2 timesteps")
    if timesteps > MAX_TIMESTEPS:
        raise ValueError(f"a schedule has at most {MAX_TIMESTEPS} timesteps, not {timesteps}: far "
                         "beyond 1000, the schedules' fixed β end points drive ᾱ_T to 0")
    betas = _BETAS[name](timesteps)
    if zero_snr:
        betas = rescale_zero_terminal_snr(betas)
    return Schedule(name=name, betas=betas, zero_snr=zero_snr)

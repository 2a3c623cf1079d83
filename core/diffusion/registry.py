"""The one list of schedule, spacing and sampler names, and each sampler's options.

The Sampler and Schedule nodes, the command line and the GUI read their
choices from here, so a new sampler is one entry in :data:`SAMPLERS` (and its
function): it then appears in the node's choices, the node passes it the
options it declares, and ``diffusion-workbench eval --sampler`` accepts it.

Names are permanent (add, never rename; keep aliases). This module imports
no torch: the node catalogue is built from it without loading torch. A
sampler's function is named by ``"module:function"`` and imported on first use.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

#: Named β schedules (``core.diffusion.schedules``).
SCHEDULE_NAMES = ("linear", "scaled_linear", "cosine", "sigmoid")

#: The most timesteps T a named schedule may have (``core.diffusion.schedules``
#: says why); the Schedule node's range.
MAX_TIMESTEPS = 5000

#: The Schedule node's name for a flow-matching time grid (it has no β table).
FLOW_SCHEDULE = "flow"

#: How N sampling steps are picked from T timesteps (``core.diffusion.timesteps``).
SPACINGS = ("leading", "trailing", "linspace", "karras")

#: What a denoiser can speak (``core.diffusion.denoisers``).
PARAMETERIZATIONS = ("ve", "flow")


@dataclass(frozen=True)
class SamplerOption:
    """One setting a sampler takes: a keyword argument of its function, shown
    as a field of the Sampler node (``field``, by default the keyword itself)."""

    keyword: str
    default: float | str
    tooltip: str
    field: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    @property
    def node_field(self) -> str:
        return self.field or self.keyword

    def problem(self, value: Any) -> str | None:
        """Why ``value`` cannot be this option, or None."""
        if self.choices is not None:
            return None if value in self.choices else f"one of {', '.join(self.choices)}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return "a number"
        if self.minimum is not None and value < self.minimum or \
                self.maximum is not None and value > self.maximum:
            return f"a number from {self.minimum:g} to {self.maximum:g}"
        return None


@dataclass(frozen=True)
class SamplerInfo:
    """A registered sampler: where its function is, what it works with, its options.

    ``zero_snr_start``: the sampler can start at ᾱ_T = 0 exactly (σ = ∞) on a
    zero-terminal-SNR schedule (Lin et al. 2023); the others start at the
    schedule's finite σ_max.
    """

    target: str  # "module:function"
    parameterizations: frozenset[str]
    stochastic: bool
    description: str
    options: tuple[SamplerOption, ...] = ()
    zero_snr_start: bool = False

    @property
    def fn(self) -> Callable[..., Any]:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)

    def option(self, keyword: str) -> SamplerOption | None:
        return next((o for o in self.options if o.keyword == keyword), None)


_VE = frozenset({"ve"})
_ANY = frozenset({"ve", "flow"})
_HERE = "core.diffusion.samplers"

ETA = SamplerOption(
    "eta", 0.0, "DDIM's η (Song et al. 2020, eq. 16): 0 = deterministic, 1 = DDPM's variance",
    minimum=0.0, maximum=1.0)
ANCESTRAL_ETA = SamplerOption(
    "eta", 1.0, "Euler ancestral's η: the share of each step's noise drawn afresh "
                "(1 = k-diffusion's ancestral sampler, 0 = plain Euler)",
    field="ancestral_eta", minimum=0.0, maximum=1.0)
VARIANCE = SamplerOption(
    "variance", "auto", "DDPM's reverse variance: fixed_small β̃, fixed_large β, learned "
                        "(Nichol & Dhariwal 2021, eq. 15); auto = learned when the model has it",
    choices=("auto", "fixed_small", "fixed_large", "learned"))

#: Permanent sampler names (add, never rename).
SAMPLERS: dict[str, SamplerInfo] = {
    "euler": SamplerInfo(f"{_HERE}:euler", _ANY, False, "Euler on the probability-flow ODE"),
    "euler_ancestral": SamplerInfo(f"{_HERE}:euler_ancestral", _VE, True,
                                   "Euler with fresh noise each step", (ANCESTRAL_ETA,)),
    "heun": SamplerInfo(f"{_HERE}:heun", _ANY, False, "Heun, second order (Karras et al. 2022)"),
    "dpmpp_2m": SamplerInfo(f"{_HERE}:dpmpp_2m", _VE, False, "DPM-Solver++(2M), second order"),
    "ddim": SamplerInfo(f"{_HERE}:ddim", _VE, False, "DDIM, η from 0 to 1 (Song et al. 2020)",
                        (ETA,), zero_snr_start=True),
    "ddpm": SamplerInfo(f"{_HERE}:ddpm", _VE, True, "DDPM ancestral (Ho et al. 2020)",
                        (VARIANCE,), zero_snr_start=True),
    "flow_euler": SamplerInfo(f"{_HERE}:flow_euler", frozenset({"flow"}), False,
                              "Euler for flow matching"),
}


def option_fields() -> dict[str, SamplerOption]:
    """The Sampler node's option fields: every option of every registered
    sampler, by field name. Samplers that share a field must declare it alike."""
    fields: dict[str, SamplerOption] = {}
    for name, info in SAMPLERS.items():
        for option in info.options:
            seen = fields.setdefault(option.node_field, option)
            if (seen.default, seen.minimum, seen.maximum, seen.choices) != (
                    option.default, option.minimum, option.maximum, option.choices):
                raise ValueError(f"sampler {name!r} declares the field {option.node_field!r} "
                                 "unlike another sampler: give its option its own field")
    return fields


def options_from_fields(sampler: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``sampler`` takes, read from the Sampler node's
    fields (a field that is absent gives the option's default)."""
    return {o.keyword: fields.get(o.node_field, o.default) for o in SAMPLERS[sampler].options}


def option_problems(sampler: str, options: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``options`` (keyword → value) for ``sampler``: an
    option it does not take, or a value out of its range."""
    info = SAMPLERS[sampler]
    problems = []
    for keyword, value in options.items():
        option = info.option(keyword)
        if option is None:
            takes = ", ".join(o.keyword for o in info.options) or "no options"
            problems.append(f"the sampler {sampler!r} takes no option {keyword!r} (it takes "
                            f"{takes})")
        elif (wanted := option.problem(value)) is not None:
            problems.append(f"the {sampler!r} option {keyword!r} must be {wanted}, got {value!r}")
    return problems

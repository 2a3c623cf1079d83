"""One registry of sampler, schedule and spacing names (``core.diffusion.registry``):
the Sampler and Schedule nodes, the command line and the branch panel read it,
each sampler's declared options reach it, and Euler ancestral's η works."""
from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from core.diffusion import registry
from core.diffusion.ideal import IdealDenoiser
from core.diffusion.registry import SAMPLERS, SamplerInfo, SamplerOption
from core.diffusion.timesteps import karras_sigmas
from core.sampling import SamplingError, run_sampler
from core.values import DiffusionModel, Latent, SamplingSchedule

#: What a spy sampler was last called with (its keyword options).
CALLS: list[dict] = []


def spy_sampler(model, x, levels, extra_args=None, callback=None, generator=None, **options):
    """A registered sampler's stand-in: records its options, returns x as is."""
    CALLS.append(options)
    return x


def toy_sampler(model, x, levels, extra_args=None, callback=None, generator=None, strength=0.5):
    """A sampler added by a test: one Euler step per level, damped by ``strength``."""
    CALLS.append({"strength": strength})
    for sigma, sigma_next in zip(levels[:-1].tolist(), levels[1:].tolist()):
        x0 = model(x, torch.full((x.shape[0],), sigma, dtype=torch.float64)).x0
        x = x + strength * (x - x0) / sigma * (sigma_next - sigma)
    return x


class Ctx:
    device = "cpu"

    def step(self, *args, **kwargs):
        pass


@pytest.fixture(scope="module")
def model():
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return DiffusionModel("ideal", IdealDenoiser(images), "ve", 3)


@pytest.fixture(scope="module")
def schedule():
    return SamplingSchedule("karras", "ve", karras_sigmas(0.02, 14.6, 6))


def node_settings(sampler, **fields):
    return dict(positive=None, negative=None, mask=None, sampler=sampler, guidance=1.0,
                rescale=0.0, seed=3, denoise=1.0, **fields)


# -- names ------------------------------------------------------------------------------
def test_released_names_stay_and_every_copy_is_the_registry():
    """Names are permanent; the node, the schedule tables and the timesteps read them here."""
    from core.diffusion.schedules import SCHEDULE_NAMES
    from core.diffusion.timesteps import SPACINGS
    from nodes.diffusion import NODES

    assert {"ddpm", "ddim", "euler", "euler_ancestral", "heun", "dpmpp_2m", "flow_euler"} <= set(SAMPLERS)
    assert {"linear", "scaled_linear", "cosine", "sigmoid"} <= set(registry.SCHEDULE_NAMES)
    assert {"leading", "trailing", "linspace", "karras"} <= set(registry.SPACINGS)
    assert SCHEDULE_NAMES is registry.SCHEDULE_NAMES and SPACINGS is registry.SPACINGS
    schedule, sampler, _ = NODES
    assert schedule.input("name").choices == (*registry.SCHEDULE_NAMES, "flow")
    assert schedule.input("spacing").choices == registry.SPACINGS
    assert sampler.input("sampler").choices == tuple(SAMPLERS)
    assert sampler.input("eta").default == 0.0  # DDIM's η keeps its field and default
    assert sampler.input("variance").choices == ("auto", "fixed_small", "fixed_large", "learned")


def test_the_registry_loads_without_torch():
    import subprocess
    import sys

    code = ("import sys, core.diffusion.registry, nodes.diffusion; "
            "assert 'torch' not in sys.modules, 'the registry imported torch'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- options ----------------------------------------------------------------------------
def test_declared_defaults_are_the_functions_defaults():
    for name, info in SAMPLERS.items():
        parameters = inspect.signature(info.fn).parameters
        for option in info.options:
            assert parameters[option.keyword].default == option.default, (name, option.keyword)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_registered_option_reaches_its_sampler(monkeypatch, model, schedule, name):
    """The Sampler node hands each sampler exactly the options it declares,
    with the values set on the node (not the defaults)."""
    from nodes.diffusion import sample

    spy = dataclasses.replace(SAMPLERS[name], target=f"{__name__}:spy_sampler",
                              parameterizations=frozenset({"ve"}))
    monkeypatch.setitem(SAMPLERS, name, spy)
    fields = {"eta": 0.25, "ancestral_eta": 0.75, "variance": "fixed_large"}
    CALLS.clear()
    sample(Ctx(), model, schedule, Latent(torch.zeros(1, 3, 8, 8)), **node_settings(name, **fields))
    wanted = {o.keyword: fields[o.node_field] for o in SAMPLERS[name].options}
    assert CALLS == [wanted]


def test_options_a_sampler_does_not_take_are_refused(model, schedule):
    latent = torch.zeros(1, 3, 8, 8)
    with pytest.raises(SamplingError, match=r"'euler' takes no option 'eta' \(it takes no options\)"):
        run_sampler(model, schedule, latent, sampler="euler", options={"eta": 0.5})
    with pytest.raises(SamplingError, match=r"'ddim' option 'eta' must be a number from 0 to 1"):
        run_sampler(model, schedule, latent, sampler="ddim", options={"eta": 2.0})
    with pytest.raises(SamplingError, match="'variance' must be one of auto, fixed_small"):
        run_sampler(model, schedule, latent, sampler="ddpm", options={"variance": "tiny"})
    with pytest.raises(SamplingError, match=r"no setting 'eta': pass it as options=\{'eta'"):
        run_sampler(model, schedule, latent, sampler="ddim", eta=0.5)


def test_two_samplers_sharing_a_field_must_declare_it_alike(monkeypatch):
    clash = SamplerOption("eta", 0.5, "another η", minimum=0.0, maximum=1.0)
    monkeypatch.setitem(SAMPLERS, "clashing", SamplerInfo(f"{__name__}:spy_sampler",
                                                          frozenset({"ve"}), True, "", (clash,)))
    with pytest.raises(ValueError, match="'clashing' declares the field 'eta' unlike another"):
        registry.option_fields()


# -- a new sampler is one registry entry --------------------------------------------------
def test_a_sampler_added_to_the_registry_reaches_the_node_and_the_cli(
        monkeypatch, model, schedule):
    from app.cli.main import build_parser
    from nodes.diffusion import sample, sampler_spec

    strength = SamplerOption("strength", 0.5, "damping of each step", field="toy_strength",
                             minimum=0.0, maximum=1.0)
    monkeypatch.setitem(SAMPLERS, "toy", SamplerInfo(f"{__name__}:toy_sampler",
                                                     frozenset({"ve"}), False, "a toy", (strength,)))
    spec = sampler_spec()
    assert "toy" in spec.input("sampler").choices
    field = spec.input("toy_strength")
    assert (field.default, field.min, field.max) == (0.5, 0.0, 1.0)
    assert "used by toy" in field.tooltip
    CALLS.clear()
    out = sample(Ctx(), model, schedule, Latent(torch.zeros(2, 3, 8, 8)),
                 **node_settings("toy", toy_strength=0.9))
    assert CALLS == [{"strength": 0.9}] and torch.isfinite(out["latent"].samples).all()
    evaluate = build_parser()._subparsers._group_actions[0].choices["eval"]
    assert "toy" in evaluate.format_help()


# -- η reaches Euler ancestral ------------------------------------------------------------
def test_euler_ancestral_eta_changes_the_picture_and_zero_is_plain_euler(model, schedule):
    """Regression: the node passed η to DDIM only, so η did nothing for euler_ancestral."""
    from nodes.diffusion import sample

    latent = Latent(torch.zeros(2, 3, 8, 8))
    runs = {eta: sample(Ctx(), model, schedule, latent,
                        **node_settings("euler_ancestral", ancestral_eta=eta))["latent"].samples
            for eta in (0.0, 1.0)}
    assert not torch.allclose(runs[0.0], runs[1.0], atol=1e-2)
    euler = sample(Ctx(), model, schedule, latent, **node_settings("euler"))["latent"].samples
    # k-diffusion: η = 0 gives σ_up = 0 and σ_down = σ_next, Euler's step exactly
    torch.testing.assert_close(runs[0.0], euler, atol=1e-6, rtol=0)
    old_default = sample(Ctx(), model, schedule, latent, **node_settings("euler_ancestral"))
    assert torch.equal(old_default["latent"].samples, runs[1.0])  # files without the field

"""Diffusion nodes through the executor: schedule, sampler, forward process,
latents and the ideal denoiser, with events, cancellation, pause and cache."""
from __future__ import annotations

import threading

import pytest
import torch

from core.events import NodeCached, Step
from core.executor import Cancelled, CancelToken, ExecutionFailed, Executor, StepGate
from core.values import DiffusionModel, Latent
from nodes import default_registry
from tests.stubs import chain

STEPS = 8


@pytest.fixture(scope="module")
def catalogue():
    registry, _ = default_registry(plugins=False)
    return registry


def ideal_workflow(sampler="euler", seed=1, steps=STEPS, prompt="a red circle", **sampler_params):
    return chain(
        ("model", "model.ideal_denoiser", {"count": 48, "size": 16}),
        ("prompt", "conditioning.text", {"text": prompt}),
        ("latent", "latent.empty", {"width": 16, "height": 16, "batch_size": 2}),
        ("schedule", "diffusion.schedule", {"spacing": "karras", "steps": steps}),
        ("sampler", "diffusion.sampler", {"sampler": sampler, "seed": seed, **sampler_params}),
        ("decode", "latent.to_pixels", {}),
        ("save", "image.save", {}),
        links=[
            ("model", "model", "latent", "model"), ("model", "model", "sampler", "model"),
            ("schedule", "schedule", "sampler", "schedule"), ("latent", "latent", "sampler", "latent"),
            ("prompt", "conditioning", "sampler", "positive"), ("sampler", "latent", "decode", "latent"),
            ("decode", "image", "save", "images"),
        ],
    )


def run(catalogue, workflow, **kwargs):
    events = []
    result = Executor(catalogue).run(workflow, on_event=events.append, device="cpu", **kwargs)
    return result, events


def test_sampler_streams_every_step_and_returns_images(catalogue):
    result, events = run(catalogue, ideal_workflow())
    steps = [e for e in events if isinstance(e, Step)]
    assert [s.index for s in steps] == list(range(STEPS))
    assert all(s.total == STEPS and s.node_id == "sampler" for s in steps)
    assert all(s.x_t.shape == s.x0.shape == s.eps.shape == (2, 3, 16, 16) for s in steps)
    levels = [s.t for s in steps]
    assert levels == sorted(levels, reverse=True) and levels[0] == pytest.approx(14.6146, abs=1e-3)
    assert steps[0].extra["timestep"] == pytest.approx(999, abs=1e-6)
    images = result.outputs["save"]["images"]
    assert images.shape == (2, 3, 16, 16)
    red = images[:, 0] > images[:, 1] + 0.3
    assert red.float().mean() > 0.05, "the prompt asked for a red circle"


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "heun", "dpmpp_2m", "ddim", "ddpm"])
def test_every_diffusion_sampler_runs_and_is_reproducible(catalogue, sampler):
    first, _ = run(catalogue, ideal_workflow(sampler, seed=3, prompt=""))
    again, _ = run(catalogue, ideal_workflow(sampler, seed=3, prompt=""))
    other, _ = run(catalogue, ideal_workflow(sampler, seed=4, prompt=""))
    a, b = first.outputs["save"]["images"], again.outputs["save"]["images"]
    assert torch.equal(a, b)
    assert torch.isfinite(a).all()
    assert not torch.equal(a, other.outputs["save"]["images"])


def test_trajectory_records_each_step_in_the_model_scale():
    from core.diffusion.ideal import IdealDenoiser
    from core.diffusion.timesteps import karras_sigmas
    from core.sampling import run_sampler
    from core.values import SamplingSchedule

    model = DiffusionModel("ideal", IdealDenoiser(torch.rand(4, 3, 8, 8) * 2 - 1), "ve", 3)
    schedule = SamplingSchedule("karras", "ve", karras_sigmas(0.01, 14.6, STEPS))
    out, trajectory = run_sampler(model, schedule, torch.zeros(2, 3, 8, 8), seed=0)
    assert [s.index for s in trajectory.steps] == list(range(STEPS))
    first = trajectory.steps[0]
    assert first.x_t.dtype == torch.float16 and first.x_t.shape == (2, 3, 8, 8)
    assert first.level == pytest.approx(14.6)
    assert first.x_t.abs().max() < 6, "x_t is shown VP-scaled, not as x_0 + σε with σ = 14.6"
    assert torch.allclose(trajectory.steps[-1].x0.float(), out, atol=2e-3)


def test_changing_only_the_seed_reuses_model_prompt_and_schedule(catalogue):
    executor = Executor(catalogue)
    executor.run(ideal_workflow(seed=1), device="cpu")
    events = []
    result = executor.run(ideal_workflow(seed=2), device="cpu", on_event=events.append)
    cached = {e.node_id for e in events if isinstance(e, NodeCached)}
    assert {"model", "prompt", "schedule", "latent"} <= cached
    assert result.executed == ("sampler", "decode", "save")


def test_cancel_inside_the_sampler_stops_within_one_step(catalogue):
    token = CancelToken()
    seen = []

    def sink(event):
        if isinstance(event, Step):
            seen.append(event.index)
            if event.index == 2:
                token.cancel()

    with pytest.raises(Cancelled):
        Executor(catalogue).run(ideal_workflow(steps=50), on_event=sink, cancel=token, device="cpu")
    assert seen == [0, 1, 2]


def test_pause_and_step_inside_the_sampler(catalogue):
    gate = StepGate()
    gate.pause()
    steps, arrived = [], threading.Event()

    def sink(event):
        if isinstance(event, Step):
            steps.append(event.index)
            arrived.set()

    done = threading.Event()
    thread = threading.Thread(target=lambda: (Executor(catalogue).run(
        ideal_workflow(), on_event=sink, gate=gate, device="cpu"), done.set()), daemon=True)
    thread.start()
    assert arrived.wait(10)
    assert not done.wait(0.2) and steps == [0], "paused after the first step"
    arrived.clear()
    gate.step(2)
    deadline = threading.Event()
    for _ in range(100):
        if len(steps) == 3:
            break
        deadline.wait(0.02)
    assert not done.wait(0.1) and steps == [0, 1, 2]
    gate.resume()
    assert done.wait(10)
    assert steps == list(range(STEPS))


def test_flow_model_needs_a_flow_schedule(catalogue):
    workflow = ideal_workflow()
    workflow.nodes["model"].params["parameterization"] = "flow matching"
    with pytest.raises(ExecutionFailed, match="flow-matching model and needs a 'flow' schedule"):
        run(catalogue, workflow)
    workflow.nodes["schedule"].params.update(name="flow", shift=3.0)
    workflow.nodes["sampler"].params["sampler"] = "dpmpp_2m"
    with pytest.raises(ExecutionFailed, match="does not work with flow-matching models"):
        run(catalogue, workflow)
    workflow.nodes["sampler"].params["sampler"] = "flow_euler"
    result, events = run(catalogue, workflow)
    assert [e.t for e in events if isinstance(e, Step)][0] == 1.0
    assert torch.isfinite(result.outputs["save"]["images"]).all()


def _img2img_workflow(denoise, mask=False):
    workflow = chain(
        ("model", "model.ideal_denoiser", {"count": 16, "size": 16}),
        ("pattern", "image.pattern", {"pattern": "rings", "width": 16, "height": 16}),
        ("encode", "latent.from_pixels", {}),
        ("schedule", "diffusion.schedule", {"spacing": "karras", "steps": 10}),
        ("sampler", "diffusion.sampler", {"sampler": "euler", "denoise": denoise}),
        ("decode", "latent.to_pixels", {}),
        ("save", "image.save", {}),
        links=[
            ("model", "model", "sampler", "model"), ("pattern", "image", "encode", "image"),
            ("encode", "latent", "sampler", "latent"), ("schedule", "schedule", "sampler", "schedule"),
            ("sampler", "latent", "decode", "latent"), ("decode", "image", "save", "images"),
        ],
    )
    return workflow


def test_img2img_strength_picks_the_start_step(catalogue):
    untouched, events = run(catalogue, _img2img_workflow(0.0))
    assert not [e for e in events if isinstance(e, Step)]
    from nodes.images import make_pattern

    pattern = make_pattern(None, "rings", 16, 16)
    assert torch.allclose(untouched.outputs["save"]["images"], pattern, atol=1e-6)
    _, events = run(catalogue, _img2img_workflow(0.4))
    steps = [e for e in events if isinstance(e, Step)]
    # indices count the schedule's steps: strength 0.4 of 10 runs steps 7 to 10
    assert len(steps) == 4 and steps[0].index == 6 and steps[0].total == 10


def test_inpainting_keeps_the_known_region(catalogue):
    from core.sampling import run_sampler
    from core.values import SamplingSchedule
    from core.diffusion.ideal import IdealDenoiser
    from core.diffusion.timesteps import karras_sigmas

    images = torch.rand(6, 3, 8, 8) * 2 - 1
    model = DiffusionModel("ideal", IdealDenoiser(images), "ve", 3)
    schedule = SamplingSchedule("karras", "ve", karras_sigmas(0.01, 20.0, 12))
    known = torch.zeros(1, 3, 8, 8)
    mask = torch.zeros(8, 8)
    mask[:, 4:] = 1
    out, trajectory = run_sampler(model, schedule, known, sampler="ddpm", mask=mask, seed=5)
    assert torch.equal(out[..., :4], known[..., :4])
    assert out[..., 4:].abs().mean() > 0.1
    assert len(trajectory.steps) == 12


def test_forward_process_closed_form_and_chain_agree_in_distribution(catalogue):
    from nodes.diffusion import forward_process, make_sampling_schedule

    class Ctx:
        def step(self, *args, **kwargs):
            pass

    schedule = make_sampling_schedule(None, "linear", 1000, False, "leading", 10, 1.0)
    gray = torch.full((1, 3, 96, 96), 0.75)
    closed = forward_process(Ctx(), gray, schedule, 300, 0, "closed form") * 2 - 1
    chained = forward_process(Ctx(), gray, schedule, 300, 1, "step by step") * 2 - 1
    alpha_bar = float(schedule.schedule.alphas_cumprod[300])
    for x in (closed, chained):
        assert x.mean().item() == pytest.approx(alpha_bar**0.5 * 0.5, abs=0.02)
        assert x.var().item() == pytest.approx(1 - alpha_bar, rel=0.05)
    with pytest.raises(ValueError, match="past the schedule's last timestep"):
        forward_process(Ctx(), gray, schedule, 1000, 0, "closed form")


def test_schedule_node_checks_steps_and_builds_flow_grids():
    from nodes.diffusion import make_sampling_schedule

    flow = make_sampling_schedule(None, "flow", 1000, False, "leading", 4, 3.0)
    assert flow.parameterization == "flow" and flow.levels.tolist() == [1.0, 0.9, 0.75, 0.5, 0.0]
    with pytest.raises(ValueError, match="cannot be picked"):
        make_sampling_schedule(None, "linear", 10, False, "leading", 20, 1.0)


def test_empty_latent_follows_the_model(catalogue):
    from nodes.latents import empty_latent

    model = DiffusionModel("m", lambda x, s, **k: x, "ve", latent_channels=4, downscale=4)
    assert empty_latent(None, model, 64, 32, 2).samples.shape == (2, 4, 8, 16)
    assert empty_latent(None, None, 64, 64, 1).samples.shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match="multiples of 4"):
        empty_latent(None, model, 66, 64, 1)


def test_latent_to_pixels_refuses_a_vae_latent():
    from nodes.latents import latent_to_image

    with pytest.raises(ValueError, match="decode it with its model's VAE"):
        latent_to_image(None, Latent(torch.zeros(1, 4, 8, 8)))


def test_ideal_denoiser_from_a_folder_uses_file_names_as_captions(tmp_path, catalogue):
    from core.images import save_png
    from nodes.models import ideal_denoiser

    save_png(torch.zeros(3, 8, 8), tmp_path / "dark_square.png")
    save_png(torch.ones(3, 8, 8), tmp_path / "bright-circle.png")
    model = ideal_denoiser(None, "folder", str(tmp_path), 10, 8, 0, "diffusion")
    assert model.denoiser.captions == ["bright circle", "dark square"]
    x = torch.zeros(1, 3, 8, 8)
    assert model.denoiser(x, torch.tensor([0.01]), cond="dark").max() < -0.99
    with pytest.raises(ValueError, match="no image in the ideal denoiser's set matches"):
        model.denoiser(x, torch.tensor([1.0]), cond="purple triangle")
    with pytest.raises(FileNotFoundError):
        ideal_denoiser(None, "folder", str(tmp_path / "nope"), 10, 8, 0, "diffusion")
    with pytest.raises(ValueError, match="choose a folder"):
        ideal_denoiser(None, "folder", "", 10, 8, 0, "diffusion")

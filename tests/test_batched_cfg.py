"""Classifier-free guidance as one batched network call (issue 10).

The batched path must give the two-call path's result (up to float
rounding), call the network once per step, and stay correct where the parts
differ: ControlNet hints on one prompt only, prompts of different lengths,
a learned variance, a flow model. Precision: a model loaded in bf16 really
computes in bf16.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from core.diffusion.timesteps import flow_times, sampling_sigmas
from core.models.builtin import load_controlnet, load_model
from core.models.conditioned import ControlHint, for_each_part
from core.sampling import run_sampler
from core.values import Conditioning, ConditioningBatch, SamplingSchedule

PROMPT = "a large red circle at the top left on a white background"


@pytest.fixture(scope="module")
def ldm():
    return load_model("shapes-ldm")


def _schedule(model, steps=4):
    if model.parameterization == "flow":
        return SamplingSchedule("flow", "flow", flow_times(steps, 1.0))
    table = model.schedule
    return SamplingSchedule(table.name, "ve", sampling_sigmas(table, steps, "karras"), table)


def _count_calls(module: torch.nn.Module) -> list[int]:
    """A list whose length grows by one per forward call of ``module``."""
    calls: list[int] = []
    module.register_forward_pre_hook(lambda *_: calls.append(len(calls)))
    return calls


def _sample(model, positive, negative, *, batched, batch=2, sampler="euler", **options):
    model = dataclasses.replace(model, batched_cfg=batched)
    latent = torch.zeros(batch, model.latent_channels, 16, 16)
    result, _ = run_sampler(model, _schedule(model), latent, sampler=sampler, positive=positive,
                            negative=negative, guidance=3.0, seed=5, **options)
    return result


def test_one_network_call_per_step_and_the_same_pictures(ldm):
    calls = _count_calls(ldm.model.denoiser.network.unet)
    positive, negative = Conditioning(PROMPT), Conditioning("")
    batched = _sample(ldm.model, positive, negative, batched=True)
    assert len(calls) == 4  # one call per step for both predictions
    separate = _sample(ldm.model, positive, negative, batched=False)
    assert len(calls) == 4 + 8
    torch.testing.assert_close(batched, separate, atol=1e-5, rtol=1e-5)


def test_guidance_one_needs_no_unconditional_call(ldm):
    calls = _count_calls(ldm.model.denoiser.network.unet)
    model = dataclasses.replace(ldm.model, batched_cfg=True)
    latent = torch.zeros(1, 4, 16, 16)
    run_sampler(model, _schedule(model), latent, positive=Conditioning(PROMPT), guidance=1.0)
    assert len(calls) == 4


def test_prompts_of_different_lengths_fall_back_to_one_call_per_part(ldm):
    clip = ldm.clip
    hidden = clip.encode([PROMPT])  # (1, 16, D)
    positive = Conditioning(PROMPT, hidden)
    negative = Conditioning("short", hidden[:, :5])  # (1, 5, D): cannot be concatenated
    calls = _count_calls(ldm.model.denoiser.network.unet)
    batched = _sample(ldm.model, positive, negative, batched=True)
    assert len(calls) == 8
    separate = _sample(ldm.model, positive, negative, batched=False)
    torch.testing.assert_close(batched, separate, atol=1e-5, rtol=1e-5)


def _with_hint(cond, hint):
    return dataclasses.replace(cond, extras={**cond.extras, "control": (hint,)})


@pytest.fixture(scope="module")
def hint():
    outline = torch.zeros(1, 3, 64, 64)
    outline[:, :, 16:48, 16] = outline[:, :, 16:48, 47] = 1.0
    return ControlHint(load_controlnet("shapes-controlnet"), outline, 0.8)


@pytest.mark.parametrize("on_negative", [True, False], ids=["hint-on-both", "hint-on-positive"])
def test_controlnet_hints_batched_like_separate_calls(ldm, hint, on_negative):
    positive = _with_hint(Conditioning(PROMPT), hint)
    negative = _with_hint(Conditioning(""), hint) if on_negative else Conditioning("")
    controlnet_calls = _count_calls(hint.controlnet)
    batched = _sample(ldm.model, positive, negative, batched=True)
    assert len(controlnet_calls) == (4 if on_negative else 4)  # once per step either way
    separate = _sample(ldm.model, positive, negative, batched=False)
    torch.testing.assert_close(batched, separate, atol=1e-5, rtol=1e-5)


def test_a_hint_of_several_images_repeats_over_the_doubled_batch(ldm, hint):
    two = ControlHint(hint.controlnet, hint.image.expand(2, -1, -1, -1).clone(), 0.8)
    positive, negative = _with_hint(Conditioning(PROMPT), two), _with_hint(Conditioning(""), two)
    batched = _sample(ldm.model, positive, negative, batched=True)
    separate = _sample(ldm.model, positive, negative, batched=False)
    torch.testing.assert_close(batched, separate, atol=1e-5, rtol=1e-5)


def test_learned_variance_survives_batching():
    ddpm = load_model("shapes-ddpm")
    positive, negative = Conditioning("a red circle"), Conditioning("")
    options = dict(sampler="ddpm", options={"variance": "learned"}, batch=1)
    batched = _sample(ddpm.model, positive, negative, batched=True, **options)
    separate = _sample(ddpm.model, positive, negative, batched=False, **options)
    torch.testing.assert_close(batched, separate, atol=1e-4, rtol=1e-4)


def test_flow_model_batched_like_separate_calls():
    flow = load_model("shapes-flow")
    positive, negative = Conditioning(PROMPT), Conditioning("")
    batched = _sample(flow.model, positive, negative, batched=True, sampler="flow_euler")
    separate = _sample(flow.model, positive, negative, batched=False, sampler="flow_euler")
    torch.testing.assert_close(batched, separate, atol=1e-5, rtol=1e-5)


def test_for_each_part_splits_rows_evenly():
    x = torch.zeros(6, 1)
    a, b = Conditioning("a"), Conditioning("b")
    assert for_each_part(a, x) == [(a, slice(None))]
    assert for_each_part(ConditioningBatch((a, b)), x) == [(a, slice(0, 3)), (b, slice(3, 6))]
    with pytest.raises(ValueError, match="cannot be split"):
        for_each_part(ConditioningBatch((a, b, a, b)), x)


def test_bf16_model_computes_in_bf16_and_returns_fp32(ldm):
    half = load_model("shapes-ldm", dtype=torch.bfloat16)
    unet = half.model.denoiser.network.unet
    assert {p.dtype for p in unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in half.vae.vae.parameters()} == {torch.bfloat16}
    seen: list[torch.dtype] = []
    unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))
    positive, negative = Conditioning(PROMPT), Conditioning("")
    low = _sample(half.model, positive, negative, batched=True)
    assert seen and set(seen) == {torch.bfloat16}
    assert low.dtype == torch.float32
    full = _sample(ldm.model, positive, negative, batched=True)
    assert not torch.equal(low, full)  # really another precision …
    assert (low - full).abs().mean() < 0.1 * full.abs().mean()  # … of the same picture
    pixels = half.vae.decode(low)
    assert pixels.dtype == torch.float32 and pixels.shape == (2, 3, 64, 64)


def test_the_run_dtype_reaches_the_networks(monkeypatch):
    """``--dtype`` / the GUI's precision: the loader builds the networks in it."""
    from pathlib import Path

    import core.models.builtin as builtin
    from core.executor import Executor
    from core.workflow import load
    from nodes import default_registry

    asked: list[torch.dtype] = []
    real = builtin.load_model

    def spy(name, device="cpu", dtype=torch.float32):
        asked.append(dtype)
        return real(name, device, dtype)

    monkeypatch.setattr(builtin, "load_model", spy)
    workflow = load(Path(__file__).resolve().parents[1] / "workflows" / "txt2img.json")
    workflow.nodes["schedule"].params["steps"] = 2
    workflow.nodes["latent"].params["batch_size"] = 1
    executor = Executor(default_registry(plugins=False)[0])
    low = executor.run(workflow, device="cpu", dtype="bf16", previews=False)
    full = executor.run(workflow, device="cpu", dtype="fp32", previews=False)
    assert asked == [torch.bfloat16, torch.float32]
    assert (low.dtype, full.dtype) == ("bf16", "fp32")
    a, b = low.outputs["save"]["images"], full.outputs["save"]["images"]
    assert a.dtype == b.dtype == torch.float32
    assert not torch.equal(a, b) and (a - b).abs().mean() < 0.05

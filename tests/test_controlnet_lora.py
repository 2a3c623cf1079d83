"""Real ControlNet files (both layouts, SD 1.x and SDXL), timed and stacked
hints against diffusers' pipeline, and LoRA files (kohya and diffusers
names) against a manual merge, reversibly."""
from __future__ import annotations

import contextlib
import copy
import os

import pytest
import torch
from safetensors.torch import save_file

from core.checkpoints import CheckpointError
from core.models.families.controlnet import (
    TimedControlHint,
    bind_control_steps,
    controlled_steps,
    load_controlnet_file,
)
from core.values import Conditioning

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                 layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                 attention_head_dim=8, norm_num_groups=32)
TINY_SDXL_UNET = dict(TINY_UNET, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                      up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=2,
                      transformer_layers_per_block=(1, 2), use_linear_projection=True,
                      attention_head_dim=(1, 1), addition_embed_type="text_time",
                      addition_time_embed_dim=8, projection_class_embeddings_input_dim=80)
HINT_CHANNELS = (8, 8, 16, 16)  # four stages, as every original-layout file has


def randomized(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Zero-initialised parts (ControlNet's zero convolutions) given noise, so
    residuals are not trivially zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return module.eval().requires_grad_(False)


def tiny_unet(config=TINY_UNET, seed=0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**config).eval().requires_grad_(False)


def tiny_controlnet(unet, seed=1):
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS)
    return randomized(controlnet, seed)


def original_layout(controlnet, prefix="control_model."):
    """A diffusers ControlNet state dict under lllyasviel's names (the inverse
    of diffusers' converter, written out here)."""
    from core.models.lora import ldm_unet_path

    config = controlnet.config
    fixed = {"controlnet_cond_embedding.conv_in": "input_hint_block.0",
             "controlnet_cond_embedding.conv_out": "input_hint_block.14",
             "controlnet_mid_block": "middle_block_out.0"}
    out = {}
    for key, tensor in controlnet.state_dict().items():
        module, kind = key.rsplit(".", 1)
        if module in fixed:
            name = fixed[module]
        elif module.startswith("controlnet_cond_embedding.blocks."):
            name = f"input_hint_block.{2 * (int(module.split('.')[-1]) + 1)}"
        elif module.startswith("controlnet_down_blocks."):
            name = f"zero_convs.{module.split('.')[-1]}.0"
        else:
            name = ldm_unet_path(module, config)
        assert name, key
        out[f"{prefix}{name}.{kind}"] = tensor.clone()
    return out


def assert_same_weights(loaded, source):
    theirs = source.state_dict()
    ours = loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for key, tensor in theirs.items():
        assert torch.equal(ours[key], tensor), key


# -- ControlNet files --------------------------------------------------------------
@pytest.fixture(scope="module")
def sd1_parts():
    unet = tiny_unet()
    return unet, tiny_controlnet(unet, 1), tiny_controlnet(unet, 2)


@pytest.mark.parametrize("layout", ["original", "original_bare", "diffusers", "folder"])
def test_controlnet_files_load_exactly_in_every_layout(tmp_path, sd1_parts, layout):
    _, controlnet, _ = sd1_parts
    if layout == "folder":
        controlnet.save_pretrained(tmp_path / "cn")
        path = tmp_path / "cn"
    else:
        prefix = "control_model." if layout == "original" else ""
        tensors = (controlnet.state_dict() if layout == "diffusers"
                   else original_layout(controlnet, prefix))
        path = tmp_path / "cn.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    loaded = load_controlnet_file(path)
    assert_same_weights(loaded, controlnet)
    assert loaded.config.attention_head_dim in (8, [8, 8], (8, 8))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_controlnet_keeps_the_file_dtype_or_takes_the_requested_one(tmp_path, sd1_parts):
    _, controlnet, _ = sd1_parts
    path = tmp_path / "cn16.safetensors"
    save_file({k: v.half().contiguous() for k, v in original_layout(controlnet).items()}, str(path))
    as_stored = load_controlnet_file(path)
    assert {p.dtype for p in as_stored.parameters()} == {torch.float16}
    as_fp32 = load_controlnet_file(path, dtype=torch.float32)
    assert {p.dtype for p in as_fp32.parameters()} == {torch.float32}
    for key, tensor in controlnet.state_dict().items():
        assert torch.equal(as_fp32.state_dict()[key], tensor.half().float()), key


def test_sdxl_controlnet_original_layout_with_added_conditioning(tmp_path):
    unet = tiny_unet(TINY_SDXL_UNET)
    controlnet = tiny_controlnet(unet, 3)
    path = tmp_path / "cnxl.safetensors"
    save_file({k: v.contiguous() for k, v in original_layout(controlnet).items()}, str(path))
    assert any(".label_emb." in k for k in original_layout(controlnet))
    with pytest.raises(CheckpointError, match="addition_time_embed_dim"):
        load_controlnet_file(path)  # the time-id width of a non-SDXL size is not in the shapes
    loaded = load_controlnet_file(path, overrides={"addition_time_embed_dim": 8})
    assert_same_weights(loaded, controlnet)
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([500, 500]), torch.randn(2, 5, 32)
    added = {"text_embeds": torch.randn(2, 32), "time_ids": torch.randn(2, 6) * 100}
    hint = TimedControlHint(loaded, torch.rand(1, 3, 64, 64), strength=0.7)
    down, mid = hint.residuals(x, t, context, added_cond=added)
    want_down, want_mid = controlnet(x, t, encoder_hidden_states=context,
                                     controlnet_cond=hint.image.repeat(2, 1, 1, 1),
                                     conditioning_scale=0.7, added_cond_kwargs=added,
                                     return_dict=False)
    assert len(down) == len(want_down)
    for ours, theirs in zip([*down, mid], [*want_down, want_mid]):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_controlnet_file_errors_name_the_file_and_key(tmp_path, sd1_parts):
    _, controlnet, _ = sd1_parts
    tensors = original_layout(controlnet)
    missing = dict(tensors)
    del missing["control_model.zero_convs.1.0.weight"]
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError,
                       match=r"missing\.safetensors.*controlnet_down_blocks\.1\.weight"):
        load_controlnet_file(tmp_path / "missing.safetensors")
    extra = {**tensors, "control_model.mystery.weight": torch.zeros(2)}
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(CheckpointError, match=r"mystery"):
        load_controlnet_file(tmp_path / "extra.safetensors")
    wrong = controlnet.state_dict()
    wrong = {k: v.contiguous() for k, v in wrong.items()}
    wrong["controlnet_mid_block.weight"] = torch.zeros(64, 64, 3, 3)
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(CheckpointError, match=r"wrong\.safetensors.*controlnet_mid_block\.weight"):
        load_controlnet_file(tmp_path / "wrong.safetensors")
    save_file({"a.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="neither"):
        load_controlnet_file(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="pickled"):
        load_controlnet_file(tmp_path / "model.ckpt")


# -- timed hints ---------------------------------------------------------------------
def test_controlled_steps_follow_diffusers_keep_rule():
    assert controlled_steps(5, 0.2, 0.8) == [1, 2, 3]
    assert controlled_steps(10, 0.0, 1.0) == list(range(10))
    assert controlled_steps(4, 0.5, 1.0) == [2, 3]
    assert controlled_steps(3, 0.4, 0.6) == []
    with pytest.raises(ValueError):
        TimedControlHint(None, torch.zeros(1, 3, 8, 8), start=0.7, end=0.2)


def test_binding_keeps_a_shared_hint_one_object_and_refuses_unbound_ranges(sd1_parts):
    from core.values import ConditioningBatch

    _, controlnet, _ = sd1_parts
    hint = TimedControlHint(controlnet, torch.rand(1, 3, 64, 64), 0.5, 0.2, 0.8)
    cond = Conditioning("a", extras={"control": (hint,)})
    uncond = Conditioning("", extras={"control": (hint,)})
    with pytest.raises(ValueError, match="bound"):
        hint.residuals(torch.randn(1, 4, 8, 8), torch.tensor([500]), torch.randn(1, 5, 32))
    timesteps = [900.0, 700.0, 500.0, 300.0, 100.0]
    pos, neg, batch = bind_control_steps([cond, uncond, ConditioningBatch((uncond, cond))],
                                         timesteps)
    shared = pos.extras["control"][0]
    assert shared is neg.extras["control"][0] is batch.parts[0].extras["control"][0]
    bound = pos.extras["control"][0]
    assert bound is not hint and hint.window is None  # the cached value is unchanged
    active = [bool(bound.active_rows(torch.tensor([t]))) for t in timesteps]
    assert active == [False, True, True, True, False]
    # A second-order sampler's extra call between steps 3 and 4 belongs to the nearer step.
    assert bool(bound.active_rows(torch.tensor([250.0])))
    assert not bool(bound.active_rows(torch.tensor([150.0])))
    x, context = torch.randn(1, 4, 8, 8), torch.randn(1, 5, 32)
    assert bound.residuals(x, torch.tensor([900]), context) == (None, None)


# -- against diffusers' ControlNet pipeline ------------------------------------------------
def controlnet_pipeline(unet, controlnets):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionControlNetPipeline

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4,
                        norm_num_groups=8)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionControlNetPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=unet,
        controlnet=controlnets if len(controlnets) > 1 else controlnets[0], scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def record_unet_calls(pipe, **call):
    """Every U-Net call of one pipeline run: its input, timestep, context,
    the ControlNet residuals it was given and its output."""
    calls = []

    def hook(module, args, kwargs, output):
        calls.append(dict(x=args[0].clone(), t=args[1].clone(),
                          context=kwargs["encoder_hidden_states"].clone(),
                          down=[d.clone() for d in kwargs["down_block_additional_residuals"]],
                          mid=kwargs["mid_block_additional_residual"].clone(),
                          out=output[0].clone()))

    handle = pipe.unet.register_forward_hook(hook, with_kwargs=True)
    try:
        pipe(**call)
    finally:
        handle.remove()
    return calls


def our_prediction(unet, hints, x, t, context):
    """Our ControlNet residuals (hints outside their steps add nothing) into the U-Net."""
    down, mid = None, None
    for hint in hints:
        d, m = hint.residuals(x, t, context)
        if d is None:
            continue
        down = d if down is None else [a + b for a, b in zip(down, d)]
        mid = m if mid is None else mid + m
    out = unet(x, t, encoder_hidden_states=context, down_block_additional_residuals=down,
               mid_block_additional_residual=mid).sample
    return out, down, mid


@pytest.mark.parametrize("ranges", [[(0.2, 0.8)], [(0.2, 0.8), (0.0, 0.6)]],
                         ids=["one", "two-stacked"])
def test_unet_with_timed_controlnets_matches_diffusers_pipeline(sd1_parts, ranges):
    unet, *controlnets = sd1_parts
    controlnets = controlnets[:len(ranges)]
    generator = torch.Generator().manual_seed(3)
    images = [torch.rand(1, 3, 64, 64, generator=generator) for _ in ranges]
    positive = torch.randn(1, 6, 32, generator=generator)
    negative = torch.randn(1, 6, 32, generator=generator)
    pipe = controlnet_pipeline(unet, controlnets)
    many = len(ranges) > 1
    calls = record_unet_calls(
        pipe, prompt_embeds=positive, negative_prompt_embeds=negative,
        image=images if many else images[0], height=64, width=64, num_inference_steps=5,
        guidance_scale=2.0, output_type="latent", generator=torch.Generator().manual_seed(0),
        controlnet_conditioning_scale=[0.5] * len(ranges) if many else 0.5,
        control_guidance_start=[r[0] for r in ranges], control_guidance_end=[r[1] for r in ranges])
    timesteps = pipe.scheduler.timesteps.tolist()
    assert len(calls) == 5
    hints = [TimedControlHint(cn, image, 0.5, start, end)
             for cn, image, (start, end) in zip(controlnets, images, ranges)]
    (cond,) = bind_control_steps([Conditioning(extras={"control": tuple(hints)})], timesteps)
    controlled = set()
    for step, call in enumerate(calls):
        out, down, mid = our_prediction(unet, cond.extras["control"], call["x"], call["t"],
                                        call["context"])
        torch.testing.assert_close(out, call["out"], atol=1e-5, rtol=0)
        if down is None:  # no ControlNet acts here: diffusers added zeros
            assert all(not d.any() for d in call["down"]) and not call["mid"].any()
        else:
            controlled.add(step)
            for ours, theirs in zip([*down, mid], [*call["down"], call["mid"]]):
                torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    wanted = set().union(*(controlled_steps(5, s, e) for s, e in ranges))
    assert controlled == wanted and wanted == ({1, 2, 3} if len(ranges) == 1 else {0, 1, 2, 3})


def test_network_sums_timed_hints_through_the_conditioned_unet(sd1_parts):
    """The lead's ConditionedUNet path with full-range timed hints (always
    active): the same as a plain ControlHint."""
    from core.models.conditioned import ConditionedUNet, ControlHint

    unet, cn1, cn2 = sd1_parts
    image = torch.rand(1, 3, 64, 64)
    network = ConditionedUNet(unet, clip=None)
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([600.0, 600.0]), torch.randn(1, 6, 32)
    timed = Conditioning(embeddings=context, extras={"control": (
        TimedControlHint(cn1, image, 0.5), TimedControlHint(cn2, image, 0.8))})
    plain = Conditioning(embeddings=context, extras={"control": (
        ControlHint(cn1, image, 0.5), ControlHint(cn2, image, 0.8))})
    ours = network(x, t, cond=timed)
    torch.testing.assert_close(ours, network(x, t, cond=plain), atol=1e-6, rtol=0)
    assert not torch.allclose(ours, network(x, t, cond=Conditioning(embeddings=context)))


# -- LoRA files ------------------------------------------------------------------------------
CONV_TARGET = ("resnets.", "downsamplers.", "upsamplers.", "conv_in", "time_embedding.linear_1")


def locon_names(family, unet):
    """kohya LoCon names (convolutions, the time embedding) → module weight:
    diffusers paths for SD 1.x, original (SGM) paths for SDXL."""
    from tests.layouts.unet_ldm import attention_up_blocks, unet_key_to_ldm

    config = dict(unet.config)
    names = {}
    for path, module in unet.named_modules():
        patched = isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))
        if patched and any(t in path for t in CONV_TARGET):
            key = path + ".weight"
            if family == "sdxl":
                key = unet_key_to_ldm(key, config["layers_per_block"], attention_up_blocks(config))
            names["lora_unet_" + key.removesuffix(".weight").replace(".", "_")] = module.weight
    return names


def lora_tensors(targets, rank, alpha, seed):
    """kohya triples for name → weight, conv LoRAs with the module's kernel in ``down``."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, weight in targets.items():
        kernel = tuple(weight.shape[2:])
        tensors[f"{name}.lora_down.weight"] = torch.randn(rank, weight.shape[1], *kernel,
                                                          generator=generator) * 0.2
        tensors[f"{name}.lora_up.weight"] = torch.randn(weight.shape[0], rank, *(1,) * len(kernel),
                                                        generator=generator) * 0.2
        tensors[f"{name}.alpha"] = torch.tensor(float(alpha))
    return tensors


def merged(models, targets_of, files, strengths):
    """Copies of ``models`` with W + s·(α/r)·up@down merged in by hand, for
    each (tensors) in ``files``; ``targets_of(copies)`` names their weights."""
    copies = {c: copy.deepcopy(m) for c, m in models.items()}
    targets = targets_of(copies)
    with torch.no_grad():
        for tensors in files:
            for name, weight in targets.items():
                if f"{name}.alpha" not in tensors:
                    continue
                down, up = tensors[f"{name}.lora_down.weight"], tensors[f"{name}.lora_up.weight"]
                rank = down.shape[0]
                component = "unet" if name.startswith("lora_unet_") else "text"
                scale = strengths[component] * float(tensors[f"{name}.alpha"]) / rank
                weight += scale * (up.flatten(1) @ down.flatten(1)).reshape(weight.shape)
    return copies


def snapshot(models):
    return {c: {k: v.clone() for k, v in m.state_dict().items()} for c, m in models.items()}


def assert_unchanged(models, before):
    for component, model in models.items():
        for key, tensor in model.state_dict().items():
            assert torch.equal(tensor, before[component][key]), (component, key)
        assert not any(m._forward_hooks for m in model.modules()), component


def unet_out(unet, sdxl, seed=0):
    generator = torch.Generator().manual_seed(seed)
    config = unet.config
    x = torch.randn(2, config.in_channels, 8, 8, generator=generator)
    context = torch.randn(2, 5, config.cross_attention_dim, generator=generator)
    added = None
    if sdxl:
        width = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        added = {"text_embeds": torch.randn(2, width, generator=generator),
                 "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}
    return unet(x, torch.tensor([700, 300]), encoder_hidden_states=context,
                added_cond_kwargs=added).sample


def text_out(encoder):
    ids = torch.tensor([[0, 5, 9, 3, 2, 1, 1]])
    return encoder(input_ids=ids).last_hidden_state


def outputs(models, sdxl):
    with torch.no_grad():
        result = {"unet": unet_out(models["unet"], sdxl)}
        for c in ("text_encoder", "text_encoder_2"):
            if c in models:
                result[c] = text_out(models[c])
    return result


_KOHYA: dict = {}


@pytest.fixture(scope="module", params=["sd1", "sdxl"])
def kohya(request, tmp_path_factory):
    return kohya_files(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def sd1_kohya(tmp_path_factory):
    return kohya_files("sd1", tmp_path_factory)


def kohya_files(family, tmp_path_factory):
    """H1's kohya file for the family's tiny models, and a LoCon (convolution)
    LoRA for the same U-Net written here (made once per family)."""
    from tests.layouts.files import tiny_lora_file

    if family in _KOHYA:
        return _KOHYA[family]
    folder = tmp_path_factory.mktemp(f"lora_{family}")
    attention = tiny_lora_file(folder / "attention.safetensors", family=family, rank=4, alpha=2.0)
    conv = lora_tensors(locon_names(family, attention.models["unet"]), rank=3, alpha=1.5, seed=7)
    save_file(conv, str(folder / "locon.safetensors"))
    _KOHYA[family] = (family, attention, folder / "locon.safetensors", conv)
    return _KOHYA[family]


def kohya_targets(family, configs):
    from tests.layouts.lora_kohya import lora_targets

    def targets_of(copies):
        attention = {name: target.weight
                     for name, target in lora_targets(family, copies, configs).items()}
        return {**attention, **locon_names(family, copies["unet"])}
    return targets_of


def test_kohya_loras_match_a_manual_merge_and_stack(kohya):
    from core.models.lora import load_lora

    family, attention, locon_path, locon = kohya
    models, sdxl = attention.models, family == "sdxl"
    before = snapshot(models)
    base = outputs(models, sdxl)
    strengths = {"unet": 0.8, "text": 0.6}
    per_component = {c: strengths["unet" if c == "unet" else "text"] for c in models}
    first = load_lora(attention.path, models, per_component)
    second = load_lora(locon_path, models, per_component)
    assert len(first["unet"].deltas) > 50 and len(second["unet"].deltas) > 20
    targets_of = kohya_targets(family, attention.configs)
    for files, patch_sets in (([attention.tensors], [first]),
                              ([attention.tensors, locon], [first, second])):
        reference = outputs(merged(models, targets_of, files, strengths), sdxl)
        with contextlib.ExitStack() as stack:
            for patches in patch_sets:
                for patch in patches.values():
                    stack.enter_context(patch.active())
            ours = outputs(models, sdxl)
        for component, value in reference.items():
            assert not torch.allclose(value, base[component], atol=1e-3), component
            torch.testing.assert_close(ours[component], value, atol=1e-5, rtol=0)
    assert_unchanged(models, before)
    after = outputs(models, sdxl)
    for component, value in base.items():
        assert torch.equal(after[component], value), component


def test_diffusers_lora_names_give_the_kohya_result(sd1_kohya, tmp_path):
    """peft/diffusers keys (``unet.<path>.lora_A.weight``) patch the same modules."""
    from core.models.lora import load_lora

    family, attention, _, _ = sd1_kohya
    peft = {}
    for key, tensor in attention.tensors.items():
        stem, kind = key.split(".", 1)
        if kind == "alpha":
            continue
        component = "unet" if stem.startswith("lora_unet_") else "text_encoder"
        path = _module_path(attention.models[component], stem.split("_", 2)[2])
        suffix = "lora_A.weight" if kind == "lora_down.weight" else "lora_B.weight"
        peft[f"{component}.{path}.{suffix}"] = tensor * (2.0 / 4) ** 0.5  # α/r folded in
    save_file(peft, str(tmp_path / "peft.safetensors"))
    strengths = {"unet": 1.0, "text_encoder": 1.0}
    kohya_patch = load_lora(attention.path, attention.models, strengths)
    peft_patch = load_lora(tmp_path / "peft.safetensors", attention.models, strengths)
    for component in ("unet", "text_encoder"):
        with kohya_patch[component].active():
            want = outputs(attention.models, False)[component]
        with peft_patch[component].active():
            got = outputs(attention.models, False)[component]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def _module_path(model, underscored):
    for path, _ in model.named_modules():
        if underscored in (path.replace(".", "_"), "text_model_" + path.replace(".", "_")):
            return path
    raise KeyError(underscored)


def test_lora_errors_list_unmatched_keys_and_name_wrong_shapes(sd1_kohya, tmp_path):
    from core.models.lora import load_lora

    family, attention, _, _ = sd1_kohya
    models = attention.models
    strengths = {"unet": 1.0, "text_encoder": 1.0}
    foreign = {f"lora_unet_single_blocks_{i}_linear1.{kind}": torch.zeros(4, 8)
               for i in range(3) for kind in ("lora_down.weight", "lora_up.weight")}
    save_file(foreign, str(tmp_path / "flux.safetensors"))
    with pytest.raises(CheckpointError,
                       match=r"flux\.safetensors: 3 of 3 .*single_blocks_0_linear1"):
        load_lora(tmp_path / "flux.safetensors", models, strengths)
    wrong = dict(attention.tensors)
    name = "lora_unet_down_blocks_0_attentions_0_proj_in"
    wrong[f"{name}.lora_down.weight"] = torch.zeros(4, 7, 1, 1)
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(CheckpointError, match=rf"wrong\.safetensors: {name} has shapes"):
        load_lora(tmp_path / "wrong.safetensors", models, strengths)
    odd = {**attention.tensors, "lora_unet_x.hada_w1_a": torch.zeros(2)}
    save_file(odd, str(tmp_path / "loha.safetensors"))
    with pytest.raises(CheckpointError, match="hada_w1_a"):
        load_lora(tmp_path / "loha.safetensors", models, strengths)
    with pytest.raises(CheckpointError, match="pickled"):
        load_lora(tmp_path / "lora.pt", models, strengths)


def test_sdxl_kohya_names_agree_with_diffusers_converter(kohya):
    """Our name table (module paths → kohya names, original SGM paths for
    SDXL) against diffusers' own kohya converter, module by module."""
    import re

    from diffusers.loaders.lora_conversion_utils import (
        _convert_non_diffusers_lora_to_diffusers,
        _maybe_map_sgm_blocks_to_diffusers,
    )

    from core.models.lora import module_table

    family, attention, _, _ = kohya
    unet = attention.models["unet"]
    table = {name: path for name, path in module_table("unet", unet).items()
             if name.startswith(("input_blocks_", "middle_block_", "output_blocks_", "time_embed_",
                                 "label_emb_", "out_2")) == (family == "sdxl")}
    if family == "sd1":  # SD 1.x files use diffusers paths; diffusers' converter reads them as is
        table = {name: path for name, path in table.items()
                 if not name.startswith("up_blocks_0_upsamplers")}
    state = {}
    for name in table:
        state[f"lora_unet_{name}.lora_down.weight"] = torch.zeros(1)
        state[f"lora_unet_{name}.lora_up.weight"] = torch.zeros(1)
    renamed = _maybe_map_sgm_blocks_to_diffusers(state, unet.config)
    converted, _ = _convert_non_diffusers_lora_to_diffusers(renamed)

    def module_of(key):
        key = key.removeprefix("unet.").replace(".processor", "")
        key = re.sub(r"(\.lora)?\.(down|up)\.weight$", "", key)
        return re.sub(r"\.to_out$", ".to_out.0", re.sub(r"_lora$", "", key))

    assert len(table) > 100
    assert {module_of(k) for k in converted} == set(table.values())


# -- the LoRA node on the built-in model ---------------------------------------------------------
def shapes_ldm_lora(path):
    """A kohya LoRA over shapes-ldm's attention layers and text encoder."""
    from core.models.builtin import load_model
    from core.models.lora import torch_modules

    loaded = load_model("shapes-ldm")
    unet, text = torch_modules(loaded.model, loaded.clip)
    targets = {}
    for path_, module in unet["unet"].named_modules():
        if ".attentions." in path_ and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            targets["lora_unet_" + path_.replace(".", "_")] = module.weight
    for path_, module in text["text_encoder"].named_modules():
        if isinstance(module, torch.nn.Linear) and ("self_attn" in path_ or "mlp" in path_):
            targets["lora_te_text_model_" + path_.replace(".", "_")] = module.weight
    save_file(lora_tensors(targets, rank=4, alpha=4.0, seed=11), str(path))
    return path


def ldm_workflow(lora_path=None):
    from tests.stubs import chain

    nodes = [("checkpoint", "model.checkpoint", {"name": "shapes-ldm"}),
             ("positive", "conditioning.encode",
              {"text": "a large red circle on a white background"}),
             ("negative", "conditioning.encode", {"text": ""}),
             ("latent", "latent.empty", {"width": 32, "height": 32, "batch_size": 1}),
             ("schedule", "diffusion.schedule",
              {"name": "scaled_linear", "spacing": "karras", "steps": 4}),
             ("sampler", "diffusion.sampler", {"sampler": "euler", "seed": 0, "guidance": 3.0}),
             ("decode", "vae.decode", {}), ("save", "image.save", {})]
    source = "checkpoint"
    if lora_path is not None:
        nodes.append(("lora", "model.lora", {"path": str(lora_path), "strength_model": 1.0,
                                             "strength_clip": 1.0}))
        source = "lora"
    links = []
    if lora_path is not None:
        links = [("checkpoint", "model", "lora", "model"), ("checkpoint", "clip", "lora", "clip")]
    links += [(source, "clip", "positive", "clip"), (source, "clip", "negative", "clip"),
              ("checkpoint", "model", "latent", "model"), (source, "model", "sampler", "model"),
              ("checkpoint", "vae", "decode", "vae"), ("latent", "latent", "sampler", "latent"),
              ("positive", "conditioning", "sampler", "positive"),
              ("negative", "conditioning", "sampler", "negative"),
              ("schedule", "schedule", "sampler", "schedule"),
              ("sampler", "latent", "decode", "latent"),
              ("decode", "image", "save", "images")]
    return chain(*nodes, links=links)


def lora_registry():
    from core.registry import NodeRegistry
    from nodes import builtin_specs
    from nodes.lora import NODES

    specs = list(builtin_specs())
    known = {spec.type_id for spec in specs}
    return NodeRegistry([*specs, *(spec for spec in NODES if spec.type_id not in known)])


def test_lora_node_changes_the_picture_and_the_base_model_stays_exact(tmp_path):
    from core.events import NodeCached
    from core.executor import Executor

    registry = lora_registry()
    lora = shapes_ldm_lora(tmp_path / "shapes-lora.safetensors")
    executor = Executor(registry)
    with_lora = executor.run(ldm_workflow(lora), device="cpu").outputs["save"]["images"]
    events = []
    after = executor.run(ldm_workflow(), on_event=events.append,
                         device="cpu").outputs["save"]["images"]
    assert any(isinstance(e, NodeCached) and e.node_id == "checkpoint" for e in events)
    fresh = Executor(registry).run(ldm_workflow(), device="cpu").outputs["save"]["images"]
    assert torch.equal(after, fresh)  # the cached base model was never changed
    assert (with_lora - fresh).abs().mean() > 0.01


def test_apply_lora_stacks_and_leaves_its_inputs_alone(sd1_kohya, tmp_path):
    """Two LoRA nodes in a row give one patched model carrying both; the
    MODEL and CLIP passed in keep their own behaviour."""
    from core.models.builtin import load_model
    from core.models.lora import LoraDenoiser, LoraTextEncoder, apply_lora

    loaded = load_model("shapes-ldm")
    first = shapes_ldm_lora(tmp_path / "a.safetensors")
    x, level = torch.randn(1, 4, 8, 8), torch.tensor(2.0)
    cond = Conditioning(embeddings=loaded.clip.encode(["a red circle"]))
    base = loaded.model.denoiser(x, level, cond=cond).x0
    model1, clip1 = apply_lora(loaded.model, loaded.clip, first, 0.5, 0.5)
    model2, clip2 = apply_lora(model1, clip1, first, 0.5, 0.5)
    model_full, clip_full = apply_lora(loaded.model, loaded.clip, first, 1.0, 1.0)
    assert isinstance(model2.denoiser, LoraDenoiser)
    assert model2.denoiser.base is loaded.model.denoiser
    assert isinstance(clip2, LoraTextEncoder) and clip2.base is loaded.clip
    # The same LoRA twice at 0.5 is the LoRA once at 1.0 (both are linear in s).
    torch.testing.assert_close(model2.denoiser(x, level, cond=cond).x0,
                               model_full.denoiser(x, level, cond=cond).x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(clip2.encode(["a red circle"]), clip_full.encode(["a red circle"]),
                               atol=1e-5, rtol=0)
    assert not torch.allclose(model1.denoiser(x, level, cond=cond).x0, base, atol=1e-4)
    assert torch.equal(loaded.model.denoiser(x, level, cond=cond).x0, base)
    assert torch.equal(loaded.clip.encode(["a red circle"]), cond.embeddings)


def test_step_timesteps_are_what_the_denoiser_gives_the_network():
    """Binding by t works because the hint sees exactly these timesteps."""
    from core.diffusion.denoisers import DiscreteTimeDenoiser
    from core.diffusion.schedules import make_schedule
    from core.diffusion.timesteps import sampling_sigmas
    from core.models.families.controlnet import step_timesteps

    schedule = make_schedule("scaled_linear", 1000)
    seen = []

    def network(x_t, t, **extra):
        seen.append(float(t[0]))
        return torch.zeros_like(x_t)

    denoiser = DiscreteTimeDenoiser(network, schedule)
    for spacing in ("leading", "karras"):
        seen.clear()
        levels = sampling_sigmas(schedule, 7, spacing)
        for level in levels[:-1]:
            denoiser(torch.zeros(1, 4, 2, 2), level)
        assert step_timesteps(schedule, levels).tolist() == pytest.approx(seen, abs=1e-3)


@pytest.mark.parametrize("family", ["controlnet_sd1", "controlnet_sdxl"])
def test_config_from_full_size_shapes_is_the_published_one(family):
    """The real SD 1.5 and SDXL ControlNet configs, inferred from the shapes
    alone (meta tensors: no memory), through the original layout for SD 1.5."""
    import json
    from pathlib import Path

    from diffusers import ControlNetModel

    from core.models.families.controlnet import convert_original_controlnet, infer_controlnet_config

    folder = Path(__file__).resolve().parents[1] / "core" / "models" / "configs" / family
    published = {k: v for k, v in json.loads((folder / "controlnet.json").read_text()).items()
                 if not k.startswith("_")}
    with torch.device("meta"):
        model = ControlNetModel(**published)
    state = model.state_dict()
    if family == "controlnet_sd1":
        state = convert_original_controlnet(original_layout(_MetaState(state, model.config)))
    inferred = infer_controlnet_config(state)

    def normal(value):
        return list(value) if isinstance(value, (list, tuple)) else value

    for key, value in inferred.items():
        want = published.get(key, value)
        if key in ("attention_head_dim", "transformer_layers_per_block") and isinstance(want, int):
            want = [want] * len(inferred["block_out_channels"])
        assert normal(value) == normal(want), key
    with torch.device("meta"):
        assert sum(p.numel() for p in ControlNetModel(**inferred).parameters()) == \
            sum(p.numel() for p in model.parameters())


class _MetaState:
    """A state dict posing as a module for :func:`original_layout` (no clone of meta data)."""

    def __init__(self, state, config):
        self._state, self.config = state, config

    def state_dict(self):
        return self._state


@pytest.mark.parametrize("layout", ["original", "original_bare", "diffusers"])
def test_shared_tiny_controlnet_files_load_exactly(tmp_path, layout):
    """The project's shared tiny ControlNet files (tests/layouts) in each layout."""
    from tests.layouts.files import tiny_controlnet_file

    tiny = tiny_controlnet_file(tmp_path / f"{layout}.safetensors", layout=layout)
    assert_same_weights(load_controlnet_file(tiny.path), tiny.models["controlnet"])


def test_bound_full_range_hints_sample_like_plain_hints_in_a_guided_run():
    """A whole run (batched classifier-free guidance, the hint shared by both
    prompts) with timed hints bound to the schedule as the sampler will bind
    them: the same picture as the plain ControlHint."""
    from dataclasses import replace

    from core.diffusion.schedules import make_schedule
    from core.diffusion.timesteps import sampling_sigmas
    from core.models.builtin import load_controlnet, load_model
    from core.models.conditioned import ControlHint
    from core.models.families.controlnet import step_timesteps
    from core.sampling import run_sampler
    from core.values import SamplingSchedule

    loaded = load_model("shapes-ldm")
    controlnet = load_controlnet("shapes-controlnet")
    table = make_schedule("scaled_linear", 1000)
    schedule = SamplingSchedule("scaled_linear", "ve", sampling_sigmas(table, 4, "karras"), table,
                                "karras")
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    positive = Conditioning(embeddings=loaded.clip.encode(["a red circle"]))
    negative = Conditioning(embeddings=loaded.clip.encode([""]))
    pictures = []
    for hint in (TimedControlHint(controlnet, image, 0.8), ControlHint(controlnet, image, 0.8)):
        pos, neg = (replace(c, extras={**c.extras, "control": (hint,)})
                    for c in (positive, negative))
        pos, neg = bind_control_steps([pos, neg], step_timesteps(loaded.model.schedule,
                                                                  schedule.levels))
        picture, _ = run_sampler(loaded.model, schedule, torch.zeros(1, 4, 16, 16), positive=pos,
                                 negative=neg, guidance=3.0, seed=0)
        pictures.append(picture)
    torch.testing.assert_close(pictures[0], pictures[1], atol=1e-6, rtol=0)


def test_lora_and_controlnet_follow_the_network_dtype(sd1_kohya, sd1_parts, tmp_path):
    """bf16 networks: LoRA deltas are cast once to the module's dtype, the
    hint computes in the ControlNet's dtype and answers in x_t's."""
    from core.models.lora import load_lora

    _, attention, _, _ = sd1_kohya
    unet = copy.deepcopy(attention.models["unet"]).to(torch.bfloat16)
    patch = load_lora(attention.path, {"unet": unet}, {"unet": 1.0})["unet"]
    dtypes = {d.down.dtype for d in patch.deltas} | {d.up.dtype for d in patch.deltas}
    assert dtypes == {torch.bfloat16}
    x, t = torch.randn(1, 4, 8, 8, dtype=torch.bfloat16), torch.tensor([500])
    context = torch.randn(1, 5, 32, dtype=torch.bfloat16)
    with torch.no_grad(), patch.active():
        low = unet(x, t, encoder_hidden_states=context).sample.float()
    reference = load_lora(attention.path, {"unet": attention.models["unet"]}, {"unet": 1.0})["unet"]
    with torch.no_grad(), reference.active():
        high = attention.models["unet"](x.float(), t, encoder_hidden_states=context.float()).sample
    assert (low - high).abs().max() < 0.1 * high.abs().max()

    _, controlnet, _ = sd1_parts
    hint = TimedControlHint(copy.deepcopy(controlnet).to(torch.bfloat16), torch.rand(1, 3, 64, 64))
    down, mid = hint.residuals(torch.randn(2, 4, 8, 8), torch.tensor([500, 500]),
                               torch.randn(2, 5, 32))
    assert {d.dtype for d in down} == {mid.dtype} == {torch.float32}

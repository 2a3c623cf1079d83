"""The loader nodes on the user's files: the models folders in their dropdowns,
any family through one Checkpoint loader, a clear sentence for a file that is
not a backbone, VAE and ControlNet files, and a ControlNet acting on part of
the steps."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from core.checkpoints import CheckpointError
from core.checkpoints.library import clear_cache, set_models_dirs
from core.models.builtin import load_controlnet, load_model
from core.values import Conditioning
from nodes import builtin_specs
from nodes.loaders import (
    CHECKPOINT_BUILTINS,
    FILE_CHOICE,
    load_checkpoint_node,
    load_controlnet_node,
    load_vae_node,
)
from tests.layouts.files import (
    tiny_controlnet_file,
    tiny_lora_file,
    tiny_sd1_checkpoint,
    tiny_vae_file,
)
from tests.layouts.sd3 import tiny_sd3_checkpoint, tiny_vae16_file

CTX = SimpleNamespace(device="cpu", dtype=torch.float32)


@pytest.fixture
def models_dir(tmp_path):
    folder = tmp_path / "models"
    tiny_sd3_checkpoint(folder / "sd3" / "tiny-sd35.safetensors", variant="sd35_large")
    tiny_sd1_checkpoint(folder / "sd15" / "tiny-sd1.safetensors")
    tiny_vae16_file(folder / "vae" / "sd3-vae.safetensors", family="sd3")
    tiny_vae_file(folder / "vae" / "sdxl-vae.safetensors", scaling_factor=0.13025)
    tiny_controlnet_file(folder / "controlnet" / "canny.safetensors")
    tiny_lora_file(folder / "loras" / "style.safetensors")
    set_models_dirs([folder])
    clear_cache()
    yield folder
    set_models_dirs(None)
    clear_cache()


def _choices(type_id: str) -> tuple[str, ...]:
    spec = next(s for s in builtin_specs() if s.type_id == type_id)
    return next(i for i in spec.inputs if i.name == "name").choices


def test_dropdowns_list_the_models_folders_by_what_each_file_is(models_dir):
    assert _choices("model.checkpoint") == (*CHECKPOINT_BUILTINS,
                                            "sd15/tiny-sd1.safetensors",
                                            "sd3/tiny-sd35.safetensors", FILE_CHOICE)
    assert "vae/sd3-vae.safetensors" in _choices("model.vae")
    assert "controlnet/canny.safetensors" in _choices("model.controlnet")
    assert "loras/style.safetensors" not in _choices("model.checkpoint")


def test_without_models_folders_the_dropdowns_hold_the_builtins():
    set_models_dirs(None)
    assert _choices("model.checkpoint") == (*CHECKPOINT_BUILTINS, FILE_CHOICE)
    assert CHECKPOINT_BUILTINS[:5] == ("shapes-ldm", "shapes-ddpm", "shapes-flow",
                                       "shapes-palette", "shapes-unclip")


def test_checkpoint_loader_loads_a_models_folder_name_of_another_family(models_dir):
    out = load_checkpoint_node(CTX, "sd15/tiny-sd1.safetensors", "")
    assert out["model"].name == "sd1" and out["model"].latent_channels == 4
    assert out["vae"].scaling_factor == pytest.approx(0.18215)


def test_an_sd3_file_reaches_the_sd3_loader(models_dir):
    # the tiny VAE's 8 norm groups cannot be told from its shapes: the error proves the route
    with pytest.raises(CheckpointError, match="tiny-sd35.*VAE.*num_groups"):
        load_checkpoint_node(CTX, "sd3/tiny-sd35.safetensors", "")


def test_checkpoint_loader_still_loads_the_builtins():
    out = load_checkpoint_node(CTX, "shapes-ldm", "")
    assert out["model"].name == "shapes-ldm"


def test_a_lora_in_the_checkpoint_loader_is_told_which_node_loads_it(models_dir):
    with pytest.raises(CheckpointError, match="LoRA.*LoRA loader node"):
        load_checkpoint_node(CTX, FILE_CHOICE, str(models_dir / "loras" / "style.safetensors"))


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.safetensors"):
        load_checkpoint_node(CTX, FILE_CHOICE, str(tmp_path / "nowhere.safetensors"))


def test_vae_loader_reads_the_kind_from_the_name_or_the_choice(models_dir):
    auto = load_vae_node(CTX, "vae/sdxl-vae.safetensors", "", "auto")
    assert auto.scaling_factor == pytest.approx(0.13025) and auto.latent_channels == 4
    chosen = load_vae_node(CTX, "vae/sdxl-vae.safetensors", "", "sd")
    assert chosen.scaling_factor == pytest.approx(0.18215)
    builtin = load_vae_node(CTX, "shapes-vae", "", "auto")
    assert builtin.latent_channels == 4


def test_sixteen_channel_vae_kinds_give_their_scale_and_shift(models_dir):
    from core.models.families.dispatch import load_any_vae

    file, tiny = models_dir / "vae" / "sd3-vae.safetensors", {"norm_num_groups": 8}
    auto = load_any_vae(file, "auto", overrides=tiny)
    assert (auto.scaling_factor, auto.shift_factor) == pytest.approx((1.5305, 0.0609))
    flux = load_any_vae(file, "flux", overrides=tiny)
    assert (flux.scaling_factor, flux.shift_factor) == pytest.approx((0.3611, 0.1159))


def test_controlnet_loader_reads_original_layout_files(models_dir):
    from diffusers import ControlNetModel

    assert isinstance(load_controlnet_node(CTX, "controlnet/canny.safetensors", ""),
                      ControlNetModel)


def _controlnet_calls(start: float, end: float, steps: int = 4) -> int:
    """How often the ControlNet runs in a ``steps``-step guided Euler run."""
    from nodes.conditioning import apply_controlnet, encode_text
    from nodes.diffusion import make_sampling_schedule
    from core.sampling import run_sampler

    loaded = load_model("shapes-ldm")
    controlnet = load_controlnet("shapes-controlnet")
    calls = []
    controlnet.register_forward_hook(lambda *args: calls.append(1))
    positive = encode_text(CTX, loaded.clip, "a red circle")
    hint = torch.zeros(1, 3, 64, 64)
    hint[..., 16:48, 16:48] = 1.0
    conds = apply_controlnet(CTX, positive, Conditioning(), controlnet, hint, 1.0, start, end)
    schedule = make_sampling_schedule(CTX, "scaled_linear", 1000, False, "trailing", steps, 1.0)
    run_sampler(loaded.model, schedule, torch.zeros(1, 4, 16, 16), sampler="euler",
                positive=conds["positive"], negative=conds["negative"], guidance=3.0)
    return len(calls)


def test_controlnet_start_and_end_pick_the_steps_it_acts_on():
    """diffusers' control_guidance_start/end: step i of N when i/N ≥ start, (i+1)/N ≤ end;
    guidance's two prompts share one batched ControlNet call per step."""
    assert _controlnet_calls(0.0, 1.0) == 4
    assert _controlnet_calls(0.0, 0.5) == 2
    assert _controlnet_calls(0.5, 1.0) == 2


def test_controlnet_start_must_come_before_end():
    from nodes.conditioning import apply_controlnet

    with pytest.raises(ValueError, match="start"):
        apply_controlnet(CTX, Conditioning(), None, None, torch.zeros(1, 3, 8, 8), 1.0, 0.6, 0.4)


def test_missing_files_lists_only_the_files_a_run_would_read(tmp_path):
    from core.checkpoints.missing import missing_files
    from core.workflow import Node, Workflow
    from nodes import default_registry

    registry = default_registry(plugins=False)[0]
    present = tmp_path / "here.safetensors"
    present.write_bytes(b"")
    workflow = Workflow()
    workflow.nodes["named"] = Node("named", "model.checkpoint", 1, None,
                                   {"name": "shapes-ldm", "path": "/nowhere/a.safetensors"})
    workflow.nodes["by_path"] = Node("by_path", "model.checkpoint", 1, "Base",
                                     {"name": FILE_CHOICE, "path": "/nowhere/b.safetensors",
                                      "vae_file": str(present), "clip_l": "/nowhere/c.safetensors"})
    workflow.nodes["ideal"] = Node("ideal", "model.ideal_denoiser", 1, None,
                                   {"source": "built-in shapes", "folder": "/nowhere/images"})
    found = [(m.node_id, m.param, m.title) for m in missing_files(workflow, registry)]
    assert found == [("by_path", "path", "Base"), ("by_path", "clip_l", "Base")]


def test_sdxl_conditioning_node_sets_the_micro_conditions():
    from nodes.sdxl import sdxl_conditioning

    cond = sdxl_conditioning(CTX, Conditioning(text="x"), 2048, 1536, 16, 32, 0, 0, 2.5)
    assert cond.extras["original_size"] == (1536, 2048) and cond.extras["crop"] == (32, 16)
    assert cond.extras["aesthetic_score"] == 2.5 and "target_size" not in cond.extras


def test_the_env_var_alone_lists_a_models_folder(models_dir, monkeypatch):
    from nodes.loaders import MODELS_ENV_VAR
    from core.checkpoints import library

    assert MODELS_ENV_VAR == library.ENV_VAR
    set_models_dirs(None)
    monkeypatch.setenv(MODELS_ENV_VAR, str(models_dir))
    assert "sd15/tiny-sd1.safetensors" in _choices("model.checkpoint")

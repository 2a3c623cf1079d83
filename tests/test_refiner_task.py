"""Issue 13 item 1: the refiner task starts from shapes-ldm, trains
its U-Net on the low-noise end of the schedule only, and writes a file that
loads like any latent diffusion model; a graph of base → refiner is measured
by running the graph (core.evaluation.workflow_eval)."""
from __future__ import annotations

import json
import shutil

import torch

from core.checkpoints import load_checkpoint
from core.checkpoints.safetensors_io import component
from core.evaluation.workflow_eval import evaluate_workflow
from core.executor import Executor
from core.models.builtin import load_model
from core.paths import DEFAULT_WORKFLOW
from core.training.recipes import MODELS_DIR, run_training
from core.training.refiner_task import REFINER_TIMESTEPS
from nodes import default_registry


def test_the_refiner_trains_its_unet_on_low_noise_from_the_base(tmp_path):
    out = tmp_path / "shapes-refiner.safetensors"
    run_training("shapes-refiner", steps=2, batch=2, out=out, resume=None, device="cpu", pool=16,
                 models_dir=MODELS_DIR)
    tensors, meta = load_checkpoint(out)
    assert meta["name"] == "shapes-refiner" and meta["kind"] == "ldm"
    assert meta["refiner"] == {"timesteps": [0, REFINER_TIMESTEPS], "base": "shapes-ldm"}
    base, _ = load_checkpoint(MODELS_DIR / "shapes-ldm.safetensors")
    text, base_text = component(tensors, "text_encoder"), component(base, "text_encoder")
    assert all(torch.equal(text[k], base_text[k]) for k in base_text)  # frozen, copied
    unet, base_unet = component(tensors, "unet"), component(base, "unet")
    assert any(not torch.equal(unet[k], base_unet[k]) for k in base_unet)  # trained
    shutil.copy(MODELS_DIR / "shapes-vae.safetensors", tmp_path)  # it names its VAE, beside it
    assert load_model(str(out)).model.latent_channels == 4


def test_the_refiner_draws_timesteps_below_its_limit_only():
    from core.training.refiner_task import RefinerTask

    task = RefinerTask.__new__(RefinerTask)  # no pool: only the timestep draw is under test
    task.batch, task.max_timestep = 4096, REFINER_TIMESTEPS
    t = task.timesteps(torch.Generator().manual_seed(0))
    assert int(t.min()) == 0 and int(t.max()) == REFINER_TIMESTEPS - 1


def test_a_workflow_is_measured_by_running_it(tmp_path):
    workflow = json.loads(DEFAULT_WORKFLOW.read_text())
    for node in workflow["nodes"]:
        if node["id"] == "schedule":
            node["params"]["steps"] = 2
    path = tmp_path / "small.json"
    path.write_text(json.dumps(workflow))
    executor = Executor(default_registry(plugins=False)[0])
    report = evaluate_workflow(executor, path, prompts=2, per_prompt=2)
    assert report.samples == 4 and report.steps == 2 and set(report.accuracy) == {
        "color", "shape", "size", "position", "background"}


def test_eval_measures_a_workflow_file_with_its_parameters_changed(tmp_path, capsys):
    """``eval refiner.json``: the graph run per caption, ``--set`` applied first;
    a wrong node is named, and nothing runs."""
    from app.cli.main import main
    from core.paths import WORKFLOWS_DIR

    grid = tmp_path / "grid.png"
    path = str(WORKFLOWS_DIR / "refiner.json")
    assert main(["eval", path, "--samples", "1", "--per-prompt", "2", "--set", "schedule.steps=3",
                 "--set", "base_sampler.stop_at_step=2", "--grid", str(grid),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("refiner: 2 samples") and "| shape |" in out and grid.exists()
    assert main(["eval", path, "--set", "nope.steps=3", "--device", "cpu"]) == 2
    assert "no node has the id or title 'nope'" in capsys.readouterr().err

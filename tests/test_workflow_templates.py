"""The workflow templates for the user's own checkpoints (SD 1.5, SD 1.5 +
ControlNet, SDXL base + refiner, SD3, Flux): each validates, says which file
it lacks by name, and the SD ones run end to end on tiny files in the real
single-file layouts, through the same command a user types."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.cli.main import main
from core.workflow import load
from tests.layouts.files import (
    tiny_controlnet_file,
    tiny_sd1_checkpoint,
    tiny_sdxl_checkpoint,
    tiny_sdxl_refiner_checkpoint,
)

FOLDER = Path(__file__).resolve().parents[1] / "workflows"
TEMPLATES = {"sd15-txt2img": "v1-5-pruned-emaonly", "sd15-controlnet": "v1-5-pruned-emaonly",
             "sdxl-base-refiner": "sd_xl_base_1.0", "sd3-txt2img": "sd3.5_medium",
             "flux-txt2img": "flux1-dev"}
SMALL = ["--set", "latent.width=64", "--set", "latent.height=64", "--set", "schedule.steps=4"]


def test_the_templates_are_there_and_say_what_to_set():
    found = {p.stem for p in FOLDER.glob("*.json") if "template" in load(p).ui}
    assert found == set(TEMPLATES)


@pytest.mark.parametrize("name, missing", TEMPLATES.items())
def test_a_template_without_its_file_names_the_file(name, missing, capsys, monkeypatch):
    monkeypatch.delenv("DIFFUSION_WORKBENCH_MODELS", raising=False)
    assert main(["run", str(FOLDER / f"{name}.json"), "--device", "cpu"]) == 1
    assert f"{missing}.safetensors: not found in the models folders" in capsys.readouterr().err


def _run(name: str, out: Path, models: Path, *settings: str) -> list[Path]:
    code = main(["--models-dir", str(models), "run", str(FOLDER / f"{name}.json"), "--out",
                 str(out), "--device", "cpu", *SMALL, *settings])
    assert code == 0
    return sorted(out.glob("*.png"))


def test_sd15_templates_run_on_a_file_in_the_models_folder(tmp_path):
    models = tmp_path / "models"
    tiny_sd1_checkpoint(models / "v1-5-pruned-emaonly.safetensors")
    tiny_controlnet_file(models / "control_v11p_sd15_canny.safetensors")
    assert len(_run("sd15-txt2img", tmp_path / "a", models)) == 1
    assert len(_run("sd15-controlnet", tmp_path / "b", models, "--set", "scene.pixels=64")) == 1


def test_sdxl_base_hands_its_last_steps_to_the_refiner(tmp_path):
    models = tmp_path / "models"
    tiny_sdxl_checkpoint(models / "sd_xl_base_1.0.safetensors")
    tiny_sdxl_refiner_checkpoint(models / "sd_xl_refiner_1.0.safetensors")
    written = _run("sdxl-base-refiner", tmp_path / "out", models,
                   "--set", "base_sampler.stop_at_step=3")
    assert len(written) == 1

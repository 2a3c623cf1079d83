"""Every example workflow runs headless and makes a non-trivial image.

The default suite runs each example at reduced settings (a few sampler steps,
one picture): that proves every node, link and file of the example works and
costs about a tenth of the shipped settings. One run at the shipped settings,
marked ``slow``, checks that those settings still make what the prompt asks.
"""
from __future__ import annotations

from pathlib import Path

import numpy
import pytest
import torch
from PIL import Image, ImageStat

from app.cli.main import main
from core.evaluation.analyser import analyse
from core.workflow import load

ALL_WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / "workflows").glob("*.json"))
# templates for the user's own checkpoints: run with tiny files in test_workflow_templates.py
WORKFLOWS = [p for p in ALL_WORKFLOWS if "template" not in load(p).ui]

#: The reduced settings: at most this many steps per stepping node, one picture per batch.
REDUCED_STEPS = 3
REDUCED_BATCH = 1
REDUCED_FRAMES = 4  # a video's clip length


def reduced_settings(path: Path) -> list[str]:
    """``--set`` arguments that lower every ``steps``, ``batch_size`` and ``frames`` parameter
    of the workflow at ``path`` (never raise one), through the CLI as a person
    would; a hand-off (``stop_at_step``) moves inside the fewer steps."""
    overrides = []
    for node in load(path).nodes.values():
        for name, cap in (("steps", REDUCED_STEPS), ("batch_size", REDUCED_BATCH),
                          ("stop_at_step", REDUCED_STEPS - 1), ("frames", REDUCED_FRAMES)):
            value = node.params.get(name)
            if isinstance(value, int) and value > cap:
                overrides += ["--set", f"{node.id}.{name}={cap}"]
    return overrides


def run_example(path: Path, out: Path, capsys, overrides=()) -> list[Path]:
    """Run ``path`` with the CLI; the PNGs it wrote, each checked to be a real
    picture that carries its workflow."""
    assert main(["run", str(path), "--out", str(out), "--device", "cpu", *overrides]) == 0
    written = [Path(p) for p in capsys.readouterr().out.split()]
    assert written and all(p.exists() for p in written)
    for png in written:
        with Image.open(png) as picture:
            spread = ImageStat.Stat(picture.convert("L")).stddev[0]
        assert spread > 5, f"{png.name} is nearly flat"
        load(png)  # and it carries its workflow
    return written


def test_there_are_example_workflows():
    assert len(WORKFLOWS) >= 3


def test_reduced_settings_lower_the_costly_parameters_only():
    ddpm = next(p for p in WORKFLOWS if p.stem == "ddpm-pixel")  # 50 steps, a batch of 4
    assert reduced_settings(ddpm) == ["--set", "latent.batch_size=1", "--set", "schedule.steps=3"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_example_workflow_runs_headless_at_reduced_settings(path, tmp_path, capsys):
    run_example(path, tmp_path, capsys, reduced_settings(path))


def _picture(png: Path) -> torch.Tensor:
    """The PNG as the analyser reads pictures: (3, H, W) in [0, 1]."""
    with Image.open(png) as picture:
        pixels = torch.from_numpy(numpy.array(picture.convert("RGB")))  # (H, W, 3) uint8
    return pixels.permute(2, 0, 1).float() / 255  # (3, H, W)


@pytest.mark.slow
def test_ddpm_pixel_at_its_shipped_settings_draws_what_its_prompt_asks(tmp_path, capsys):
    """The shipped 50 DDPM steps draw "a large yellow circle" in every picture
    (the analyser reads pixels only); at 3 steps some pictures read otherwise."""
    path = next(p for p in WORKFLOWS if p.stem == "ddpm-pixel")
    assert load(path).nodes["positive"].params["text"] == "a large yellow circle"
    written = run_example(path, tmp_path, capsys)
    assert len(written) == 4
    readings = [analyse(_picture(png)) for png in written]
    assert [(r.size, r.color, r.shape) for r in readings] == [("large", "yellow", "circle")] * 4

"""Every example workflow runs headless and makes a non-trivial image."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageStat

from app.cli.main import main
from core.workflow import load

ALL_WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / "workflows").glob("*.json"))
# templates for the user's own checkpoints: run with tiny files in test_workflow_templates.py
WORKFLOWS = [p for p in ALL_WORKFLOWS if "template" not in load(p).ui]


def test_there_are_example_workflows():
    assert len(WORKFLOWS) >= 3


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_example_workflow_runs_headless(path, tmp_path, capsys):
    assert main(["run", str(path), "--out", str(tmp_path), "--device", "cpu"]) == 0
    written = [Path(p) for p in capsys.readouterr().out.split()]
    assert written and all(p.exists() for p in written)
    for png in written:
        with Image.open(png) as picture:
            spread = ImageStat.Stat(picture.convert("L")).stddev[0]
        assert spread > 5, f"{png.name} is nearly flat"
        load(png)  # and it carries its workflow

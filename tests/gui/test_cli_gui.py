"""``diffusion-workbench gui FILE [--run] [--screenshot PATH]`` end to end, in-process."""
from __future__ import annotations

import sys

from PySide6 import QtGui

from app.cli.main import main
from core.workflow import load, save
from tests.gui.conftest import REPO, SCREENSHOTS


def test_screenshot_without_run_exits_at_once(tmp_path):
    shot = tmp_path / "window.png"
    assert main(["gui", str(REPO / "workflows" / "txt2img.json"), "--screenshot", str(shot)]) == 0
    image = QtGui.QImage(str(shot))
    assert image.width() >= 600 and image.height() >= 500


def test_run_then_screenshot(tmp_path):
    workflow = load(REPO / "workflows" / "txt2img.json")
    workflow.nodes["schedule"].params["steps"] = 3
    workflow.nodes["latent"].params["batch_size"] = 2
    path = tmp_path / "small.json"
    save(workflow, path)
    shot = SCREENSHOTS / "gui-cli-run.png"
    assert main(["gui", str(path), "--run", "--screenshot", str(shot)]) == 0
    assert QtGui.QImage(str(shot)).width() >= 600


def test_a_failing_run_exits_1(tmp_path):
    workflow = load(REPO / "workflows" / "txt2img.json")
    workflow.nodes["checkpoint"].params.update({"name": "file…", "path": str(tmp_path / "nope.safetensors")})
    path = tmp_path / "broken.json"
    save(workflow, path)
    assert main(["gui", str(path), "--run", "--screenshot", str(tmp_path / "s.png")]) == 1


def test_the_cli_does_not_import_qt_for_headless_commands():
    import subprocess

    code = ("import sys; from app.cli.main import main; main(['nodes']); "
            "sys.exit(1 if any(m.startswith('PySide6') for m in sys.modules) else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()

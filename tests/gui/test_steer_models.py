"""Issue 6 with other model kinds: pixel-space DDPM (x_t shown as is) and
flow matching (levels are times t); closing the window while a run is paused."""
from __future__ import annotations

import math

import pytest

from tests.gate_probe import parked_at_gate
from tests.gui.conftest import REPO
from tests.gui.steer_helpers import RUN_TIMEOUT_MS, run, tiny


@pytest.mark.parametrize("name, parameterization", [("ddpm-pixel", "ve"), ("flow-matching", "flow")])
def test_step_view_for_pixel_and_flow_models(qtbot, window, name, parameterization):
    assert window.open_path(REPO / "workflows" / f"{name}.json")
    tiny(window, steps=4, batch=1)
    outcome = run(qtbot, window)
    assert outcome.status == "finished", outcome.message
    steering = window.steer
    records = steering.history.steps(steering.timeline.current_track())
    assert len(records) == 4 and records[0].parameterization == parameterization
    first = records[1]
    assert first.x_t_images and first.x0_images and first.eps_images
    if parameterization == "flow":  # x = (1 − t) x0 + t ε
        assert first.snr == pytest.approx(((1 - first.t) / first.t) ** 2)
        assert steering.timeline.info.text().startswith("step 4/4   t = ")
        visited = steering.schedule_plot.visited_timesteps()  # flow times, drawn at 1000 t
        assert visited == pytest.approx([1000 * r.t for r in records])
    else:  # pixel space: x_t is shown as it is, at the image's own size
        assert first.x_t_images[0].width() == first.tensors[0].shape[-1]
        assert math.isclose(first.alpha_bar, 1 / (1 + first.t**2))
        assert len(steering.schedule_plot.visited_timesteps()) == 4


def test_forward_explorer_opens_an_image_file(qtbot, window, tmp_path):
    from PIL import Image

    path = tmp_path / "blue.png"
    Image.new("RGB", (40, 30), (0, 0, 255)).save(path)
    explorer = window.steer.forward
    window.docks["forward"].raise_()
    explorer.slider.setValue(0)
    with qtbot.waitSignal(explorer.computed, timeout=30_000, check_params_cb=lambda r: r.t == 0):
        explorer.load_file(path)
    qtbot.waitUntil(window.steer.jobs.idle)
    pixel = explorer.original.pixmap().toImage().pixelColor(96, 96)
    assert (pixel.red(), pixel.green(), pixel.blue()) == (0, 0, 255)


def test_closing_the_window_while_paused_ends_the_run(qtbot, txt2img):
    window = txt2img
    tiny(window, steps=40, batch=1)
    seen = []
    window.runner.step_preview.connect(seen.append)
    assert window.run_workflow()
    window.actions_by_name["steer_pause"].trigger()
    qtbot.waitUntil(lambda: len(seen) >= 1, timeout=RUN_TIMEOUT_MS)
    qtbot.waitUntil(parked_at_gate, timeout=RUN_TIMEOUT_MS)
    window.graph.undo_stack().setClean()
    with qtbot.waitSignal(window.run_finished, timeout=10_000) as blocker:
        window.close()  # cancels and waits: cancel must wake the parked thread
    assert blocker.args[0].status == "cancelled"
    assert not parked_at_gate() and not window.runner.running

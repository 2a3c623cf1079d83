"""Issue 13's workflows in the GUI: CLIP guidance, Palette and unCLIP run
with step previews of their pixel-space samplers and put pictures in the
Images dock."""
from __future__ import annotations

import pytest

from tests.gui.conftest import REPO
from tests.gui.steer_helpers import run, tiny


@pytest.mark.parametrize("name", ["clip-guidance", "palette-colorize", "unclip-text",
                                  "unclip-variations", "unclip-blend"])
def test_the_workflow_runs_with_step_previews(qtbot, window, name):
    assert window.open_path(REPO / "workflows" / f"{name}.json")
    tiny(window, steps=3, batch=2)
    if name == "unclip-text":  # the prior's batch must match the decoder's
        window.node("prior").set_property("param_batch_size", 2)
        window.node("prior").set_property("param_steps", 3)
    outcome = run(qtbot, window)
    assert outcome.status == "finished", outcome.message
    steering = window.steer
    records = steering.history.steps(steering.timeline.current_track())
    assert len(records) == 3 and records[0].parameterization == "ve"
    assert records[1].x_t_images and records[1].x0_images and records[1].eps_images
    assert records[1].x_t_images[0].width() == 32  # pixel space: shown at its own size
    assert window.gallery.entries and window.gallery.entries[-1].image.width() >= 32

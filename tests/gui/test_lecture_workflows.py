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


def test_the_cascade_shows_the_base_and_the_super_resolution_steps(qtbot, window):
    """cascade.json: two samplers, two tracks; the base's steps at 16 px, the
    SR model's at 64 px, and the comparison row in the Images dock."""
    assert window.open_path(REPO / "workflows" / "cascade.json")
    tiny(window, steps=3, batch=2)
    window.node("sr_schedule").set_property("param_steps", 3)
    outcome = run(qtbot, window)
    assert outcome.status == "finished", outcome.message
    history = window.steer.history
    widths = {history.steps(key)[0].x_t_images[0].width() for key in history.tracks()}
    assert widths == {16, 64}
    assert all(len(history.steps(key)) == 3 for key in history.tracks())
    assert window.gallery.entries[-1].image.width() == 6 * 64  # 16 px, bicubic, SR: two each


def test_the_refiner_takes_over_the_last_steps_on_one_track(qtbot, window):
    """refiner.json: the base stops after its hand-off step and the refiner
    finishes the same schedule; the timeline shows both as one run."""
    assert window.open_path(REPO / "workflows" / "refiner.json")
    tiny(window, steps=4, batch=1)
    window.node("base_sampler").set_property("param_stop_at_step", 3)
    outcome = run(qtbot, window)
    assert outcome.status == "finished", outcome.message
    history = window.steer.history
    (track,) = history.tracks()
    assert history.samplers(track) == ["base_sampler", "refiner_sampler"]
    records = history.steps(track)
    assert [r.node_id for r in records] == ["base_sampler"] * 3 + ["refiner_sampler"]
    assert [r.index for r in records] == [0, 1, 2, 3]
    box = window.steer.timeline.track_box
    assert box.itemText(box.currentIndex()).endswith("base_sampler → refiner_sampler")

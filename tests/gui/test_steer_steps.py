"""Issue 6: the live step view and the scrubber over the kept steps."""
from __future__ import annotations

import math

from tests.gui.conftest import SCREENSHOTS
from tests.gui.steer_helpers import BATCH, STEPS, run, tiny


def test_a_run_shows_every_step_for_every_batch_item(qtbot, txt2img):
    window = txt2img
    tiny(window)
    steering = window.steer
    shown = []
    steering.timeline.step_selected.connect(lambda record: shown.append(
        (record.index, len(steering.step_view.shown_images(0)), len(steering.step_view.shown_images(1)),
         len(steering.step_view.shown_images(2)))))
    outcome = run(qtbot, window)
    assert outcome.status == "finished", outcome.message
    assert [s[0] for s in shown] == list(range(STEPS))  # the live view followed every step
    assert all(s[1:] == (BATCH, BATCH, BATCH) for s in shown)  # x_t, x̂0, ε̂ for each item
    key = steering.timeline.current_track()
    assert key[1] == "sampler" and len(steering.history.steps(key)) == STEPS
    window.docks["steps"].raise_()
    window.grab().save(str(SCREENSHOTS / "steer-window.png"))
    view = steering.step_view
    view.grab().save(str(SCREENSHOTS / "steer-step-view.png"))
    fast = view.shown_images(1)[0]
    view.decode_button.click()  # the exact decode of the shown step, in the background
    qtbot.waitUntil(lambda: view.decoded, timeout=30_000)
    exact = view.shown_images(1)[0]
    assert exact.size() == fast.size() and exact != fast
    view.grab().save(str(SCREENSHOTS / "steer-step-view-decoded.png"))


def test_scrub_to_step_5_shows_that_steps_images_and_numbers(qtbot, txt2img):
    window = txt2img
    tiny(window)
    steering = window.steer
    assert run(qtbot, window).status == "finished"
    steering.timeline.scrub_to(5)
    record = steering.step_view.record
    assert record.index == 5
    kept = steering.history.step(steering.timeline.current_track(), 5)
    assert record is kept
    shown = steering.step_view.shown_images(0)[0]
    expected = kept.x_t_images[0]
    assert shown.pixel(shown.width() // 2, shown.height() // 2) == expected.pixel(
        expected.width() // 2, expected.height() // 2)
    sigma = kept.t
    assert math.isclose(kept.alpha_bar, 1 / (1 + sigma**2)) and math.isclose(kept.snr, sigma**-2)
    text = steering.timeline.info.text()
    assert f"step 6/{STEPS}" in text and f"σ = {sigma:.4g}" in text
    assert f"ᾱ = {kept.alpha_bar:.4g}" in text and f"SNR = {kept.snr:.4g}" in text
    # other steps show other pictures
    other = steering.history.step(steering.timeline.current_track(), 0).x_t_images[0]
    assert other != expected
    # play animates the steps from the start to the end
    steering.timeline.timer.setInterval(10)
    steering.timeline.play_button.setChecked(True)
    qtbot.waitUntil(lambda: not steering.timeline.play_button.isChecked(), timeout=5000)
    assert steering.step_view.record.index == STEPS - 1
    steering.timeline.grab().save(str(SCREENSHOTS / "steer-timeline.png"))

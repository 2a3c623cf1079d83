"""Issue 6: pause inside a run, step twice, continue; cancel while paused."""
from __future__ import annotations

import time

from PySide6 import QtCore

from tests.gui.steer_helpers import RUN_TIMEOUT_MS, STEPS, tiny


def _quiet(qtbot, indices: list, seconds: float = 0.4) -> int:
    """Let the event loop run until no step arrived for ``seconds``; the count then."""
    last, since = len(indices), time.monotonic()
    while time.monotonic() - since < seconds:
        qtbot.wait(50)
        if len(indices) != last:
            last, since = len(indices), time.monotonic()
    return len(indices)


def _start_and_pause(qtbot, window, after: int) -> list:
    indices: list[int] = []

    def on_step(preview) -> None:
        indices.append(preview.index)
        if len(indices) == after:
            window.actions_by_name["steer_pause"].trigger()

    window.runner.step_preview.connect(on_step)
    assert window.run_workflow()
    qtbot.waitUntil(lambda: len(indices) >= after, timeout=RUN_TIMEOUT_MS)
    return indices


def test_pause_step_twice_continue(qtbot, txt2img):
    window = txt2img
    tiny(window)
    actions = window.actions_by_name
    assert not actions["steer_pause"].isEnabled()  # nothing runs yet
    indices = _start_and_pause(qtbot, window, after=3)
    paused = _quiet(qtbot, indices)
    assert 3 <= paused < STEPS and window.runner.running  # stopped at a step boundary, mid-way
    assert actions["steer_step"].isEnabled() and actions["steer_continue"].isEnabled()
    assert not actions["steer_pause"].isEnabled()
    assert window.steer.pause_label.text().startswith(f"Paused after step {paused}/")
    for extra in (1, 2):
        actions["steer_step"].trigger()
        qtbot.waitUntil(lambda: len(indices) == paused + extra, timeout=10_000)
        assert _quiet(qtbot, indices) == paused + extra  # exactly one sampler step, then still
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        actions["steer_continue"].trigger()
    assert blocker.args[0].status == "finished"
    assert indices == list(range(STEPS))  # no step lost or repeated
    assert not actions["steer_step"].isEnabled()


def test_cancel_works_while_paused(qtbot, txt2img):
    window = txt2img
    tiny(window, steps=40, batch=1)
    indices = _start_and_pause(qtbot, window, after=2)
    _quiet(qtbot, indices, 0.2)
    with qtbot.waitSignal(window.run_finished, timeout=10_000) as blocker:
        qtbot.keyClick(window, QtCore.Qt.Key.Key_Escape)
    assert blocker.args[0].status == "cancelled"
    assert len(indices) < 40

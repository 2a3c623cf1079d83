"""Issue 6: pause inside a run, step twice, continue; cancel while paused."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from tests.gate_probe import parked_at_gate
from tests.gui.steer_helpers import RUN_TIMEOUT_MS, STEPS, tiny


def _parked(qtbot, window, indices: list) -> int:
    """Wait until the run's thread is parked at the paused gate, deliver the steps
    it reported before parking (queued signals), and return their count: no step
    can follow until the gate lets one through."""
    qtbot.waitUntil(lambda: parked_at_gate() or not window.runner.running, timeout=RUN_TIMEOUT_MS)
    assert window.runner.running, "the run ended before it paused"
    QtWidgets.QApplication.processEvents()
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
    paused = _parked(qtbot, window, indices)
    assert 3 <= paused < STEPS and window.runner.running  # stopped at a step boundary, mid-way
    assert actions["steer_step"].isEnabled() and actions["steer_continue"].isEnabled()
    assert not actions["steer_pause"].isEnabled()
    assert window.steer.pause_label.text().startswith(f"Paused after step {paused}/")
    for extra in (1, 2):
        actions["steer_step"].trigger()
        qtbot.waitUntil(lambda: len(indices) == paused + extra, timeout=10_000)
        assert _parked(qtbot, window, indices) == paused + extra  # exactly one step, then parked
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        actions["steer_continue"].trigger()
    assert blocker.args[0].status == "finished"
    assert indices == list(range(STEPS))  # no step lost or repeated
    assert not actions["steer_step"].isEnabled()


def test_cancel_works_while_paused(qtbot, txt2img):
    window = txt2img
    tiny(window, steps=40, batch=1)
    indices = _start_and_pause(qtbot, window, after=2)
    _parked(qtbot, window, indices)
    with qtbot.waitSignal(window.run_finished, timeout=10_000) as blocker:
        qtbot.keyClick(window, QtCore.Qt.Key.Key_Escape)
    assert blocker.args[0].status == "cancelled"
    assert len(indices) < 40

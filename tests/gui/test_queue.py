"""Issue 11, the queue: Run while running queues; Run N times raises the seed;
the queue shows in the status bar and each item can be removed."""
from __future__ import annotations

from PySide6 import QtCore

from tests.gui.conftest import SCREENSHOTS
from tests.gui.test_run import RUN_TIMEOUT_MS, _few_steps, load_json


def _collect(window) -> list:
    outcomes = []
    window.run_finished.connect(outcomes.append)
    return outcomes


def _wait_for(qtbot, outcomes, count: int) -> None:
    qtbot.waitUntil(lambda: len(outcomes) >= count, timeout=RUN_TIMEOUT_MS)


def test_run_while_running_queues_a_copy_and_items_can_be_removed(qtbot, txt2img):
    window = txt2img
    _few_steps(window, steps=2, batch=1)
    outcomes = _collect(window)
    sampler = window.node("sampler")
    assert window.run_workflow() and window.runner.running
    window.runner.pause()  # held at its first step: still running, however fast the steps
    sampler.set_property("param_seed", 11)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Return, QtCore.Qt.KeyboardModifier.ControlModifier)
    sampler.set_property("param_seed", 12)
    assert window.run_workflow()  # queued, not refused
    sampler.set_property("param_seed", 13)  # an edit after queuing changes no queued item
    button = window.findChild(QtCore.QObject, "run_queue")
    assert [item.label.split()[-1] for item in window.queue.items] == ["11", "12"]
    assert button.isVisible() and button.text() == "Queue: 2"
    window.statusBar().grab().save(str(SCREENSHOTS / "gui-queue.png"))
    removes = [a for a in button.menu().actions() if a.text().startswith("Remove")]
    assert len(removes) == 2
    removes[0].trigger()  # the seed-11 item
    assert button.text() == "Queue: 1"
    assert window.runner.running and not outcomes  # the first run is still under way
    window.runner.resume()
    _wait_for(qtbot, outcomes, 2)
    qtbot.waitUntil(lambda: not window.runner.running, timeout=RUN_TIMEOUT_MS)
    assert [o.status for o in outcomes] == ["finished", "finished"]
    seeds = [load_json(o.workflow_json).nodes["sampler"].params["seed"] for o in outcomes]
    assert seeds == [0, 12]
    assert not window.queue.items and not button.isVisible()
    assert "queued" in window.log.toPlainText() and "removed queued run" in window.log.toPlainText()


def test_run_n_times_raises_the_seed_of_every_sampler(qtbot, txt2img):
    window = txt2img
    _few_steps(window, steps=2, batch=1)
    window.node("sampler").set_property("param_seed", 5)
    outcomes = _collect(window)
    window.queue.run_times(3)
    assert window.runner.running and len(window.queue.items) == 2
    _wait_for(qtbot, outcomes, 3)
    assert [o.status for o in outcomes] == ["finished"] * 3
    seeds = [load_json(o.workflow_json).nodes["sampler"].params["seed"] for o in outcomes]
    assert seeds == [5, 6, 7]
    assert window.images.thumbs.item(0).text() == "Save image #1 · seed 7"
    assert window.images.history.count() == 3
    assert window.node("sampler").get_property("param_seed") == 5  # the document keeps its seed


def test_an_item_that_cannot_run_is_skipped_and_the_queue_goes_on(qtbot, txt2img):
    window = txt2img
    _few_steps(window, steps=2, batch=1)
    outcomes = _collect(window)
    broken = window.document.workflow()
    broken.disconnect("sampler", "model")
    window.queue.add(broken, "broken")
    window.queue.add(window.document.workflow(), "good")
    window.queue.start_next()
    _wait_for(qtbot, outcomes, 1)
    qtbot.waitUntil(lambda: not window.runner.running and not window.queue.items, timeout=RUN_TIMEOUT_MS)
    assert [o.status for o in outcomes] == ["finished"]
    log = window.log.toPlainText()
    assert "skipped queued run broken" in log and "started queued run good" in log

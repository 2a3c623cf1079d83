"""Running from the window: states on nodes, images, cache, cancel, failures."""
from __future__ import annotations

import threading

from PySide6 import QtCore
from torch.overrides import TorchFunctionMode

from core.workflow import load
from tests.gui.conftest import SCREENSHOTS

RUN_TIMEOUT_MS = 120_000


def _few_steps(window, steps: int = 2, batch: int = 2) -> None:
    window.node("schedule").set_property("param_steps", steps)
    window.node("latent").set_property("param_batch_size", batch)


def _run(qtbot, window, key: bool = True):
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        if key:
            qtbot.keyClick(window, QtCore.Qt.Key.Key_Return, QtCore.Qt.KeyboardModifier.ControlModifier)
        else:
            assert window.run_workflow()
    return blocker.args[0]


def load_json(text: str):
    from core.workflow import loads

    return loads(text)


def test_run_the_default_workflow_and_see_the_image(qtbot, txt2img, tmp_path):
    window = txt2img
    _few_steps(window)
    before = window.document.workflow()
    previews = []
    window.runner.step_preview.connect(previews.append)
    outcome = _run(qtbot, window)
    assert outcome.status == "finished", outcome.message
    assert len(window.images.images) == 2 and window.images.images[0][1].width() == 64
    assert window.images.view.item.pixmap().width() == 64
    assert window.states.state("sampler") == "done" and window.states.state("save") == "done"
    assert previews and previews[-1].index == 1 and previews[-1].x0 is not None
    assert "it/s" in window.log.toPlainText() or "finished" in window.log.toPlainText()
    assert window.document.workflow() == before  # the run changed nothing in the graph
    assert window.device_label.text().startswith("cpu")
    window.docks["images"].raise_()
    window.grab().save(str(SCREENSHOTS / "gui-after-run.png"))
    window.images.view.pixel_exact()
    factor = window.images.view.scale_factor()
    assert factor >= 2 and factor == int(factor)  # small images enlarged by whole pixels
    window.images.view.fit()
    fitted = window.images.view.scale_factor()
    window.images.view.zoom(1.25)
    assert abs(window.images.view.scale_factor() - fitted * 1.25) < 1e-9
    saved = window.images.save_current(tmp_path / "out.png")
    assert load(saved) == load_json(outcome.workflow_json)  # the PNG carries the workflow
    again = _run(qtbot, window, key=False)
    assert again.status == "finished" and again.executed == ()
    assert window.states.state("save") == "cached"
    assert "everything served from the cache" in window.statusBar().currentMessage()


def test_cancel_stops_within_one_sampler_step(qtbot, txt2img):
    window = txt2img
    _few_steps(window, steps=400, batch=1)
    steps_seen = []

    def on_step(preview) -> None:
        steps_seen.append(preview.index)
        if len(steps_seen) == 2:
            qtbot.keyClick(window, QtCore.Qt.Key.Key_Escape)

    window.runner.step_preview.connect(on_step)
    outcome = _run(qtbot, window)
    assert outcome.status == "cancelled"
    assert len(steps_seen) <= 3  # at most the step already in flight when Esc came
    assert window.states.state("sampler") == "cancelled"
    assert window.actions_by_name["run_workflow"].isEnabled()


class TorchCalls(TorchFunctionMode):
    """Records the torch functions called on the thread that entered it (modes
    are per thread): on the GUI thread, any call at all breaks "the GUI thread
    never runs torch"."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__qualname__", repr(func)))
        return func(*args, **(kwargs or {}))


class Handshake:
    """At every step the run's thread asks, and waits until the GUI thread's event
    loop answers (from a timer): it can only answer while the step is under way if
    the model runs on another thread. Once an answer fails to come, it stops asking,
    so a GUI thread that runs the model itself fails the test instead of hanging it."""

    ANSWER_S = 10.0

    def __init__(self) -> None:
        self.asked, self.answered = threading.Event(), threading.Event()
        self.asking_threads: set[int] = set()
        self.answers, self.unanswered = 0, 0

    def ask(self) -> None:  # on the thread that reports the step
        self.asking_threads.add(threading.get_ident())
        if self.unanswered:
            return
        self.answered.clear()
        self.asked.set()
        if not self.answered.wait(self.ANSWER_S):
            self.unanswered += 1

    def answer(self) -> None:  # on the GUI thread
        if self.asked.is_set():
            self.asked.clear()
            self.answers += 1
            self.answered.set()


def test_gui_stays_responsive_during_a_run(qtbot, txt2img, monkeypatch):
    """The GUI thread answers at every sampler step while the step is under way,
    and runs no torch at all; how late it answers is bench/gui_latency.py's job."""
    from app.gui import runner

    window = txt2img
    steps = 15
    _few_steps(window, steps=steps, batch=1)
    handshake = Handshake()
    preview = runner.step_preview
    monkeypatch.setattr(runner, "step_preview", lambda event: handshake.ask() or preview(event))
    timer = QtCore.QTimer()
    timer.timeout.connect(handshake.answer)
    timer.start(1)
    texts = []
    window.runner.progress.connect(lambda percent, text: texts.append((percent, text)))
    with TorchCalls() as gui_torch_calls:
        outcome = _run(qtbot, window)
    timer.stop()
    assert outcome.status == "finished"
    assert any("it/s" in text and "cpu" in text for _, text in texts)  # speed and device
    assert [p for p, _ in texts] == sorted(p for p, _ in texts) and texts[-1][0] == 100
    assert threading.get_ident() not in handshake.asking_threads  # the model ran elsewhere
    assert (handshake.answers, handshake.unanswered) == (steps, 0)
    assert gui_torch_calls.names == []


def test_a_failed_node_is_marked_red_with_its_error(qtbot, txt2img, tmp_path):
    window = txt2img
    checkpoint = window.node("checkpoint")
    damaged = tmp_path / "damaged.safetensors"  # present, so nothing asks for it: it fails to load
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    checkpoint.set_property("param_name", "file…")
    checkpoint.set_property("param_path", str(damaged))
    outcome = _run(qtbot, window)
    assert outcome.status == "failed" and outcome.failed_node == "checkpoint"
    assert window.states.state("checkpoint") == "failed"
    assert "damaged.safetensors" in checkpoint.view.toolTip()
    assert "failed" in window.log.toPlainText()
    window.graph.viewer().zoom_to_nodes([checkpoint.view, window.node("positive").view])
    window.grab().save(str(SCREENSHOTS / "gui-failed-node.png"))


def test_validation_problems_are_shown_before_anything_runs(txt2img):
    window = txt2img
    sampler, checkpoint = window.node("sampler"), window.node("checkpoint")
    checkpoint.outputs()["model"].disconnect_from(sampler.inputs()["model"])
    assert not window.run_workflow()
    assert not window.runner.running
    assert window.states.state("sampler") == "invalid"
    assert "model" in sampler.view.toolTip()
    assert "Cannot run" in window.statusBar().currentMessage()
    window.graph.viewer().zoom_to_nodes([sampler.view, checkpoint.view])
    window.grab().save(str(SCREENSHOTS / "gui-validation.png"))


def test_the_progress_bar_follows_the_sampler_steps(qtbot, txt2img):
    """Issue 11, item 7: the percent tracks the steps (it read 64 % at step 3/25)."""
    window = txt2img
    _few_steps(window, steps=25, batch=1)
    per_step: dict[int, int] = {}
    values: list[int] = []

    def seen(_percent: int, text: str) -> None:  # connected after the window: the bar is set
        values.append(window.progress_bar.value())
        if text.startswith("step "):
            per_step[int(text.split()[1].split("/")[0])] = window.progress_bar.value()

    window.runner.progress.connect(seen)
    assert _run(qtbot, window).status == "finished"
    assert sorted(per_step) == list(range(1, 26))
    for step, percent in per_step.items():
        assert abs(percent - 100 * step / 25) <= 10, (step, percent)
    assert per_step[3] <= 25 and 90 <= per_step[24] < 100
    assert values == sorted(values) and values[-1] == 100

"""Starting the workbench: the application object, the window, and the
``--run``/``--screenshot`` modes used for documentation and checks."""
from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path

from PySide6 import QtCore, QtWidgets

log = logging.getLogger(__name__)

_NOISE = ("propagateSizeHints",)


def _quiet_qt(mode, context, message) -> None:
    """Drop the offscreen plugin's noise; pass everything else to logging."""
    if any(text in message for text in _NOISE):
        return
    level = logging.WARNING if mode != QtCore.QtMsgType.QtDebugMsg else logging.DEBUG
    log.log(level, "Qt: %s", message)


def application() -> QtWidgets.QApplication:
    """The one QApplication (created with the workbench's names for QSettings)."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        QtCore.qInstallMessageHandler(_quiet_qt)
        app = QtWidgets.QApplication(sys.argv[:1])
    app.setOrganizationName("DiffusionWorkbench")
    app.setApplicationName("Diffusion Workbench")
    collect_garbage_on_gui_thread(app)
    return app


class GuiThreadCollector(QtCore.QObject):
    """Python's cycle collector runs in whichever thread allocates when its
    threshold is crossed. In a run's worker thread it can destroy a widget
    left in a cycle; the widget's destructor then waits for the GIL from a
    thread Qt does not expect, and the GUI and the worker deadlock (seen:
    ``QObject::~QObject`` → ``Sbk_GetPyOverride`` inside ``gc_collect_main``
    in the worker while the GUI thread painted). So automatic collection is
    switched off and a timer on the GUI thread collects instead.

    Every tick collects the youngest generation (cheap: it holds only what
    was made since the last tick) and the older ones by Python's own
    thresholds. (A collector that waits for the youngest count to pass its
    threshold, as pyqtgraph's does, can wait forever: freeing objects also
    lowers that count, and a cycle then stays uncollected: the likely cause
    of a CI failure, reproduced in tests/gui/test_gui_garbage.py.)
    """

    def __init__(self, parent: QtCore.QObject, interval_ms: int = 1000) -> None:
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.collect)

    @property
    def active(self) -> bool:
        return self.timer.isActive()

    def start(self) -> None:
        gc.disable()
        self.timer.start()

    def stop(self) -> None:
        """Hand collection back to Python (tests that leave the GUI do)."""
        self.timer.stop()
        gc.enable()

    @QtCore.Slot()
    def collect(self) -> None:
        counts = gc.get_count()
        # As Python chooses: the oldest generation whose count passed its threshold.
        gc.collect(max((g for g in (1, 2) if counts[g] > self.thresholds[g]), default=0))


def collect_garbage_on_gui_thread(app: QtWidgets.QApplication) -> GuiThreadCollector:
    """The application's one collector (a child of the app), started."""
    collector = app.findChild(GuiThreadCollector)
    if collector is None:
        collector = GuiThreadCollector(app)
    if not collector.active:
        collector.start()
    return collector


def warm_imports() -> None:
    """Import the model libraries before the window shows: imported by the
    first run's worker instead, they held the GIL for stretches of 0.2 s and
    froze the window (bench/gui_latency.py). Loading them costs the same
    seconds once, at start, when nothing is on screen to freeze."""
    import diffusers
    import transformers

    for name in ("UNet2DConditionModel", "AutoencoderKL", "ControlNetModel", "SD3Transformer2DModel"):
        getattr(diffusers, name)  # diffusers imports its classes lazily, on first access
    transformers.CLIPTextModel  # noqa: B018 - the same for transformers


def freeze_startup_heap() -> None:
    """Move everything alive now (the imported libraries: about 470,000
    objects) out of the cycle collector's sight. They live as long as the
    process; without this each full collection walked them all and froze
    the GUI for about 0.2 s (measured: 217 ms before, under 1 ms after)."""
    gc.collect()
    gc.freeze()


def make_window(registry=None, **kwargs):
    from app.gui.main_window import MainWindow
    from nodes import default_registry

    warm_imports()
    freeze_startup_heap()

    if registry is None:
        from app.gui.models_folders import apply_stored_dirs

        apply_stored_dirs(kwargs.get("settings") or QtCore.QSettings())
        registry, problems = default_registry()
        for problem in problems:
            log.warning("%s", problem)
    return MainWindow(registry, **kwargs)


def offer_recovery(window, path: Path | None = None) -> bool:
    """After a crash, ask whether to restore the autosaved workflow; True if restored.

    ``path`` is the file the window was about to open: the question says it is
    opened instead on No, so that one question decides (restoring and then
    opening it asked "Save the changes to Recovered workflow?" right after)."""
    workflow = window.autosaver.recovered()
    if workflow is None:
        return False
    buttons = QtWidgets.QMessageBox.StandardButton
    instead = f" (No opens {Path(path).name} instead.)" if path is not None else ""
    answer = QtWidgets.QMessageBox.question(
        window, "Recover unsaved work?",
        f"The workbench did not close properly last time. Restore the autosaved workflow?{instead}",
        buttons.Yes | buttons.No, buttons.Yes)
    if answer != buttons.Yes:
        window.autosaver.discard()
        return False
    window.document.open_workflow(workflow, "Recovered workflow")
    window.fit_view()
    if path is not None:
        window.statusBar().showMessage(f"Restored the autosaved workflow; {Path(path).name} was not opened")
    return True


def open_at_start(window, path: Path | None, recover: bool = True) -> bool:
    """What the window shows first: the recovered workflow if the person wants
    it, else ``path``. False only when ``path`` could not be opened."""
    if recover and offer_recovery(window, path):
        return True
    return path is None or window.open_path(path)


def run_gui(path: Path | None = None, run: bool = False, screenshot: Path | None = None) -> int:
    """Open the window on ``path``; with ``screenshot``, save a picture and exit.

    Exit status: 0, 1 if ``--run`` failed or was cancelled, 2 if the file
    could not be opened.
    """
    app = application()
    window = make_window()
    window.show()
    if screenshot is not None:  # unattended: a missing model file fails the run instead of a dialog
        window.ask_for_file = lambda parent, missing: ""
    if not open_at_start(window, path, recover=screenshot is None) and screenshot is not None:
        return 2
    status = {"code": 0}
    # A screenshot run ends its own loop: QApplication.quit() would leave Qt's
    # "quit now" flag set and make every later event loop in the process return at once.
    loop = QtCore.QEventLoop() if screenshot is not None else None

    def shoot_and_quit(outcome=None) -> None:
        if outcome is not None and outcome.status != "finished":
            status["code"] = 1
        if screenshot is not None:
            app.processEvents()
            window.grab().save(str(screenshot))
            window.document.graph.undo_stack().setClean()  # no prompt when closing
            window.close()
            loop.quit()

    if run:
        window.run_finished.connect(shoot_and_quit)
        QtCore.QTimer.singleShot(0, lambda: window.run_workflow() or shoot_and_quit(_not_started()))
    elif screenshot is not None:
        QtCore.QTimer.singleShot(200, shoot_and_quit)
    if loop is not None:
        loop.exec()
        window.deleteLater()
    else:
        app.exec()
    return status["code"]


def _not_started():
    from app.gui.runner import RunOutcome

    return RunOutcome("failed", "the workflow is not valid")

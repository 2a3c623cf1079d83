"""GUI tests run offscreen against the real window.

``QT_QPA_PLATFORM`` must be set before Qt loads; QStandardPaths' test mode
keeps QSettings and the recovery file out of the person's own.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("NodeGraphQt")

from PySide6 import QtCore, QtWidgets  # noqa: E402

from app.gui.app import _quiet_qt  # noqa: E402

QtCore.qInstallMessageHandler(_quiet_qt)
QtCore.QStandardPaths.setTestModeEnabled(True)

REPO = Path(__file__).resolve().parents[2]
#: Where tests save their screenshots: a temporary folder, so a test run never
#: changes tracked files; ``DW_SCREENSHOTS=docs/images`` refreshes the user guide's.
SCREENSHOTS = Path(os.environ.get("DW_SCREENSHOTS") or tempfile.mkdtemp(prefix="dw-shots-"))


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory):
    """QSettings() made by the app itself (the CLI path) go to a temporary folder,
    never to the person's own configuration."""
    folder = str(tmp_path_factory.mktemp("qsettings"))
    for fmt in (QtCore.QSettings.Format.NativeFormat, QtCore.QSettings.Format.IniFormat):
        QtCore.QSettings.setPath(fmt, QtCore.QSettings.Scope.UserScope, folder)
    yield folder


@pytest.fixture(scope="session")
def registry():
    from nodes import default_registry

    return default_registry(plugins=False)[0]


@pytest.fixture
def settings(tmp_path):
    return QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, registry, settings, tmp_path, monkeypatch):
    """The main window, shown, with no dialogs left to block a test."""
    from app.gui.main_window import MainWindow

    win = MainWindow(registry, settings=settings, autosave_path=tmp_path / "recovery.json")
    win.asked_files = []  # a missing model file is never asked for in a dialog here
    win.ask_for_file = lambda parent, missing: win.asked_files.append(missing) or ""
    win.show()
    qtbot.waitExposed(win)
    yield win
    # Closed here, not by qtbot (whose hook runs before this teardown): no prompt may block.
    win.graph.undo_stack().setClean()
    win.close()
    win.runner.wait()
    win.deleteLater()
    QtWidgets.QApplication.processEvents()


@pytest.fixture
def txt2img(window):
    assert window.open_path(REPO / "workflows" / "txt2img.json")
    return window


def answer_dialogs(monkeypatch, button):
    """Make QMessageBox.question answer ``button`` and record what was asked."""
    asked = []

    def question(parent, title, text, *args, **kwargs):
        asked.append(title)
        return button

    monkeypatch.setattr(QtWidgets.QMessageBox, "question", question)
    return asked


@pytest.fixture(autouse=True)
def gui_thread_garbage_collection(qapp):
    """As the app does: cycles (widgets among them) are collected on the GUI
    thread only, never by a run's worker thread (which deadlocked a test).
    Python collects again after each GUI test, so the headless tests that
    follow, with no event loop to drive the timer, still free their cycles."""
    from app.gui.app import collect_garbage_on_gui_thread

    collector = collect_garbage_on_gui_thread(qapp)
    yield collector
    collector.stop()


def _shipped_workflows() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((REPO / "workflows").glob("*.json"))}


@pytest.fixture(autouse=True)
def shipped_workflows_stay_unchanged():
    """A GUI test that saves the open document must save a copy elsewhere: saving
    over the shipped workflows once changed workflows/txt2img.json unnoticed."""
    before = _shipped_workflows()
    yield
    changed = [name for name, data in _shipped_workflows().items() if before.get(name) != data]
    assert not changed, f"a test wrote over the shipped workflow(s) {changed}"

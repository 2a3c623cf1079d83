"""The canvas keeps room on a narrow window: docks give way, not the canvas."""
from __future__ import annotations

from PySide6 import QtCore

from app.gui.main_window import MIN_CANVAS_SHARE, MainWindow
from tests.gui.conftest import SCREENSHOTS


def _open(qtbot, registry, settings, tmp_path, width):
    win = MainWindow(registry, settings=settings, autosave_path=tmp_path / "recovery.json")
    win.resize(width, 700)
    win.show()
    qtbot.waitExposed(win)
    return win


def test_a_narrow_window_leaves_the_canvas_its_share(qtbot, registry, settings, tmp_path):
    win = _open(qtbot, registry, settings, tmp_path, 820)
    try:
        qtbot.waitUntil(lambda: win.centralWidget().width() >= MIN_CANVAS_SHARE * win.width())
        win.grab().save(str(SCREENSHOTS / "gui-narrow-window.png"))
    finally:
        win.graph.undo_stack().setClean()
        win.close()


def test_a_layout_saved_on_a_wide_window_gives_way_on_a_narrow_one(qtbot, registry, settings,
                                                                   tmp_path):
    wide = _open(qtbot, registry, settings, tmp_path, 1600)
    wide.resizeDocks([wide.docks["palette"], wide.docks["images"]], [400, 700],
                     QtCore.Qt.Orientation.Horizontal)
    wide.save_layout()
    wide.close()
    settings.remove("window/geometry")  # the same docks, now on a narrow window
    win = _open(qtbot, registry, settings, tmp_path, 820)
    try:
        qtbot.waitUntil(lambda: win.centralWidget().width() >= MIN_CANVAS_SHARE * win.width())
    finally:
        win.graph.undo_stack().setClean()
        win.close()


"""Issue 11, item 8: images labelled by node, batch index and seed; a history
of runs that survives opening another file and can reopen its workflow."""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app.gui.gallery import CELL_WIDTH, Gallery
from core.workflow import load, loads
from tests.gui.conftest import REPO, SCREENSHOTS, answer_dialogs
from tests.gui.test_run import _few_steps, _run


def _assert_labels_fit(strip: QtWidgets.QListWidget) -> None:
    """Every label wraps inside a compact cell (a one-line history label made
    cells ~200 px wide: two thumbnails filled the dock) and is drawn whole,
    none overlapping."""
    flags = int(QtCore.Qt.TextFlag.TextWordWrap)
    rects = [strip.visualItemRect(strip.item(row)) for row in range(strip.count())]
    for row, rect in enumerate(rects):
        text = strip.item(row).text()
        needed = strip.fontMetrics().boundingRect(QtCore.QRect(0, 0, rect.width() - 4, 1000), flags, text)
        assert rect.width() <= CELL_WIDTH, f"{text!r} widens its cell to {rect.width()} px"
        assert needed.height() + strip.iconSize().height() <= rect.height(), f"{text!r} is cropped"
        assert rect.bottom() <= strip.viewport().height(), f"{text!r} runs below the strip"
    assert not any(a.intersects(b) for a, b in zip(rects, rects[1:]))


def test_opening_another_file_clears_the_images_but_keeps_the_history(qtbot, txt2img, tmp_path,
                                                                     monkeypatch):
    window = txt2img
    answer_dialogs(monkeypatch, QtWidgets.QMessageBox.StandardButton.Discard)
    _few_steps(window, steps=2, batch=2)
    window.node("sampler").set_property("param_seed", 7)
    outcome = _run(qtbot, window)
    assert outcome.status == "finished"
    viewer = window.images
    labels = [viewer.thumbs.item(row).text() for row in range(viewer.thumbs.count())]
    assert labels == ["Save image #1 · seed 7", "Save image #2 · seed 7"]
    assert viewer.history.count() == 2
    window.docks["images"].raise_()
    qtbot.wait(20)
    viewer.grab().save(str(SCREENSHOTS / "gui-images-labelled.png"))
    _assert_labels_fit(viewer.thumbs)

    assert window.open_path(REPO / "workflows" / "ddpm-pixel.json")
    assert viewer.images == [] and viewer.thumbs.count() == 0
    assert viewer.view.item.pixmap().isNull() and viewer.current_image() is None
    assert "ddpm-pixel.json" in viewer.caption.text()
    assert viewer.history.count() == 2  # the history outlives the document
    viewer.history.setCurrentRow(1)  # newest first: row 1 is image #1 of the run
    assert viewer.shown.label == "Save image #1 · seed 7" and "txt2img.json" in viewer.shown.caption()
    qtbot.wait(20)
    viewer.grab().save(str(SCREENSHOTS / "gui-images-history.png"))
    _assert_labels_fit(viewer.history)
    saved = viewer.save_current(tmp_path / "from-history.png")
    assert load(saved) == loads(outcome.workflow_json)  # the image's own workflow, not the open one
    viewer.open_action.trigger()
    reopened = window.document.workflow()
    assert reopened.nodes["schedule"].params["steps"] == 2
    assert reopened.nodes["sampler"].params["seed"] == 7
    assert window.document.modified  # nothing on disk holds it
    assert viewer.history.count() == 2


def test_saving_keeps_the_images_of_the_open_workflow(qtbot, txt2img, tmp_path):
    window = txt2img
    _few_steps(window, steps=1, batch=1)
    assert _run(qtbot, window).status == "finished"
    window.document.save(tmp_path / "copy.json")  # Save As: another name, the same workflow
    assert window.images.thumbs.count() == 1


def _image(value: int) -> QtGui.QImage:
    image = QtGui.QImage(64, 64, QtGui.QImage.Format.Format_RGB888)
    image.fill(QtGui.QColor(value, value, value))
    return image


def test_the_history_is_bounded_in_memory(qapp):
    one = _image(0).sizeInBytes()
    gallery = Gallery(limit_bytes=5 * one)
    for run in range(4):
        gallery.add_run([("save", _image(run)), ("save", _image(run))], ["a", "b"], "{}", "x.json")
    assert gallery.bytes_used() <= 5 * one and len(gallery.entries) == 5
    assert [e.run for e in gallery.entries] == [2, 3, 3, 4, 4]  # the oldest went first
    gallery.add_run([("big", _image(9))] * 8, ["c"] * 8, "{}", "y.json")
    assert [e.run for e in gallery.entries] == [5] * 8  # the latest run is always kept whole
    QtCore.QCoreApplication.processEvents()

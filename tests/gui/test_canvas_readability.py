"""Issue 11, item 1: a fitted graph reads at a glance. Every node's title is
drawn large enough to read (pixel tests on screenshots), parameter labels
are light, and the view is fitted whenever a document opens."""
from __future__ import annotations

import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from app import graph_adapter as adapter
from core.workflow import load
from tests.gui.conftest import REPO, SCREENSHOTS

#: Text of ≥ 10 px has letters at least this many pixel rows tall.
MIN_TEXT_ROWS = 7


def _settle(qtbot) -> None:
    for _ in range(3):
        QtWidgets.QApplication.processEvents()
        qtbot.wait(20)


def _bright_rows(image: QtGui.QImage, rect: QtCore.QRect, threshold: int = 170) -> tuple[int, int]:
    """(bright pixels, rows spanned by them) inside ``rect`` of ``image``."""
    rect = rect.intersected(image.rect())
    rows, count = [], 0
    for y in range(rect.top(), rect.bottom() + 1):
        hits = sum(QtGui.QColor(image.pixel(x, y)).lightness() >= threshold
                   for x in range(rect.left(), rect.right() + 1))
        count += hits
        if hits:
            rows.append(y)
    return count, (rows[-1] - rows[0] + 1) if rows else 0


def _title_rect(viewer, node) -> QtCore.QRect:
    """The top strip of a node, in viewport pixels: where its title is."""
    scene = node.view.sceneBoundingRect()
    top_left = viewer.mapFromScene(scene.topLeft())
    width = max(viewer.mapFromScene(scene.topRight()).x() - top_left.x(), 40)
    return QtCore.QRect(top_left, QtCore.QSize(width, 24))


@pytest.mark.parametrize("size", [(1400, 860), (1024, 700)])
def test_every_title_is_readable_at_the_fitted_zoom(qtbot, window, size):
    window.resize(*size)
    _settle(qtbot)
    assert window.open_path(REPO / "workflows" / "txt2img.json")
    _settle(qtbot)
    viewer = window.graph.viewer()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(SCREENSHOTS / f"gui-canvas-fitted-{size[0]}x{size[1]}.png"))
    image = viewer.viewport().grab().toImage()
    visible = viewer.viewport().rect()
    for node in adapter.workflow_nodes(window.graph):
        rect = _title_rect(viewer, node)
        assert visible.contains(rect.topLeft()), f"{node.name()} is outside the fitted view"
        count, rows = _bright_rows(image, rect)
        assert count >= 20 and rows >= MIN_TEXT_ROWS, (
            f"{node.name()}: title unreadable at zoom {viewer.transform().m11():.2f} "
            f"({count} bright pixels over {rows} rows)")


@pytest.mark.parametrize("size", [(1400, 860), (1024, 700), (845, 774)])
def test_overview_titles_do_not_cover_each_other(qtbot, window, size):
    """Titles wrapped to their own narrow nodes grew downwards into the node
    below ("Negative prompt" over "Prompt" in the 845×774 screenshot window)."""
    window.resize(*size)
    _settle(qtbot)
    assert window.open_path(REPO / "workflows" / "txt2img.json")
    _settle(qtbot)
    viewer = window.graph.viewer()
    assert viewer.transform().m11() < 0.7  # the overview: titles drawn at a fixed size
    labels = [(node.name(), node.view.title_label) for node in adapter.workflow_nodes(window.graph)]
    rects = [(name, label.deviceTransform(viewer.viewportTransform()).mapRect(label.boundingRect()))
             for name, label in labels if label.isVisible()]
    assert len(rects) == len(labels)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(SCREENSHOTS / f"gui-titles-{size[0]}x{size[1]}.png"))
    overlaps = [(a, b) for i, (a, ra) in enumerate(rects) for b, rb in rects[i + 1:] if ra.intersects(rb)]
    assert overlaps == []


def test_parameter_labels_are_light_and_shown_when_zoomed_in(qtbot, txt2img):
    window = txt2img
    viewer = window.graph.viewer()
    sampler = window.node("sampler")
    assert not sampler.view.widgets["param_seed"].isVisible()  # the fitted view: titles only
    viewer.reset_zoom(sampler.view.sceneBoundingRect().center())
    _settle(qtbot)
    widget = sampler.view.widgets["param_seed"]
    assert widget.isVisible()
    label = widget.mapRectToScene(QtCore.QRectF(0, 0, widget.size().width(), 13))
    rect = viewer.mapFromScene(label).boundingRect()
    image = viewer.viewport().grab().toImage()
    count, _rows = _bright_rows(image, rect, threshold=150)
    assert count >= 5, "the parameter's label is too dark to read"


def test_the_view_is_fitted_when_a_recovered_workflow_opens(qtbot, window):
    viewer = window.graph.viewer()
    viewer.reset_zoom(QtCore.QPointF(5000, 5000))  # looking far away from the graph
    window.document.open_workflow(load(REPO / "workflows" / "txt2img.json"), "Recovered workflow")
    _settle(qtbot)
    shown = viewer.mapToScene(viewer.viewport().rect()).boundingRect()
    for node in adapter.workflow_nodes(window.graph):
        assert shown.contains(node.view.sceneBoundingRect()), node.name()

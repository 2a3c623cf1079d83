"""The minimap: an overview of the graph in the canvas's corner that moves the
view when clicked, and View → Minimap that turns it off."""
from __future__ import annotations

from PySide6 import QtCore

from tests.gui.conftest import SCREENSHOTS


def _zoomed_in(qtbot, window):
    """Zoomed on the top-left node, so most of the graph is out of view."""
    viewer = window.graph.viewer()
    checkpoint = window.node("checkpoint")
    viewer.zoom_to_nodes([checkpoint.view])
    qtbot.wait(2 * 50 + 20)  # the minimap's throttled check
    return viewer


def _centre(viewer) -> QtCore.QPointF:
    return viewer.mapToScene(viewer.viewport().rect().center())


def test_the_minimap_shows_when_zoomed_in_and_a_click_moves_the_view(qtbot, txt2img):
    window = txt2img
    minimap = window.minimap
    window.fit_view()
    qtbot.wait(120)
    assert not minimap.isVisible()  # the whole graph is in view: nothing to show
    viewer = _zoomed_in(qtbot, window)
    assert minimap.isVisible() and minimap.parent() is viewer.viewport()
    corner = viewer.viewport().rect().bottomRight()
    assert minimap.geometry().bottomRight().x() > corner.x() - 30  # bottom-right corner
    assert minimap.geometry().bottomRight().y() > corner.y() - 30
    window.grab().save(str(SCREENSHOTS / "gui-minimap.png"))

    before = _centre(viewer)
    target = QtCore.QPoint(minimap.width() - 6, minimap.height() - 6)  # the far corner
    qtbot.mouseClick(minimap, QtCore.Qt.MouseButton.LeftButton, pos=target)
    after = _centre(viewer)
    nodes = [n.view.sceneBoundingRect() for n in window.graph.all_nodes()]
    right = max(r.right() for r in nodes)
    assert after.x() > before.x() + 200 and after.x() > right - 400  # toward the far side
    qtbot.wait(120)
    window.grab().save(str(SCREENSHOTS / "gui-minimap-moved.png"))


def test_view_minimap_toggles_it_and_is_remembered(qtbot, txt2img):
    window = txt2img
    action = window.actions_by_name["toggle_minimap"]
    assert action.isCheckable() and action.isChecked() and action in window.view_menu.actions()
    _zoomed_in(qtbot, window)
    assert window.minimap.isVisible()
    action.trigger()
    assert not window.minimap.isVisible()
    assert window.settings.value("view/minimap") == "false"
    action.trigger()
    assert window.minimap.isVisible()

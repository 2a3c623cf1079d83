"""Where the palette puts a new node: at the drop point, or (double-click)
beside the selection without covering another node."""
from __future__ import annotations

from NodeGraphQt import BaseNode
from PySide6 import QtCore, QtGui, QtWidgets

from app import graph_adapter as adapter
from app.gui.palette import node_rect
from tests.gui.conftest import SCREENSHOTS


def _double_click_in_palette(qtbot, window, node_type: str) -> None:
    item = window.palette.item_for(node_type)
    window.palette.tree.scrollToItem(item)
    qtbot.wait(20)
    rect = window.palette.tree.visualItemRect(item)
    viewport = window.palette.tree.viewport()
    qtbot.mouseClick(viewport, QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(viewport, QtCore.Qt.MouseButton.LeftButton, pos=rect.center())


def _new_node(window, before):
    new = [n for n in adapter.workflow_nodes(window.graph) if n not in before]
    assert len(new) == 1
    return new[0]


def _covers_nothing(window, node) -> bool:
    mine = node_rect(node)
    return not any(mine.intersects(node_rect(other)) for other in window.graph.all_nodes()
                   if other is not node and isinstance(other, BaseNode))


def test_a_real_drop_creates_the_node_under_the_cursor(qtbot, window):
    viewer = window.graph.viewer()
    mime = window.palette.tree.mimeData([window.palette.item_for("wb.n_latent_empty")])
    point = QtCore.QPointF(150, 110)
    args = (QtCore.Qt.DropAction.CopyAction, mime, QtCore.Qt.MouseButton.LeftButton,
            QtCore.Qt.KeyboardModifier.NoModifier)
    for event in (QtGui.QDragEnterEvent(point.toPoint(), *args),
                  QtGui.QDragMoveEvent(point.toPoint(), *args), QtGui.QDropEvent(point, *args)):
        QtWidgets.QApplication.sendEvent(viewer.viewport(), event)
    node = adapter.workflow_nodes(window.graph)[0]
    where = viewer.mapToScene(point.toPoint())
    assert abs(node.pos()[0] - where.x()) <= 1 and abs(node.pos()[1] - where.y()) <= 1


def test_double_click_places_the_node_beside_the_selection_covering_nothing(qtbot, txt2img):
    window = txt2img
    sampler = window.node("sampler")
    window.graph.clear_selection()
    sampler.set_selected(True)
    before = adapter.workflow_nodes(window.graph)
    _double_click_in_palette(qtbot, window, "wb.n_vae_decode")
    node = _new_node(window, before)
    assert adapter.spec_of(node).type_id == "vae.decode"
    assert _covers_nothing(window, node)
    near, mine = node_rect(sampler), node_rect(node)
    assert 0 < mine.left() - near.right() <= 60  # just right of the Sampler
    assert mine.top() >= near.top() and mine.top() - near.bottom() < 600
    window.fit_view()
    window.grab().save(str(SCREENSHOTS / "gui-palette-placed.png"))
    window.undo()
    assert node not in adapter.workflow_nodes(window.graph)  # one undo step


def test_double_click_without_selection_uses_the_view_centre_covering_nothing(qtbot, txt2img):
    window = txt2img
    window.graph.clear_selection()
    viewer = window.graph.viewer()
    before = adapter.workflow_nodes(window.graph)
    centre_node = min(before, key=lambda n: QtCore.QLineF(
        node_rect(n).center(), viewer.mapToScene(viewer.viewport().rect().center())).length())
    viewer.centerOn(node_rect(centre_node).center())  # the centre is on a node
    _double_click_in_palette(qtbot, window, "wb.n_latent_empty")
    node = _new_node(window, before)
    assert _covers_nothing(window, node)
    centre = viewer.mapToScene(viewer.viewport().rect().center())
    assert abs(node_rect(node).center().x() - centre.x()) < 1

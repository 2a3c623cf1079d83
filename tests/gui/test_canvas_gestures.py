"""Issue 11, item 3 and the gestures: the canvas's node search lists the
catalogue only; a link let go on empty canvas, a double-click and a
right-click on empty canvas add nodes where they happen; links wear their
type's colour. Each test drives real mouse and key events."""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app import graph_adapter as adapter
from core.ports import PortType, compatible
from tests.gui.conftest import SCREENSHOTS
from tests.gui.helpers import _move, grab_with_popups, port_point


def _empty_point(window) -> QtCore.QPoint:
    """A viewport point over empty canvas, below the fitted graph."""
    viewer = window.graph.viewer()
    rect = viewer.viewport().rect()
    point = QtCore.QPoint(rect.center().x(), rect.bottom() - 15)
    assert not [item for item in viewer.items(point) if item.isVisible()]
    return point


def _types(window) -> list[str]:
    return [n.SPEC.type_id for n in adapter.workflow_nodes(window.graph)]


def test_tab_search_lists_only_the_catalogue_by_title_and_category(qtbot, window, registry):
    viewer = window.graph.viewer()
    viewer.setFocus()
    qtbot.keyClick(viewer, QtCore.Qt.Key.Key_Tab)
    search = window.graph.tab_search_widget()
    assert search.isVisible()
    shown = search.titles()
    assert sorted(shown) == sorted(f"{s.title} — {s.category}" for s in registry)
    assert not any(word in " ".join(shown) for word in ("nodeGraphQt", "Missing node", "wb."))
    qtbot.keyClicks(search.line_edit, "missing")
    assert search.titles() == []
    search.line_edit.clear()
    qtbot.keyClicks(search.line_edit, "schedule diffusion")
    qtbot.keyClick(search.line_edit, QtCore.Qt.Key.Key_Return)
    assert not search.isVisible()
    assert _types(window) == ["diffusion.schedule"]


def test_a_link_let_go_on_empty_canvas_offers_the_nodes_that_take_its_type(qtbot, txt2img, registry):
    window = txt2img
    viewer = window.graph.viewer()
    viewport = viewer.viewport()
    decode = window.node("decode")
    start = port_point(window, decode, "image", is_input=False)
    end = _empty_point(window)
    qtbot.mousePress(viewport, QtCore.Qt.MouseButton.LeftButton, pos=start)
    for step in range(1, 6):
        _move(viewport, start + (end - start) * (step / 5))
    qtbot.mouseRelease(viewport, QtCore.Qt.MouseButton.LeftButton, pos=end)
    search = window.graph.tab_search_widget()
    assert search.isVisible()
    takers = {f"{s.title} — {s.category}" for s in registry
              if any(compatible(PortType.IMAGE, i.type) for i in s.sockets)}
    assert set(search.titles()) == takers and "Sampler — diffusion" not in takers
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    grab_with_popups(window, search).save(str(SCREENSHOTS / "gui-link-drop-search.png"))
    before = len(adapter.workflow_nodes(window.graph))
    qtbot.keyClicks(search.line_edit, "save image")
    qtbot.keyClick(search.line_edit, QtCore.Qt.Key.Key_Return)
    nodes = adapter.workflow_nodes(window.graph)
    assert len(nodes) == before + 1
    new = nodes[-1]
    assert new.SPEC.type_id == "image.save"
    assert [p.node() for p in new.inputs()["images"].connected_ports()] == [decode]
    drop = viewer.mapToScene(end)
    assert abs(new.pos()[0] - drop.x()) < 1 and abs(new.pos()[1] - drop.y()) < 60
    window.undo()  # one step takes the node and its link away
    assert len(adapter.workflow_nodes(window.graph)) == before


def test_a_link_from_an_input_offers_the_nodes_that_give_its_type(qtbot, window, registry):
    decode = window.add_node_at_centre(adapter.graph_type_of(registry.get("vae.decode")))
    viewport = window.graph.viewer().viewport()
    start = port_point(window, decode, "vae", is_input=True)
    end = start - QtCore.QPoint(150, 0)
    qtbot.mousePress(viewport, QtCore.Qt.MouseButton.LeftButton, pos=start)
    for step in range(1, 6):
        _move(viewport, start + (end - start) * (step / 5))
    qtbot.mouseRelease(viewport, QtCore.Qt.MouseButton.LeftButton, pos=end)
    search = window.graph.tab_search_widget()
    assert "VAE loader — model" in search.titles()
    assert "Sampler — diffusion" not in search.titles()
    qtbot.keyClicks(search.line_edit, "VAE loader")
    qtbot.keyClick(search.line_edit, QtCore.Qt.Key.Key_Return)
    loader = [n for n in adapter.workflow_nodes(window.graph) if n.SPEC.type_id == "model.vae"]
    assert len(loader) == 1
    assert [p.node() for p in decode.inputs()["vae"].connected_ports()] == loader
    assert loader[0].pos()[0] < decode.pos()[0]  # it feeds in from the left


def test_double_click_on_empty_canvas_opens_the_search_there(qtbot, txt2img):
    window = txt2img
    viewer = window.graph.viewer()
    point = _empty_point(window)
    qtbot.mouseDClick(viewer.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=point)
    search = window.graph.tab_search_widget()
    assert search.isVisible()
    qtbot.keyClicks(search.line_edit, "empty latent")
    qtbot.keyClick(search.line_edit, QtCore.Qt.Key.Key_Return)
    new = adapter.workflow_nodes(window.graph)[-1]
    assert new.SPEC.type_id == "latent.empty"
    scene = viewer.mapToScene(point)
    assert abs(new.pos()[0] - scene.x()) < 1 and abs(new.pos()[1] - scene.y()) < 60


def test_double_click_on_a_node_does_not_open_the_search(qtbot, txt2img):
    window = txt2img
    viewer = window.graph.viewer()
    sampler = window.node("sampler").view.sceneBoundingRect()
    point = viewer.mapFromScene(sampler.center() + QtCore.QPointF(0, sampler.height() / 3))
    qtbot.mouseDClick(viewer.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=point)
    assert not window.graph.tab_search_widget().isVisible()


def _right_click(viewer, point: QtCore.QPoint) -> None:
    viewport = viewer.viewport()
    event = QtGui.QContextMenuEvent(QtGui.QContextMenuEvent.Reason.Mouse, point,
                                    viewport.mapToGlobal(point))
    QtWidgets.QApplication.sendEvent(viewport, event)


def test_right_click_on_empty_canvas_adds_a_node_by_category(qtbot, txt2img, registry):
    window = txt2img
    viewer = window.graph.viewer()
    point = _empty_point(window)
    qtbot.mousePress(viewer.viewport(), QtCore.Qt.MouseButton.RightButton, pos=point)
    qtbot.mouseRelease(viewer.viewport(), QtCore.Qt.MouseButton.RightButton, pos=point)
    _right_click(viewer, point)
    menu = window.graph.gestures.menu
    assert menu is not None and menu.isVisible()
    add = menu.actions()[0].menu()
    assert menu.actions()[0].text() == "Add node"
    categories = {a.text(): a.menu() for a in add.actions()}
    assert list(categories) == list(registry.by_category())
    sampler = next(a for a in categories["diffusion"].actions() if a.text() == "Sampler")
    sampler.trigger()
    new = adapter.workflow_nodes(window.graph)[-1]
    assert new.SPEC.type_id == "diffusion.sampler" and new is not window.node("sampler")
    assert abs(new.pos()[0] - viewer.mapToScene(point).x()) < 1
    menu.close()


def test_links_wear_the_colour_of_their_type(txt2img):
    viewer = txt2img.graph.viewer()
    pipes = viewer.all_pipes()
    assert len(pipes) == len(txt2img.document.workflow().links)
    for pipe in pipes:
        node = txt2img.graph.get_node_by_id(pipe.output_port.node.id)
        port_type = node.port_type(pipe.output_port.name, is_input=False)
        assert tuple(pipe.pen().color().getRgb()[:3]) == adapter.port_colour(port_type), pipe

"""Issue 11, "right-click node": the node's menu (rename, duplicate, delete,
bypass, mute, collapse, colour, run to here) driven through a real context-menu event
on the canvas viewport, and Ctrl+B / Ctrl+M on the selection."""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app import graph_adapter as adapter
from tests.gui.conftest import REPO, SCREENSHOTS
from tests.gui.helpers import grab_with_popups
from tests.gui.steer_helpers import RUN_TIMEOUT_MS

HEAT = REPO / "workflows" / "heat_diffusion.json"


def _right_click(window, node) -> QtWidgets.QMenu:
    viewer = window.graph.viewer()
    point = viewer.mapFromScene(node.view.sceneBoundingRect().center())
    event = QtGui.QContextMenuEvent(QtGui.QContextMenuEvent.Reason.Mouse, point,
                                    viewer.viewport().mapToGlobal(point))
    QtWidgets.QApplication.sendEvent(viewer.viewport(), event)
    menu = window.node_menu.menu
    assert menu is not None and menu.isVisible()
    return menu


def _trigger(menu: QtWidgets.QMenu, text: str) -> None:
    action = next(a for a in menu.actions() if a.text().split("\t")[0] == text)
    action.trigger()
    menu.close()


def _select_with_focus(window, *node_ids):
    """Open the heat-diffusion graph, select ``node_ids`` and give the canvas the
    keyboard (where the node shortcuts act); the canvas viewer."""
    assert window.open_path(HEAT)
    window.graph.clear_selection()
    for node_id in node_ids:
        window.node(node_id).set_selected(True)
    viewer = window.graph.viewer()
    viewer.setFocus()
    return viewer


def _modes(window) -> dict[str, str]:
    return {n.id: n.mode for n in window.document.workflow()}


def test_right_click_on_a_node_opens_its_menu_not_the_canvas_one(qtbot, window):
    assert window.open_path(HEAT)
    menu = _right_click(window, window.node("blur"))
    assert [a.text() for a in menu.actions() if not a.isSeparator()] == [
        "Rename…", "Duplicate", "Delete", "Bypass\tCtrl+B", "Mute\tCtrl+M", "Collapse\tAlt+C", "Colour…",
        "Run to here"]
    assert window.graph.gestures.menu is None  # the empty-canvas "Add node" menu did not open
    assert [adapter.node_id_of(n) for n in window.graph.selected_nodes()] == ["blur"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    grab_with_popups(window, menu).save(str(SCREENSHOTS / "gui-node-menu.png"))
    menu.close()


def test_bypass_from_the_menu_is_drawn_saved_and_undone_in_one_step(qtbot, window, tmp_path):
    assert window.open_path(HEAT)
    _trigger(_right_click(window, window.node("blur")), "Bypass")
    assert _modes(window)["blur"] == "bypass"
    assert window.node("blur").view.mode == "bypass" and window.node("blur").view.mode_overlay.isVisible()
    window.document.save(tmp_path / "w.json")
    assert '"mode": "bypass"' in (tmp_path / "w.json").read_text()
    window.undo()
    assert _modes(window)["blur"] == "normal" and window.node("blur").view.mode == "normal"
    window.graph.undo_stack().setClean()  # no "save the changes?" question
    assert window.open_path(tmp_path / "w.json")
    assert window.node("blur").view.mode == "bypass"


def test_ctrl_b_and_ctrl_m_toggle_the_selected_nodes_one_undo_step_each(qtbot, window):
    viewer = _select_with_focus(window, "blur", "noise")
    stack = window.graph.undo_stack()
    before = stack.index()
    qtbot.keyClick(viewer, QtCore.Qt.Key.Key_B, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert (_modes(window)["blur"], _modes(window)["noise"]) == ("bypass", "bypass")
    assert stack.index() == before + 1
    qtbot.keyClick(viewer, QtCore.Qt.Key.Key_M, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert (_modes(window)["blur"], _modes(window)["noise"]) == ("mute", "mute")
    assert window.node("noise").view.opacity() < 1
    qtbot.keyClick(viewer, QtCore.Qt.Key.Key_M, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert set(_modes(window).values()) == {"normal"}
    assert stack.index() == before + 3
    window.undo()
    assert (_modes(window)["blur"], _modes(window)["noise"]) == ("mute", "mute")
    assert window.node("blur").view.mode == "mute"


def test_a_bypassed_and_a_muted_node_are_drawn_so(qtbot, window):
    assert window.open_path(HEAT)
    window.node_menu.toggle_mode("bypass", [window.node("blur")])
    window.node_menu.toggle_mode("mute", [window.node("noise")])
    window.resize(1400, 860)
    window.graph.viewer().zoom_to_nodes([n.view for n in window.graph.all_nodes()])
    QtWidgets.QApplication.processEvents()
    shot = window.graph.viewer().grab()
    shot.save(str(SCREENSHOTS / "gui-bypass-mute.png"))
    image = shot.toImage()
    viewer = window.graph.viewer()
    inside = viewer.mapFromScene(window.node("blur").view.sceneBoundingRect().center())
    colour = image.pixelColor(inside)
    assert colour.blue() > colour.green() + 20 and colour.red() > colour.green()  # purple


def test_rename_duplicate_delete_and_colour_from_the_menu(qtbot, window, tmp_path):
    assert window.open_path(HEAT)
    _trigger(_right_click(window, window.node("blur")), "Rename…")
    dialog = window.node_menu.dialog
    assert isinstance(dialog, QtWidgets.QInputDialog) and dialog.isVisible()
    dialog.setTextValue("Soften")
    dialog.accept()
    assert window.document.workflow().nodes["blur"].title == "Soften"
    _trigger(_right_click(window, window.node("blur")), "Colour…")
    dialog = window.node_menu.dialog
    dialog.setCurrentColor(QtGui.QColor(20, 90, 40))
    dialog.accept()
    assert window.document.workflow().ui["nodes"]["blur"]["color"] == [20, 90, 40]
    assert "color" not in window.document.workflow().ui["nodes"]["noise"]
    window.document.save(tmp_path / "c.json")
    assert window.open_path(tmp_path / "c.json")
    assert tuple(window.node("blur").color()[:3]) == (20, 90, 40)
    _trigger(_right_click(window, window.node("blur")), "Duplicate")
    assert len(window.document.workflow().nodes) == 5
    _trigger(_right_click(window, window.node("pattern")), "Delete")
    assert "pattern" not in window.document.workflow().nodes


def test_run_to_here_runs_what_the_node_needs_and_shows_its_image(qtbot, window):
    assert window.open_path(HEAT)
    menu = _right_click(window, window.node("noise"))
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        _trigger(menu, "Run to here")
    outcome = blocker.args[0]
    assert outcome.status == "finished", outcome.message
    assert set(outcome.executed) == {"pattern", "noise"}
    assert [node_id for node_id, _ in outcome.images] == ["noise"]
    assert "Run to here: 'Add noise' made image (IMAGE); shown in Images" in window.log.toPlainText()


def _pipe_ends(node) -> list[QtCore.QPointF]:
    """Where the node's links meet it: the scene centres of its connected ports."""
    ends = []
    for port in [*node.view.inputs, *node.view.outputs]:
        if port.connected_pipes:
            ends.append(port.sceneBoundingRect().center())
    return ends


def test_collapse_folds_a_node_to_its_title_bar_links_stay_and_it_is_saved(qtbot, window, tmp_path):
    assert window.open_path(HEAT)
    window.graph.viewer().set_zoom(0.0)  # scale 1: full detail, widgets shown
    blur = window.node("blur")
    tall = blur.view.boundingRect().height()
    widgets = [w.widget() for w in blur.view._widgets.values()]
    assert widgets and all(w.isVisible() for w in widgets)
    _trigger(_right_click(window, blur), "Collapse")
    view = blur.view
    assert view.collapsed and view.boundingRect().height() < tall / 2
    assert not any(w.isVisible() for w in widgets)
    node_rect = view.sceneBoundingRect()
    ends = _pipe_ends(blur)
    assert ends, "the blur node has links"
    for end in ends:  # every link now meets the title bar's left or right end
        assert node_rect.top() <= end.y() <= node_rect.bottom()
        assert min(abs(end.x() - node_rect.left()), abs(end.x() - node_rect.right())) < 10
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    window.graph.viewer().set_zoom(-0.25)  # scale 0.75: full detail
    window.graph.center_on([blur])
    window.graph.widget.grab().save(str(SCREENSHOTS / "gui-collapsed.png"))
    window.document.save(tmp_path / "w.json")
    assert '"collapsed": true' in (tmp_path / "w.json").read_text()
    window.undo()
    assert not view.collapsed and view.boundingRect().height() == tall
    assert all(w.isVisible() for w in widgets)
    window.graph.undo_stack().setClean()
    assert window.open_path(tmp_path / "w.json")
    assert window.node("blur").view.collapsed
    menu = _right_click(window, window.node("blur"))
    assert any(a.text() == "Expand\tAlt+C" for a in menu.actions())
    menu.close()


def test_alt_c_collapses_and_expands_the_selection_and_zooming_keeps_it_folded(qtbot, window):
    viewer = _select_with_focus(window, "blur", "noise")
    qtbot.keyClick(viewer, QtCore.Qt.Key.Key_C, QtCore.Qt.KeyboardModifier.AltModifier)
    assert window.node("blur").view.collapsed and window.node("noise").view.collapsed
    viewer.set_zoom(-0.5)  # overview (scale 0.5), then back to full detail
    assert window.node("blur").view.overview
    viewer.set_zoom(0.0)
    assert not window.node("blur").view.overview
    assert not any(w.widget().isVisible() for w in window.node("blur").view._widgets.values())
    qtbot.keyClick(viewer, QtCore.Qt.Key.Key_C, QtCore.Qt.KeyboardModifier.AltModifier)
    assert not window.node("blur").view.collapsed and not window.node("noise").view.collapsed

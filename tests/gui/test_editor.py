"""Editing on the canvas: palette, links, params, undo, copy/paste."""
from __future__ import annotations

from PySide6 import QtCore

from app import graph_adapter as adapter
from tests.gui.conftest import SCREENSHOTS
from tests.gui.helpers import drag_link


def test_opens_the_default_workflow_with_generated_nodes(txt2img, registry):
    nodes = adapter.workflow_nodes(txt2img.graph)
    assert sorted(adapter.node_id_of(n) for n in nodes) == sorted(
        ["checkpoint", "decode", "latent", "negative", "positive", "sampler", "save", "schedule"])
    sampler = txt2img.node("sampler")
    assert sampler.SPEC is registry.get("diffusion.sampler")
    assert sampler.get_property("param_seed") == 0 and sampler.get_property("param_guidance") == 3.0
    assert txt2img.windowTitle().startswith("txt2img.json")
    assert not txt2img.isWindowModified()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    txt2img.fit_view()
    txt2img.grab().save(str(SCREENSHOTS / "gui-main-window.png"))


def test_ports_are_coloured_by_type(txt2img):
    checkpoint = txt2img.node("checkpoint")
    colours = {name: tuple(port.view.color[:3]) for name, port in checkpoint.outputs().items()}
    assert colours["model"] == adapter.PORT_COLOURS[adapter.PortType.MODEL]
    assert colours["vae"] == adapter.PORT_COLOURS[adapter.PortType.VAE]
    assert len(set(colours.values())) == 3


def test_palette_search_and_double_click_add_a_node(qtbot, window):
    window.palette.search.setFocus()
    qtbot.keyClicks(window.palette.search, "sampler")
    shown = window.palette.visible_types()
    assert "wb.n_diffusion_sampler" in shown and "wb.n_image_save" not in shown
    assert all("sampler" in t for t in shown)  # Sampler, and unCLIP's Prior sampler
    item = window.palette.item_for("wb.n_diffusion_sampler")
    window.palette.tree.scrollToItem(item)
    qtbot.wait(20)  # the tree lays out the filtered items
    rect = window.palette.tree.visualItemRect(item)
    qtbot.mouseClick(window.palette.tree.viewport(), QtCore.Qt.MouseButton.LeftButton,
                     pos=rect.center())
    qtbot.mouseDClick(window.palette.tree.viewport(), QtCore.Qt.MouseButton.LeftButton,
                      pos=rect.center())
    nodes = adapter.workflow_nodes(window.graph)
    assert [adapter.node_id_of(n) for n in nodes] == ["sampler"]
    assert window.isWindowModified()
    window.undo()
    assert adapter.workflow_nodes(window.graph) == []


def test_palette_drop_creates_the_node_where_it_lands(window):
    item = window.palette.item_for("wb.n_latent_empty")
    mime = window.palette.tree.mimeData([item])
    viewer = window.graph.viewer()
    window.graph._on_node_data_dropped(mime, QtCore.QPoint(120, 80))  # what the view's dropEvent calls
    node = adapter.workflow_nodes(window.graph)[0]
    assert adapter.node_id_of(node) == "empty"
    assert node.pos() == [120.0, 80.0]
    assert viewer is window.graph.viewer()


def test_mouse_drag_links_matching_ports_and_refuses_mismatched(qtbot, txt2img):
    window = txt2img
    sampler, decode = window.node("sampler"), window.node("decode")
    sampler.outputs()["latent"].disconnect_from(decode.inputs()["latent"])
    window.graph.viewer().zoom_to_nodes([sampler.view, decode.view])
    qtbot.wait(10)
    drag_link(qtbot, window, sampler, "latent", decode, "vae")
    assert window.node("checkpoint").outputs()["vae"] in decode.inputs()["vae"].connected_ports()
    assert "types differ" in window.statusBar().currentMessage()
    window.grab().save(str(SCREENSHOTS / "gui-link-refused.png"))
    drag_link(qtbot, window, sampler, "latent", decode, "latent")
    assert decode.inputs()["latent"].connected_ports() == [sampler.outputs()["latent"]]


def test_code_paths_are_type_checked_too(txt2img):
    sampler, decode = txt2img.node("sampler"), txt2img.node("decode")
    problem = txt2img.graph.connect_checked(sampler, "trajectory", decode, "latent")
    assert "TRAJECTORY" in problem and "LATENT" in problem
    assert decode.inputs()["latent"].connected_ports() == [sampler.outputs()["latent"]]


def test_an_input_takes_one_link_an_output_many(txt2img):
    checkpoint, sampler = txt2img.node("checkpoint"), txt2img.node("sampler")
    assert len(checkpoint.outputs()["model"].connected_ports()) == 2
    ideal = txt2img.graph.create_node("wb.n_model_ideal_denoiser")
    assert txt2img.graph.connect_checked(ideal, "model", sampler, "model") is None
    assert sampler.inputs()["model"].connected_ports() == [ideal.outputs()["model"]]


def test_param_edit_in_the_properties_panel_is_undoable(qtbot, txt2img):
    window = txt2img
    sampler = window.node("sampler")
    window.graph.scene().clearSelection()
    sampler.view.setSelected(True)
    qtbot.waitUntil(lambda: window.properties.node is sampler)
    editor = window.properties.editors["guidance"]
    editor.spin.setFocus()
    editor.spin.selectAll()
    qtbot.keyClicks(editor.spin, "7.5")
    qtbot.keyClick(editor.spin, QtCore.Qt.Key.Key_Return)
    assert sampler.get_property("param_guidance") == 7.5
    assert sampler.view.widgets["param_guidance"].get_value() == 7.5  # the node's own widget
    assert window.isWindowModified()
    window.undo()
    assert sampler.get_property("param_guidance") == 3.0
    assert editor.value() == 3.0
    assert not window.isWindowModified()
    window.redo()
    assert sampler.get_property("param_guidance") == 7.5
    window.graph.viewer().zoom_to_nodes([sampler.view, window.node("positive").view])
    window.grab().save(str(SCREENSHOTS / "gui-properties.png"))
    window.graph.scene().clearSelection()
    sampler.view.setSelected(True)


def test_edit_on_the_node_itself_is_undoable(txt2img):
    steps = txt2img.node("schedule").view.widgets["param_steps"].editor
    steps.spin.setValue(12)  # what the arrows or typing + Enter do
    assert txt2img.node("schedule").get_property("param_steps") == 12
    assert txt2img.document.workflow().nodes["schedule"].params["steps"] == 12
    txt2img.undo()
    assert steps.value() == 25


def test_seed_randomize_button(qtbot, txt2img):
    sampler = txt2img.node("sampler")
    widget = sampler.view.widgets["param_seed"]
    seeds = set()
    for _ in range(3):
        qtbot.mouseClick(widget.editor.randomize, QtCore.Qt.MouseButton.LeftButton)
        seeds.add(sampler.get_property("param_seed"))
    assert len(seeds) >= 2 and all(isinstance(s, int) for s in seeds)


def test_editors_match_param_types(txt2img):
    from app.gui import param_editors as pe

    prompt = txt2img.node("positive").view.widgets["param_text"].editor
    assert isinstance(prompt, pe.MultilineEditor)
    assert isinstance(txt2img.node("checkpoint").view.widgets["param_path"].editor, pe.FileEditor)
    assert isinstance(txt2img.node("schedule").view.widgets["param_name"].editor, pe.ComboEditor)
    steps = txt2img.node("schedule").view.widgets["param_steps"].editor
    assert isinstance(steps, pe.IntEditor) and steps.spin.maximum() == 10000
    assert isinstance(txt2img.node("schedule").view.widgets["param_zero_snr"].editor, pe.BoolEditor)


def test_delete_move_undo_redo(qtbot, txt2img):
    window = txt2img
    decode = window.node("decode")
    window.graph.scene().clearSelection()
    decode.view.setSelected(True)
    window.actions_by_name["delete_selected"].trigger()
    assert window.node("decode") is None
    window.undo()
    decode = window.node("decode")
    assert decode is not None and len(decode.inputs()["vae"].connected_ports()) == 1
    window.redo()
    assert window.node("decode") is None


def test_moving_a_node_with_the_mouse_is_undoable(qtbot, txt2img):
    from tests.gui.helpers import _move

    window = txt2img
    decode = window.node("decode")
    viewer = window.graph.viewer()
    viewer.zoom_to_nodes([decode.view])
    qtbot.wait(10)
    before = list(decode.pos())
    title = viewer.mapFromScene(decode.view.sceneBoundingRect().topLeft() + QtCore.QPointF(20, 8))
    qtbot.mousePress(viewer.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=title)
    for step in range(1, 6):
        _move(viewer.viewport(), title + QtCore.QPoint(12 * step, 8 * step))
    qtbot.mouseRelease(viewer.viewport(), QtCore.Qt.MouseButton.LeftButton,
                       pos=title + QtCore.QPoint(60, 40))
    moved = list(decode.pos())
    assert moved != before and window.isWindowModified()
    window.undo()
    assert list(decode.pos()) == before


def test_copy_paste_and_duplicate_give_fresh_ids(txt2img):
    window = txt2img
    window.graph.scene().clearSelection()
    window.node("positive").view.setSelected(True)
    window.node("negative").view.setSelected(True)
    window.copy()
    window.paste()
    ids = sorted(adapter.node_id_of(n) for n in adapter.workflow_nodes(window.graph))
    assert "encode" in ids and "encode_2" in ids and len(ids) == 10
    window.duplicate()
    assert len({adapter.node_id_of(n) for n in adapter.workflow_nodes(window.graph)}) == 12
    window.undo()
    window.undo()
    assert len(adapter.workflow_nodes(window.graph)) == 8


def test_paste_refuses_links_whose_types_differ(txt2img):
    import json

    from PySide6 import QtWidgets

    window = txt2img
    window.graph.scene().clearSelection()
    window.node("sampler").view.setSelected(True)
    window.node("decode").view.setSelected(True)
    window.copy()
    clipboard = QtWidgets.QApplication.clipboard()
    data = json.loads(clipboard.text())
    # Keep the one link between the copied nodes (NodeGraphQt also copies links to
    # nodes outside the selection), then point it at the wrong input, as a
    # hand-edited or foreign clipboard might.
    data["connections"] = [c for c in data["connections"]
                           if c["in"][0] in data["nodes"] and c["out"][0] in data["nodes"]]
    assert [c["in"][1] for c in data["connections"]] == ["latent"]
    data["connections"][0]["in"][1] = "vae"
    clipboard.setText(json.dumps(data))
    pasted = window.graph.paste_nodes()
    decode_copy = next(n for n in pasted if n.SPEC.type_id == "vae.decode")
    assert decode_copy.inputs()["vae"].connected_ports() == []
    assert "types differ" in window.log.toPlainText()


def test_select_all_group_fit_zoom_and_tab_search(qtbot, txt2img):
    window = txt2img
    qtbot.keyClick(window, QtCore.Qt.Key.Key_A, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert len(window.graph.selected_nodes()) == 8
    assert not window.isWindowModified()  # selecting is not an edit
    window.group_selection()
    workflow = window.document.workflow()
    assert workflow.ui["groups"][0]["title"] == "Group"
    before = window.graph.get_zoom()
    window.zoom_in()
    assert window.graph.get_zoom() > before
    window.fit_view()


def test_tab_search_creates_the_node_typed(qtbot, window):
    """Tab opens the canvas's node search (a popup, no nested event loop): type, Enter."""
    window.graph.viewer().setFocus()
    qtbot.keyClick(window.graph.viewer(), QtCore.Qt.Key.Key_Tab)
    menu = window.graph.tab_search_widget()
    assert menu.isVisible()
    qtbot.keyClicks(menu.line_edit, "Schedule")
    qtbot.keyClick(menu.line_edit, QtCore.Qt.Key.Key_Return)
    nodes = adapter.workflow_nodes(window.graph)
    assert [n.SPEC.type_id for n in nodes] == ["diffusion.schedule"]


def test_undo_redo_keys_reach_the_window_from_the_canvas(qtbot, txt2img):
    """The view binds Ctrl+Z itself; two owners would make the key do nothing."""
    window = txt2img
    window.node("sampler").set_property("param_seed", 7)
    viewer = window.graph.viewer()
    viewer.setFocus()
    control = QtCore.Qt.KeyboardModifier.ControlModifier
    qtbot.keyClick(viewer, QtCore.Qt.Key.Key_Z, control)
    assert window.node("sampler").get_property("param_seed") == 0
    qtbot.keyClick(viewer, QtCore.Qt.Key.Key_Z, control | QtCore.Qt.KeyboardModifier.ShiftModifier)
    assert window.node("sampler").get_property("param_seed") == 7


def test_backdrops_are_saved_and_reopened(txt2img, tmp_path):
    window = txt2img
    window.graph.scene().clearSelection()
    window.node("positive").view.setSelected(True)
    window.node("negative").view.setSelected(True)
    window.group_selection()
    path = window.document.save(tmp_path / "grouped.json")
    window.open_path(path)
    from NodeGraphQt import BackdropNode

    backdrops = [n for n in window.graph.all_nodes() if isinstance(n, BackdropNode)]
    assert [b.name() for b in backdrops] == ["Group"]
    assert window.document.workflow().ui["groups"] == load_groups(path)


def load_groups(path):
    from core.workflow import load

    return load(path).ui["groups"]

"""Files: the engine's JSON in and out, PNGs and videos with workflows, the unsaved-work guard."""
from __future__ import annotations

import json

import pytest
from PySide6 import QtCore, QtWidgets

from app import graph_adapter as adapter
from core.workflow import dumps, load, save
from core.workflow.model import Link, Node
from tests.gui.conftest import REPO, SCREENSHOTS, answer_dialogs

_Buttons = QtWidgets.QMessageBox.StandardButton


def test_save_reopen_and_compare(txt2img, tmp_path, monkeypatch):
    window = txt2img
    window.node("sampler").set_property("param_seed", 1234)
    assert window.windowTitle().startswith("txt2img.json[*]") and window.isWindowModified()
    target = tmp_path / "mine.json"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(target), "Workflow (*.json)"))
    window.actions_by_name["file_save_as_dialog"].trigger()
    assert not window.isWindowModified() and window.windowTitle().startswith("mine.json")
    data = json.loads(target.read_text())
    assert data["format"] == "diffusion-workbench.workflow"  # the engine's format, not a session
    saved = load(target)
    original = load(REPO / "workflows" / "txt2img.json")
    assert saved.nodes["sampler"].params["seed"] == 1234
    saved.nodes["sampler"].params["seed"] = 0
    assert saved.nodes == original.nodes and sorted(saved.links) == sorted(original.links)
    assert set(saved.ui["nodes"]) == set(original.nodes)
    window.open_path(target)
    again = window.document.workflow()
    assert dumps(again) == target.read_text()  # load -> save is stable


def test_ctrl_s_saves_in_place(qtbot, tmp_path, window):
    path = tmp_path / "w.json"
    save(load(REPO / "workflows" / "txt2img.json"), path)
    window.open_path(path)
    window.node("positive").set_property("param_text", "a blue square")
    qtbot.keyClick(window, QtCore.Qt.Key.Key_S, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert load(path).nodes["positive"].params["text"] == "a blue square"
    assert not window.isWindowModified()


def test_unsaved_changes_prompt(window, monkeypatch):
    window.open_path(REPO / "workflows" / "txt2img.json")
    window.node("sampler").set_property("param_seed", 5)
    asked = answer_dialogs(monkeypatch, _Buttons.Cancel)
    window.file_new()
    assert asked == ["Save changes?"] and window.node("sampler") is not None
    answer_dialogs(monkeypatch, _Buttons.Discard)
    window.file_new()
    assert adapter.workflow_nodes(window.graph) == [] and not window.isWindowModified()


def test_open_a_png_restores_its_workflow(window, tmp_path):
    from app.gui.image_viewer import save_qimage_png
    from PySide6 import QtGui

    workflow = load(REPO / "workflows" / "txt2img.json")
    workflow.nodes["positive"].params["text"] = "from a png"
    image = QtGui.QImage(8, 8, QtGui.QImage.Format.Format_RGB888)
    image.fill(QtGui.QColor(200, 10, 10))
    png = save_qimage_png(image, tmp_path / "out.png", dumps(workflow))
    assert window.open_path(png)
    assert window.node("positive").get_property("param_text") == "from a png"
    assert window.document.path is None  # Save will ask for a .json name, never overwrite the PNG
    assert window.windowTitle().startswith("out.png")


@pytest.mark.parametrize("suffix", ["gif", "webp"])
def test_open_a_workbench_video_restores_its_workflow_and_never_overwrites_it(window, tmp_path,
                                                                              suffix):
    import torch

    from core.video import save_video

    workflow = load(REPO / "workflows" / "video.json")
    workflow.nodes["positive"].params["text"] = "from a video"
    clip = save_video(torch.rand(3, 3, 8, 8), tmp_path / f"clip.{suffix}", 8.0, dumps(workflow))
    before = clip.read_bytes()
    assert window.open_path(clip)
    assert window.node("positive").get_property("param_text") == "from a video"
    assert window.document.path is None  # Save asks for a .json name
    assert clip.read_bytes() == before


def test_dropping_a_file_on_the_window_opens_it(qtbot, window):
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(REPO / "workflows" / "txt2img.json"))])
    centre = QtCore.QPointF(window.rect().center())
    drop = QtGui_drop(centre, mime)
    # Offscreen, Qt delivers no drop without a real drag: call the handler it would call.
    window.dropEvent(drop)
    assert window.node("sampler") is not None
    window.graph.files_dropped.emit([str(REPO / "workflows" / "img2img.json")])  # onto the canvas
    assert window.windowTitle().startswith("img2img.json")


def QtGui_drop(point, mime):  # noqa: N802
    from PySide6 import QtGui

    return QtGui.QDropEvent(point, QtCore.Qt.DropAction.CopyAction, mime,
                            QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)


def test_not_a_workflow_is_reported_and_the_graph_kept(txt2img, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert not txt2img.open_path(bad)
    assert txt2img.node("sampler") is not None
    assert "not a Diffusion Workbench workflow" in txt2img.log.toPlainText()


def test_unknown_node_types_are_kept_as_placeholders(window, tmp_path):
    workflow = load(REPO / "workflows" / "txt2img.json")
    workflow.add_node(Node("fancy", "plugin.fancy_filter", 3, None, {"amount": 0.7, "mode": "x"}))
    workflow.connect("decode", "image", "fancy", "pixels")
    workflow.connect("fancy", "result", "save", "images")  # the plugin sits before Save
    path = tmp_path / "plugin.json"
    save(workflow, path)
    window.open_path(path)
    fancy = window.node("fancy")
    assert isinstance(fancy, adapter.PlaceholderNode)
    assert "not installed" in fancy.name()
    assert list(fancy.inputs()) == ["pixels"] and list(fancy.outputs()) == ["result"]
    window.graph.viewer().zoom_to_nodes([fancy.view, window.node("save").view])
    window.grab().save(str(SCREENSHOTS / "gui-placeholder.png"))
    out = tmp_path / "again.json"
    window.document.save(out)
    again = load(out)
    assert again.nodes["fancy"] == workflow.nodes["fancy"]
    assert Link("decode", "image", "fancy", "pixels") in again.links
    assert Link("fancy", "result", "save", "images") in again.links
    assert "no such port" not in window.log.toPlainText()


def _broken_file(tmp_path):
    """txt2img plus a link into a port the decoder does not have."""
    workflow = load(REPO / "workflows" / "txt2img.json")
    workflow.links.append(Link("checkpoint", "vae", "decode", "no_such_input"))
    path = tmp_path / "broken.json"
    path.write_text(dumps(workflow))
    return path, Link("checkpoint", "vae", "decode", "no_such_input")


def test_a_link_the_canvas_cannot_draw_is_kept_on_save(window, tmp_path):
    path, broken = _broken_file(tmp_path)
    window.open_path(path)
    assert "no such port; kept in the file" in window.log.toPlainText()
    assert broken not in window.document.workflow().links  # runs use the canvas
    window.node("sampler").set_property("param_seed", 7)
    window.document.save()
    saved = load(path)
    assert broken in saved.links and saved.nodes["sampler"].params["seed"] == 7


def test_a_kept_link_is_not_saved_while_its_node_is_deleted(window, tmp_path):
    path, broken = _broken_file(tmp_path)
    window.open_path(path)
    window.graph.clear_selection()
    window.node("decode").set_selected(True)
    window.delete_selected()
    out = tmp_path / "without.json"
    window.document.save(out)
    assert broken not in load(out).links
    window.undo()
    window.document.save(out)
    assert broken in load(out).links  # the undone delete brings it back


def test_recent_files_persist_in_settings(window, settings, tmp_path):
    path = tmp_path / "r.json"
    save(load(REPO / "workflows" / "txt2img.json"), path)
    window.open_path(path)
    assert settings.value("recent_files")[0] == str(path.resolve())
    actions = window.recent_menu.actions()
    assert actions and actions[0].toolTip() == str(path.resolve())


def test_autosave_and_recovery(window, registry, settings, tmp_path, monkeypatch):
    from app.gui.app import offer_recovery
    from app.gui.main_window import MainWindow

    window.open_path(REPO / "workflows" / "txt2img.json")
    assert not window.autosaver.autosave()  # nothing unsaved: nothing written
    window.node("positive").set_property("param_text", "unsaved work")
    assert window.autosaver.autosave()
    assert window.autosaver.timer.interval() == 60_000
    second = MainWindow(registry, settings=settings, autosave_path=window.autosaver.path)
    answer_dialogs(monkeypatch, _Buttons.Yes)
    offer_recovery(second)
    assert second.node("positive").get_property("param_text") == "unsaved work"
    assert second.isWindowModified()
    second.graph.undo_stack().setClean()
    second.close()


def test_recovery_asks_one_question(window, registry, settings, monkeypatch):
    """Issue 11, item 5: restoring at start-up, then opening the default file,
    asked a second question ("Save the changes to Recovered workflow?")."""
    from app.gui.app import open_at_start
    from app.gui.main_window import MainWindow

    window.open_path(REPO / "workflows" / "txt2img.json")
    window.node("positive").set_property("param_text", "unsaved work")
    default = REPO / "workflows" / "txt2img.json"
    for answer, text in ((_Buttons.Yes, "unsaved work"), (_Buttons.No, None)):
        assert window.autosaver.autosave()  # (closing a window removes the file)
        second = MainWindow(registry, settings=settings, autosave_path=window.autosaver.path)
        asked = answer_dialogs(monkeypatch, answer)
        assert open_at_start(second, default)
        assert asked == ["Recover unsaved work?"]  # one question, whatever the answer
        shown = second.node("positive").get_property("param_text")
        assert shown == text if text else shown != "unsaved work"
        assert second.isWindowModified() == (answer == _Buttons.Yes)
        second.graph.undo_stack().setClean()
        second.close()


def test_layout_persists(window, registry, settings, tmp_path):
    from app.gui.main_window import MainWindow

    window.docks["log"].hide()
    window.close()
    again = MainWindow(registry, settings=settings, autosave_path=tmp_path / "r.json")
    assert again.docks["log"].isHidden()
    again.close()




def test_a_layout_saved_with_other_docks_is_not_restored(window, registry, settings, tmp_path):
    """An older version's window state (other docks) would stack the new docks
    over the canvas; it is ignored and the default layout used."""
    from app.gui.main_window import LAYOUT_VERSION, MainWindow

    window.docks["log"].hide()
    settings.setValue("window/state", window.saveState(LAYOUT_VERSION - 1))
    window.docks["log"].show()
    again = MainWindow(registry, settings=settings, autosave_path=tmp_path / "r.json")
    assert not again.docks["log"].isHidden()
    assert again.tabifiedDockWidgets(again.docks["steps"])  # the default: the run's views in tabs
    again.close()


def test_file_examples_lists_the_shipped_workflows_with_pictures_and_opens_one(
        qtbot, window, monkeypatch):
    """File → Examples: every workflows/*.json with a picture of its graph; the chosen opens."""
    from app.gui import examples as examples_module

    action = window.actions_by_name["file_examples"]
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    assert action in file_menu.actions()
    shown = {}

    def exec_(dialog):
        shown["names"] = [dialog.list.item(i).text() for i in range(dialog.list.count())]
        shown["icons"] = [dialog.list.item(i).icon() for i in range(dialog.list.count())]
        dialog.show()
        dialog.grab().save(str(SCREENSHOTS / "gui-examples.png"))
        dialog.list.setCurrentRow(shown["names"].index("img2img"))
        dialog.accept()
        return QtWidgets.QDialog.DialogCode.Accepted

    monkeypatch.setattr(examples_module.ExamplesDialog, "exec", exec_)
    action.trigger()
    shipped = sorted(p.stem for p in (REPO / "workflows").glob("*.json"))
    assert [n.removesuffix(" (template)") for n in shown["names"]] == shipped
    assert "sd15-txt2img (template)" in shown["names"]
    for icon in shown["icons"]:  # a drawn picture, not a blank square
        image = icon.pixmap(examples_module.THUMB_SIZE).toImage()
        colours = {image.pixel(x, y) for x in range(0, image.width(), 4) for y in range(0, image.height(), 4)}
        assert not icon.isNull() and len(colours) > 3
    chosen = REPO / "workflows" / "img2img.json"
    assert window.document.path == chosen
    assert len(window.graph.all_nodes()) == len(load(chosen).nodes)

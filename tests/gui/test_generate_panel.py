"""Issue 11, beyond the anchors: the Generate panel edits the graph's own nodes
(undoable, both ways), says what it could not find, and runs the graph."""
from __future__ import annotations

from PySide6 import QtCore

from tests.gui.conftest import REPO, SCREENSHOTS
from tests.gui.test_run import RUN_TIMEOUT_MS, _few_steps


def _type_prompt(panel, key: str, text: str) -> None:
    """Type into a prompt box and leave it (an edit counts when the box loses focus)."""
    box = panel.editors[key].text
    box.setPlainText(text)
    box.focus_left.emit()


def test_the_panel_sits_behind_properties_and_shows_the_graph(qtbot, txt2img):
    window, panel = txt2img, txt2img.generate
    assert window.docks["generate"] in window.tabifiedDockWidgets(window.docks["properties"])
    assert window.docks["properties"].isVisible()  # Properties stays in front
    values = {key: editor.value() for key, editor in panel.editors.items()}
    assert values == {"prompt": "a large red circle at the top left on a white background",
                      "negative": "", "seed": 0, "steps": 25, "guidance": 3.0, "width": 64,
                      "height": 64, "sampler": "dpmpp_2m"}
    assert all(editor.isEnabled() for editor in panel.editors.values())
    window.docks["generate"].raise_()
    qtbot.waitUntil(lambda: panel.isVisible())
    qtbot.wait(20)  # its scroll area settles
    scroll = window.docks["generate"].widget()
    assert not scroll.horizontalScrollBar().isVisible()  # the form fits the column's width
    assert panel.generate_button.visibleRegion().boundingRect().height() == \
        panel.generate_button.height()  # Generate is in view, never scrolled away
    window.grab().save(str(SCREENSHOTS / "gui-generate-panel.png"))


def test_a_prompt_typed_in_the_panel_changes_the_node_and_undo_restores_it(qtbot, txt2img):
    window, panel = txt2img, txt2img.generate
    before = window.node("positive").get_property("param_text")
    _type_prompt(panel, "prompt", "a small blue square")
    assert window.node("positive").get_property("param_text") == "a small blue square"
    assert window.document.workflow().nodes["positive"].params["text"] == "a small blue square"
    window.undo()
    assert window.node("positive").get_property("param_text") == before
    assert panel.editors["prompt"].value() == before  # the panel follows the undo
    qtbot.mouseClick(panel.editors["seed"].randomize, QtCore.Qt.MouseButton.LeftButton)
    assert window.node("sampler").get_property("param_seed") == panel.editors["seed"].value()
    panel.editors["prompt"].text.setPlainText("still typing")
    panel.rebind()  # another edit elsewhere does not reset a prompt being typed
    assert panel.editors["prompt"].value() == "still typing"
    panel.editors["sampler"].edited.emit("euler")  # what the combo sends when a sampler is chosen
    assert window.node("sampler").get_property("param_sampler") == "euler"


def test_edits_on_the_canvas_show_in_the_panel(txt2img):
    window, panel = txt2img, txt2img.generate
    window.node("schedule").set_property("param_steps", 7)
    window.node("latent").set_property("param_width", 96)
    window.node("negative").set_property("param_text", "blurry")
    assert panel.editors["steps"].value() == 7
    assert panel.editors["width"].value() == 96
    assert panel.editors["negative"].value() == "blurry"
    window.undo()
    assert panel.editors["negative"].value() == ""


def test_missing_nodes_are_named_and_their_fields_disabled(qtbot, txt2img):
    window, panel = txt2img, txt2img.generate
    window.graph.delete_nodes([window.node("positive")])
    qtbot.waitUntil(lambda: not panel.editors["prompt"].isEnabled())
    assert "Prompt" in panel.status.text()
    assert panel.editors["steps"].isEnabled() and panel.generate_button.isEnabled()
    window.undo()
    qtbot.waitUntil(lambda: panel.editors["prompt"].isEnabled())
    assert panel.nodes["positive"] is window.node("positive")
    window.file_new()
    assert not any(editor.isEnabled() for editor in panel.editors.values())
    assert "no Sampler" in panel.status.text() and not panel.generate_button.isEnabled()


def test_with_several_samplers_the_selected_one_is_edited(qtbot, window):
    assert window.open_path(REPO / "workflows" / "compare-samplers.json")
    panel = window.generate
    assert "Samplers: select one" in panel.status.text()
    assert not panel.editors["seed"].isEnabled()
    sampler = next(n for n in window.graph.all_nodes()
                   if n.has_property("wb_type") and n.get_property("wb_type") == "diffusion.sampler")
    window.graph.clear_selection()
    sampler.set_selected(True)
    qtbot.waitUntil(lambda: panel.nodes.get("sampler") is sampler)
    assert panel.editors["seed"].isEnabled()
    assert panel.editors["sampler"].value() == sampler.get_property("param_sampler")


def test_generate_runs_the_graph(qtbot, txt2img):
    window, panel = txt2img, txt2img.generate
    _few_steps(window)
    assert panel.editors["steps"].value() == 2
    panel.editors["prompt"].text.setPlainText("a green triangle")  # still being typed
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        qtbot.mouseClick(panel.generate_button, QtCore.Qt.MouseButton.LeftButton)
    outcome = blocker.args[0]
    assert outcome.status == "finished", outcome.message
    assert '"a green triangle"' in outcome.workflow_json  # the typed prompt counted
    assert len(outcome.images) >= 2


def test_prompts_are_found_through_apply_controlnet(window):
    """The prompt nodes are found along the links, through the nodes in between."""
    assert window.open_path(REPO / "workflows" / "controlnet-outline.json")
    panel = window.generate
    assert panel.editors["prompt"].isEnabled() and panel.editors["negative"].isEnabled()
    for role in ("positive", "negative"):
        assert panel.nodes[role].get_property("wb_type") == "conditioning.encode"
    assert panel.editors["prompt"].value() == panel.nodes["positive"].get_property("param_text")

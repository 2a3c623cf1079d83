"""Item 6 of issue 11: numbers out of range are shown as stored, and said so."""
from __future__ import annotations

import json

from PySide6 import QtCore

from tests.gui.conftest import REPO, SCREENSHOTS


def _open_with_steps(window, tmp_path, steps):
    data = json.loads((REPO / "workflows" / "txt2img.json").read_text())
    for node in data["nodes"]:
        if node["id"] == "schedule":
            node["params"]["steps"] = steps
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data))
    assert window.open_path(path)


def _panel_editor(window, node_id: str, name: str):
    window.graph.clear_selection()
    window.node(node_id).set_selected(True)
    QtCore.QCoreApplication.processEvents()
    return window.properties.editors[name]


def test_a_stored_value_past_the_range_is_shown_as_stored_with_its_problem(window, tmp_path):
    _open_with_steps(window, tmp_path, 1e9)
    editor = _panel_editor(window, "schedule", "steps")
    assert editor.spin.text() == "1000000000"  # not the maximum 10000
    assert editor.note.isVisible()
    note = editor.note_text()
    assert "1000000000" in note and "maximum 10000" in note and "refuses" in note
    assert window.node("schedule").get_property("param_steps") == 1e9  # nothing was changed
    window.properties.widget().grab().save(str(SCREENSHOTS / "gui-value-out-of-range.png"))
    editor.spin.lineEdit().selectAll()  # a valid value typed over it clears the problem
    editor.spin.lineEdit().insert("30")
    editor.spin.editingFinished.emit()
    editor.spin.interpretText()
    assert window.node("schedule").get_property("param_steps") == 30
    assert not editor.note.isVisible() and editor.note_text() == ""


def test_typing_past_the_maximum_says_it_was_clamped(qtbot, txt2img):
    window = txt2img
    editor = _panel_editor(window, "schedule", "steps")
    editor.spin.setFocus()
    editor.spin.lineEdit().selectAll()
    qtbot.keyClicks(editor.spin.lineEdit(), "999999")
    assert editor.spin.lineEdit().text() == "999999"  # no keystroke swallowed
    qtbot.keyClick(editor.spin.lineEdit(), QtCore.Qt.Key.Key_Return)
    assert window.node("schedule").get_property("param_steps") == 10000
    assert editor.spin.text() == "10000"
    assert editor.note.isVisible()
    assert "999999" in editor.note_text() and "10000" in editor.note_text()
    qtbot.wait(20)  # the panel's layout makes room for the note
    window.properties.widget().grab().save(str(SCREENSHOTS / "gui-value-clamped.png"))
    qtbot.keyClick(editor.spin, QtCore.Qt.Key.Key_Down)  # the next edit clears the note
    assert window.node("schedule").get_property("param_steps") == 9999
    assert editor.note_text() == ""


def test_a_float_past_its_range_is_shown_too(window, tmp_path):
    data = json.loads((REPO / "workflows" / "txt2img.json").read_text())
    for node in data["nodes"]:
        if node["id"] == "sampler":
            node["params"]["guidance"] = 75.0
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data))
    assert window.open_path(path)
    editor = _panel_editor(window, "sampler", "guidance")
    assert editor.value() == 75.0 and "maximum 50.0" in editor.note_text()

"""A workflow naming a model file this machine lacks asks for it before the
run (the templates ship with the usual file names), instead of failing."""
from __future__ import annotations

from tests.gui.conftest import REPO
from tests.gui.test_run import _run
from tests.layouts.files import tiny_sd1_checkpoint


def _small(window) -> None:
    for name, value in (("param_steps", 2), ):
        window.node("schedule").set_property(name, value)
    window.node("latent").set_property("param_width", 64)
    window.node("latent").set_property("param_height", 64)


def test_the_missing_checkpoint_is_asked_for_and_the_run_uses_it(qtbot, window, tmp_path):
    made = tiny_sd1_checkpoint(tmp_path / "my-sd15.safetensors")
    assert window.open_path(REPO / "workflows" / "sd15-txt2img.json")
    _small(window)
    window.ask_for_file = lambda parent, missing: window.asked_files.append(missing) or str(made.path)
    outcome = _run(qtbot, window, key=False)
    assert outcome.status == "finished", outcome.message
    assert [(m.node_id, m.param, m.value) for m in window.asked_files] == [
        ("checkpoint", "path", "v1-5-pruned-emaonly.safetensors")]
    assert window.node("checkpoint").get_property("param_path") == str(made.path)
    assert window.document.workflow().nodes["checkpoint"].params["path"] == str(made.path)


def test_cancelling_the_question_runs_nothing_and_changes_nothing(window):
    assert window.open_path(REPO / "workflows" / "sd15-txt2img.json")
    assert not window.run_workflow()  # the fixture's asker answers "cancel"
    assert not window.runner.running
    assert window.node("checkpoint").get_property("param_path") == "v1-5-pruned-emaonly.safetensors"
    assert "v1-5-pruned-emaonly.safetensors is missing" in window.statusBar().currentMessage()


def test_a_workflow_with_its_files_present_asks_nothing(qtbot, window):
    assert window.open_path(REPO / "workflows" / "txt2img.json")
    window.node("schedule").set_property("param_steps", 2)
    outcome = _run(qtbot, window, key=False)
    assert outcome.status == "finished" and window.asked_files == []


def test_the_loader_panel_says_what_the_chosen_file_is(window, tmp_path):
    made = tiny_sd1_checkpoint(tmp_path / "my-sd15.safetensors")
    assert window.open_path(REPO / "workflows" / "sd15-txt2img.json")
    node = window.node("checkpoint")
    window.properties.show_node(node)
    assert "not found" in window.properties.file_info.text()
    node.set_property("param_path", str(made.path))
    assert "SD 1.x" in window.properties.file_info.text()
    window.properties.show_node(window.node("sampler"))
    assert window.properties.file_info is None

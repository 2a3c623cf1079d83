"""Before a run: ask for each model file the workflow names but this machine
lacks (a template, or a workflow from someone else), instead of failing in
the middle of the run. The answer is written into the node like an edit by
hand (undoable); cancelling leaves the workflow as it was and runs nothing."""
from __future__ import annotations

from typing import Callable

from PySide6 import QtWidgets

from app import graph_adapter as adapter
from core.checkpoints.missing import MissingFile, missing_files

FILTERS = "Model files (*.safetensors);;Images (*.png *.jpg *.jpeg *.webp);;All files (*)"
Ask = Callable[[QtWidgets.QWidget, MissingFile], str]


def ask_with_dialog(parent: QtWidgets.QWidget, missing: MissingFile) -> str:
    """A file dialog titled with what is missing; '' when cancelled."""
    if missing.param == "folder":
        return QtWidgets.QFileDialog.getExistingDirectory(
            parent, f"Where is the folder {missing.value}? ({missing.title})")
    path, _ = QtWidgets.QFileDialog.getOpenFileName(
        parent, f"Where is {missing.value}? ({missing.title} · {missing.param})", "", FILTERS)
    return path


def resolve_missing_files(window, workflow, ask: Ask = ask_with_dialog):
    """``workflow`` with every missing file the user chose filled in (and set on
    the canvas's nodes), or None when the user cancelled one."""
    for missing in missing_files(workflow, window.registry):
        chosen = ask(window, missing)
        if not chosen:
            window.log.add(f"not run: {missing}", "error")
            window.statusBar().showMessage(f"Cannot run: {missing.value} is missing")
            return None
        workflow.nodes[missing.node_id].params[missing.param] = chosen
        node = adapter.find_node(window.graph, missing.node_id)
        if node is not None:
            node.set_property(adapter.param_prop(missing.param), chosen)
        window.log.add(f"{missing.title} · {missing.param}: using {chosen}", "info")
    return workflow

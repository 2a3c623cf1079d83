"""The open file: where it lives, whether it changed, loading and saving it
in the engine's own JSON. "Changed" is the undo stack's clean state, so
undoing back to the saved state clears the asterisk."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore

from app import graph_adapter as adapter
from core.registry import NodeRegistry
from core.workflow import Workflow, load, save
from core.workflow.png import PNG_MAGIC


class Document(QtCore.QObject):
    """One workflow on one graph."""

    changed = QtCore.Signal()  # path or modified state changed

    def __init__(self, graph, registry: NodeRegistry, parent=None) -> None:
        super().__init__(parent)
        self.graph = graph
        self.registry = registry
        self.path: Path | None = None
        self.source_name = "Untitled"
        self.base_ui: dict = {}
        graph.undo_stack().cleanChanged.connect(lambda _clean: self.changed.emit())

    @property
    def modified(self) -> bool:
        return not self.graph.undo_stack().isClean()

    def display_name(self) -> str:
        return self.path.name if self.path else self.source_name

    def new(self) -> None:
        self._show(Workflow())
        self.path, self.source_name = None, "Untitled"
        self.changed.emit()

    def open(self, path: str | Path) -> list[str]:
        """Load a workflow JSON or a workbench PNG; return links that were refused.

        A PNG is not written back (Save asks for a JSON name instead).
        Raises ``WorkflowFormatError`` for anything that is not a workflow.
        """
        path = Path(path)
        workflow = load(path)
        refused = self._show(workflow)
        is_png = path.read_bytes()[: len(PNG_MAGIC)] == PNG_MAGIC
        self.path = None if is_png else path
        self.source_name = path.name
        self.changed.emit()
        return refused

    def open_workflow(self, workflow: Workflow, name: str) -> list[str]:
        """Show a workflow that has no file of its own (a recovered autosave)."""
        refused = self._show(workflow)
        self.path, self.source_name = None, name
        self.graph.undo_stack().resetClean()  # nothing on disk holds it: it is unsaved
        self.changed.emit()
        return refused

    def _show(self, workflow: Workflow) -> list[str]:
        self.base_ui = {k: v for k, v in workflow.ui.items() if k not in ("nodes", "groups")}
        refused = adapter.load_into(self.graph, workflow, self.registry)
        self.graph.undo_stack().setClean()
        return refused

    def workflow(self) -> Workflow:
        return adapter.to_workflow(self.graph, self.base_ui)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the engine's JSON atomically and mark the document unchanged."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("the document has no file yet: use Save As")
        save(self.workflow(), target)
        self.path, self.source_name = target, target.name
        self.graph.undo_stack().setClean()
        self.changed.emit()
        return target

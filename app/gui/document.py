"""The open file: where it lives, whether it changed, loading and saving it
in the engine's own JSON. "Changed" is the undo stack's clean state, so
undoing back to the saved state clears the asterisk.

Links of the file that the canvas cannot draw (to a port a node no longer
has, or between types that no longer match) are kept aside and written back
on save, so opening and saving a file never deletes part of it. Runs use the
canvas alone. A kept link is not saved while either of its nodes is
deleted or its input has a link on the canvas."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore

from app import graph_adapter as adapter
from core.registry import NodeRegistry
from core.workflow import Workflow, load, save
from core.workflow.model import Link
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
        self.kept_links: list[Link] = []  # refused on load, written back on save
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
        """Load a workflow JSON, or the workflow a workbench PNG, GIF or WebP
        carries; return links that were refused.

        A picture or video is not written back (Save asks for a JSON name instead).
        Raises ``WorkflowFormatError`` for anything that is not a workflow.
        """
        from core.video import is_animation

        path = Path(path)
        workflow = load(path)
        refused = self._show(workflow)
        with open(path, "rb") as file:
            head = file.read(16)
        carried = head.startswith(PNG_MAGIC) or is_animation(head)
        self.path = None if carried else path
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
        self.kept_links = [r.link for r in refused]
        self.graph.undo_stack().setClean()
        return [f"{r}; kept in the file, not drawn" for r in refused]

    def workflow(self) -> Workflow:
        """What the canvas shows: what a run executes."""
        return adapter.to_workflow(self.graph, self.base_ui)

    def workflow_to_save(self) -> Workflow:
        """The canvas plus the kept links that still apply."""
        workflow = self.workflow()  # (an undone delete brings a node's kept links back)
        workflow.links = sorted(workflow.links + still_applicable(self.kept_links, workflow))
        return workflow

    def save(self, path: str | Path | None = None) -> Path:
        """Write the engine's JSON atomically and mark the document unchanged."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("the document has no file yet: use Save As")
        save(self.workflow_to_save(), target)
        self.path, self.source_name = target, target.name
        self.graph.undo_stack().setClean()
        self.changed.emit()
        return target


def still_applicable(kept: list[Link], workflow: Workflow) -> list[Link]:
    """The kept links whose nodes both still exist and whose input nothing
    else feeds now (an input takes one link)."""
    fed = {(link.dst_node, link.dst_input) for link in workflow.links}
    return [link for link in kept
            if link.src_node in workflow.nodes and link.dst_node in workflow.nodes
            and (link.dst_node, link.dst_input) not in fed]

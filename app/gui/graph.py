"""The canvas's graph: NodeGraphQt plus the rules it lacks.

* Port types are checked on every path that makes a link: mouse drags
  (NodeGraphQt's are silent and key on node types), code, paste and load.
  A refused link is announced with :attr:`WorkbenchGraph.connection_refused`.
* Every node gets a stable workflow id when it is created, pasted or
  duplicated (NodeGraphQt's own ids change on each load and paste).
* Files dropped on the canvas are handed to the window, not to NodeGraphQt's
  session importer.
* The view is a :class:`~app.gui.canvas_viewer.CanvasViewer` (level of
  detail, coloured links, gestures) and the node search is the catalogue's
  own (:mod:`app.gui.canvas_gestures`), never NodeGraphQt's class list.
"""
from __future__ import annotations

import re

from NodeGraphQt import BaseNode, NodeGraph
from NodeGraphQt.constants import MIME_TYPE, PortTypeEnum
from PySide6 import QtCore, QtGui

from app import graph_adapter as adapter
from app.gui.canvas_gestures import CanvasGestures
from app.gui.canvas_viewer import CanvasViewer
from core.registry import NodeRegistry


class WorkbenchGraph(NodeGraph):
    """A NodeGraph whose links respect port types and whose nodes keep ids."""

    connection_refused = QtCore.Signal(str)
    files_dropped = QtCore.Signal(list)

    def __init__(self, registry: NodeRegistry, parent=None) -> None:
        undo_stack = QtGui.QUndoStack()
        super().__init__(parent, undo_stack=undo_stack, viewer=CanvasViewer(undo_stack=undo_stack))
        undo_stack.setParent(self)
        self.registry = registry
        self.register_nodes(adapter.node_classes(registry))
        self._release_view_shortcuts()
        self.gestures = CanvasGestures(self)

    # -- names and ids -----------------------------------------------------
    def get_unique_name(self, name: str) -> str:
        """Titles may repeat: nodes are told apart by their stable ids."""
        return " ".join(str(name).split())

    def create_node(self, node_type, *args, **kwargs):
        node = super().create_node(node_type, *args, **kwargs)
        self.assign_ids([node])
        return node

    def assign_ids(self, nodes) -> None:
        """Give each of ``nodes`` a fresh id unless it already has a unique one."""
        nodes = [n for n in nodes if isinstance(n, (adapter.SpecNode, adapter.PlaceholderNode))]
        fresh = {id(n) for n in nodes}
        taken = {adapter.node_id_of(n) for n in adapter.workflow_nodes(self) if id(n) not in fresh}
        for node in nodes:
            current = adapter.node_id_of(node)
            if current and current not in taken:
                taken.add(current)
                continue
            spec = adapter.spec_of(node)
            stem = spec.type_id.rsplit(".", 1)[-1] if spec else "node"
            new = _fresh_id(stem, taken)
            node.model.set_property(adapter.ID_PROP, new)
            taken.add(new)

    # -- selection -----------------------------------------------------------
    def select_all(self) -> None:
        """Select every item on the view: selecting is not an edit (NodeGraphQt's
        own version pushes an undo step, which would mark the file as changed)."""
        for node in self.all_nodes():
            node.view.setSelected(True)

    def clear_selection(self) -> None:
        self.scene().clearSelection()

    # -- links -------------------------------------------------------------
    def connect_checked(self, src: BaseNode, output: str, dst: BaseNode, input_: str) -> str | None:
        """Link from code with the type check; an undo step. Returns the refusal."""
        problem = adapter.link_problem(src, output, dst, input_)
        if problem:
            self.connection_refused.emit(problem)
            return problem
        src.outputs()[output].connect_to(dst.inputs()[input_])
        return None

    def _on_connection_changed(self, disconnected, connected):
        """A mouse drag ended on a port: refuse it whole if any new link mismatches."""
        for first, second in connected:
            out_view, in_view = (first, second) if first.port_type == PortTypeEnum.OUT.value \
                else (second, first)
            src = self.get_node_by_id(out_view.node.id)
            dst = self.get_node_by_id(in_view.node.id)
            problem = adapter.link_problem(src, out_view.name, dst, in_view.name)
            if problem:
                self._restore_pipes(disconnected)
                self.connection_refused.emit(problem)
                return
        super()._on_connection_changed(disconnected, connected)

    def _restore_pipes(self, disconnected) -> None:
        """Redraw links the drag lifted off, since the model still has them."""
        for first, second in disconnected:
            if second not in first.connected_ports:
                self.viewer().establish_connection(first, second)

    def remove_mismatched_links(self, nodes) -> list[str]:
        """After a paste: drop any link between ``nodes`` whose types differ."""
        removed = []
        for node in nodes:
            if not isinstance(node, BaseNode):
                continue
            for name, port in node.inputs().items():
                for source in port.connected_ports():
                    problem = adapter.link_problem(source.node(), source.name(), node, name)
                    if problem:
                        port.disconnect_from(source)
                        removed.append(problem)
        for problem in removed:
            self.connection_refused.emit(problem)
        return removed

    # -- paste and duplicate -----------------------------------------------
    def paste_nodes(self, adjust_graph_style=False):
        self._undo_stack.beginMacro("paste nodes")
        nodes = list(super().paste_nodes(adjust_graph_style=False) or [])
        self.assign_ids(nodes)
        self.remove_mismatched_links(nodes)
        self._undo_stack.endMacro()
        return nodes

    def duplicate_nodes(self, nodes):
        self._undo_stack.beginMacro("duplicate nodes")
        new = list(super().duplicate_nodes(nodes) or [])
        self.assign_ids(new)
        self.remove_mismatched_links(new)
        self._undo_stack.endMacro()
        return new

    # -- drops and keys ----------------------------------------------------
    def _on_node_data_dropped(self, mimedata, pos):
        """Palette drops create nodes; dropped files go to the window."""
        if mimedata.hasFormat(MIME_TYPE):
            text = mimedata.data(MIME_TYPE).data().decode()
            x, y = pos.x(), pos.y()
            for node_type in re.findall(r"node:([\w\.]+)", text):
                self.create_node(node_type, pos=(x, y))
                x, y = x + 40, y + 40
        elif mimedata.hasUrls():
            paths = [u.toLocalFile() for u in mimedata.urls() if u.toLocalFile()]
            if paths:
                self.files_dropped.emit(paths)

    def _release_view_shortcuts(self) -> None:
        """The view binds Ctrl+Z/Ctrl+Shift+Z itself; the window's Edit menu owns them."""
        for action in (self.viewer().qaction_for_undo(), self.viewer().qaction_for_redo()):
            if action is not None:
                action.setShortcuts([])

    def show_tab_search(self) -> None:
        """Open the catalogue's node search at the cursor (or the view's centre)."""
        self.gestures.open_search()

    def toggle_node_search(self) -> None:
        """NodeGraphQt's entry point to its own search: ours instead."""
        self.show_tab_search()

    def tab_search_widget(self):
        return self.gestures.search

    def backdrop_selection(self, title: str = "Group"):
        """Wrap the selected nodes in a backdrop (one undo step)."""
        selected = [n for n in self.selected_nodes() if isinstance(n, BaseNode)]
        backdrop = self.create_node("nodeGraphQt.nodes.BackdropNode", name=title)
        if selected:
            backdrop.wrap_nodes(selected)
        return backdrop


def _fresh_id(stem: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", stem).lstrip("-")[:56] or "node"
    if stem not in taken:
        return stem
    index = 2
    while f"{stem}_{index}" in taken:
        index += 1
    return f"{stem}_{index}"


def zoom_in(graph: NodeGraph) -> None:
    graph.set_zoom(graph.get_zoom() + 0.1)


def zoom_out(graph: NodeGraph) -> None:
    graph.set_zoom(graph.get_zoom() - 0.1)


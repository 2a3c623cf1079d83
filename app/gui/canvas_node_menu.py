"""Right-click on a node: the commands node editors offer on a node, and the
Bypass (Ctrl+B) / Mute (Ctrl+M) toggles.

NodeGraphQt's own node menu blocks in ``exec_`` (a test, or a run's signals,
would wait on it) and lists nothing useful, so an event filter on the canvas
viewport takes right-clicks that land on a node and pops up a non-blocking
menu instead (as :mod:`app.gui.canvas_gestures` does for the empty canvas).
Rename and Colour open non-modal dialogs for the same reason.

Every edit is one undo step. A node's mode lives in the hidden property
``wb_mode`` (see :mod:`app.graph_adapter`), which the view draws
(:meth:`~app.gui.canvas_node_item.CanvasNodeItem.set_mode`); the view is
brought up to date after every change of the undo stack, so undo, redo,
paste and duplicate all draw right. Collapsing (Alt+C) works the same way
through the hidden property ``wb_collapsed``.
"""
from __future__ import annotations

from NodeGraphQt.qgraphics.node_base import NodeItem
from PySide6 import QtCore, QtGui, QtWidgets

from app import graph_adapter as adapter
from core.ports import PortType

MODE_KEYS = {"bypass": "Ctrl+B", "mute": "Ctrl+M"}
COLLAPSE_KEY = "Alt+C"


class NodeMenu(QtCore.QObject):
    """Owned by the window; ``menu`` and ``dialog`` are kept for tests."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.graph = window.graph
        self.viewer = self.graph.viewer()
        self.menu: QtWidgets.QMenu | None = None
        self.dialog: QtWidgets.QDialog | None = None
        self._run_target: str | None = None
        self.viewer.viewport().installEventFilter(self)
        self.graph.undo_stack().indexChanged.connect(self.sync_views)
        window.run_finished.connect(self._run_done)

    # -- opening ---------------------------------------------------------------------
    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt override)
        if event.type() == QtCore.QEvent.Type.ContextMenu:
            node = self.node_at(event.pos())
            if node is not None:
                self.viewer.RMB_state = False  # as NodeViewer's own handler does
                self.open(node, event.globalPos())
                return True
        return False

    def node_at(self, viewport_point: QtCore.QPoint):
        """The workflow node under a viewport point, or None (empty canvas, a backdrop)."""
        for item in self.viewer.items(viewport_point):
            top = item.topLevelItem()
            if isinstance(top, NodeItem) and top.isVisible():
                node = self.graph.get_node_by_id(top.id)
                if node in adapter.workflow_nodes(self.graph):
                    return node
        return None

    def open(self, node, global_pos: QtCore.QPoint) -> QtWidgets.QMenu:
        """The node's menu; it acts on the selection when ``node`` is part of it."""
        if not node.selected():
            self.graph.clear_selection()
            node.set_selected(True)
        nodes = self.selected() or [node]
        menu = QtWidgets.QMenu(self.viewer)
        menu.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.addAction("Rename…", lambda: self.rename(node))
        menu.addAction("Duplicate", lambda: self.graph.duplicate_nodes(nodes))
        menu.addAction("Delete", lambda: self.graph.delete_nodes(nodes))
        menu.addSeparator()
        for mode, text in (("bypass", "Bypass"), ("mute", "Mute")):
            action = menu.addAction(f"{text}\t{MODE_KEYS[mode]}", lambda m=mode: self.toggle_mode(m, nodes))
            action.setCheckable(True)
            action.setChecked(all(mode_of(n) == mode for n in nodes))
        folded = all(is_collapsed(n) for n in nodes)
        menu.addAction(f"{'Expand' if folded else 'Collapse'}\t{COLLAPSE_KEY}",
                       lambda: self.toggle_collapsed(nodes))
        menu.addAction("Colour…", lambda: self.choose_colour(nodes))
        menu.addSeparator()
        menu.addAction("Run to here", lambda: self.run_to_here(node))
        self.menu = menu
        menu.popup(global_pos)
        return menu

    def selected(self) -> list:
        workflow_nodes = adapter.workflow_nodes(self.graph)
        return [n for n in self.graph.selected_nodes() if n in workflow_nodes]

    # -- modes ---------------------------------------------------------------------------
    def toggle_mode(self, mode: str, nodes=None) -> None:
        """Set ``mode`` on the nodes (default: the selection), or back to normal when
        they all have it already; one undo step."""
        nodes = self.selected() if nodes is None else list(nodes)
        if not nodes:
            return
        new = "normal" if all(mode_of(n) == mode for n in nodes) else mode
        stack = self.graph.undo_stack()
        stack.beginMacro(f"{mode} nodes" if new != "normal" else f"un-{mode} nodes")
        for node in nodes:
            node.set_property(adapter.MODE_PROP, new)
        stack.endMacro()
        self.sync_views()

    def toggle_collapsed(self, nodes=None) -> None:
        """Collapse the nodes (default: the selection) to their title bars, or
        expand them when they all are collapsed already; one undo step."""
        nodes = self.selected() if nodes is None else list(nodes)
        if not nodes:
            return
        folded = not all(is_collapsed(n) for n in nodes)
        stack = self.graph.undo_stack()
        stack.beginMacro("collapse nodes" if folded else "expand nodes")
        for node in nodes:
            node.set_property(adapter.COLLAPSED_PROP, folded)
        stack.endMacro()
        self.sync_views()

    def sync_views(self, *_args) -> None:
        """Draw each node in its mode and folding (cheap: compares two attributes
        per node)."""
        for node in adapter.workflow_nodes(self.graph):
            mode = mode_of(node)
            if getattr(node.view, "mode", mode) != mode:
                node.view.set_mode(mode)
            folded = is_collapsed(node)
            if getattr(node.view, "collapsed", folded) != folded:
                node.view.set_collapsed(folded)

    # -- rename, colour ----------------------------------------------------------------
    def rename(self, node) -> QtWidgets.QInputDialog:
        dialog = QtWidgets.QInputDialog(self.viewer)
        dialog.setWindowTitle("Rename node")
        dialog.setLabelText("Title:")
        dialog.setTextValue(node.name())
        dialog.textValueSelected.connect(lambda text: text.strip() and node.set_name(text.strip()))
        return self._show(dialog)

    def choose_colour(self, nodes) -> QtWidgets.QColorDialog:
        dialog = QtWidgets.QColorDialog(QtGui.QColor(*nodes[0].color()[:3]), self.viewer)
        dialog.setWindowTitle("Node colour")
        dialog.colorSelected.connect(lambda colour: self._set_colour(nodes, colour))
        return self._show(dialog)

    def _set_colour(self, nodes, colour: QtGui.QColor) -> None:
        stack = self.graph.undo_stack()
        stack.beginMacro("colour nodes")
        for node in nodes:
            node.set_color(colour.red(), colour.green(), colour.blue())
        stack.endMacro()

    def _show(self, dialog: QtWidgets.QDialog) -> QtWidgets.QDialog:
        dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        self.dialog = dialog
        dialog.open()  # non-blocking: the answer comes back through a signal
        return dialog

    # -- run to here ---------------------------------------------------------------------
    def run_to_here(self, node) -> bool:
        """Run only what ``node`` needs, with ``node`` as the output: its IMAGE outputs
        go to the Images dock; of other values the log says what was made."""
        if self.window.runner.running:
            self.window.statusBar().showMessage("A run is going: Run to here once it ends", 8000)
            return False
        node_id = adapter.node_id_of(node)
        self._run_target = node_id
        started = self.window.run_graph(self.window.document.workflow(), outputs=[node_id])
        if not started:
            self._run_target = None
        return started

    def _run_done(self, outcome) -> None:
        node_id, self._run_target = self._run_target, None
        node = adapter.find_node(self.graph, node_id) if node_id else None
        if node is None or outcome.status != "finished":
            return
        spec = adapter.spec_of(node)
        made = ", ".join(f"{o.name} ({o.type.value})" for o in spec.outputs) if spec else "?"
        shown = spec is not None and any(o.type is PortType.IMAGE for o in spec.outputs)
        where = "shown in Images" if shown else "not an image, so nothing is shown"
        self.window.log.add(f"Run to here: {node.name()!r} made {made}; {where}", "info")


def mode_of(node) -> str:
    return node.get_property(adapter.MODE_PROP) or "normal"


def is_collapsed(node) -> bool:
    return bool(node.get_property(adapter.COLLAPSED_PROP))


def install(window) -> NodeMenu:
    return NodeMenu(window)

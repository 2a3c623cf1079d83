"""The node palette: node types grouped by category, a search field, and
drag-and-drop onto the canvas (NodeGraphQt's own node MIME type, so the
canvas's drop handler creates the node where it lands).

A double-click has no drop point, so :func:`add_beside_selection` chooses one:
right of the selection (or the view's centre), moved down past any node it
would cover — a node created on top of another hides it and its links.
"""
from __future__ import annotations

from NodeGraphQt import BaseNode
from NodeGraphQt.constants import MIME_TYPE, URN_SCHEME
from PySide6 import QtCore, QtWidgets

from app import graph_adapter as adapter
from core.registry import NodeRegistry

_TYPE_ROLE = QtCore.Qt.ItemDataRole.UserRole
#: Scene units kept between a placed node and its neighbours.
GAP = 30.0


class _PaletteTree(QtWidgets.QTreeWidget):
    """A tree whose leaves drag out as node-creation requests."""

    def mimeData(self, items):  # noqa: N802 (Qt override)
        types = [it.data(0, _TYPE_ROLE) for it in items if it.data(0, _TYPE_ROLE)]
        data = QtCore.QMimeData()
        data.setData(MIME_TYPE, QtCore.QByteArray(
            (URN_SCHEME + ";".join(f"node:{t}" for t in types)).encode()))
        return data

    def mimeTypes(self):  # noqa: N802
        return [MIME_TYPE]


class NodePalette(QtWidgets.QWidget):
    """Browse and search the node catalogue; double-click or drag to add."""

    node_requested = QtCore.Signal(str)  # a NodeGraphQt node type

    def __init__(self, registry: NodeRegistry, parent=None) -> None:
        super().__init__(parent)
        self.search = QtWidgets.QLineEdit()
        self.search.setPlaceholderText("Search nodes…")
        self.search.setClearButtonEnabled(True)
        self.tree = _PaletteTree()
        self.tree.setHeaderHidden(True)
        self.tree.setIndentation(12)  # Qt's 20 px cut the longest titles at 1024×700
        self.tree.setDragEnabled(True)
        self.tree.setDragDropMode(QtWidgets.QAbstractItemView.DragDropMode.DragOnly)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.search)
        layout.addWidget(self.tree)
        self._fill(registry)
        self.search.textChanged.connect(self.filter)
        self.tree.itemDoubleClicked.connect(self._activated)

    def _fill(self, registry: NodeRegistry) -> None:
        for category, specs in registry.by_category().items():
            group = QtWidgets.QTreeWidgetItem(self.tree, [category])
            group.setFlags(group.flags() & ~QtCore.Qt.ItemFlag.ItemIsDragEnabled)
            for spec in specs:
                leaf = QtWidgets.QTreeWidgetItem(group, [spec.title])
                leaf.setData(0, _TYPE_ROLE, adapter.graph_type_of(spec))
                leaf.setToolTip(0, f"{spec.title} ({spec.type_id})\n{spec.description}")
        self.tree.expandAll()

    def filter(self, text: str) -> None:
        """Show the node types whose title, id or description contain ``text``."""
        needle = text.strip().lower()
        for index in range(self.tree.topLevelItemCount()):
            group = self.tree.topLevelItem(index)
            shown = 0
            for child_index in range(group.childCount()):
                leaf = group.child(child_index)
                hit = not needle or needle in (leaf.text(0) + " " + leaf.toolTip(0)).lower()
                leaf.setHidden(not hit)
                shown += hit
            group.setHidden(shown == 0)

    def visible_types(self) -> list[str]:
        """The node types the palette shows now (for tests and the search)."""
        found = []
        for index in range(self.tree.topLevelItemCount()):
            group = self.tree.topLevelItem(index)
            for child_index in range(group.childCount()):
                leaf = group.child(child_index)
                if not leaf.isHidden() and not group.isHidden():
                    found.append(leaf.data(0, _TYPE_ROLE))
        return found

    def item_for(self, node_type: str) -> QtWidgets.QTreeWidgetItem | None:
        for item in self.tree.findItems("*", QtCore.Qt.MatchFlag.MatchWildcard
                                        | QtCore.Qt.MatchFlag.MatchRecursive):
            if item.data(0, _TYPE_ROLE) == node_type:
                return item
        return None

    def _activated(self, item: QtWidgets.QTreeWidgetItem, _column: int) -> None:
        node_type = item.data(0, _TYPE_ROLE)
        if node_type:
            self.node_requested.emit(node_type)


def node_rect(node) -> QtCore.QRectF:
    """A node's rectangle in the scene (its body, not its selection halo)."""
    x, y = node.pos()
    return QtCore.QRectF(x, y, node.view.width, node.view.height)


def free_spot(start: QtCore.QRectF, others: list[QtCore.QRectF]) -> QtCore.QPointF:
    """The top-left for a rectangle shaped like ``start``: ``start`` itself, or
    moved straight down past each rectangle of ``others`` it would overlap."""
    rect = QtCore.QRectF(start)
    for _ in range(len(others) + 1):  # each move clears at least one rectangle
        hits = [o for o in others if o.adjusted(-GAP / 2, -GAP / 2, GAP / 2, GAP / 2).intersects(rect)]
        if not hits:
            break
        rect.moveTop(max(o.bottom() for o in hits) + GAP)
    return rect.topLeft()


def add_beside_selection(graph, node_type: str):
    """Create ``node_type`` right of the selected nodes, or at the view's centre
    when none is selected, where it covers no other node (one undo step)."""
    selected = [n for n in graph.selected_nodes() if isinstance(n, BaseNode)]
    others = [node_rect(n) for n in graph.all_nodes() if isinstance(n, BaseNode)]
    stack = graph.undo_stack()
    stack.beginMacro("add node")
    node = graph.create_node(node_type)
    size = QtCore.QSizeF(node.view.width, node.view.height)
    if selected:
        around = node_rect(selected[0])
        for other in selected[1:]:
            around = around.united(node_rect(other))
        start = QtCore.QRectF(QtCore.QPointF(around.right() + GAP, around.top()), size)
    else:
        viewer = graph.viewer()
        centre = viewer.mapToScene(viewer.viewport().rect().center())
        start = QtCore.QRectF(QtCore.QPointF(centre.x() - size.width() / 2,
                                             centre.y() - size.height() / 2), size)
    spot = free_spot(start, others)
    node.set_pos(spot.x(), spot.y())
    stack.endMacro()
    return node

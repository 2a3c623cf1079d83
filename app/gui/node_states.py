"""Run states and validation problems drawn on the canvas.

A state is a small coloured label above the node plus an outline around it,
both child items of the node's view. They are not node properties: changing
them adds no undo step and redraws only the label.
"""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app import graph_adapter as adapter

STATE_COLOURS = {
    "queued": QtGui.QColor(140, 140, 140),
    "running": QtGui.QColor(70, 150, 255),
    "cached": QtGui.QColor(150, 110, 220),
    "done": QtGui.QColor(70, 190, 100),
    "failed": QtGui.QColor(230, 60, 60),
    "cancelled": QtGui.QColor(230, 160, 40),
    "invalid": QtGui.QColor(230, 60, 60),
    "warning": QtGui.QColor(230, 180, 40),
}


class StateBadge(QtWidgets.QGraphicsSimpleTextItem):
    """The label and outline of one node's state."""

    def __init__(self, view: QtWidgets.QGraphicsItem) -> None:
        super().__init__(view)
        self.outline = QtWidgets.QGraphicsRectItem(view)
        self.outline.setZValue(-1)
        self.outline.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        font = self.font()
        font.setBold(True)
        self.setFont(font)
        self.state = ""

    def show_state(self, state: str, text: str) -> None:
        self.state = state
        colour = STATE_COLOURS[state]
        self.setText(text)
        self.setBrush(colour)
        self.setPos(0, -self.boundingRect().height() - 2)
        rect = self.parentItem().boundingRect().adjusted(-3, -3, 3, 3)
        self.outline.setRect(rect)
        self.outline.setPen(QtGui.QPen(colour, 3))
        self.setVisible(True)
        self.outline.setVisible(True)

    def clear(self) -> None:
        self.state = ""
        self.setVisible(False)
        self.outline.setVisible(False)


class NodeStates:
    """Which state each node shows, by workflow node id."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self._badges: dict[int, StateBadge] = {}
        self.tooltips: dict[str, str] = {}

    def set(self, node_id: str, state: str, text: str | None = None, tooltip: str | None = None) -> None:
        node = adapter.find_node(self.graph, node_id)
        if node is None:
            return
        self._badge(node).show_state(state, text or state)
        if tooltip is not None:
            self.tooltips[node_id] = tooltip
            node.view.setToolTip(tooltip)

    def state(self, node_id: str) -> str:
        node = adapter.find_node(self.graph, node_id)
        badge = self._badges.get(id(node.view)) if node is not None else None
        return badge.state if badge is not None else ""

    def clear(self) -> None:
        for badge in self._badges.values():
            badge.clear()
        for node in adapter.workflow_nodes(self.graph):
            if adapter.node_id_of(node) in self.tooltips:
                node.view.setToolTip("")
        self.tooltips.clear()

    def _badge(self, node) -> StateBadge:
        badge = self._badges.get(id(node.view))
        if badge is None or badge.parentItem() is not node.view:
            badge = StateBadge(node.view)
            self._badges[id(node.view)] = badge
        return badge

"""The node search that opens on the canvas (Tab, double-click, a link let go
on empty canvas) and the right-click "Add node" menu.

Both list the catalogue only, by title and category: NodeGraphQt's own search
listed its class identifiers ("nodeGraphQt.nodes", "wb") and the placeholder
class for uninstalled types ("Missing node"), which makes a broken node. A
search opened from a dragged link lists only the nodes that can take (or
give) the link's type.
"""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app import graph_adapter as adapter
from core.nodespec import NodeSpec
from core.ports import PortType, compatible
from core.registry import NodeRegistry

_TYPE_ROLE = QtCore.Qt.ItemDataRole.UserRole


def specs_linking(registry: NodeRegistry, port_type: PortType | None, from_output: bool) -> list[NodeSpec]:
    """The catalogue's nodes with a socket that a link of ``port_type`` can reach:
    an input that takes it when the link comes from an output, else an output
    that gives it. ``None`` (an unknown type) keeps every node."""
    found = []
    for spec in registry:
        if port_type is None:
            found.append(spec)
        elif from_output and any(compatible(port_type, s.type) for s in spec.sockets):
            found.append(spec)
        elif not from_output and any(compatible(o.type, port_type) for o in spec.outputs):
            found.append(spec)
    return found


def matches(spec: NodeSpec, text: str) -> bool:
    """Every word of ``text`` is in the node's title, category or type id."""
    haystack = f"{spec.title} {spec.category} {spec.type_id}".lower()
    return all(word in haystack for word in text.lower().split())


class NodeSearch(QtWidgets.QFrame):
    """A popup: a search field over a list of "title — category" entries.
    Enter or a click emits :attr:`chosen` with the NodeGraphQt node type."""

    chosen = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent, QtCore.Qt.WindowType.Popup)
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self.line_edit = QtWidgets.QLineEdit()
        self.line_edit.setPlaceholderText("Search nodes…")
        self.list = QtWidgets.QListWidget()
        self.list.setMinimumSize(280, 300)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.line_edit)
        layout.addWidget(self.list)
        self.line_edit.textChanged.connect(self._filter)
        self.line_edit.returnPressed.connect(self._submit)
        self.line_edit.installEventFilter(self)
        self.list.itemActivated.connect(self._submit)
        self.list.itemClicked.connect(self._submit)
        self._specs: list[NodeSpec] = []

    def open(self, specs: list[NodeSpec], global_pos: QtCore.QPoint) -> None:
        """Show ``specs`` (sorted by category, then title) at ``global_pos``."""
        self._specs = sorted(specs, key=lambda s: (s.category, s.title))
        self.line_edit.clear()
        self._filter("")
        self.move(global_pos)
        self.show()
        self.line_edit.setFocus()

    def titles(self) -> list[str]:
        """The entries shown now (for tests)."""
        return [self.list.item(i).text() for i in range(self.list.count())]

    def _filter(self, text: str) -> None:
        self.list.clear()
        for spec in self._specs:
            if matches(spec, text):
                item = QtWidgets.QListWidgetItem(f"{spec.title} — {spec.category}")
                item.setData(_TYPE_ROLE, adapter.graph_type_of(spec))
                item.setToolTip(f"{spec.type_id}\n{spec.description}".strip())
                self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt override)
        """Up and Down in the field move through the list."""
        if watched is self.line_edit and event.type() == QtCore.QEvent.Type.KeyPress \
                and event.key() in (QtCore.Qt.Key.Key_Up, QtCore.Qt.Key.Key_Down):
            step = -1 if event.key() == QtCore.Qt.Key.Key_Up else 1
            row = min(max(self.list.currentRow() + step, 0), self.list.count() - 1)
            self.list.setCurrentRow(row)
            return True
        return super().eventFilter(watched, event)

    def _submit(self, *_args) -> None:
        item = self.list.currentItem()
        self.hide()
        if item is not None:
            self.chosen.emit(item.data(_TYPE_ROLE))


def add_node_menu(registry: NodeRegistry, parent: QtWidgets.QWidget) -> QtWidgets.QMenu:
    """A context menu with an "Add node" submenu per category; each action's
    data is the NodeGraphQt node type to create."""
    menu = QtWidgets.QMenu(parent)
    add = menu.addMenu("Add node")
    for category, specs in registry.by_category().items():
        sub = add.addMenu(category)
        for spec in specs:
            action = sub.addAction(spec.title)
            action.setData(adapter.graph_type_of(spec))
            action.setToolTip(spec.description)
    return menu


def global_point(view: QtWidgets.QGraphicsView, scene_point: QtCore.QPointF) -> QtCore.QPoint:
    return view.viewport().mapToGlobal(view.mapFromScene(scene_point))


def cursor_scene_point(view: QtWidgets.QGraphicsView) -> QtCore.QPointF:
    """Where the cursor is, or the view's centre when it is elsewhere."""
    local = view.viewport().mapFromGlobal(QtGui.QCursor.pos())
    if not view.viewport().rect().contains(local):
        local = view.viewport().rect().center()
    return view.mapToScene(local)

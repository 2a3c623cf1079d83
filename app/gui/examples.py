"""File → Examples: the shipped workflows (``workflows/*.json``), each with a
picture, opened with a click.

Why pictures of the graph and not of a result: running each example to get
its image takes seconds to minutes and needs torch; the graph's shape
(loaders on the left, the sampler in the middle, outputs on the right) is
drawn from the JSON alone in a few milliseconds on the GUI thread, and tells
the examples apart. Templates for checkpoints of your own are marked.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from core.paths import WORKFLOWS_DIR
from core.workflow import Workflow, WorkflowFormatError, load

EXAMPLES_DIR = WORKFLOWS_DIR
THUMB_SIZE = QtCore.QSize(200, 120)
#: Node colours by the type's family (the part before the dot).
FAMILY_COLOURS = {"model": "#5b7bd5", "conditioning": "#d5a03b", "diffusion": "#c2554f",
                  "latent": "#9a5bd5", "image": "#4fae6b", "schedule": "#3bb0c2"}


@dataclass(frozen=True)
class Example:
    path: Path
    workflow: Workflow

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def template(self) -> bool:
        return bool(self.workflow.ui.get("template"))

    def label(self) -> str:
        return f"{self.name} (template)" if self.template else self.name


def examples(folder: Path = EXAMPLES_DIR) -> list[Example]:
    """The readable workflows of ``folder``, by name (a broken file is left out)."""
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(Example(path, load(path)))
        except (OSError, WorkflowFormatError):
            continue
    return found


def columns(workflow: Workflow) -> dict[str, int]:
    """Each node's column: the length of the longest chain of links into it."""
    depth = {node_id: 0 for node_id in workflow.nodes}
    for _ in range(len(depth)):  # relax; a cycle (refused at run time) just stops growing
        changed = False
        for link in workflow.links:
            if link.src_node in depth and link.dst_node in depth and depth[link.dst_node] <= depth[link.src_node]:
                depth[link.dst_node] = depth[link.src_node] + 1
                changed = True
        if not changed:
            break
    return depth


def thumbnail(workflow: Workflow, size: QtCore.QSize = THUMB_SIZE) -> QtGui.QPixmap:
    """The graph drawn small: nodes as boxes in columns by depth, links as curves."""
    pixmap = QtGui.QPixmap(size)
    pixmap.fill(QtGui.QColor("#262626"))
    depth = columns(workflow)
    if not depth:
        return pixmap
    by_column: dict[int, list[str]] = {}
    for node_id in workflow.nodes:
        by_column.setdefault(depth[node_id], []).append(node_id)
    cols, rows = max(by_column) + 1, max(len(ids) for ids in by_column.values())
    cell_w, cell_h = size.width() / cols, size.height() / rows
    box_w, box_h = cell_w * 0.7, min(cell_h * 0.7, 28)
    boxes = {}
    for column, ids in by_column.items():
        top = (size.height() - len(ids) * cell_h) / 2
        for row, node_id in enumerate(ids):
            boxes[node_id] = QtCore.QRectF(column * cell_w + (cell_w - box_w) / 2,
                                           top + row * cell_h + (cell_h - box_h) / 2, box_w, box_h)
    painter = QtGui.QPainter(pixmap)
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    painter.setPen(QtGui.QPen(QtGui.QColor("#a0a0a0"), 1))
    for link in workflow.links:
        if link.src_node in boxes and link.dst_node in boxes:
            a, b = boxes[link.src_node], boxes[link.dst_node]
            start, end = QtCore.QPointF(a.right(), a.center().y()), QtCore.QPointF(b.left(), b.center().y())
            path = QtGui.QPainterPath(start)
            bend = (end.x() - start.x()) / 2
            path.cubicTo(start + QtCore.QPointF(bend, 0), end - QtCore.QPointF(bend, 0), end)
            painter.drawPath(path)
    painter.setPen(QtGui.QPen(QtGui.QColor("#111111"), 1))
    for node_id, box in boxes.items():
        family = workflow.nodes[node_id].type.split(".")[0]
        painter.setBrush(QtGui.QColor(FAMILY_COLOURS.get(family, "#8a8a8a")))
        painter.drawRoundedRect(box, 3, 3)
    painter.end()
    return pixmap


class ExamplesDialog(QtWidgets.QDialog):
    """A grid of the examples' pictures; double-click (or Open) opens one."""

    def __init__(self, items: list[Example], parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Examples")
        self.items = items
        self.chosen: Example | None = None
        self.list = QtWidgets.QListWidget()
        self.list.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.list.setIconSize(THUMB_SIZE)
        self.list.setResizeMode(QtWidgets.QListView.ResizeMode.Adjust)
        self.list.setMovement(QtWidgets.QListView.Movement.Static)
        self.list.setSpacing(8)
        self.list.setWordWrap(True)
        for example in items:
            item = QtWidgets.QListWidgetItem(QtGui.QIcon(thumbnail(example.workflow)), example.label())
            item.setToolTip(f"{example.path.name}: {len(example.workflow.nodes)} nodes"
                            + (" — a template: choose your own checkpoint files" if example.template else ""))
            self.list.addItem(item)
        self.list.itemActivated.connect(lambda _item: self.accept())
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Open
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addWidget(buttons)
        self.resize(4 * (THUMB_SIZE.width() + 30) + 40, 3 * (THUMB_SIZE.height() + 50) + 60)

    def accept(self) -> None:
        row = self.list.currentRow()
        self.chosen = self.items[row] if 0 <= row < len(self.items) else None
        super().accept()


def open_examples(window) -> bool:
    """Show the examples; open the chosen one (the unsaved-work guard asks first)."""
    dialog = ExamplesDialog(examples(), window)
    if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted or dialog.chosen is None:
        return False
    return window.open_path(dialog.chosen.path)


def install(window) -> QtGui.QAction:
    """Add File → Examples… after Open Recent."""
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.menu() and a.text() == "&File")
    action = QtGui.QAction("E&xamples…", window)
    action.setToolTip("The shipped workflows, with a picture of each")
    action.triggered.connect(lambda: open_examples(window))
    file_menu.insertAction(_after(file_menu, window.recent_menu.menuAction()), action)
    window.actions_by_name["file_examples"] = action
    return action


def _after(menu: QtWidgets.QMenu, action: QtGui.QAction) -> QtGui.QAction | None:
    actions = menu.actions()
    index = actions.index(action)
    return actions[index + 1] if index + 1 < len(actions) else None

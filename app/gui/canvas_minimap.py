"""A minimap: the whole graph in a corner of the canvas, and where the view is.

It is a plain widget over the viewer's viewport (not a second QGraphicsView,
which would repaint every node item twice) that draws each node's rectangle
and the visible area. Clicking or dragging on it centres the view there.

It repaints only when what it shows changed: every repaint of the viewport
(a pan, a zoom, a node moved or added) schedules one check, at most every
:data:`THROTTLE_MS`, that compares the visible area and the node rectangles
with the last ones drawn. It stays out of the way while the whole graph is in
view, and View → Minimap turns it off (remembered in the settings).
"""
from __future__ import annotations

from NodeGraphQt import BaseNode
from PySide6 import QtCore, QtGui, QtWidgets

SIZE = QtCore.QSize(180, 120)
#: Pixels between the minimap and the viewport's bottom-right corner.
MARGIN = 10
THROTTLE_MS = 50
SETTING = "view/minimap"
BACK = QtGui.QColor(24, 24, 24)
FRAME = QtGui.QColor(110, 110, 110)
VIEW = QtGui.QColor(255, 255, 255)
NODE = QtGui.QColor(120, 125, 135)


class Minimap(QtWidgets.QWidget):
    """The overview of ``graph`` drawn over its viewer's viewport."""

    def __init__(self, graph) -> None:
        self.viewer = graph.viewer()
        super().__init__(self.viewer.viewport())
        self.graph = graph
        self.enabled = True  # View → Minimap
        self.setFixedSize(SIZE)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setCursor(QtCore.Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Minimap: click or drag to move the view")
        self._shown_key = None
        self._timer = QtCore.QTimer(self, singleShot=True, interval=THROTTLE_MS)
        self._timer.timeout.connect(self.refresh)
        self.viewer.viewport().installEventFilter(self)
        self.hide()

    # -- what it shows --------------------------------------------------------------
    def node_rects(self) -> list[tuple[QtCore.QRectF, QtGui.QColor]]:
        found = []
        for node in self.graph.all_nodes():
            if isinstance(node, BaseNode) and node.view.isVisible():
                x, y = node.pos()
                found.append((QtCore.QRectF(x, y, node.view.width, node.view.height),
                              QtGui.QColor(*node.color()[:3])))
        return found

    def visible_rect(self) -> QtCore.QRectF:
        return self.viewer.mapToScene(self.viewer.viewport().rect()).boundingRect()

    def scene_area(self, rects, visible: QtCore.QRectF) -> QtCore.QRectF:
        """The nodes and the visible area together, the part of the scene drawn."""
        area = QtCore.QRectF(visible)
        for rect, _ in rects:
            area = area.united(rect)
        return area

    def _mapping(self, area: QtCore.QRectF) -> QtGui.QTransform:
        """Scene → minimap pixels, keeping the aspect ratio, centred."""
        inner = QtCore.QRectF(self.rect()).adjusted(4, 4, -4, -4)
        scale = min(inner.width() / max(area.width(), 1.0), inner.height() / max(area.height(), 1.0))
        dx = inner.left() + (inner.width() - area.width() * scale) / 2 - area.left() * scale
        dy = inner.top() + (inner.height() - area.height() * scale) / 2 - area.top() * scale
        return QtGui.QTransform(scale, 0, 0, scale, dx, dy)

    def refresh(self) -> None:
        """Show, hide and repaint as the graph and the view now need."""
        rects, visible = self.node_rects(), self.visible_rect()
        fits = all(visible.contains(rect) for rect, _ in rects)
        wanted = self.enabled and bool(rects) and not fits
        self._place()
        if wanted != self.isVisible():
            self.setVisible(wanted)
        key = (tuple((r.getRect(), c.rgb()) for r, c in rects), visible.getRect())
        if wanted and key != self._shown_key:
            self._shown_key = key
            self.update()

    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        self.refresh()

    def _place(self) -> None:
        viewport = self.viewer.viewport().rect()
        self.move(viewport.right() - SIZE.width() - MARGIN, viewport.bottom() - SIZE.height() - MARGIN)

    # -- Qt ------------------------------------------------------------------------------
    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt override)
        if event.type() in (QtCore.QEvent.Type.Paint, QtCore.QEvent.Type.Resize) \
                and not self._timer.isActive():
            self._timer.start()
        return False

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        rects, visible = self.node_rects(), self.visible_rect()
        mapping = self._mapping(self.scene_area(rects, visible))
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), BACK)
        painter.setPen(FRAME)
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        painter.setPen(QtCore.Qt.PenStyle.NoPen)
        for rect, colour in rects:
            painter.setBrush(colour if colour.lightness() > 90 else NODE)  # most are near-black
            painter.drawRect(mapping.mapRect(rect))
        painter.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        painter.setPen(QtGui.QPen(VIEW, 1.5))
        painter.drawRect(mapping.mapRect(visible))
        painter.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if event.button() == QtCore.Qt.MouseButton.LeftButton:
            self.centre_on(event.position())

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if event.buttons() & QtCore.Qt.MouseButton.LeftButton:
            self.centre_on(event.position())

    def centre_on(self, point: QtCore.QPointF) -> None:
        """Move the view so that the scene point under minimap ``point`` is its centre."""
        rects, visible = self.node_rects(), self.visible_rect()
        mapping, ok = self._mapping(self.scene_area(rects, visible)).inverted()
        if not ok:
            return
        target = mapping.map(point)
        centre = visible.center()
        self.viewer._set_viewer_pan(target.x() - centre.x(), target.y() - centre.y())
        self.refresh()


def install(window) -> Minimap:
    """The minimap on the window's canvas and View → Minimap (default on)."""
    minimap = Minimap(window.graph)
    action = QtGui.QAction("&Minimap", window, checkable=True)
    action.setToolTip("An overview of the whole graph in the canvas's corner")
    action.setChecked(str(window.settings.value(SETTING, "true")).lower() != "false")
    minimap.set_enabled(action.isChecked())

    def toggled(on: bool) -> None:
        window.settings.setValue(SETTING, "true" if on else "false")
        minimap.set_enabled(on)

    action.toggled.connect(toggled)
    view_menu = window.view_menu
    search = window.actions_by_name.get("node_search")
    actions = view_menu.actions()
    after = actions[actions.index(search) + 1] if search in actions[:-1] else None
    view_menu.insertAction(after, action)
    window.actions_by_name["toggle_minimap"] = action
    return minimap

"""The canvas view: NodeGraphQt's viewer plus the gestures node editors have.

NodeGraphQt's :class:`NodeViewer` is kept (its panning, selection and live
links work); this subclass only adds what it lacks, as signals the graph acts
on, so the view never needs to know the node catalogue:

* :attr:`link_dropped`: a new link dragged from a port was let go over empty
  canvas (NodeGraphQt silently drops it);
* :attr:`canvas_double_clicked` and :attr:`canvas_menu_requested`: a
  double-click / right-click on empty canvas (or a group's backdrop);
* links take their output port's colour (NodeGraphQt draws them all orange);
* every zoom change sets each node's level of detail (see
  :mod:`app.gui.canvas_node_item`); fitting leaves a margin, and a view
  fitted to the whole graph stays fitted while the window's layout settles
  (NodeGraphQt rescales by the larger of the two size ratios, which crops)
  until the person zooms or pans.
"""
from __future__ import annotations

from NodeGraphQt.qgraphics.node_backdrop import BackdropNodeItem
from NodeGraphQt.qgraphics.pipe import PipeItem
from NodeGraphQt.qgraphics.port import PortItem
from NodeGraphQt.widgets.viewer import NodeViewer
from PySide6 import QtCore

from app.gui.canvas_node_item import MIN_LABEL_PX, OVERVIEW_SCALE, CanvasNodeItem

#: Scene units of empty canvas left around the nodes when fitting them.
FIT_MARGIN = 30.0
#: An overview title may be as wide as its node, or wider up to this (screen
#: pixels) where no node to its right is nearer.
MAX_TITLE_ROOM_PX = 200.0
#: Nodes whose tops are this close (screen pixels: a title's line) share a row.
TITLE_BAND_PX = 24.0


def title_rooms(nodes: list[CanvasNodeItem], scale: float) -> dict[CanvasNodeItem, float]:
    """How wide (screen px) each node's overview title may be: up to the next
    node to its right whose top lies in the title's band. A title wrapped to its
    own narrow node grew downwards into the node below ("Negative prompt" over
    "Prompt"); one line that stops short of its right neighbour (elided if it
    must) overlaps neither."""
    placed = sorted(((n.sceneBoundingRect(), n) for n in nodes), key=lambda p: p[0].left())
    reach, band = MAX_TITLE_ROOM_PX / scale, TITLE_BAND_PX / scale
    rooms = {}
    for index, (rect, node) in enumerate(placed):
        room = reach
        for other, _ in placed[index + 1:]:
            if other.left() - rect.left() >= room:
                break  # sorted by left edge: nothing further can be nearer
            if other.left() > rect.left() + 1 and rect.top() - band < other.top() < rect.top() + band:
                room = other.left() - rect.left()
        rooms[node] = max(room * scale - 6, rect.width() * scale - 4)
    return rooms


class CanvasViewer(NodeViewer):
    """NodeViewer with level of detail, coloured links and canvas gestures."""

    link_dropped = QtCore.Signal(object, QtCore.QPointF)  # PortItem, scene point
    canvas_double_clicked = QtCore.Signal(QtCore.QPointF)  # scene point
    canvas_menu_requested = QtCore.Signal(QtCore.QPointF, QtCore.QPoint)  # scene, global

    # -- level of detail ---------------------------------------------------------
    def scale_factor(self) -> float:
        return self.transform().m11()

    def _update_scene(self) -> None:
        super()._update_scene()
        self.apply_level_of_detail()

    def apply_level_of_detail(self) -> None:
        scale = self.scale_factor()
        nodes = [item for item in self.scene().items() if isinstance(item, CanvasNodeItem)]
        rooms = title_rooms(nodes, scale) if scale < OVERVIEW_SCALE else {}
        for item in nodes:
            item.title_room = rooms.get(item)
            item.apply_scale(scale)

    def add_node(self, node, pos=None) -> None:
        super().add_node(node, pos)
        if isinstance(node, CanvasNodeItem):
            node.apply_scale(self.scale_factor())

    def zoom_to_nodes(self, nodes) -> None:
        """Fit ``nodes`` with a margin (NodeGraphQt fits them edge to edge)."""
        if not nodes:
            return
        rect = self._combined_rect(nodes)
        self._scene_range = rect.adjusted(-FIT_MARGIN, -FIT_MARGIN, FIT_MARGIN, FIT_MARGIN)
        self._update_scene()
        if self.scale_factor() < OVERVIEW_SCALE:  # room for titles wider than their nodes
            right = max(FIT_MARGIN, MIN_LABEL_PX / self.scale_factor())
            self._scene_range = rect.adjusted(-FIT_MARGIN, -FIT_MARGIN, right, FIT_MARGIN)
            self._update_scene()
        if self.get_zoom() > 0.1:
            self.reset_zoom(self._scene_range.center())
        self.fitted_to_all = len(nodes) == len(self.all_nodes())

    fitted_to_all = False

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        if self.fitted_to_all and self.all_nodes():
            self.zoom_to_nodes(self.all_nodes())

    def wheelEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.fitted_to_all = False
        super().wheelEvent(event)

    def _set_viewer_pan(self, pos_x, pos_y) -> None:
        self.fitted_to_all = False
        super()._set_viewer_pan(pos_x, pos_y)

    def set_zoom(self, value=0.0) -> None:
        self.fitted_to_all = False
        super().set_zoom(value)

    # -- links ----------------------------------------------------------------------
    def establish_connection(self, start_port, end_port) -> None:
        """NodeGraphQt's, with the link in its output port's colour."""
        pipe = PipeItem()
        self.scene().addItem(pipe)
        pipe.set_connections(start_port, end_port)
        pipe.color = tuple(pipe.output_port.color[:3]) + (255,)
        pipe.reset()
        pipe.draw_path(pipe.input_port, pipe.output_port)
        if start_port.node.selected or end_port.node.selected:
            pipe.highlight()
        if not start_port.node.visible or not end_port.node.visible:
            pipe.hide()

    def sceneMouseReleaseEvent(self, event) -> None:  # noqa: N802 (NodeGraphQt's name)
        start = self._start_port if self._LIVE_PIPE.isVisible() else None
        fresh = start is not None and self._detached_port is None  # not a link lifted off
        point = event.scenePos()
        super().sceneMouseReleaseEvent(event)
        if fresh and event.button() == QtCore.Qt.MouseButton.LeftButton and self.is_empty_at(point):
            self.link_dropped.emit(start, point)

    # -- empty canvas ---------------------------------------------------------------------
    def is_empty_at(self, scene_point: QtCore.QPointF) -> bool:
        """Nothing but group backdrops (and links' hit areas) under ``scene_point``."""
        for item in self.scene().items(scene_point):
            if not item.isVisible() or item is self._LIVE_PIPE:
                continue
            top = item.topLevelItem()
            if isinstance(top, (BackdropNodeItem, PipeItem)) and not isinstance(item, PortItem):
                continue
            return False
        return True

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802 (Qt override)
        point = self.mapToScene(event.position().toPoint())
        if event.button() == QtCore.Qt.MouseButton.LeftButton and self.is_empty_at(point):
            self.canvas_double_clicked.emit(point)
            return
        super().mouseDoubleClickEvent(event)

    def contextMenuEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.RMB_state = False
        point = self.mapToScene(event.pos())
        if self.is_empty_at(point):
            self.canvas_menu_requested.emit(point, event.globalPos())
            return
        super().contextMenuEvent(event)

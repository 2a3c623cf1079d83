"""What the canvas gestures do: the viewer reports them (see
:mod:`app.gui.canvas_viewer`), this adds the node the person chose.

* Tab or a double-click on empty canvas: the node search, and the node is
  created where the search was opened;
* a new link let go on empty canvas: the search lists the nodes that can take
  (or give) the link's type; the chosen one is created at the drop point and
  linked, in one undo step;
* right-click on empty canvas: "Add node" by category, at the click.
"""
from __future__ import annotations

from NodeGraphQt.constants import PortTypeEnum
from PySide6 import QtCore

from app.gui.canvas_search import (NodeSearch, add_node_menu, cursor_scene_point, global_point,
                                   specs_linking)
from core.ports import compatible

#: Scene units between a dropped link's end and the new node's title bar.
_PORT_OFFSET = 36.0


class CanvasGestures(QtCore.QObject):
    """Owned by the graph; ``search`` and ``menu`` are kept for tests."""

    def __init__(self, graph) -> None:
        super().__init__(graph)
        self.graph = graph
        self.viewer = graph.viewer()
        self.search = NodeSearch(self.viewer)
        self.search.chosen.connect(self._chosen)
        self.menu = None
        self._point = QtCore.QPointF()
        self._port = None  # the PortItem a dropped link came from
        self.viewer.canvas_double_clicked.connect(self.open_search)
        self.viewer.link_dropped.connect(self._link_dropped)
        self.viewer.canvas_menu_requested.connect(self.open_menu)

    # -- opening -------------------------------------------------------------------
    def open_search(self, scene_point: QtCore.QPointF | None = None, port=None) -> NodeSearch:
        """The node search at ``scene_point`` (default: the cursor), for a link from ``port``."""
        self._point = scene_point if scene_point is not None else cursor_scene_point(self.viewer)
        self._port = port
        specs = list(self.graph.registry)
        if port is not None:
            node = self.graph.get_node_by_id(port.node.id)
            from_output = port.port_type == PortTypeEnum.OUT.value
            specs = specs_linking(self.graph.registry, node.port_type(port.name, not from_output),
                                  from_output)
        self.search.open(specs, global_point(self.viewer, self._point))
        return self.search

    def _link_dropped(self, port, scene_point: QtCore.QPointF) -> None:
        self.open_search(scene_point, port)

    def open_menu(self, scene_point: QtCore.QPointF, global_pos: QtCore.QPoint):
        self._point, self._port = scene_point, None
        self.menu = add_node_menu(self.graph.registry, self.viewer)
        self.menu.triggered.connect(lambda action: action.data() and self._chosen(action.data()))
        self.menu.popup(global_pos)
        return self.menu

    # -- adding -----------------------------------------------------------------------
    def _chosen(self, node_type: str) -> None:
        port, self._port = self._port, None
        self.add_at(node_type, self._point, port)

    def add_at(self, node_type: str, scene_point: QtCore.QPointF, port=None):
        """Create ``node_type`` at ``scene_point``; link it to ``port`` if given (one undo step)."""
        stack = self.graph.undo_stack()
        stack.beginMacro("add node")
        x, y = scene_point.x(), scene_point.y()
        node = self.graph.create_node(node_type, pos=(x, y - _PORT_OFFSET))
        if port is not None:
            self._link(node, port)
        stack.endMacro()
        return node

    def _link(self, node, port) -> None:
        other = self.graph.get_node_by_id(port.node.id)
        if port.port_type == PortTypeEnum.OUT.value:
            out_type = other.port_type(port.name, is_input=False)
            name = _best(node.inputs(), lambda n: node.port_type(n, True), out_type, True)
            if name is not None:
                self.graph.connect_checked(other, port.name, node, name)
        else:
            in_type = other.port_type(port.name, is_input=True)
            name = _best(node.outputs(), lambda n: node.port_type(n, False), in_type, False)
            x, y = node.pos()
            node.set_pos(x - node.view.width, y)  # the new node feeds in from the left
            if name is not None:
                self.graph.connect_checked(node, name, other, port.name)


def _best(ports: dict, type_of, wanted, wanted_is_source: bool) -> str | None:
    """The first port of the same type as ``wanted``, else the first compatible one."""
    names = list(ports)
    if wanted is None:
        return names[0] if names else None
    exact = [n for n in names if type_of(n) == wanted]
    if exact:
        return exact[0]
    fits = [n for n in names if type_of(n) is not None and (
        compatible(wanted, type_of(n)) if wanted_is_source else compatible(type_of(n), wanted))]
    return fits[0] if fits else None

"""Reroute (dot) nodes on the canvas: drawn as a small pill, typed by their links.

A reroute's ports are ANY in its spec (``nodes/reroute.py``). On the canvas
its ports take the type of what they are linked to, so the link check
(:func:`app.graph_adapter.link_problem`) refuses a MODEL routed into an IMAGE
input from either end — the same rule :mod:`core.port_flow` applies to files:

* its output has the type linked into its input (through further reroutes);
* its input has the type of the first input its output feeds, so linking into
  a reroute that already feeds an IMAGE input takes only an IMAGE.

NodeGraphQt has no dot node, so :class:`RerouteItem` is a node item with its
title, port names and level of detail switched off, laid out as a pill just
wide enough for its two ports.
"""
from __future__ import annotations

from NodeGraphQt.qgraphics.node_base import NodeItem
from PySide6 import QtCore, QtGui

from core.ports import PortType

#: The pill's size in scene units (a port is 22 units across).
WIDTH, HEIGHT = 36.0, 22.0
#: Lighter than a node's body, so the pill stands out on the dark canvas.
FILL = QtGui.QColor(125, 125, 125)


def traced_type(node, is_input: bool, _seen: frozenset = frozenset()) -> PortType:
    """The type a reroute ``node``'s input or output stands for now (ANY when
    its links do not say); loops of reroutes end in ANY."""
    if id(node) in _seen:
        return PortType.ANY
    seen = _seen | {id(node)}
    if is_input:
        far_ports = [p for port in node.outputs().values() for p in port.connected_ports()]
    else:
        far_ports = [p for port in node.inputs().values() for p in port.connected_ports()]
    for far in far_ports:
        other = far.node()
        if hasattr(other, "SPEC") and _is_reroute(other):
            found = traced_type(other, is_input, seen)
        else:
            found = other.port_type(far.name(), is_input=is_input) if hasattr(other, "port_type") \
                else None
        if found is not None and found is not PortType.ANY:
            return found
    return PortType.ANY


def _is_reroute(node) -> bool:
    from core.port_flow import is_pass_through

    return is_pass_through(getattr(node, "SPEC", None))


class RerouteItem(NodeItem):
    """A node drawn as a small pill: no title bar, no port names, ports centred."""

    def auto_switch_mode(self) -> None:
        """Never the proxy mode: the pill is the same at every zoom."""

    def draw_node(self) -> None:
        self._width, self._height = WIDTH, HEIGHT
        self._text_item.setVisible(False)
        self._icon_item.setVisible(False)
        for text in (*self._input_items.values(), *self._output_items.values()):
            text.setVisible(False)
        for ports, x in ((self.inputs, 0.0), (self.outputs, WIDTH)):
            for port in ports:
                size = port.boundingRect()
                port.setPos(x - size.width() / 2, (HEIGHT - size.height()) / 2)
        self.update()

    def _paint_horizontal(self, painter: QtGui.QPainter, option, widget) -> None:
        painter.save()
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        rect = QtCore.QRectF(1.0, 1.0, WIDTH - 2.0, HEIGHT - 2.0)
        border = QtGui.QColor(255, 255, 255) if self.selected else QtGui.QColor(40, 40, 40)
        painter.setPen(QtGui.QPen(border, 1.5 if self.selected else 1.0))
        painter.setBrush(FILL)
        painter.drawRoundedRect(rect, HEIGHT / 2 - 1, HEIGHT / 2 - 1)
        painter.restore()

    _paint_vertical = _paint_horizontal

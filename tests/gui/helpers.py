"""Driving the canvas as a person would: mouse drags between ports."""
from __future__ import annotations

from PySide6 import QtCore
from pytestqt.qtbot import QtBot


def port_point(window, node, port_name: str, is_input: bool) -> QtCore.QPoint:
    """Where a port is on the canvas viewport, in viewport pixels."""
    port = (node.inputs() if is_input else node.outputs())[port_name]
    scene_point = port.view.sceneBoundingRect().center()
    return window.graph.viewer().mapFromScene(scene_point)


def drag_link(qtbot: QtBot, window, src, output: str, dst, input_: str) -> None:
    """Press on an output port, move to an input port, release there."""
    viewport = window.graph.viewer().viewport()
    start = port_point(window, src, output, is_input=False)
    end = port_point(window, dst, input_, is_input=True)
    qtbot.mousePress(viewport, QtCore.Qt.MouseButton.LeftButton, pos=start)
    for step in range(1, 6):
        point = start + (end - start) * (step / 5)
        _move(viewport, point)
    qtbot.mouseRelease(viewport, QtCore.Qt.MouseButton.LeftButton, pos=end)


def _move(widget, point: QtCore.QPoint) -> None:
    """A mouse move with the left button held (QTest's mouseMove sends no buttons)."""
    from PySide6 import QtGui, QtWidgets

    event = QtGui.QMouseEvent(
        QtCore.QEvent.Type.MouseMove, QtCore.QPointF(point), QtCore.QPointF(widget.mapToGlobal(point)),
        QtCore.Qt.MouseButton.NoButton, QtCore.Qt.MouseButton.LeftButton,
        QtCore.Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(widget, event)


def grab_with_popups(window, *popups):
    """A picture of ``window`` with its open popups (menus, the node search)
    drawn where they are: a popup is a window of its own, so ``grab`` misses it."""
    from PySide6 import QtGui

    picture = window.grab()
    painter = QtGui.QPainter(picture)
    origin = window.mapToGlobal(QtCore.QPoint(0, 0))
    for popup in popups:
        if popup is not None and popup.isVisible():
            painter.drawPixmap(popup.mapToGlobal(QtCore.QPoint(0, 0)) - origin, popup.grab())
    painter.end()
    return picture

"""How a node is drawn at each zoom: level of detail that keeps titles readable.

NodeGraphQt hides a node's title, port names and widgets once the node is
narrower than 70 screen pixels ("proxy mode"), so a fitted graph showed blank
boxes, and above that width its 9 px title shrank with the zoom to ~4 px.
Here the viewer decides from its scale alone (:meth:`CanvasNodeItem.apply_scale`):

* at or above :data:`OVERVIEW_SCALE` the node is drawn in full, its widgets'
  labels in a light grey (NodeGraphQt's are dark grey on near-black);
* below it the node hides its widgets and port names, as node editors do when
  zoomed out, and shows its title in a :class:`TitleLabel` drawn at a fixed
  screen size (it ignores the view's scale), on one line as wide as the
  room before the next node to its right (elided when it does not fit).

A node's run mode shows at a glance (:meth:`CanvasNodeItem.set_mode`): a
bypassed node is tinted purple (ComfyUI's colour for bypass), a muted one is
drawn faded; both say so in a corner badge.

A node can be collapsed to its title bar (:meth:`CanvasNodeItem.set_collapsed`),
as in ComfyUI and Blender: its widgets and port names hide, and its ports
gather at the middle of the bar's two ends, so its links stay drawn.
"""
from __future__ import annotations

from NodeGraphQt.qgraphics.node_base import NodeItem
from PySide6 import QtCore, QtGui, QtWidgets

#: Below this view scale a node shows only its (large) title.
OVERVIEW_SCALE = 0.7
#: The overview title's font size in screen pixels.
TITLE_PX = 12
#: The room the fit leaves for an overview title right of a narrow node (screen pixels).
MIN_LABEL_PX = 64
#: An elided overview title keeps at least this many screen pixels ("Sam…").
MIN_ELIDED_PX = 36
LABEL_TEXT = QtGui.QColor(240, 240, 240)
LABEL_BACK = QtGui.QColor(0, 0, 0, 170)
#: Parameter labels above a node's widgets (NodeGraphQt: rgba(220, 220, 220, 100)).
WIDGET_LABEL_STYLE = "QGroupBox::title { color: rgb(200, 200, 200); }"
#: How a node's mode is drawn: a tint over the whole node (widgets included).
BYPASS_TINT = QtGui.QColor(170, 60, 220, 110)
MUTED_OPACITY = 0.4
#: A collapsed node is as wide as its title plus this, and never narrower than
#: COLLAPSED_MIN_WIDTH (scene units).
COLLAPSED_PAD = 28
COLLAPSED_MIN_WIDTH = 80


class ModeOverlay(QtWidgets.QGraphicsItem):
    """A tint and a badge over a bypassed node, above its widgets; clicks pass through."""

    def __init__(self, parent: QtWidgets.QGraphicsItem) -> None:
        super().__init__(parent)
        self.setAcceptedMouseButtons(QtCore.Qt.MouseButton.NoButton)
        self.setZValue(10_000)
        self.mode = "normal"

    def boundingRect(self) -> QtCore.QRectF:  # noqa: N802 (Qt override)
        return self.parentItem().boundingRect()

    def paint(self, painter: QtGui.QPainter, option, widget=None) -> None:
        rect = self.boundingRect()
        painter.save()
        painter.setPen(QtCore.Qt.PenStyle.NoPen)
        painter.setBrush(BYPASS_TINT if self.mode == "bypass" else QtGui.QColor(0, 0, 0, 0))
        painter.drawRoundedRect(rect, 4, 4)
        painter.setPen(QtGui.QColor(255, 255, 255))
        font = QtGui.QFont()
        font.setPixelSize(9)
        font.setBold(True)
        painter.setFont(font)
        badge = rect.adjusted(0, 2, -6, 0)
        painter.drawText(badge, int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignTop),
                         self.mode.upper())
        painter.restore()


class TitleLabel(QtWidgets.QGraphicsItem):
    """A node's title at a fixed on-screen size, on a dark plate; clicks pass
    through to the node."""

    PAD = 3

    def __init__(self, parent: QtWidgets.QGraphicsItem) -> None:
        super().__init__(parent)
        self.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setAcceptedMouseButtons(QtCore.Qt.MouseButton.NoButton)
        self.setAcceptHoverEvents(False)
        self.font = QtGui.QFont()
        self.font.setPixelSize(TITLE_PX)
        self.font.setBold(True)
        self.text = ""
        self.shown = ""  # the text as drawn: elided to the room it has
        self._rect = QtCore.QRectF()

    def set_text(self, text: str, width_px: float) -> None:
        """One line of ``text``, at most ``width_px`` screen pixels wide and
        elided ("Negative pr…") when it does not fit: a title wrapped onto more
        lines grew down into the node below. The node's tooltip has it whole."""
        metrics = QtGui.QFontMetrics(self.font)
        natural = metrics.horizontalAdvance(text) + 2 * self.PAD + 1
        width = int(max(min(width_px, natural), min(natural, MIN_ELIDED_PX)))
        if text == self.text and int(self._rect.width()) == width:
            return
        self.prepareGeometryChange()
        self.text = text
        self.shown = metrics.elidedText(text, QtCore.Qt.TextElideMode.ElideRight, width - 2 * self.PAD)
        self._rect = QtCore.QRectF(0, 0, width, metrics.height() + 2 * self.PAD)

    def boundingRect(self) -> QtCore.QRectF:  # noqa: N802 (Qt override)
        return self._rect

    def paint(self, painter: QtGui.QPainter, option, widget=None) -> None:
        painter.save()
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QtCore.Qt.PenStyle.NoPen)
        painter.setBrush(LABEL_BACK)
        painter.drawRoundedRect(self._rect, 3, 3)
        painter.setPen(LABEL_TEXT)
        painter.setFont(self.font)
        text_rect = self._rect.adjusted(self.PAD, self.PAD, -self.PAD, -self.PAD)
        painter.drawText(text_rect, int(QtCore.Qt.AlignmentFlag.AlignLeft), self.shown)
        painter.restore()


class CanvasNodeItem(NodeItem):
    """NodeGraphQt's node item with the level of detail above."""

    def __init__(self, name: str = "node", parent=None) -> None:
        self.title_label = None  # NodeItem's constructor sets the name before it exists
        super().__init__(name, parent)
        self.title_label = TitleLabel(self)
        self.title_label.setPos(2, 2)
        self.title_label.setVisible(False)
        self._scale = 1.0
        self.mode_overlay = ModeOverlay(self)
        self.mode_overlay.setVisible(False)
        self._collapsed = False
        #: The width (screen px) the overview title may take; None: the node's own
        #: (the viewer sets it from the neighbours, see canvas_viewer.title_rooms).
        self.title_room: float | None = None

    @property
    def mode(self) -> str:
        return self.mode_overlay.mode

    def set_mode(self, mode: str) -> None:
        """Draw the node as ``normal``, ``bypass`` (purple tint) or ``mute`` (faded)."""
        self.mode_overlay.prepareGeometryChange()
        self.mode_overlay.mode = mode
        self.mode_overlay.setVisible(mode in ("bypass", "mute"))
        self.setOpacity(MUTED_OPACITY if mode == "mute" else 1.0)
        self.mode_overlay.update()

    @property
    def collapsed(self) -> bool:
        return self._collapsed

    def set_collapsed(self, collapsed: bool) -> None:
        """Fold the node to its title bar, or unfold it."""
        collapsed = bool(collapsed)
        if collapsed != self._collapsed:
            self._collapsed = collapsed
            self.draw_node()

    def set_proxy_mode(self, mode: bool) -> None:
        """NodeGraphQt shows the widgets again when a node leaves proxy mode:
        a collapsed node keeps them hidden."""
        super().set_proxy_mode(mode)
        if getattr(self, "_collapsed", False):
            self._hide_body()

    @property
    def overview(self) -> bool:
        return self._proxy_mode

    def auto_switch_mode(self) -> None:
        """NodeGraphQt switches by the node's width on each paint; the viewer
        switches by its scale instead (see :meth:`apply_scale`)."""

    def apply_scale(self, scale: float) -> None:
        """Show the full node or its overview for a view scale of ``scale``."""
        self._scale = scale
        overview = scale < OVERVIEW_SCALE
        self.set_proxy_mode(overview)
        if overview:
            self.title_label.set_text(self.name, self._title_width())
        self.title_label.setVisible(overview)
        for child in self.childItems():  # e.g. the inline preview, sized by the zoom
            follow = getattr(child, "follow_view_scale", None)
            if follow is not None:
                follow(scale)

    def draw_node(self) -> None:
        """Lay the node out as if in full detail: NodeGraphQt sizes a node by its
        *visible* widgets and port names, so a node drawn in overview shrank and
        its widgets spilled out of it once shown. A collapsed node is then
        folded to its title bar."""
        overview = self._proxy_mode
        if overview:
            self.set_proxy_mode(False)
        collapsed = getattr(self, "_collapsed", False)
        if not collapsed:  # unfolding: size the node by its widgets again
            for widget in self._widgets.values():
                widget.widget().setVisible(True)
        super().draw_node()
        if overview:
            self.set_proxy_mode(True)
        if collapsed:
            self._fold()
        if getattr(self, "mode_overlay", None) is not None:
            self.mode_overlay.prepareGeometryChange()  # the node's size may have changed
        if self.title_label is not None and overview:
            self.title_label.set_text(self.name, self._title_width())

    def _hide_body(self) -> None:
        for widget in self._widgets.values():
            widget.widget().setVisible(False)
        for text in (*self._input_items.values(), *self._output_items.values()):
            text.setVisible(False)

    def _fold(self) -> None:
        """The title bar alone, ports at the middle of its left and right ends."""
        self._hide_body()
        title = self._text_item.boundingRect()
        self.prepareGeometryChange()
        self._width = max(COLLAPSED_MIN_WIDTH, title.width() + COLLAPSED_PAD)
        self._height = title.height() + 8.0
        self.align_label()
        self.align_icon(h_offset=2.0, v_offset=1.0)
        for ports, x_of in ((self.inputs, lambda w: -w / 2), (self.outputs, lambda w: self._width - w / 2)):
            for port in ports:
                rect = port.boundingRect()
                port.setPos(x_of(rect.width()), (self._height - rect.height()) / 2)
        self.update()

    @NodeItem.name.setter
    def name(self, name: str = "") -> None:
        NodeItem.name.fset(self, name)
        if self.title_label is not None and self.overview:
            self.title_label.set_text(name, self._title_width())

    def _title_width(self) -> float:
        room = getattr(self, "title_room", None)
        return room if room is not None else self.width * self._scale - 4

    def _align_widgets_horizontal(self, v_offset) -> None:
        """NodeGraphQt restyles each widget's label on every layout pass:
        append a readable title colour after it."""
        super()._align_widgets_horizontal(v_offset)
        for widget in self._widgets.values():
            group = widget.widget()
            if WIDGET_LABEL_STYLE not in group.styleSheet():
                group.setStyleSheet(group.styleSheet() + WIDGET_LABEL_STYLE)

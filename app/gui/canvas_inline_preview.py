"""Inline previews: small pictures drawn under nodes on the canvas.

During a run a stepping node (the Sampler) shows its latest predicted x̂₀,
updated with every step preview; after a run an image node (Save image,
Load image) shows its picture. So a glance at the graph says what each part
made, without opening the Steps or Images docks.

Why it is cheap: the pictures are the QImages the run's worker already made
(:class:`~app.gui.previews.StepPreview`, ``RunOutcome.images``), scaled to
:data:`THUMB_PX` here; the GUI thread never touches torch. A thumbnail is a
child item of the node's view (as the run-state badge is), so it moves and
dies with its node and adds no undo step. View → Inline previews hides them
all; hidden thumbnails keep only the newest QImage and convert it when shown.
"""
from __future__ import annotations

import shiboken6
from PySide6 import QtCore, QtGui, QtWidgets

from app import graph_adapter as adapter
from app.gui.canvas_node_item import CanvasNodeItem

#: The long side of a thumbnail, in scene pixels (it zooms with the canvas) …
THUMB_PX = 96
#: … but never under this many screen pixels: at the fitted zoom of a graph
#: (~0.3) a 96 px picture showed as a 29 px stamp. Below THUMB_PX, so the
#: picture is never drawn larger than it was made.
MIN_SCREEN_PX = 72
#: Nodes that show their output image after a run (outputs reach the GUI as QImages).
IMAGE_NODES = frozenset({"image.save"})
#: Nodes that show the file they read (decoded already scaled: cheap on the GUI thread).
FILE_NODES = frozenset({"image.load"})
SETTING = "view/inline_previews"
_KEEP = QtCore.Qt.AspectRatioMode.KeepAspectRatio
_SMOOTH = QtCore.Qt.TransformationMode.SmoothTransformation


class InlinePreview(QtWidgets.QGraphicsPixmapItem):
    """One node's thumbnail, centred under the node, with a one-line caption."""

    GAP = 6

    def __init__(self, view: QtWidgets.QGraphicsItem) -> None:
        super().__init__(view)
        self.setAcceptedMouseButtons(QtCore.Qt.MouseButton.NoButton)  # clicks reach the canvas
        self.setTransformationMode(_SMOOTH)
        self.caption = QtWidgets.QGraphicsSimpleTextItem(self)
        self.caption.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.caption.setBrush(QtGui.QColor(200, 200, 200))
        font = self.caption.font()
        font.setPixelSize(10)
        self.caption.setFont(font)
        self.pending: tuple[QtGui.QImage, str] | None = None  # newest image while hidden
        self._scale = getattr(view, "_scale", 1.0)  # the view's scale (CanvasNodeItem keeps it)

    def show_image(self, image: QtGui.QImage, caption: str) -> None:
        """Show ``image`` now if visible, else keep it for when it is shown."""
        self.pending = (image, caption)
        if self.isVisible():
            self.apply()

    def apply(self) -> None:
        if self.pending is None:
            return
        image, caption = self.pending
        self.pending = None
        if max(image.width(), image.height()) != THUMB_PX:
            image = image.scaled(THUMB_PX, THUMB_PX, _KEEP, _SMOOTH)
        self.setPixmap(QtGui.QPixmap.fromImage(image))
        self.caption.setText(caption)
        self.setToolTip(caption)
        self.place()

    def place(self) -> None:
        """Under the node, and under its overview title, which is drawn at a fixed
        screen size and so reaches below a small node when zoomed out."""
        node = self.parentItem()
        rect = node.boundingRect()
        bottom = rect.bottom()
        label = node.title_label if isinstance(node, CanvasNodeItem) else None
        if label is not None and label.isVisible() and self._scale > 0:
            bottom = max(bottom, label.pos().y() + label.boundingRect().height() / self._scale)
        enlarge = max(1.0, MIN_SCREEN_PX / (THUMB_PX * self._scale)) if self._scale > 0 else 1.0
        self.setScale(enlarge)
        width = self.pixmap().width()
        self.setPos(rect.left() + (rect.width() - width * enlarge) / 2, bottom + self.GAP)
        # The caption is drawn at a fixed screen size: its width in our coordinates
        # is its screen width over the total scale.
        text_width = self.caption.boundingRect().width() / max(self._scale * enlarge, 1e-6)
        self.caption.setPos((width - text_width) / 2, self.pixmap().height() + 1)

    def follow_view_scale(self, scale: float) -> None:
        """The canvas zoomed (called by the node's level of detail): place again."""
        if abs(scale - self._scale) > 1e-6:
            self._scale = scale
            if not self.pixmap().isNull():
                self.place()


class InlinePreviews(QtCore.QObject):
    """Routes step previews and run images to the nodes' thumbnails."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.graph = window.graph
        self.enabled = str(window.settings.value(SETTING, "true")).lower() != "false"
        self._items: dict[int, InlinePreview] = {}  # by id(node view)

    def item(self, node, create: bool = False) -> InlinePreview | None:
        """The thumbnail of canvas node ``node`` (made when ``create``)."""
        item = self._items.get(id(node.view))
        if item is not None and (not shiboken6.isValid(item) or item.parentItem() is not node.view):
            item = None
        if item is None and create:
            item = self._items[id(node.view)] = InlinePreview(node.view)
            item.setVisible(self.enabled)
        return item

    def show(self, node_id: str, image: QtGui.QImage, caption: str) -> None:
        node = adapter.find_node(self.graph, node_id)
        if node is not None and not image.isNull():
            self.item(node, create=True).show_image(image, caption)

    @QtCore.Slot(object)
    def on_step(self, record) -> None:
        if record.x0 is not None:  # None: previews were off for this run
            self.show(record.node_id, record.x0, f"x̂₀ step {record.index + 1}/{record.total}")

    @QtCore.Slot(object)
    def on_run_finished(self, outcome) -> None:
        if outcome.status != "finished":
            return
        firsts: dict[str, QtGui.QImage] = {}
        counts: dict[str, int] = {}
        for node_id, image in outcome.images:
            firsts.setdefault(node_id, image)
            counts[node_id] = counts.get(node_id, 0) + 1
        for node in adapter.workflow_nodes(self.graph):
            kind, node_id = node.get_property(adapter.TYPE_PROP), adapter.node_id_of(node)
            if kind in IMAGE_NODES and node_id in firsts:
                more = f" (1 of {counts[node_id]})" if counts[node_id] > 1 else ""
                self.show(node_id, firsts[node_id], f"{node.name()}{more}")
            elif kind in FILE_NODES:
                self.show(node_id, read_scaled(node.get_property(adapter.param_prop("path"))),
                          node.name())

    def set_enabled(self, on: bool) -> None:
        """View → Inline previews: show or hide every thumbnail."""
        self.enabled = bool(on)
        self.window.settings.setValue(SETTING, "true" if on else "false")
        for key, item in list(self._items.items()):
            if not shiboken6.isValid(item):
                del self._items[key]
                continue
            item.setVisible(self.enabled)
            if self.enabled:
                item.apply()


def read_scaled(path: str) -> QtGui.QImage:
    """An image file decoded at thumbnail size (a JPEG is decoded scaled: cheap)."""
    reader = QtGui.QImageReader(str(path or ""))
    size = reader.size()
    if size.isValid() and max(size.width(), size.height()) > THUMB_PX:
        reader.setScaledSize(size.scaled(THUMB_PX, THUMB_PX, _KEEP))
    return reader.read()


def install(window) -> InlinePreviews:
    """Wire the thumbnails to the run and add View → Inline previews."""
    previews = InlinePreviews(window)
    window.runner.step_preview.connect(previews.on_step)
    window.run_finished.connect(previews.on_run_finished)
    action = window.view_menu.addAction("Inline previews")
    action.setCheckable(True)
    action.setChecked(previews.enabled)
    action.setToolTip("Draw the Sampler's latest x̂₀ and image nodes' pictures under the nodes")
    action.toggled.connect(previews.set_enabled)
    window.actions_by_name["inline_previews"] = action
    return previews

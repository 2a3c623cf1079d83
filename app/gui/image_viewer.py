"""The output image dock: thumbnails of the last run's images and a view
with zoom, fit and pixel-exact enlargement; saving writes a PNG that
carries the workflow, so opening it restores the graph."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from core.workflow.png import png_info_with_workflow


def save_qimage_png(image: QtGui.QImage, path: str | Path, workflow_json: str) -> Path:
    """Write ``image`` as PNG with the workflow in its iTXt chunk (as the CLI does)."""
    from PIL import Image

    rgba = image.convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
    pointer = rgba.constBits()
    array = np.frombuffer(pointer, np.uint8, rgba.sizeInBytes()).reshape(
        rgba.height(), rgba.bytesPerLine())[:, : rgba.width() * 4].reshape(rgba.height(), rgba.width(), 4)
    picture = Image.fromarray(array.copy(), "RGBA")
    if image.hasAlphaChannel() is False:
        picture = picture.convert("RGB")
    path = Path(path)
    picture.save(path, format="PNG", pnginfo=png_info_with_workflow(workflow_json))
    return path


class ImageView(QtWidgets.QGraphicsView):
    """One image: wheel or buttons to zoom, fit to the view, or whole pixels."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setScene(QtWidgets.QGraphicsScene(self))
        self.item = QtWidgets.QGraphicsPixmapItem()
        self.item.setTransformationMode(QtCore.Qt.TransformationMode.FastTransformation)
        self.scene().addItem(self.item)
        self.setBackgroundBrush(QtGui.QColor(40, 40, 40))
        self.setDragMode(QtWidgets.QGraphicsView.DragMode.ScrollHandDrag)
        self.fit_mode = True

    def set_image(self, image: QtGui.QImage | None) -> None:
        self.item.setPixmap(QtGui.QPixmap.fromImage(image) if image is not None else QtGui.QPixmap())
        self.scene().setSceneRect(self.item.boundingRect())
        self.fit() if self.fit_mode else self.pixel_exact()

    def zoom(self, factor: float) -> None:
        self.fit_mode = False
        self.scale(factor, factor)

    def fit(self) -> None:
        self.fit_mode = True
        self.fitInView(self.item, QtCore.Qt.AspectRatioMode.KeepAspectRatio)

    def pixel_exact(self) -> None:
        """The largest whole-number enlargement that fits (1:1 for large images)."""
        self.fit_mode = False
        rect = self.item.boundingRect()
        if rect.isEmpty():
            return
        room = self.viewport().size()
        factor = max(1, int(min(room.width() / rect.width(), room.height() / rect.height())))
        self.setTransform(QtGui.QTransform.fromScale(factor, factor))

    def scale_factor(self) -> float:
        return self.transform().m11()

    def wheelEvent(self, event: QtGui.QWheelEvent) -> None:  # noqa: N802
        self.zoom(1.25 if event.angleDelta().y() > 0 else 0.8)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.fit_mode:
            self.fit()


class ImageViewer(QtWidgets.QWidget):
    """Thumbnails above, the chosen image below, a small toolbar between."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.images: list[tuple[str, QtGui.QImage]] = []
        self.workflow_json = ""
        self.thumbs = QtWidgets.QListWidget()
        self.thumbs.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.thumbs.setIconSize(QtCore.QSize(56, 56))
        self.thumbs.setFixedHeight(84)
        self.thumbs.setFlow(QtWidgets.QListView.Flow.LeftToRight)
        self.thumbs.setWrapping(False)
        self.thumbs.currentRowChanged.connect(self.show_index)
        self.view = ImageView()
        self.caption = QtWidgets.QLabel("No image yet: run the workflow (Ctrl+Enter).")
        tools = QtWidgets.QToolBar()
        tools.addAction("Fit", self.view.fit)
        tools.addAction("Pixels", self.view.pixel_exact)
        tools.addAction("+", lambda: self.view.zoom(1.25))
        tools.addAction("−", lambda: self.view.zoom(0.8))
        self.save_action = tools.addAction("Save PNG…", self.save_dialog)
        self.save_action.setEnabled(False)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.thumbs)
        layout.addWidget(tools)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.caption)

    def set_images(self, images: list[tuple[str, QtGui.QImage]], workflow_json: str) -> None:
        self.images = list(images)
        self.workflow_json = workflow_json
        self.thumbs.clear()
        for node_id, image in self.images:
            icon = QtGui.QIcon(QtGui.QPixmap.fromImage(image))
            self.thumbs.addItem(QtWidgets.QListWidgetItem(icon, node_id))
        self.save_action.setEnabled(bool(self.images))
        if self.images:
            self.view.fit_mode = max(self.images[0][1].width(), self.images[0][1].height()) > 256
            self.thumbs.setCurrentRow(0)
        else:
            self.view.set_image(None)
            self.caption.setText("The run made no image.")

    def show_index(self, row: int) -> None:
        if 0 <= row < len(self.images):
            node_id, image = self.images[row]
            self.view.set_image(image)
            self.caption.setText(f"{node_id}: {image.width()}×{image.height()} "
                                 f"({row + 1} of {len(self.images)})")

    def current_image(self) -> QtGui.QImage | None:
        row = self.thumbs.currentRow()
        return self.images[row][1] if 0 <= row < len(self.images) else None

    def save_current(self, path: str | Path) -> Path | None:
        image = self.current_image()
        return save_qimage_png(image, path, self.workflow_json) if image is not None else None

    def save_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save image", "output.png", "PNG (*.png)")
        if path:
            self.save_current(path)

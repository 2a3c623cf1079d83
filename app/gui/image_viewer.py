"""The output image dock: thumbnails of the last run's images, a view with
zoom, fit and pixel-exact enlargement, and the history of runs; saving
writes a PNG that carries the workflow, so opening it restores the graph
(a video clip, shown as its filmstrip, also as GIF, WebP or MP4)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app.gui.gallery import Gallery, GalleryEntry, GalleryStrip, make_thumbnail_strip
from app.gui.previews import Playback, frame_of
from core.video import FORMATS as VIDEO_FORMATS
from core.video import save_pictures
from core.workflow.png import png_info_with_workflow


def qimage_to_pil(image: QtGui.QImage):
    """A QImage as a PIL image (RGB, or RGBA when it has alpha)."""
    from PIL import Image

    rgba = image.convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
    pointer = rgba.constBits()
    array = np.frombuffer(pointer, np.uint8, rgba.sizeInBytes()).reshape(
        rgba.height(), rgba.bytesPerLine())[:, : rgba.width() * 4].reshape(rgba.height(), rgba.width(), 4)
    picture = Image.fromarray(array.copy(), "RGBA")
    return picture.convert("RGB") if image.hasAlphaChannel() is False else picture


def save_qimage_png(image: QtGui.QImage, path: str | Path, workflow_json: str) -> Path:
    """Write ``image`` as PNG with the workflow in its iTXt chunk (as the CLI does)."""
    path = Path(path)
    qimage_to_pil(image).save(path, format="PNG", pnginfo=png_info_with_workflow(workflow_json))
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
    """The latest run's thumbnails above, the chosen image in the middle, the
    history of runs (:mod:`app.gui.gallery`) below."""

    open_workflow_requested = QtCore.Signal(str, str)  # workflow JSON, a name for it

    def __init__(self, parent=None, gallery: Gallery | None = None) -> None:
        super().__init__(parent)
        self.images: list[tuple[str, QtGui.QImage]] = []
        self.entries: list[GalleryEntry] = []  # the latest run's, as shown in the strip
        self.shown: GalleryEntry | None = None
        self.workflow_json = ""
        self.gallery = gallery or Gallery(parent=self)
        self.thumbs = QtWidgets.QListWidget()
        make_thumbnail_strip(self.thumbs, 48, lines=1)  # "Save image #2 · seed 7"
        self.thumbs.currentRowChanged.connect(self.show_index)
        self.history = GalleryStrip(self.gallery)
        self.history.entry_chosen.connect(self.show_entry)
        self.view = ImageView()
        self.caption = QtWidgets.QLabel("No image yet: run the workflow (Ctrl+Enter).")
        self.caption.setWordWrap(True)
        tools = QtWidgets.QToolBar()
        tools.addAction("Fit", self.view.fit)
        tools.addAction("Pixels", self.view.pixel_exact)
        tools.addAction("+", lambda: self.view.zoom(1.25))
        tools.addAction("−", lambda: self.view.zoom(0.8))
        self.save_action = tools.addAction("Save…", self.save_dialog)
        self.save_action.setToolTip("Save the image shown as PNG (a video clip also as GIF, "
                                    "WebP or MP4), with the workflow that made it")
        self.save_action.setEnabled(False)
        self.open_action = tools.addAction("Open its workflow", self.open_shown_workflow)
        self.open_action.setToolTip("Open the workflow that made this image (as an unsaved document)")
        self.open_action.setEnabled(False)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.thumbs)
        layout.addWidget(tools)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.caption)
        layout.addWidget(QtWidgets.QLabel("History (every run, newest first)"))
        layout.addWidget(self.history)

    def set_images(self, images: list[tuple[str, QtGui.QImage]], workflow_json: str,
                   labels: list[str] | None = None, source: str = "",
                   playback: list[Playback | None] | None = None) -> None:
        """Show a finished run's images (and add them to the history); ``playback``
        marks the ones that are video clips shown as filmstrips."""
        self.images = list(images)
        self.workflow_json = workflow_json
        labels = list(labels) if labels is not None else [node_id for node_id, _ in self.images]
        self.entries = self.gallery.add_run(self.images, labels, workflow_json, source or "a run",
                                            playback)
        self.thumbs.clear()
        for entry in self.entries:
            item = QtWidgets.QListWidgetItem(QtGui.QIcon(QtGui.QPixmap.fromImage(entry.image)), entry.label)
            item.setToolTip(entry.caption())
            self.thumbs.addItem(item)
        if self.images:
            self.view.fit_mode = max(self.images[0][1].width(), self.images[0][1].height()) > 256
            self.thumbs.setCurrentRow(0)
        else:
            self.show_entry(None)
            self.caption.setText("The run made no image.")

    def clear_current(self, message: str) -> None:
        """Another workflow was opened: its strip starts empty; the history stays."""
        self.images, self.entries, self.workflow_json = [], [], ""
        self.thumbs.clear()
        self.show_entry(None)
        self.caption.setText(message)

    def show_index(self, row: int) -> None:
        if 0 <= row < len(self.entries):
            self.show_entry(self.entries[row], f" ({row + 1} of {len(self.entries)})")

    def show_entry(self, entry: GalleryEntry | None, where: str = "") -> None:
        self.shown = entry
        self.save_action.setEnabled(entry is not None)
        self.open_action.setEnabled(entry is not None)
        self.view.set_image(entry.image if entry is not None else None)
        if entry is not None:
            self.caption.setText(f"{entry.caption()}: {entry.image.width()}×{entry.image.height()}{where}")

    def current_image(self) -> QtGui.QImage | None:
        return self.shown.image if self.shown is not None else None

    def save_current(self, path: str | Path) -> Path | None:
        """Save the image shown, with the workflow of the run that made it; a
        video clip to a .gif, .webp or .mp4 path is saved as that video."""
        if self.shown is None:
            return None
        clip, suffix = self.shown.playback, Path(path).suffix.lower().lstrip(".")
        if clip is not None and suffix in VIDEO_FORMATS:
            frames = [qimage_to_pil(frame_of(self.shown.image, k, clip.frames))
                      for k in range(clip.frames)]
            return save_pictures(frames, path, clip.fps, self.shown.workflow_json)
        return save_qimage_png(self.shown.image, path, self.shown.workflow_json)

    def save_dialog(self) -> None:
        video = self.shown is not None and self.shown.playback is not None
        filters = ("GIF (*.gif);;WebP (*.webp);;MP4 (*.mp4);;PNG filmstrip (*.png)" if video
                   else "PNG (*.png)")
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(
            self, "Save video" if video else "Save image", "output.gif" if video else "output.png",
            filters)
        if not path:
            return
        if not Path(path).suffix:  # the format the chosen filter names
            path += chosen[chosen.find("*") + 1:chosen.find(")")] if "*" in chosen else ".png"
        try:
            self.save_current(path)
        except (OSError, ValueError) as error:  # MP4 without PyAV, a full disk…
            QtWidgets.QMessageBox.warning(self, "Not saved", f"{Path(path).name}: {error}")

    def open_shown_workflow(self) -> None:
        if self.shown is not None:
            self.open_workflow_requested.emit(self.shown.workflow_json,
                                              f"workflow of {self.shown.label} (run {self.shown.run})")

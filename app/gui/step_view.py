"""The live step view: x_t, the predicted x̂_0 and the predicted noise ε̂ of
one sampler step, side by side, one row per batch item.

The images arrive ready-made (QImages built in the run's worker thread
from the model's fast latent-to-RGB map, or its tiny TAESD-class preview
decoder when a "Preview decoder" node gave it one). "Decode with VAE" runs the
model's own decoder on the shown step in a background job and replaces the
fast previews with exact pixels for that step only.
"""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app.gui.jobs import Jobs
from app.gui.previews import StepPreview, frame_of, preview_images

CELL = 128  # pixels per shown image: 16- and 64-pixel previews fill it by whole pixels
COLUMNS = ("x_t", "predicted x₀", "predicted noise ε")  # no combining hats: fonts misplace them


def decode_step(record: StepPreview) -> tuple[tuple[QtGui.QImage, ...], tuple[QtGui.QImage, ...]]:
    """The step's x_t and x̂_0 through the model's VAE (runs in a worker thread);
    a video's clips come back as filmstrips."""
    import torch

    from core.video import as_pictures

    x_t, x0, _ = record.tensors
    with torch.no_grad():
        return (preview_images(as_pictures(x_t.float(), record.decoder.decode), record.frames),
                preview_images(as_pictures(x0.float(), record.decoder.decode), record.frames))


def describe(record: StepPreview) -> str:
    """The numbers of a step, as the timeline and the step view show them."""
    level = "t" if record.parameterization == "flow" else "σ"
    parts = [f"step {record.index + 1}/{record.total}", f"{level} = {_num(record.t)}"]
    if record.timestep is not None and record.parameterization != "flow":
        parts.append(f"t = {record.timestep:.1f}")
    parts += [f"ᾱ = {_num(record.alpha_bar)}", f"SNR = {_num(record.snr)}"]
    return "   ".join(parts)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


class StepView(QtWidgets.QWidget):
    """A grid of the shown step's images, with its numbers above."""

    def __init__(self, jobs: Jobs, parent=None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.record: StepPreview | None = None
        self.decoded = False
        self.info = QtWidgets.QLabel("No steps yet: run a workflow with a sampler")
        self.decode_button = QtWidgets.QPushButton("Decode with VAE")
        self.decode_button.setToolTip("Show this step through the model's own decoder (exact, slower)")
        self.decode_button.clicked.connect(self.decode_current)
        self.decode_button.setEnabled(False)
        self.frame = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.frame.setToolTip("A video's steps: 0 shows every frame as a filmstrip, 1 … T one "
                              "frame, enlarged")
        self.frame.setMaximumWidth(160)
        self.frame.valueChanged.connect(self._frame_changed)
        self.frame_label = QtWidgets.QLabel()
        self.auto_decode = QtWidgets.QCheckBox("Decode every shown step")
        self.auto_decode.setToolTip("Exact pixels for each shown step (a VAE decode per step, in the background)")
        self.grid = QtWidgets.QGridLayout()
        self.grid.setSpacing(4)
        self.grid.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        self.cells: list[list[QtWidgets.QLabel]] = []
        self._columns: tuple[tuple[QtGui.QImage, ...], ...] = ()  # shown, before frame picking
        top = QtWidgets.QHBoxLayout()  # one row: the dock sits in the short bottom area
        self.info.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        top.addWidget(self.info, 1)
        top.addWidget(self.frame_label)
        top.addWidget(self.frame)
        top.addWidget(self.auto_decode)
        top.addWidget(self.decode_button)
        holder = QtWidgets.QWidget()
        holder.setLayout(self.grid)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(holder)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(scroll, 1)
        for column, title in enumerate(COLUMNS):
            header = QtWidgets.QLabel(title)
            header.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
            self.grid.addWidget(header, 0, column + 1)

    # -- showing -------------------------------------------------------------------
    def show_step(self, record: StepPreview) -> None:
        """Show ``record``'s fast previews (cheap: pixmaps from ready QImages)."""
        self.record = record
        self.decoded = False
        self.info.setText(describe(record))
        self.decode_button.setEnabled(record.decoder is not None and record.tensors is not None)
        self._show_frame_slider(record.frames)
        self._fill((record.x_t_images, record.x0_images, record.eps_images))
        if self.auto_decode.isChecked():
            self.decode_current()

    # -- a video's frames ------------------------------------------------------------
    def _show_frame_slider(self, frames: int) -> None:
        """The frame slider, for a video's steps only (kept where it was between steps)."""
        self.frame.blockSignals(True)
        self.frame.setRange(0, frames)
        self.frame.blockSignals(False)
        self.frame.setVisible(frames > 0)
        self.frame_label.setVisible(frames > 0)
        self._label_frame()

    def _label_frame(self) -> None:
        value = self.frame.value()
        self.frame_label.setText("Frame: all" if value == 0 else
                                 f"Frame: {value}/{self.frame.maximum()}")

    def _frame_changed(self, _value: int) -> None:
        self._label_frame()
        self._fill(self._columns)  # the same step (fast or decoded), another frame

    def _picked(self, image: QtGui.QImage) -> QtGui.QImage:
        """The slider's frame of a filmstrip, or the whole strip (0, or not a video)."""
        frames, value = (self.record.frames if self.record else 0), self.frame.value()
        return frame_of(image, value - 1, frames) if frames and value else image

    def _fill(self, columns: tuple[tuple[QtGui.QImage, ...], ...]) -> None:
        self._columns = columns
        columns = tuple(tuple(self._picked(image) for image in images) for images in columns)
        rows = max((len(c) for c in columns), default=0)
        self._ensure_rows(rows)
        for row in range(len(self.cells)):
            for column, images in enumerate(columns):
                label = self.cells[row][column]
                image = images[row] if row < len(images) else None
                label.setPixmap(_enlarged(image) if image is not None else QtGui.QPixmap())
                label.setVisible(row < rows)

    def _ensure_rows(self, rows: int) -> None:
        while len(self.cells) < rows:
            row = len(self.cells)
            item = QtWidgets.QLabel(f"#{row + 1}")
            self.grid.addWidget(item, row + 1, 0)
            labels = []
            for column in range(len(COLUMNS)):
                label = QtWidgets.QLabel()
                label.setFixedSize(CELL, CELL)
                label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
                label.setStyleSheet("background: #282828;")
                self.grid.addWidget(label, row + 1, column + 1)
                labels.append(label)
            self.cells.append(labels)

    def shown_images(self, column: int) -> list[QtGui.QImage]:
        """The pixmaps shown in one column, as images (for tests and screenshots)."""
        return [row[column].pixmap().toImage() for row in self.cells if row[column].isVisible()]

    # -- exact decode ----------------------------------------------------------------
    def decode_current(self) -> None:
        record = self.record
        if record is None or record.decoder is None or record.tensors is None:
            return
        self.decode_button.setEnabled(False)
        self.jobs.submit("decode", lambda: (record, decode_step(record)), self._decoded)

    def _decoded(self, result) -> None:
        record, (x_t, x0) = result
        if record is not self.record:  # the person moved on meanwhile
            return
        self.decoded = True
        self.info.setText(describe(record) + "   (VAE decode)")
        self._fill((x_t, x0, record.eps_images))
        self.decode_button.setEnabled(True)


def _enlarged(image: QtGui.QImage) -> QtGui.QPixmap:
    """Fit a preview into a cell; small ones by whole pixels, so latents stay crisp."""
    side = max(image.width(), image.height())
    factor = max(1, CELL // side) if side <= CELL else CELL / side
    size = QtCore.QSize(int(image.width() * factor), int(image.height() * factor))
    return QtGui.QPixmap.fromImage(image).scaled(size, QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                                                 QtCore.Qt.TransformationMode.FastTransformation)

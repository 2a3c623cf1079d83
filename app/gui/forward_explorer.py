"""The forward-process explorer: the lectures' two demos, live.

Pick an image (a built-in picture or a file) and a schedule; the t slider
shows x_t drawn from the closed form q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)
(DDPM eq. 4), or, with the toggle, reached by t + 1 single steps of
q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I) (DDPM eq. 2). Both are computed
in a background job over a few independent draws, and the view prints the
mean and variance of x_t − √ᾱ_t x_0 next to their theory (0 and 1 − ᾱ_t):
the two roads agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from app.gui.jobs import Jobs
from app.gui.previews import image_to_qimage

SAMPLES = ("shapes: red circle", "rings", "color bars", "gradient", "checkerboard")
SCHEDULES = ("linear", "scaled_linear", "cosine", "sigmoid")
MODES = ("closed form", "step by step")
DRAWS = 4  # independent x_t per request: the first is shown, all feed the statistics
SIDE = 64


@dataclass(frozen=True)
class ForwardResult:
    """What one request computed (the image already a QImage, made in the worker)."""

    t: int
    mode: str
    alpha_bar: float
    mean: float  # of x_t − √ᾱ_t x_0, over every pixel of every draw
    variance: float
    image: QtGui.QImage


def builtin_image(name: str):
    """A (1, 3, 64, 64) picture in [0, 1] that needs no file (runs in a worker)."""
    from nodes.images import make_pattern, shape_scene

    if name.startswith("shapes"):
        return shape_scene(None, "circle", "red", "large", "center", "white", 0.0, SIDE)["image"]
    return make_pattern(None, name, SIDE, SIDE)


def file_image(path: str):
    """An image file as (1, 3, 64, 64) in [0, 1], resized so the chain stays fast."""
    from PIL import Image

    from core.images import from_pil

    with Image.open(path) as picture:
        return from_pil(picture.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BICUBIC))


def forward(image, schedule_name: str, timesteps: int, t: int, seed: int, mode: str) -> ForwardResult:
    """x_t of ``image`` by the chosen road, and its statistics (runs in a worker)."""
    import torch

    from core.diffusion.forward import q_sample, q_step
    from core.diffusion.noise import cpu_generator
    from core.diffusion.schedules import make_schedule

    table = make_schedule(schedule_name, timesteps)
    x0 = (image[:1, :3] * 2 - 1).expand(DRAWS, -1, -1, -1).contiguous()  # (D, 3, H, W), data scale
    generator = cpu_generator(seed)
    if mode == "closed form":
        x = q_sample(x0, t, table, torch.randn(x0.shape, generator=generator))  # DDPM eq. 4
    else:
        x = x0
        for step in range(t + 1):  # t + 1 steps reach index t (index 0 is the first step)
            x = q_step(x, step, table, torch.randn(x0.shape, generator=generator))  # DDPM eq. 2
    alpha_bar = float(table.alphas_cumprod[t])
    residual = x.double() - alpha_bar**0.5 * x0.double()
    return ForwardResult(t, mode, alpha_bar, float(residual.mean()), float(residual.var()),
                         image_to_qimage(((x[0] + 1) / 2).clamp(0, 1)))


class ForwardExplorer(QtWidgets.QWidget):
    """Image and schedule pickers, a t slider, the mode toggle, the picture and its numbers."""

    computed = QtCore.Signal(object)  # ForwardResult, after it is shown

    def __init__(self, jobs: Jobs, parent=None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.image = None  # (1, 3, H, W) tensor, only touched by jobs
        self.result: ForwardResult | None = None
        self.source = _combo(SAMPLES, "Built-in picture")
        self.source.currentTextChanged.connect(self.load_builtin)
        self.open_button = QtWidgets.QPushButton("Open image…")
        self.open_button.clicked.connect(self._open_dialog)
        self.schedule = _combo(SCHEDULES, "The β schedule (T = 1000)")
        self.schedule.currentTextChanged.connect(lambda _name: self.update_view())
        self.mode = _combo(MODES, "Closed form q(x_t|x_0), or t + 1 steps of q(x_t|x_{t−1})")
        self.mode.currentTextChanged.connect(lambda _mode: self.update_view())
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setRange(0, 999)
        self.slider.setValue(250)
        self.slider.valueChanged.connect(lambda _t: self.update_view())
        self.t_label = QtWidgets.QLabel("t = 250")
        self.t_label.setMinimumWidth(60)
        self.slider.valueChanged.connect(lambda t: self.t_label.setText(f"t = {t}"))
        self.original = _picture()
        self.noisy = _picture()
        self.numbers = QtWidgets.QLabel("")
        self.numbers.setWordWrap(True)
        self._layout()

    def set_active(self, active: bool) -> None:
        """Its dock came on screen: the first picture is made then, not at start-up
        (the first job imports torch, which holds the interpreter for a while)."""
        if active and self.image is None:
            self.load_builtin(self.source.currentText())

    def _layout(self) -> None:
        pickers = QtWidgets.QHBoxLayout()
        for widget in (self.source, self.open_button, self.schedule, self.mode):
            pickers.addWidget(widget)
        slider = QtWidgets.QHBoxLayout()
        slider.addWidget(self.t_label)
        slider.addWidget(self.slider, 1)
        pictures = QtWidgets.QHBoxLayout()
        pictures.addWidget(_captioned("x₀", self.original))
        pictures.addWidget(_captioned("x_t", self.noisy))
        pictures.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(pickers)
        layout.addLayout(slider)
        layout.addLayout(pictures)
        layout.addWidget(self.numbers)
        layout.addStretch(1)

    # -- inputs ----------------------------------------------------------------------
    def load_builtin(self, name: str) -> None:
        self.jobs.submit("forward-image", lambda: _with_preview(builtin_image(name)), self._image_ready)

    def load_file(self, path: str | Path) -> None:
        self.jobs.submit("forward-image", lambda: _with_preview(file_image(str(path))), self._image_ready,
                         lambda error: self.numbers.setText(f"Cannot read {path}: {error}"))

    def _open_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open image", "",
                                                        "Images (*.png *.jpg *.jpeg *.webp *.bmp)")
        if path:
            self.load_file(path)

    def _image_ready(self, loaded) -> None:
        self.image, preview = loaded
        self.original.setPixmap(_scaled(preview))
        self.update_view()

    # -- the view ----------------------------------------------------------------------
    def update_view(self) -> None:
        """Ask for x_t at the slider's t by the chosen road."""
        if self.image is None:
            return
        image, name, t, mode = self.image, self.schedule.currentText(), self.slider.value(), self.mode.currentText()
        self.jobs.submit("forward", lambda: forward(image, name, 1000, t, 0, mode), self._show)

    def _show(self, result: ForwardResult) -> None:
        self.result = result
        self.noisy.setPixmap(_scaled(result.image))
        theory = 1 - result.alpha_bar
        self.numbers.setText(
            f"{result.mode}, t = {result.t}: ᾱ_t = {result.alpha_bar:.5f}, √ᾱ_t = {result.alpha_bar ** 0.5:.5f}.  "
            f"x_t − √ᾱ_t·x₀ over {DRAWS} draws: mean {result.mean:+.4f} (theory 0), "
            f"variance {result.variance:.4f} (theory 1 − ᾱ_t = {theory:.4f})")
        self.computed.emit(result)


def _with_preview(image):
    return image, image_to_qimage(image[0, :3].clamp(0, 1))


def _combo(items, tip: str) -> QtWidgets.QComboBox:
    box = QtWidgets.QComboBox()
    box.addItems(list(items))
    box.setToolTip(tip)
    return box


def _picture() -> QtWidgets.QLabel:
    label = QtWidgets.QLabel()
    label.setFixedSize(192, 192)
    label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
    label.setStyleSheet("background: #282828;")
    return label


def _captioned(text: str, picture: QtWidgets.QLabel) -> QtWidgets.QWidget:
    box = QtWidgets.QWidget()
    layout = QtWidgets.QVBoxLayout(box)
    caption = QtWidgets.QLabel(text)
    caption.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
    layout.addWidget(caption)
    layout.addWidget(picture)
    return box


def _scaled(image: QtGui.QImage) -> QtGui.QPixmap:
    return QtGui.QPixmap.fromImage(image).scaled(
        192, 192, QtCore.Qt.AspectRatioMode.KeepAspectRatio, QtCore.Qt.TransformationMode.FastTransformation)

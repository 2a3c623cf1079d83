"""The step scrubber: a slider over the kept steps of one sampler run, with
play/pause, "follow live", and the step's numbers (index, σ or t, ᾱ, SNR).

It only reads the history and says which step is selected; the step view,
the schedule plot and the branch panel listen to ``step_selected``.
"""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.gui.step_history import StepHistory, TrackKey
from app.gui.step_view import describe

PLAY_MS = 120


class Timeline(QtWidgets.QWidget):
    """Pick a (run, sampler) track and a step in it."""

    step_selected = QtCore.Signal(object)  # StepPreview
    budget_changed = QtCore.Signal(int)    # MB

    def __init__(self, history: StepHistory, parent=None) -> None:
        super().__init__(parent)
        self.history = history
        self.every = 1
        self.track_box = QtWidgets.QComboBox()
        self.track_box.setToolTip("Which run and sampler to scrub")
        self.track_box.setSizeAdjustPolicy(
            QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.track_box.setMinimumContentsLength(16)
        self.track_box.currentIndexChanged.connect(self._track_changed)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.slider.valueChanged.connect(self._slider_moved)
        self.play_button = QtWidgets.QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._play_toggled)
        self.follow = QtWidgets.QCheckBox("Follow live")
        self.follow.setChecked(True)
        self.follow.setToolTip("Jump to each new step while a run goes on")
        self.every_box = _spin(1, 1000, 1, " step(s)", "Update the live view every N steps")
        self.every_box.setPrefix("every ")
        self.every_box.valueChanged.connect(self._every_changed)
        self.budget_box = _spin(8, 65536, 256, " MB", "Memory for kept steps; older runs go first")
        self.budget_box.valueChanged.connect(self.budget_changed)
        self.info = QtWidgets.QLabel("—")
        self.memory = QtWidgets.QLabel("")
        for label in (self.info, self.memory):  # clipped, never widening the dock area
            label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(PLAY_MS)
        self.timer.timeout.connect(self._advance)
        self._layout()

    def _layout(self) -> None:
        """Two rows, so the strip stays short in the bottom area: the slider and
        the step's numbers; then the track and the settings."""
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.play_button)
        row.addWidget(self.slider, 3)
        row.addWidget(self.info, 2)
        settings = QtWidgets.QHBoxLayout()
        settings.addWidget(self.track_box)
        settings.addWidget(self.follow)
        settings.addWidget(self.every_box)
        settings.addWidget(QtWidgets.QLabel("keep"))
        settings.addWidget(self.budget_box)
        settings.addWidget(self.memory, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addLayout(row)
        layout.addLayout(settings)

    # -- the history changed -----------------------------------------------------
    def step_added(self, record) -> None:
        """A new step arrived: list its track, and follow it if asked to."""
        self.refresh_tracks()
        key = (record.run_id, record.node_id)
        last = record.index + 1 == record.total
        if self.follow.isChecked() and (record.index % self.every == 0 or last):
            self.select_track(key)
            self._sync_range()
            self.slider.blockSignals(True)
            self.slider.setValue(self.slider.maximum())
            self.slider.blockSignals(False)
            self._emit_current()
        elif key == self.current_track():
            self._sync_range()

    def refresh_tracks(self) -> None:
        """List every kept (run, sampler) track, newest last."""
        tracks = self.history.tracks()
        runs = self.history.runs
        wanted = [(key, self._label(key, runs)) for key in tracks]
        known = [(self.track_box.itemData(i), self.track_box.itemText(i))
                 for i in range(self.track_box.count())]
        if known == wanted:
            return
        current = self.current_track()
        self.track_box.blockSignals(True)
        self.track_box.clear()
        for key, label in wanted:
            self.track_box.addItem(label, key)
        index = tracks.index(current) if current in tracks else len(tracks) - 1
        self.track_box.setCurrentIndex(index)
        self.track_box.blockSignals(False)
        self._sync_range()
        self._show_memory()

    def _label(self, key: TrackKey, runs: list[str]) -> str:
        """"run 2 · sampler", or "run 2 · base → refiner" for a chain of samplers."""
        samplers = " → ".join(self.history.samplers(key)) or key[1]
        return f"run {runs.index(key[0]) + 1} · {samplers}"

    def select_track(self, key: TrackKey) -> None:
        for i in range(self.track_box.count()):
            if self.track_box.itemData(i) == key:
                self.track_box.setCurrentIndex(i)
                return

    def current_track(self) -> TrackKey | None:
        return self.track_box.currentData()

    def steps(self) -> list:
        key = self.current_track()
        return self.history.steps(key) if key is not None else []

    def current(self):
        steps = self.steps()
        value = self.slider.value()
        return steps[value] if 0 <= value < len(steps) else None

    # -- scrubbing -------------------------------------------------------------------
    def scrub_to(self, index: int) -> None:
        """Select the step whose sampler index is ``index`` (0-based)."""
        for position, record in enumerate(self.steps()):
            if record.index == index:
                self.follow.setChecked(False)
                self.slider.setValue(position)
                self._emit_current()
                return
        raise IndexError(f"step {index} is not kept for this sampler")

    def _sync_range(self) -> None:
        count = len(self.steps())
        self.slider.setEnabled(count > 0)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(count - 1, 0))
        self.slider.blockSignals(False)
        self._show_memory()

    def _show_memory(self) -> None:
        dropped = self.history.dropped
        extra = f", {dropped} oldest steps dropped" if dropped else ""
        self.memory.setText(f"({self.history.nbytes / 2**20:.1f} MB kept{extra})")

    def _track_changed(self, _index: int) -> None:
        self._sync_range()
        self._emit_current()

    def _slider_moved(self, _value: int) -> None:
        self._emit_current()

    def _emit_current(self) -> None:
        record = self.current()
        if record is not None:
            self.info.setText(describe(record))
            self.step_selected.emit(record)

    def _play_toggled(self, playing: bool) -> None:
        self.play_button.setText("Pause" if playing else "Play")
        if playing:
            self.follow.setChecked(False)
            if self.slider.value() == self.slider.maximum():
                self.slider.setValue(0)
            self.timer.start()
        else:
            self.timer.stop()

    def _advance(self) -> None:
        if self.slider.value() >= self.slider.maximum():
            self.play_button.setChecked(False)
        else:
            self.slider.setValue(self.slider.value() + 1)

    def _every_changed(self, value: int) -> None:
        self.every = value


def _spin(low: int, high: int, value: int, suffix: str, tip: str) -> QtWidgets.QSpinBox:
    box = QtWidgets.QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setSuffix(suffix)
    box.setToolTip(tip)
    return box

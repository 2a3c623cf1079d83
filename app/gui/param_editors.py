"""One editor widget per parameter type, shared by the node body and the
properties panel, so both edit a value the same way and keep its Python type
(NodeGraphQt's own spin box stores strings, which breaks reloading).

Every editor has ``value()``, ``set_value(v)`` (which never emits) and an
``edited(object)`` signal that fires once per finished edit.

Numbers are never changed behind the person's back: a stored value the spec
refuses (a file with steps 1e9) is shown as stored, with the problem the run
will report beside it; a typed value past the range is clamped and the note
says so (a plain QSpinBox shows 10000 for 1e9 and swallows the digits).
"""
from __future__ import annotations

import random
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app.gui.param_ranges import FloatSpin, IntSpin, value_problem
from core.nodespec import Input
from core.ports import PortType

_INT32_MAX = 2**31 - 1
#: How the note beside an editor looks: visible on the dark theme, not alarming.
_NOTE_STYLE = "color: #ffb74d;"
_BAD_STYLE = "border: 1px solid #e57373;"


class ParamEditor(QtWidgets.QWidget):
    """Base of every editor: a horizontal box around one input widget."""

    edited = QtCore.Signal(object)

    def __init__(self, item: Input, parent: QtWidgets.QWidget | None = None,
                 compact: bool = False) -> None:
        super().__init__(parent)
        self.item = item
        self.setToolTip(item.tooltip)
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(1)
        self._layout = QtWidgets.QHBoxLayout()
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(2)
        outer.addLayout(self._layout)
        # The note under the editor; a node body (compact) has no room, so there
        # the note is the tooltip and a red frame only.
        self.note = QtWidgets.QLabel()
        self.note.setObjectName("value_note")
        self.note.setWordWrap(True)
        self.note.setStyleSheet(_NOTE_STYLE)
        self.note.setVisible(False)
        self._compact = compact
        self._note_kind = ""  # "stored" (the value held is refused) or "typed" (clamped)
        if not compact:
            outer.addWidget(self.note)

    def note_text(self) -> str:
        """What the editor says about its value ('' when all is well)."""
        return self.note.text() if self._note_kind else ""

    def _set_note(self, kind: str, text: str, field: QtWidgets.QWidget | None = None) -> None:
        self._note_kind = kind if text else ""
        self.note.setText(text)
        self.note.setVisible(bool(text) and not self._compact)
        self.setToolTip(f"{text}\n\n{self.item.tooltip}".strip() if text else self.item.tooltip)
        if field is not None:
            field.setStyleSheet(_BAD_STYLE if kind == "stored" and text else "")

    def _show_stored_problem(self, value: Any, field: QtWidgets.QWidget) -> bool:
        """Say what is wrong with a stored ``value``; True when something is."""
        problem = value_problem(self.item, value)
        if problem:
            self._set_note("stored", f"Stored {value!r}: {problem}. A run refuses it.", field)
        elif self._note_kind == "stored":
            self._set_note("", "", field)
        return bool(problem)

    def value(self) -> Any:
        raise NotImplementedError

    def set_value(self, value: Any) -> None:
        raise NotImplementedError

    def _emit(self, *_args: Any) -> None:
        self.edited.emit(self.value())


class ComboEditor(ParamEditor):
    def __init__(self, item: Input, parent=None) -> None:
        super().__init__(item, parent)
        self.combo = QtWidgets.QComboBox()
        self.combo.addItems(list(item.choices or ()))
        self.combo.activated.connect(self._emit)
        self._layout.addWidget(self.combo)

    def value(self) -> str:
        return self.combo.currentText()

    def set_value(self, value: Any) -> None:
        with QtCore.QSignalBlocker(self.combo):
            if self.combo.findText(str(value)) < 0:  # a value from a newer file: show it
                self.combo.addItem(str(value))
            self.combo.setCurrentText(str(value))


class BoolEditor(ParamEditor):
    def __init__(self, item: Input, parent=None) -> None:
        super().__init__(item, parent)
        self.check = QtWidgets.QCheckBox()
        self.check.clicked.connect(self._emit)
        self._layout.addWidget(self.check)

    def value(self) -> bool:
        return self.check.isChecked()

    def set_value(self, value: Any) -> None:
        with QtCore.QSignalBlocker(self.check):
            self.check.setChecked(bool(value))


class IntEditor(ParamEditor):
    """A spin box with the spec's range; ranges past 32 bits use a checked line edit."""

    def __init__(self, item: Input, parent=None, compact: bool = False) -> None:
        super().__init__(item, parent, compact)
        low = int(item.min) if item.min is not None else -_INT32_MAX
        high = int(item.max) if item.max is not None else _INT32_MAX
        self.low, self.high = low, high
        if -_INT32_MAX <= low and high <= _INT32_MAX:
            self.spin = IntSpin(low, high)
            self.spin.setSingleStep(int(item.step or 1))
            self.spin.setKeyboardTracking(False)
            self.spin.valueChanged.connect(self._spin_edited)
            self.spin.editingFinished.connect(self._say_clamped)
            self.line = None
            self._layout.addWidget(self.spin)
        else:
            self.spin = None
            self.line = QtWidgets.QLineEdit()
            self.line.setValidator(QtGui.QRegularExpressionValidator(
                QtCore.QRegularExpression(r"-?\d{1,19}")))
            self.line.editingFinished.connect(self._line_finished)
            self._layout.addWidget(self.line)

    def value(self) -> int:
        if self.spin is not None:
            return self.spin.value()
        return self._clamp(int(self.line.text() or 0))

    def set_value(self, value: Any) -> None:
        bad = self._show_stored_problem(value, self.spin or self.line)
        shown = int(value) if isinstance(value, (int, float)) and value == value else self.item.default
        if self.spin is not None:
            shown = max(-_INT32_MAX, min(shown, _INT32_MAX))
            with QtCore.QSignalBlocker(self.spin):
                self.spin.show_out_of_range(shown if bad else None)
                self.spin.setValue(shown)
        else:
            with QtCore.QSignalBlocker(self.line):
                self.line.setText(str(value) if bad else str(shown))

    def _clamp(self, value: int) -> int:
        return min(max(value, self.low), self.high)

    def _spin_edited(self, _value: int) -> None:
        if not self._say_clamped() and self._note_kind == "typed":
            self._set_note("", "", self.spin)  # a new edit: the old note is stale
        self._emit()

    def _say_clamped(self) -> bool:
        """A typed number past the range was clamped: say so (until the next edit).
        Also on editingFinished: clamping to the value already held emits no change."""
        typed = self.spin.take_clamped()
        if typed is not None:
            self._set_note("typed", f"{typed} is outside {self.low}…{self.high}: "
                                    f"set to {self.value()}", self.spin)
        return typed is not None

    def _line_finished(self) -> None:
        typed = int(self.line.text() or 0)
        self.set_value(self.value())
        if typed != self.value():
            self._set_note("typed", f"{typed} is outside {self.low}…{self.high}: "
                                    f"set to {self.value()}", self.line)
        self._emit()


class SeedEditor(IntEditor):
    """An integer with a "randomize" button beside it."""

    def __init__(self, item: Input, parent=None, compact: bool = False) -> None:
        super().__init__(item, parent, compact)
        self.randomize = QtWidgets.QToolButton()
        self.randomize.setText("Random")
        self.randomize.setToolTip("Randomize the seed")
        self.randomize.clicked.connect(self._randomize)
        self._layout.addWidget(self.randomize)

    def _randomize(self) -> None:
        self.set_value(random.randint(max(self.low, 0), min(self.high, 2**32 - 1)))
        self._emit()


class FloatEditor(ParamEditor):
    def __init__(self, item: Input, parent=None, compact: bool = False) -> None:
        super().__init__(item, parent, compact)
        self.low = item.min if item.min is not None else -1e9
        self.high = item.max if item.max is not None else 1e9
        self.spin = FloatSpin(self.low, self.high)
        self.spin.setDecimals(4)
        self.spin.setSingleStep(item.step or 0.1)
        self.spin.setKeyboardTracking(False)
        self.spin.valueChanged.connect(self._spin_edited)
        self.spin.editingFinished.connect(self._say_clamped)
        self._layout.addWidget(self.spin)

    def value(self) -> float:
        return float(self.spin.value())

    def set_value(self, value: Any) -> None:
        bad = self._show_stored_problem(value, self.spin)
        number = float(value) if isinstance(value, (int, float)) and value == value else 0.0
        number = max(-1e300, min(number, 1e300))
        with QtCore.QSignalBlocker(self.spin):
            self.spin.show_out_of_range(number if bad else None)
            self.spin.setValue(number)

    _spin_edited = IntEditor._spin_edited
    _say_clamped = IntEditor._say_clamped


class TextEditor(ParamEditor):
    def __init__(self, item: Input, parent=None) -> None:
        super().__init__(item, parent)
        self.line = QtWidgets.QLineEdit()
        self.line.editingFinished.connect(self._finished)
        self._layout.addWidget(self.line)
        self._last = ""

    def value(self) -> str:
        return self.line.text()

    def set_value(self, value: Any) -> None:
        self._last = str(value)
        with QtCore.QSignalBlocker(self.line):
            self.line.setText(self._last)

    def _finished(self) -> None:
        if self.value() != self._last:  # editingFinished also fires on focus loss
            self._last = self.value()
            self._emit()


class _PlainText(QtWidgets.QPlainTextEdit):
    """A text box that reports when the person leaves it."""

    focus_left = QtCore.Signal()

    def focusOutEvent(self, event: QtGui.QFocusEvent) -> None:
        super().focusOutEvent(event)
        self.focus_left.emit()


class MultilineEditor(ParamEditor):
    """Prompts: several lines; the edit counts when the box loses focus."""

    def __init__(self, item: Input, parent=None, lines: int = 3) -> None:
        super().__init__(item, parent)
        self.text = _PlainText()
        self.text.setTabChangesFocus(True)
        height = self.text.fontMetrics().lineSpacing() * lines + 12
        self.text.setFixedHeight(height)
        self.text.setMinimumWidth(180)
        self.text.focus_left.connect(self._finished)
        self._layout.addWidget(self.text)
        self._last = ""

    def value(self) -> str:
        return self.text.toPlainText()

    def set_value(self, value: Any) -> None:
        self._last = str(value)
        with QtCore.QSignalBlocker(self.text):
            self.text.setPlainText(self._last)

    def _finished(self) -> None:
        if self.value() != self._last:
            self._last = self.value()
            self._emit()


class FileEditor(TextEditor):
    """A path with a "…" button that opens a file (or folder) dialog."""

    FILTERS = "Models and images (*.safetensors *.png *.jpg *.jpeg *.webp);;All files (*)"

    def __init__(self, item: Input, parent=None) -> None:
        super().__init__(item, parent)
        self.browse = QtWidgets.QToolButton()
        self.browse.setText("…")
        self.browse.setToolTip("Choose a file")
        self.browse.clicked.connect(self._browse)
        self._layout.addWidget(self.browse)

    def _browse(self) -> None:
        if self.item.name == "folder":
            path = QtWidgets.QFileDialog.getExistingDirectory(self, "Choose a folder", self.value())
        else:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(
                self, "Choose a file", self.value(), self.FILTERS)
        if path:
            self.set_value(path)
            self._emit()


def make_editor(item: Input, parent: QtWidgets.QWidget | None = None,
                compact: bool = False) -> ParamEditor:
    """The right editor for ``item``: by widget hint, then choices, then type."""
    if item.choices:
        return ComboEditor(item, parent)
    if item.widget == "seed":
        return SeedEditor(item, parent, compact)
    if item.widget == "file":
        return FileEditor(item, parent)
    if item.widget == "multiline":
        return MultilineEditor(item, parent, lines=2 if compact else 6)
    if item.type is PortType.INT:
        return IntEditor(item, parent, compact)
    if item.type is PortType.FLOAT:
        return FloatEditor(item, parent, compact)
    editors = {PortType.BOOLEAN: BoolEditor, PortType.STRING: TextEditor}
    return editors[item.type](item, parent)

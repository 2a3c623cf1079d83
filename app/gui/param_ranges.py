"""Spin boxes that let a person type any number and say when it was clamped,
and the check that says what is wrong with a stored value.

Qt's spin boxes refuse the keystroke that would leave the range (999999
becomes 9999 without a word) and clamp whatever they are given (a stored
1e9 shows as 10000). These accept any number while typing, clamp it when the
edit ends and remember what was typed, and can widen their range to show an
out-of-range stored value exactly as stored.
"""
from __future__ import annotations

import math
import re
from typing import Any

from PySide6 import QtGui, QtWidgets

from core.nodespec import Input
from core.ports import PortType

_State = QtGui.QValidator.State
_INT_TEXT = re.compile(r"\s*[-+]?\d*\s*")
_FLOAT_TEXT = re.compile(r"\s*[-+]?\d*[.,]?\d*(e[-+]?\d*)?\s*", re.IGNORECASE)


def value_problem(item: Input, value: Any) -> str | None:
    """What the run's validation will say about ``value`` (type and range both,
    so that 1e9 for an integer says it is a float *and* past the maximum)."""
    problem = item.check(value)
    if problem is None or item.type not in (PortType.INT, PortType.FLOAT):
        return problem
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        if item.max is not None and value > item.max and "maximum" not in problem:
            problem += f"; above the maximum {item.max!r}"
        if item.min is not None and value < item.min and "minimum" not in problem:
            problem += f"; below the minimum {item.min!r}"
    return problem


class _RangeMixin:
    """Shared by both spin boxes: the spec's range, the typed-and-clamped memory."""

    def _setup(self, low, high) -> None:
        self.low, self.high = low, high
        self._clamped_from = None
        self.setRange(low, high)

    def show_out_of_range(self, value) -> None:
        """Widen the range just enough to show ``value`` (None: the spec's range)."""
        if value is None:
            self.setRange(self.low, self.high)
        else:
            self.setRange(min(self.low, value), max(self.high, value))

    def take_clamped(self):
        """The number typed before it was clamped into range, once; else None."""
        typed, self._clamped_from = self._clamped_from, None
        return typed

    def _clamp_typed(self, number):
        if not self.low <= number <= self.high:
            self._clamped_from = number
            return min(max(number, self.low), self.high)
        return number


class IntSpin(_RangeMixin, QtWidgets.QSpinBox):
    def __init__(self, low: int, high: int, parent=None) -> None:
        super().__init__(parent)
        self._setup(low, high)

    def validate(self, text: str, pos: int):  # noqa: D102 - Qt's override
        if not _INT_TEXT.fullmatch(text):
            return _State.Invalid, text, pos
        body = text.strip()
        return (_State.Intermediate if body in ("", "-", "+") else _State.Acceptable), text, pos

    def valueFromText(self, text: str) -> int:  # noqa: N802 - Qt's override
        return int(self._clamp_typed(int(text.strip())))


class FloatSpin(_RangeMixin, QtWidgets.QDoubleSpinBox):
    def __init__(self, low: float, high: float, parent=None) -> None:
        super().__init__(parent)
        self._setup(low, high)

    def validate(self, text: str, pos: int):  # noqa: D102 - Qt's override
        if not _FLOAT_TEXT.fullmatch(text):
            return _State.Invalid, text, pos
        try:
            float(text.strip().replace(",", "."))
        except ValueError:
            return _State.Intermediate, text, pos
        return _State.Acceptable, text, pos

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt's override
        return float(self._clamp_typed(float(text.strip().replace(",", "."))))

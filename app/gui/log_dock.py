"""The log dock: what happened during runs, failures with their tracebacks."""
from __future__ import annotations

import time

from PySide6 import QtGui, QtWidgets


class LogView(QtWidgets.QPlainTextEdit):
    """Append-only, timestamped, capped so a long session stays light."""

    MAX_BLOCKS = 5000

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(self.MAX_BLOCKS)
        self.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))

    def add(self, message: str, level: str = "info") -> None:
        stamp = time.strftime("%H:%M:%S")
        prefix = {"info": "", "warning": "warning: ", "error": "error: "}[level]
        self.appendPlainText(f"{stamp}  {prefix}{message}")

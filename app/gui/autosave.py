"""Autosave to a recovery file every minute; offered back after a crash.

The recovery file is the engine's workflow JSON. A clean exit (or a save)
removes it, so finding one at start-up means the last session did not end
well.
"""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6 import QtCore

from core.workflow import Workflow, WorkflowFormatError, dumps, load
from core.workflow.io import write_text_atomic

log = logging.getLogger(__name__)
INTERVAL_MS = 60_000


def recovery_path() -> Path:
    folder = Path(QtCore.QStandardPaths.writableLocation(
        QtCore.QStandardPaths.StandardLocation.AppDataLocation))
    return folder / "recovery.json"


class Autosaver(QtCore.QObject):
    """Writes the document to the recovery file while it has unsaved changes."""

    def __init__(self, document, path: Path | None = None, interval_ms: int = INTERVAL_MS,
                 parent=None) -> None:
        super().__init__(parent)
        self.document = document
        self.path = path or recovery_path()
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.autosave)
        self.timer.start()

    @QtCore.Slot()
    def autosave(self) -> bool:
        if not self.document.modified:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path, dumps(self.document.workflow_to_save()))
        except (OSError, ValueError) as error:
            log.warning("autosave failed: %s", error)
            return False
        return True

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def recovered(self) -> Workflow | None:
        """The workflow a crashed session left, if any (a broken file is dropped)."""
        if not self.path.exists():
            return None
        try:
            return load(self.path)
        except WorkflowFormatError as error:
            log.warning("the recovery file is unreadable and was dropped: %s", error)
            self.discard()
            return None

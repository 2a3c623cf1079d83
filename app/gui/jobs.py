"""Background jobs for the views: torch work off the GUI thread.

A view submits a plain function; it runs on a private ``QThreadPool`` and its
result comes back through a signal connected to a ``@Slot`` of a QObject
that lives on the GUI thread (PySide6 would run a lambda in the worker's
thread), which then calls the view's callback there. Each ``Jobs`` keeps
only the newest request per *channel*: a slider dragged over 100 values
computes the first and the last, not all of them.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from PySide6 import QtCore

log = logging.getLogger(__name__)


class _Task(QtCore.QRunnable):
    def __init__(self, relay: "Jobs", channel: str, serial: int, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.relay, self.channel, self.serial, self.fn = relay, channel, serial, fn

    def run(self) -> None:  # in a pool thread
        try:
            result, error = self.fn(), None
        except Exception as exc:  # reported on the GUI thread, never lost
            result, error = None, exc
        self.relay.finished.emit(self.channel, self.serial, result, error)


class Jobs(QtCore.QObject):
    """Runs functions in one worker thread and hands results to GUI-thread callbacks."""

    finished = QtCore.Signal(str, int, object, object)  # channel, serial, result, error

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QtCore.QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._callbacks: dict[str, tuple[int, Callable[[Any], None], Callable | None]] = {}
        self._pending: dict[str, tuple[Callable[[], Any], Callable, Callable | None]] = {}
        self._busy: set[str] = set()
        self._serial = 0
        self.finished.connect(self._deliver)

    def submit(self, channel: str, fn: Callable[[], Any], done: Callable[[Any], None],
               failed: Callable[[Exception], None] | None = None) -> None:
        """Run ``fn`` in the worker; call ``done(result)`` on the GUI thread.
        While a job of the same channel runs, only the newest new one waits."""
        if channel in self._busy:
            self._pending[channel] = (fn, done, failed)
            return
        self._start(channel, fn, done, failed)

    def _start(self, channel, fn, done, failed) -> None:
        self._serial += 1
        self._busy.add(channel)
        self._callbacks[channel] = (self._serial, done, failed)
        self.pool.start(_Task(self, channel, self._serial, fn))

    @QtCore.Slot(str, int, object, object)
    def _deliver(self, channel: str, serial: int, result: Any, error: Any) -> None:
        self._busy.discard(channel)
        _, done, failed = self._callbacks.pop(channel, (serial, None, None))
        if channel in self._pending:
            self._start(channel, *self._pending.pop(channel))
        if error is not None:
            if failed is not None:
                failed(error)
            else:
                log.error("background job %s failed: %s", channel, error, exc_info=error)
        elif done is not None and channel not in self._busy:  # a newer request supersedes it
            done(result)

    def idle(self) -> bool:
        return not self._busy

"""Stopping and pausing a run from another thread.

The executor checks the :class:`CancelToken` between nodes, and long nodes
check it at every step through their context, so cancel takes effect within
one sampler step. The :class:`StepGate` lets a person pause inside a run and
release it one step at a time.
"""
from __future__ import annotations

import threading


class Cancelled(Exception):
    """Raised inside a run when its token has been cancelled."""


class CancelToken:
    """A flag one thread sets and the running executor checks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("the run was cancelled")

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on cancel."""
        return self._event.wait(timeout)


class StepGate:
    """A pause/step/continue control that long nodes pass at each step.

    While running, :meth:`wait` returns at once. After :meth:`pause`, it blocks
    until :meth:`resume`, or lets exactly one caller through per
    :meth:`step`. Cancelling the run's token wakes a blocked caller.
    """

    _POLL_S = 0.05

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._paused = False
        self._permits = 0

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        with self._condition:
            self._paused = True
            self._permits = 0

    def resume(self) -> None:
        with self._condition:
            self._paused = False
            self._condition.notify_all()

    def step(self, count: int = 1) -> None:
        """While paused, let ``count`` more steps through."""
        with self._condition:
            self._permits += count
            self._condition.notify_all()

    def wait(self, token: CancelToken | None = None) -> None:
        """Block while paused and no step permit is left; raise on cancel."""
        if not self._paused:  # the fast path, taken at every step of a normal run
            return
        with self._condition:
            while self._paused and self._permits == 0:
                if token is not None:
                    token.raise_if_cancelled()
                self._condition.wait(self._POLL_S)
            if self._paused:
                self._permits -= 1
        if token is not None:
            token.raise_if_cancelled()

"""A progress bar on stderr, driven by executor events.

On a terminal it redraws one line per node (bar, step count, it/s); when
stderr is a file or pipe it writes plain lines instead, so logs stay clean.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from core import events

_BAR_WIDTH = 24


class ProgressPrinter:
    """An event sink that draws progress; call it with every event."""

    def __init__(self, stream: TextIO | None = None, interactive: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._titles: dict[str, str] = {}
        self._step_started: dict[str, float] = {}
        self._last_draw = 0.0
        self._open_line = False

    def __call__(self, event: events.Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)

    def _on_RunStarted(self, event: events.RunStarted) -> None:
        self._line(f"running {len(event.node_ids)} node(s) on {event.device} ({event.dtype})")

    def _on_NodeStarted(self, event: events.NodeStarted) -> None:
        self._titles[event.node_id] = event.node_title
        self._step_started[event.node_id] = time.perf_counter()

    def _on_NodeCached(self, event: events.NodeCached) -> None:
        self._line(f"  {event.node_title} [{event.node_id}]: cached")

    def _on_NodeFinished(self, event: events.NodeFinished) -> None:
        self._line(f"  {event.node_title} [{event.node_id}]: done in {event.duration_s:.2f} s")

    def _on_Progress(self, event: events.Progress) -> None:
        now = time.perf_counter()
        final = event.step >= event.total
        if not final and (not self.interactive or now - self._last_draw < 0.1):
            return
        self._last_draw = now
        elapsed = now - self._step_started.get(event.node_id, now)
        rate = event.step / elapsed if elapsed > 0 else 0.0
        title = self._titles.get(event.node_id, event.node_id)
        if not self.interactive:
            self._line(f"  {title}: {event.step}/{event.total} steps, {rate:.1f} it/s")
            return
        filled = int(_BAR_WIDTH * event.step / max(event.total, 1))
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        self.stream.write(f"\r  {title} [{bar}] {event.step}/{event.total} {rate:.1f} it/s")
        self.stream.flush()
        self._open_line = True

    def _on_RunFinished(self, event: events.RunFinished) -> None:
        self._line(
            f"finished in {event.duration_s:.2f} s "
            f"({len(event.executed)} ran, {len(event.cached)} from cache)"
        )

    def _on_RunFailed(self, event: events.RunFailed) -> None:
        self._line(f"failed in node {event.node_id!r} ({event.node_title}): {event.message}")

    def _on_RunCancelled(self, event: events.RunCancelled) -> None:
        self._line("cancelled")

    def _line(self, text: str) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False
        self.stream.write(text + "\n")
        self.stream.flush()

"""Every step of recent runs, kept within a memory budget (no Qt here).

A run's steps arrive as records (``app.gui.previews.StepPreview``) that
carry their own size in ``nbytes``. The store groups them into *tracks*, one
per (run, sampler node), so a run with two samplers (an original and its
branch) can be scrubbed sampler by sampler. When the budget is exceeded,
whole older runs go first; only when the newest run alone is too large are
its oldest steps dropped (counted in ``dropped``), so the steps just made
are always there to scrub.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

TrackKey = tuple[str, str]  # (run id, node id)


class StepHistory:
    """Bounded, ordered storage of step records, oldest run first."""

    def __init__(self, budget_bytes: int = 256 * 2**20) -> None:
        self.budget_bytes = budget_bytes
        self._tracks: OrderedDict[TrackKey, list[Any]] = OrderedDict()
        self._runs: list[str] = []  # run ids, oldest first
        self.nbytes = 0
        self.dropped = 0

    # -- adding ------------------------------------------------------------------
    def add(self, record: Any) -> None:
        """Keep ``record`` (it has run_id, node_id, index and nbytes), then trim."""
        if record.run_id not in self._runs:
            self._runs.append(record.run_id)
        self._tracks.setdefault((record.run_id, record.node_id), []).append(record)
        self.nbytes += record.nbytes
        self._trim()

    def set_budget(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._trim()

    def clear(self) -> None:
        self._tracks.clear()
        self._runs.clear()
        self.nbytes = 0

    def _trim(self) -> None:
        while self.nbytes > self.budget_bytes and len(self._runs) > 1:
            self._drop_run(self._runs[0])
        while self.nbytes > self.budget_bytes and self._tracks:
            key, steps = next(iter(self._tracks.items()))
            self.nbytes -= steps.pop(0).nbytes
            self.dropped += 1
            if not steps:
                del self._tracks[key]

    def _drop_run(self, run_id: str) -> None:
        self._runs.remove(run_id)
        for key in [k for k in self._tracks if k[0] == run_id]:
            self.nbytes -= sum(r.nbytes for r in self._tracks.pop(key))

    # -- reading -------------------------------------------------------------------
    @property
    def runs(self) -> list[str]:
        return list(self._runs)

    def tracks(self) -> list[TrackKey]:
        """Every (run, sampler) that still has steps, oldest first."""
        return list(self._tracks)

    def steps(self, key: TrackKey) -> list[Any]:
        return list(self._tracks.get(key, ()))

    def step(self, key: TrackKey, index: int) -> Any | None:
        """The record of step ``index`` (the sampler's own numbering) in a track."""
        for record in self._tracks.get(key, ()):
            if record.index == index:
                return record
        return None

    def latest_track(self) -> TrackKey | None:
        return next(reversed(self._tracks), None)

"""Every step of recent runs, kept within a memory budget (no Qt here).

A run's steps arrive as records (``app.gui.previews.StepPreview``) that
carry their own size in ``nbytes``. The store groups them into *tracks*, one
per (run, sampler node), so a run with two samplers (an original and its
branch) can be scrubbed sampler by sampler; a sampler that continues another
(SDXL's base → refiner, :mod:`core.workflow.chains`) joins that sampler's
track, so the chain reads as one run. When the budget is exceeded,
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
        self._members: dict[TrackKey, list[str]] = {}  # each track's samplers, in order
        self.nbytes = 0
        self.dropped = 0

    # -- adding ------------------------------------------------------------------
    def add(self, record: Any, track_node: str | None = None) -> None:
        """Keep ``record`` (it has run_id, node_id, index and nbytes), then trim.
        ``track_node``: the sampler whose track it joins (default its own)."""
        if record.run_id not in self._runs:
            self._runs.append(record.run_id)
        key = (record.run_id, track_node or record.node_id)
        self._tracks.setdefault(key, []).append(record)
        members = self._members.setdefault(key, [])
        if record.node_id not in members:
            members.append(record.node_id)
        self.nbytes += record.nbytes
        self._trim()

    def set_budget(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._trim()

    def clear(self) -> None:
        self._tracks.clear()
        self._members.clear()
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
                self._members.pop(key, None)

    def _drop_run(self, run_id: str) -> None:
        self._runs.remove(run_id)
        for key in [k for k in self._tracks if k[0] == run_id]:
            self.nbytes -= sum(r.nbytes for r in self._tracks.pop(key))
            self._members.pop(key, None)

    # -- reading -------------------------------------------------------------------
    @property
    def runs(self) -> list[str]:
        return list(self._runs)

    def tracks(self) -> list[TrackKey]:
        """Every (run, sampler) that still has steps, oldest first."""
        return list(self._tracks)

    def samplers(self, key: TrackKey) -> list[str]:
        """The sampler nodes whose steps make up a track, in the order they ran."""
        return list(self._members.get(key, ()))

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

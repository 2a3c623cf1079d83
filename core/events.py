"""What the executor tells the world while it runs: plain dataclasses, no Qt.

A sink is any callable taking one event. The command line prints them; the
GUI forwards them as Qt signals from its worker thread; tests collect them
in a list. Events are emitted on the executor's thread, in order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event: which run it belongs to."""

    run_id: str


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    device: str
    dtype: str
    node_ids: tuple[str, ...]  # the nodes that will be visited, in order


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    duration_s: float
    executed: tuple[str, ...]
    cached: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunFailed(Event):
    node_id: str
    node_title: str
    message: str


@dataclass(frozen=True, slots=True)
class RunCancelled(Event):
    node_id: str | None  # the node that was running, if any


@dataclass(frozen=True, slots=True)
class NodeStarted(Event):
    node_id: str
    node_title: str
    type_id: str


@dataclass(frozen=True, slots=True)
class NodeCached(Event):
    node_id: str
    node_title: str


@dataclass(frozen=True, slots=True)
class NodeFinished(Event):
    node_id: str
    node_title: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class NodeFailed(Event):
    node_id: str
    node_title: str
    error: BaseException
    traceback: str


@dataclass(frozen=True, slots=True)
class Progress(Event):
    """A long node's progress: ``step`` of ``total`` done (1-based)."""

    node_id: str
    step: int
    total: int


@dataclass(frozen=True, slots=True)
class Step(Event):
    """One denoising step's state, for previews and scrubbing.

    ``index`` is 0-based; ``t`` is the timestep or noise level σ; ``x_t``,
    ``x0`` (predicted clean sample) and ``eps`` (predicted noise) are tensors
    that the sampler hands over and never mutates afterwards.
    """

    node_id: str
    index: int
    total: int
    t: float | None = None
    x_t: Any = None
    x0: Any = None
    eps: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)


EventSink = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The sink used when nobody listens."""

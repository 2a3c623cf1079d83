"""The executor: plan, then run each planned node or take it from the cache.

The loop is short on purpose (ComfyUI's order → stage → execute → complete,
minus its globals): the registry, the cache and the event sink are passed in,
and the run works on a deep copy of the document, so the GUI may keep
editing while a run is in flight.
"""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

from core import device as devices
from core.events import (
    EventSink,
    NodeCached,
    NodeFailed,
    NodeFinished,
    NodeStarted,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunStarted,
    ignore,
)
from core.executor.cache import NodeCache
from core.executor.context import NodeContext
from core.executor.control import Cancelled, CancelToken, StepGate
from core.executor.memory import explained, is_out_of_memory, release_memory
from core.executor.plan import Plan, PlannedNode, make_plan
from core.registry import NodeRegistry
from core.validation import Problem, validate
from core.workflow.model import Workflow


class ExecutionFailed(RuntimeError):
    """A node raised; ``node_id`` and ``node_title`` say which, ``__cause__`` what."""

    def __init__(self, node_id: str, node_title: str, error: BaseException) -> None:
        self.node_id = node_id
        self.node_title = node_title
        self.error = error
        super().__init__(f"node {node_id!r} ({node_title}) failed: {type(error).__name__}: {error}")


class NodeOutputError(TypeError):
    """A node function returned something that does not match its declared outputs."""


@dataclass
class RunResult:
    run_id: str
    outputs: dict[str, dict[str, Any]]  # output node id -> its outputs by name
    executed: tuple[str, ...]
    cached: tuple[str, ...]
    duration_s: float
    device: str
    dtype: str
    warnings: tuple[Problem, ...] = field(default_factory=tuple)
    skipped: dict[str, str] = field(default_factory=dict)  # node id -> why it did not run (a mute)


class Executor:
    """Runs workflows against one registry, keeping one cache across runs."""

    def __init__(self, registry: NodeRegistry, cache: NodeCache | None = None) -> None:
        self.registry = registry
        self.cache = cache if cache is not None else NodeCache()
        self._busy = threading.Lock()

    def validate(self, workflow: Workflow, outputs: list[str] | None = None) -> list[Problem]:
        return validate(workflow, self.registry, outputs)

    def free(self) -> None:
        """Drop every cached output (models included) to give memory back."""
        self.cache.free()

    def run(
        self,
        workflow: Workflow,
        *,
        on_event: EventSink = ignore,
        cancel: CancelToken | None = None,
        gate: StepGate | None = None,
        device: str = "auto",
        dtype: str = "auto",
        previews: bool = True,
        outputs: list[str] | None = None,
    ) -> RunResult:
        """Run ``workflow`` to completion and return its output nodes' values.
        ``outputs`` runs to those nodes instead ("run to here": only what they
        need runs, and their values are returned, output nodes or not).

        Raises ``ValidationError`` (before anything runs), ``DeviceError``,
        ``ExecutionFailed`` (a node raised) or ``Cancelled``.
        """
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("this executor is already running a workflow")
        try:
            choice = devices.choose(device, dtype)
            device_name, dtype_name = choice.describe()
            plan = make_plan(workflow.copy(with_ui=False), self.registry,
                             salt=f"{device_name}/{dtype_name}", outputs=outputs)
            run = _Run(plan, self.cache, choice, cancel or CancelToken(), gate, on_event, previews)
            return run.execute()
        finally:
            self._busy.release()


class _Run:
    """The state of one run; lives only inside :meth:`Executor.run`."""

    def __init__(self, plan: Plan, cache, choice, token, gate, emit, previews) -> None:
        self.plan = plan
        self.cache = cache
        self.choice = choice
        self.token = token
        self.gate = gate
        self.emit = emit
        self.previews = previews
        self.run_id = uuid.uuid4().hex[:12]
        self.values: dict[str, dict[str, Any]] = {}
        self.executed: list[str] = []
        self.cached: list[str] = []
        self.hits = {node_id: cache.get(plan.nodes[node_id].signature) for node_id in plan.order}
        self.order = _nodes_to_visit(plan, self.hits)
        self.consumers = _count_consumers(plan, [n for n in self.order if self.hits[n] is None])

    def execute(self) -> RunResult:
        start = time.perf_counter()
        device_name, dtype_name = self.choice.describe()
        self.emit(RunStarted(self.run_id, device_name, dtype_name, tuple(self.order)))
        current: str | None = None
        try:
            for node_id in self.order:
                self.token.raise_if_cancelled()
                current = node_id
                self._visit(self.plan.nodes[node_id])
                current = None
            self.token.raise_if_cancelled()
        except Cancelled:
            self.emit(RunCancelled(self.run_id, current))
            raise
        duration = time.perf_counter() - start
        self.emit(RunFinished(self.run_id, duration, tuple(self.executed), tuple(self.cached)))
        outputs = {node_id: self.values[node_id] for node_id in self.plan.outputs}
        return RunResult(
            self.run_id, outputs, tuple(self.executed), tuple(self.cached),
            duration, device_name, dtype_name, self.plan.warnings, dict(self.plan.skipped),
        )

    def _visit(self, node: PlannedNode) -> None:
        hit = self.hits[node.node_id]
        if hit is not None:
            self.values[node.node_id] = hit
            self.cached.append(node.node_id)
            self.emit(NodeCached(self.run_id, node.node_id, node.title))
        else:
            self.values[node.node_id] = self._call(node)
            self.executed.append(node.node_id)
            self._release_inputs(node)

    def _call(self, node: PlannedNode) -> dict[str, Any]:
        self.emit(NodeStarted(self.run_id, node.node_id, node.title, node.spec.type_id))
        started = time.perf_counter()
        ctx = NodeContext(
            self.run_id, node.node_id, self.choice.device, self.choice.dtype,
            self.token, self.gate, self.emit, self.previews,
        )
        try:
            outputs = _normalise(node, node.spec.fn(ctx, **self._arguments(node)))
        except Cancelled:
            raise
        except Exception as error:
            if is_out_of_memory(error):
                error = self._out_of_memory(error)
            self.emit(NodeFailed(
                self.run_id, node.node_id, node.title, error, traceback.format_exc()
            ))
            self.emit(RunFailed(self.run_id, node.node_id, node.title, f"{type(error).__name__}: {error}"))
            raise ExecutionFailed(node.node_id, node.title, error) from error
        self.cache.put(node.signature, outputs)
        self.emit(NodeFinished(self.run_id, node.node_id, node.title, time.perf_counter() - started))
        return outputs

    def _out_of_memory(self, error: BaseException):
        """Free the cached models and what this run holds; say what to change."""
        self.cache.free()
        self.values.clear()
        release_memory()
        restated = explained(error, self.choice.device)
        restated.__cause__ = error
        return restated

    def _arguments(self, node: PlannedNode) -> dict[str, Any]:
        arguments: dict[str, Any] = dict(node.params)
        for item in node.spec.sockets:
            arguments[item.name] = None  # an unlinked optional socket
        for name, (source, output) in node.links.items():
            arguments[name] = self.values[source][output]
        return arguments

    def _release_inputs(self, node: PlannedNode) -> None:
        """Forget values no later node needs, so a long graph's peak memory stays low."""
        for source, _output in node.links.values():
            self.consumers[source] -= 1
            if self.consumers[source] == 0 and source not in self.plan.outputs:
                del self.values[source]


def _nodes_to_visit(plan: Plan, hits: Mapping[str, Any]) -> list[str]:
    """The nodes this run must touch: outputs, and the inputs of every needed
    node that is not cached. A cached sampler result needs no model loaded."""
    needed = set(plan.outputs)
    for node_id in reversed(plan.order):  # consumers come before their sources
        if node_id in needed and hits[node_id] is None:
            needed.update(source for source, _output in plan.nodes[node_id].links.values())
    return [node_id for node_id in plan.order if node_id in needed]


def _count_consumers(plan: Plan, executed: list[str]) -> dict[str, int]:
    """How many links from nodes that will execute read each node's outputs."""
    counts: dict[str, int] = {}
    for node_id in executed:
        for source, _output in plan.nodes[node_id].links.values():
            counts[source] = counts.get(source, 0) + 1
    return counts


def _normalise(node: PlannedNode, returned: Any) -> dict[str, Any]:
    """Accept a dict keyed by every output name, a tuple in output order, or a lone value."""
    names = [o.name for o in node.spec.outputs]
    if isinstance(returned, Mapping) and set(returned) == set(names):
        return dict(returned)
    if not names:
        return {}
    if len(names) == 1:
        return {names[0]: returned}
    if isinstance(returned, tuple) and len(returned) == len(names):
        return dict(zip(names, returned))
    raise NodeOutputError(
        f"must return its {len(names)} outputs {names} (a dict by name or a tuple), "
        f"got {type(returned).__name__}"
    )

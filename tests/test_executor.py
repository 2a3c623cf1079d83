"""Tests of the executor: order, pruning, cache, cancel, pause, failure, events.

Everything runs on stub nodes (tests/stubs.py) whose calls are counted in the
``calls`` fixture, so a test can tell what ran and what came from the cache.
Threads are synchronised with events and conditions, never with long sleeps.
"""
from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import torch

from core.device import DeviceError
from core.events import (
    NodeCached,
    NodeFailed,
    NodeFinished,
    NodeStarted,
    Progress,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunStarted,
    Step,
)
from core.executor import (
    Cancelled,
    CancelToken,
    ExecutionFailed,
    Executor,
    NodeCache,
    NodeOutputError,
    StepGate,
    estimate_bytes,
    make_plan,
)
from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType
from core.validation import ValidationError
from core.workflow import Node
from tests.gate_probe import wait_until_parked
from tests.stubs import chain, stub_registry

WAIT_S = 5.0  # upper bound for anything that should happen "promptly"


# -- helpers -----------------------------------------------------------------


class Recorder:
    """An event sink that collects events and lets another thread wait on them."""

    def __init__(self, hook=None) -> None:
        self.events: list = []
        self._condition = threading.Condition()
        self._hook = hook

    def __call__(self, event) -> None:
        with self._condition:
            self.events.append(event)
            self._condition.notify_all()
        if self._hook is not None:
            self._hook(event, self)

    def of(self, kind) -> list:
        with self._condition:
            return [e for e in self.events if isinstance(e, kind)]

    def count(self, kind) -> int:
        return len(self.of(kind))

    def wait_for(self, predicate, timeout: float = WAIT_S) -> bool:
        """Wait until ``predicate(self)`` holds; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
            return True

    def started(self) -> list[str]:
        return [e.node_id for e in self.of(NodeStarted)]

    def cached(self) -> list[str]:
        return [e.node_id for e in self.of(NodeCached)]


class Background:
    """Run ``executor.run(...)`` in a daemon thread and keep its result or error."""

    def __init__(self, executor: Executor, workflow, **kwargs) -> None:
        self.result = None
        self.error: BaseException | None = None
        self.finished = threading.Event()

        def target() -> None:
            try:
                self.result = executor.run(workflow, **kwargs)
            except BaseException as error:  # noqa: BLE001 - handed to the test
                self.error = error
            finally:
                self.finished.set()

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self, timeout: float = WAIT_S) -> bool:
        return self.finished.wait(timeout)


def loop_workflow(steps: int = 5, delay: float = 0.0, value: float = 1.0):
    """source -> loop -> output: value + steps."""
    return chain(
        ("src", "test.source", {"value": value}),
        ("loop", "test.loop", {"steps": steps, "delay": delay}),
        ("out", "test.output", {}),
        links=[("src", "out", "loop", "x"), ("loop", "out", "out", "x")],
    )


def diamond_workflow(factor_a: float = 2.0, factor_b: float = 3.0):
    """src feeds two scales that an add joins: 1*a + 1*b."""
    return chain(
        ("src", "test.source", {"value": 1.0}),
        ("a", "test.scale", {"factor": factor_a}),
        ("b", "test.scale", {"factor": factor_b}),
        ("sum", "test.add", {}),
        ("out", "test.output", {}),
        links=[
            ("src", "out", "a", "x"),
            ("src", "out", "b", "x"),
            ("a", "out", "sum", "a"),
            ("b", "out", "sum", "b"),
            ("sum", "out", "out", "x"),
        ],
    )


def branching_workflow(reverse: bool = False):
    """Ids chosen so that alphabetical order is not a valid execution order."""
    nodes = [
        ("z_src", "test.source", {"value": 1.0}),
        ("y_src", "test.source", {"value": 5.0}),
        ("m_scale", "test.scale", {"factor": 2.0}),
        ("c_add", "test.add", {}),
        ("b_neg", "test.choose", {"mode": "negate"}),
        ("a_out", "test.output", {}),
        ("k_out", "test.output", {}),
    ]
    links = [
        ("z_src", "out", "m_scale", "x"),
        ("m_scale", "out", "c_add", "a"),
        ("y_src", "out", "c_add", "b"),
        ("c_add", "out", "b_neg", "x"),
        ("b_neg", "out", "a_out", "x"),
        ("m_scale", "out", "k_out", "x"),
    ]
    if reverse:
        nodes.reverse()
        links.reverse()
    return chain(*nodes, links=links)


# -- ordering ----------------------------------------------------------------


def test_every_node_runs_after_the_nodes_that_feed_it(registry):
    workflow = branching_workflow()
    sink = Recorder()
    Executor(registry).run(workflow, on_event=sink)

    started = sink.started()
    assert sorted(started) == sorted(workflow.nodes)
    assert len(started) == len(set(started))
    for link in workflow.links:
        assert started.index(link.src_node) < started.index(link.dst_node), str(link)

    run_started = sink.of(RunStarted)
    assert len(run_started) == 1
    assert run_started[0].node_ids == tuple(started)
    assert isinstance(sink.events[0], RunStarted)
    for link in workflow.links:
        order = run_started[0].node_ids
        assert order.index(link.src_node) < order.index(link.dst_node)


def test_order_is_deterministic_across_runs_and_documents(calls):
    orders = []
    for reverse in (False, True, False):
        sink = Recorder()
        # A fresh executor each time so that every node really runs.
        Executor(stub_registry(calls)).run(branching_workflow(reverse), on_event=sink)
        orders.append((sink.of(RunStarted)[0].node_ids, tuple(sink.started())))
    assert orders[0] == orders[1] == orders[2]


def test_node_events_are_nested_in_run_events(registry, linear_workflow):
    sink = Recorder()
    Executor(registry).run(linear_workflow, on_event=sink)
    kinds = [(type(e).__name__, getattr(e, "node_id", None)) for e in sink.events]
    assert kinds == [
        ("RunStarted", None),
        ("NodeStarted", "src"), ("NodeFinished", "src"),
        ("NodeStarted", "scale"), ("NodeFinished", "scale"),
        ("NodeStarted", "out"), ("NodeFinished", "out"),
        ("RunFinished", None),
    ]
    run_ids = {e.run_id for e in sink.events}
    assert len(run_ids) == 1
    assert sink.of(NodeStarted)[1].type_id == "test.scale"
    assert sink.of(NodeStarted)[1].node_title == "Scale"
    assert all(e.duration_s >= 0 for e in sink.of(NodeFinished))


# -- pruning -----------------------------------------------------------------


def test_nodes_that_feed_no_output_do_not_run(registry, calls):
    workflow = chain(
        ("src", "test.source", {"value": 1.0}),
        ("scale", "test.scale", {"factor": 2.0}),
        ("out", "test.output", {}),
        ("boom", "test.fail", {"message": "must not run"}),
        ("after_boom", "test.choose", {}),
        ("side", "test.loop", {"steps": 3}),
        ("half_built", "test.scale", {}),  # no input: only a warning, never run
        links=[
            ("src", "out", "scale", "x"),
            ("scale", "out", "out", "x"),
            ("src", "out", "boom", "x"),
            ("boom", "out", "after_boom", "x"),
            ("scale", "out", "side", "x"),
        ],
    )
    sink = Recorder()
    result = Executor(registry).run(workflow, on_event=sink)

    assert result.outputs == {"out": {"out": 2.0}}
    assert calls == Counter({"test.source": 1, "test.scale": 1, "test.output": 1})
    assert sink.of(RunStarted)[0].node_ids == ("src", "scale", "out")
    assert set(sink.started()) == {"src", "scale", "out"}
    assert sink.count(NodeFailed) == 0 and sink.count(RunFailed) == 0
    assert sink.count(Step) == 0
    # The half-built branch is reported, as a warning only.
    assert any(w.node_id == "half_built" and w.severity == "warning" for w in result.warnings)


# -- results -----------------------------------------------------------------


def test_linear_result(registry, linear_workflow):
    result = Executor(registry).run(linear_workflow)
    assert result.outputs == {"out": {"out": 2.0}}
    assert result.executed == ("src", "scale", "out")
    assert result.cached == ()
    assert result.device == "cpu"
    assert result.dtype == "fp32"
    assert result.duration_s >= 0
    assert result.warnings == ()


def test_result_holds_every_output_node_by_name(registry):
    result = Executor(registry).run(branching_workflow())
    # z_src 1.0 * 2.0 = 2.0 -> k_out; (2.0 + 5.0) negated = -7.0 -> a_out
    assert result.outputs == {"a_out": {"out": -7.0}, "k_out": {"out": 2.0}}


def test_output_node_may_feed_another_output_node(registry):
    workflow = chain(
        ("src", "test.source", {"value": 4.0}),
        ("first", "test.output", {}),
        ("second", "test.output", {}),
        links=[("src", "out", "first", "x"), ("first", "out", "second", "x")],
    )
    result = Executor(registry).run(workflow)
    assert result.outputs == {"first": {"out": 4.0}, "second": {"out": 4.0}}


def test_optional_socket_left_unlinked_gets_none(registry):
    workflow = chain(
        ("src", "test.source", {"value": 3.0}),
        ("sum", "test.add", {}),
        ("out", "test.output", {}),
        links=[("src", "out", "sum", "a"), ("sum", "out", "out", "x")],
    )
    assert Executor(registry).run(workflow).outputs == {"out": {"out": 3.0}}


def test_default_params_are_used(registry):
    workflow = chain(
        ("src", "test.source", {}),  # value defaults to 1.0
        ("scale", "test.scale", {}),  # factor defaults to 2.0
        ("out", "test.output", {}),
        links=[("src", "out", "scale", "x"), ("scale", "out", "out", "x")],
    )
    assert Executor(registry).run(workflow).outputs == {"out": {"out": 2.0}}


# -- caching -----------------------------------------------------------------


def test_second_identical_run_executes_nothing(registry, calls, linear_workflow):
    executor = Executor(registry)
    first = executor.run(linear_workflow)
    after_first = Counter(calls)

    sink = Recorder()
    second = executor.run(linear_workflow, on_event=sink)

    assert calls == after_first
    assert second.outputs == first.outputs == {"out": {"out": 2.0}}
    assert second.executed == ()
    assert second.cached == ("out",), "a cached output needs nothing upstream"
    assert sink.count(NodeStarted) == 0 and sink.count(NodeFinished) == 0
    assert sink.cached() == ["out"]
    assert [e.node_title for e in sink.of(NodeCached)] == ["Output"]
    finished = sink.of(RunFinished)
    assert len(finished) == 1
    assert finished[0].cached == ("out",)
    assert finished[0].executed == ()


def test_run_finished_lists_executed_nodes(registry, linear_workflow):
    sink = Recorder()
    Executor(registry).run(linear_workflow, on_event=sink)
    finished = sink.of(RunFinished)
    assert len(finished) == 1
    assert finished[0].executed == ("src", "scale", "out")
    assert finished[0].cached == ()
    assert isinstance(sink.events[-1], RunFinished)


def test_changing_a_downstream_param_reruns_only_it_and_what_follows(
    registry, calls, linear_workflow
):
    executor = Executor(registry)
    executor.run(linear_workflow)
    linear_workflow.nodes["scale"].params["factor"] = 3.0

    sink = Recorder()
    result = executor.run(linear_workflow, on_event=sink)

    assert result.outputs == {"out": {"out": 3.0}}
    assert result.executed == ("scale", "out")
    assert result.cached == ("src",)
    assert sink.started() == ["scale", "out"]
    assert sink.cached() == ["src"]
    assert calls == Counter({"test.source": 1, "test.scale": 2, "test.output": 2})


def test_changing_an_upstream_param_reruns_everything_downstream(
    registry, calls, linear_workflow
):
    executor = Executor(registry)
    executor.run(linear_workflow)
    linear_workflow.nodes["src"].params["value"] = 5.0

    sink = Recorder()
    result = executor.run(linear_workflow, on_event=sink)

    assert result.outputs == {"out": {"out": 10.0}}
    assert result.executed == ("src", "scale", "out")
    assert result.cached == ()
    assert sink.count(NodeCached) == 0
    assert calls == Counter({"test.source": 2, "test.scale": 2, "test.output": 2})


def test_changing_back_finds_the_earlier_results(registry, calls, linear_workflow):
    executor = Executor(registry)
    executor.run(linear_workflow)
    linear_workflow.nodes["scale"].params["factor"] = 3.0
    executor.run(linear_workflow)
    linear_workflow.nodes["scale"].params["factor"] = 2.0
    before = Counter(calls)
    result = executor.run(linear_workflow)
    assert result.outputs == {"out": {"out": 2.0}}
    assert result.executed == ()
    assert calls == before


def test_equal_param_values_share_a_signature(registry, calls, linear_workflow):
    """An int where a float is expected, or a default spelt out, is the same value."""
    executor = Executor(registry)
    executor.run(linear_workflow)
    linear_workflow.nodes["src"].params["value"] = 1  # int for a FLOAT param
    del linear_workflow.nodes["scale"].params["factor"]  # the default, 2.0
    linear_workflow.nodes["scale"].title = "Renamed"  # titles do not change results
    before = Counter(calls)
    result = executor.run(linear_workflow)
    assert result.executed == ()
    assert calls == before


def test_diamond_runs_the_shared_source_once(registry, calls):
    executor = Executor(registry)
    sink = Recorder()
    result = executor.run(diamond_workflow(), on_event=sink)

    assert result.outputs == {"out": {"out": 5.0}}
    assert calls == Counter({"test.source": 1, "test.scale": 2, "test.add": 1, "test.output": 1})
    assert sink.started().count("src") == 1
    assert sink.of(RunStarted)[0].node_ids.count("src") == 1

    # Changing one branch re-runs that branch and the join, not the source or the other branch.
    sink = Recorder()
    result = executor.run(diamond_workflow(factor_a=4.0), on_event=sink)
    assert result.outputs == {"out": {"out": 7.0}}
    assert sorted(sink.started()) == ["a", "out", "sum"]
    assert sorted(sink.cached()) == ["b", "src"]
    assert calls == Counter({"test.source": 1, "test.scale": 3, "test.add": 2, "test.output": 2})


def test_changing_a_node_that_feeds_no_output_changes_nothing(registry, calls):
    def workflow(side_factor):
        return chain(
            ("src", "test.source", {"value": 1.0}),
            ("scale", "test.scale", {"factor": 2.0}),
            ("out", "test.output", {}),
            ("side", "test.scale", {"factor": side_factor}),
            links=[
                ("src", "out", "scale", "x"),
                ("scale", "out", "out", "x"),
                ("src", "out", "side", "x"),
            ],
        )

    executor = Executor(registry)
    executor.run(workflow(7.0))
    before = Counter(calls)
    sink = Recorder()
    result = executor.run(workflow(9.0), on_event=sink)
    assert result.executed == ()
    assert result.cached == ("out",)
    assert sink.count(NodeStarted) == 0
    assert calls == before


def test_nodes_behind_a_cached_result_are_not_run_even_if_evicted(registry, calls):
    """With room for one entry only the output stays cached: the second run must
    reuse it without re-running (or re-loading) anything upstream."""
    workflow = chain(
        ("src", "test.source", {"value": 1.0}),
        ("scale", "test.scale", {"factor": 2.0}),
        ("out", "test.output", {}),
        links=[("src", "out", "scale", "x"), ("scale", "out", "out", "x")],
    )
    executor = Executor(registry, NodeCache(max_entries=1))
    executor.run(workflow)
    before = Counter(calls)
    sink = Recorder()
    result = executor.run(workflow, on_event=sink)
    assert calls == before
    assert result.outputs == {"out": {"out": 2.0}}
    assert sink.of(RunStarted)[0].node_ids == ("out",)


def test_a_cached_node_between_two_executed_ones_frees_its_inputs(registry, calls):
    """src feeds a cached branch and an uncached one: it runs once, for the uncached one."""
    def workflow(factor):
        return chain(
            ("src", "test.source", {"value": 1.0}),
            ("a", "test.scale", {"factor": 2.0}),
            ("b", "test.scale", {"factor": factor}),
            ("sum", "test.add", {}),
            ("out", "test.output", {}),
            links=[("src", "out", "a", "x"), ("src", "out", "b", "x"),
                   ("a", "out", "sum", "a"), ("b", "out", "sum", "b"), ("sum", "out", "out", "x")],
        )
    executor = Executor(registry)
    executor.run(workflow(3.0))
    result = executor.run(workflow(5.0))
    assert result.executed == ("b", "sum", "out")
    assert result.cached == ("src", "a")
    assert result.outputs["out"]["out"] == 2.0 + 5.0


def test_signatures_depend_on_the_device_and_dtype_salt(registry, linear_workflow):
    cpu = make_plan(linear_workflow, registry, salt="cpu/fp32")
    cpu_again = make_plan(linear_workflow, registry, salt="cpu/fp32")
    cuda = make_plan(linear_workflow, registry, salt="cuda:0/bf16")
    half = make_plan(linear_workflow, registry, salt="cpu/fp16")
    for node_id in ("src", "scale", "out"):
        signature = cpu.nodes[node_id].signature
        assert signature == cpu_again.nodes[node_id].signature
        assert signature != cuda.nodes[node_id].signature
        assert signature != half.nodes[node_id].signature
    # Different nodes get different signatures.
    assert len({cpu.nodes[n].signature for n in cpu.order}) == 3


def test_signature_changes_propagate_downstream_only(registry, linear_workflow):
    before = make_plan(linear_workflow, registry)
    linear_workflow.nodes["scale"].params["factor"] = 3.0
    after = make_plan(linear_workflow, registry)
    assert before.nodes["src"].signature == after.nodes["src"].signature
    assert before.nodes["scale"].signature != after.nodes["scale"].signature
    assert before.nodes["out"].signature != after.nodes["out"].signature


def test_another_dtype_does_not_reuse_the_cache(registry, calls, linear_workflow):
    executor = Executor(registry)
    executor.run(linear_workflow, device="cpu", dtype="fp32")
    sink = Recorder()
    result = executor.run(linear_workflow, device="cpu", dtype="fp16", on_event=sink)
    assert sink.of(RunStarted)[0].dtype == "fp16"
    assert result.dtype == "fp16"
    assert result.executed == ("src", "scale", "out")
    assert calls["test.source"] == 2
    # And the fp32 results are still there.
    assert executor.run(linear_workflow, device="cpu", dtype="fp32").executed == ()


# -- bounded cache -----------------------------------------------------------


def test_cache_evicts_least_recently_used_entry():
    cache = NodeCache(max_entries=2)
    assert cache.put("a", {"out": 1})
    assert cache.put("b", {"out": 2})
    assert cache.put("c", {"out": 3})
    assert "a" not in cache
    assert cache.get("a") is None
    assert "b" in cache and "c" in cache
    assert len(cache) == 2


def test_cache_get_refreshes_recency():
    cache = NodeCache(max_entries=2)
    cache.put("a", {"out": 1})
    cache.put("b", {"out": 2})
    assert cache.get("a") == {"out": 1}
    cache.put("c", {"out": 3})
    assert "a" in cache
    assert "b" not in cache
    assert cache.get("c") == {"out": 3}
    assert len(cache) == 2


def test_cache_put_replaces_an_entry_and_refreshes_it():
    cache = NodeCache(max_entries=2)
    cache.put("a", {"out": 1})
    cache.put("b", {"out": 2})
    cache.put("a", {"out": 10})
    cache.put("c", {"out": 3})
    assert cache.get("a") == {"out": 10}
    assert "b" not in cache
    assert len(cache) == 2


def test_estimate_bytes_counts_tensors_exactly():
    tensor = torch.zeros(1000, dtype=torch.float32)
    assert estimate_bytes(tensor) == 4000
    assert estimate_bytes(torch.zeros(1000, dtype=torch.float16)) == 2000
    # A container adds its contents; the same tensor twice counts once.
    assert estimate_bytes({"x": tensor}) >= 4000
    assert estimate_bytes([tensor, tensor]) == 4000
    module = torch.nn.Linear(10, 10)  # 100 weights + 10 biases, float32
    assert estimate_bytes(module) == 440


def test_cache_evicts_by_bytes_in_lru_order():
    def value():
        return {"out": torch.zeros(1000, dtype=torch.float32)}

    size = estimate_bytes(value())
    assert size >= 4000
    cache = NodeCache(max_entries=100, max_bytes=2 * size + size // 2)
    assert cache.put("a", value())
    assert cache.put("b", value())
    assert cache.bytes_used == 2 * size
    assert cache.get("a") is not None  # now "b" is the least recently used
    assert cache.put("c", value())
    assert "b" not in cache
    assert "a" in cache and "c" in cache
    assert cache.bytes_used == 2 * size
    assert len(cache) == 2


def test_cache_refuses_a_value_larger_than_its_byte_limit():
    cache = NodeCache(max_bytes=10_000)
    assert cache.put("small", {"out": torch.zeros(10)})
    used = cache.bytes_used
    assert used > 0
    assert cache.put("big", {"out": torch.zeros(4000)}) is False  # 16000 bytes
    assert "big" not in cache
    assert cache.get("big") is None
    assert "small" in cache
    assert cache.bytes_used == used


def test_cache_free_empties_it():
    cache = NodeCache()
    cache.put("a", {"out": torch.zeros(1000)})
    cache.put("b", {"out": torch.zeros(500)})
    assert cache.bytes_used >= 6000
    cache.free()
    assert len(cache) == 0
    assert cache.bytes_used == 0
    assert cache.get("a") is None and "b" not in cache


def test_cache_limits_must_not_be_negative():
    with pytest.raises(ValueError):
        NodeCache(max_entries=-1)
    with pytest.raises(ValueError):
        NodeCache(max_bytes=-1)


def test_executor_free_clears_the_cache(registry, calls, linear_workflow):
    executor = Executor(registry)
    executor.run(linear_workflow)
    assert len(executor.cache) == 3
    executor.free()
    assert len(executor.cache) == 0
    assert executor.cache.bytes_used == 0
    result = executor.run(linear_workflow)
    assert result.executed == ("src", "scale", "out")
    assert calls == Counter({"test.source": 2, "test.scale": 2, "test.output": 2})


def test_executor_with_a_bounded_cache_still_runs_correctly(registry, calls, linear_workflow):
    executor = Executor(registry, cache=NodeCache(max_entries=1))
    executor.run(linear_workflow)
    assert len(executor.cache) == 1
    plan = make_plan(linear_workflow, registry, salt="cpu/fp32")
    assert plan.nodes["out"].signature in executor.cache  # the most recent result stays
    result = executor.run(linear_workflow)
    assert result.outputs == {"out": {"out": 2.0}}
    assert len(executor.cache) == 1


def test_executor_with_no_cache_room_runs_everything_again(registry, calls, linear_workflow):
    executor = Executor(registry, cache=NodeCache(max_entries=0))
    executor.run(linear_workflow)
    result = executor.run(linear_workflow)
    assert result.executed == ("src", "scale", "out")
    assert result.outputs == {"out": {"out": 2.0}}
    assert calls == Counter({"test.source": 2, "test.scale": 2, "test.output": 2})


# -- cancellation ------------------------------------------------------------


def test_cancel_from_the_sink_on_the_third_step_stops_the_loop(registry, calls):
    token = CancelToken()

    def hook(event, recorder):
        if isinstance(event, Step) and recorder.count(Step) == 3:
            token.cancel()

    sink = Recorder(hook)
    executor = Executor(registry)
    with pytest.raises(Cancelled):
        executor.run(loop_workflow(steps=100), on_event=sink, cancel=token)

    assert sink.count(Step) == 3
    assert [e.index for e in sink.of(Step)] == [0, 1, 2]
    cancelled = sink.of(RunCancelled)
    assert len(cancelled) == 1
    assert cancelled[0].node_id == "loop"
    assert sink.count(RunFinished) == 0
    assert "loop" not in [e.node_id for e in sink.of(NodeFinished)]
    assert calls["test.output"] == 0
    # The interrupted node was not cached: a fresh run executes it again.
    result = executor.run(loop_workflow(steps=100))
    assert result.executed == ("loop", "out")
    assert result.cached == ("src",)
    assert result.outputs == {"out": {"out": 101.0}}


def test_cancel_from_another_thread_stops_before_the_next_step(registry, calls):
    """The worker is held inside its first step event until this thread has
    cancelled: the next step must then raise instead of running (no clock)."""
    token = CancelToken()
    first_step, cancelled = threading.Event(), threading.Event()

    def hook(event, _recorder):
        if isinstance(event, Step) and not first_step.is_set():
            first_step.set()
            assert cancelled.wait(WAIT_S)

    sink = Recorder(hook)
    steps = 10_000
    run = Background(Executor(registry), loop_workflow(steps=steps), on_event=sink, cancel=token)
    assert first_step.wait(WAIT_S)
    token.cancel()
    cancelled.set()
    assert run.join(WAIT_S), "the run did not stop after cancel"

    assert isinstance(run.error, Cancelled)
    assert run.result is None
    assert [e.index for e in sink.of(Step)] == [0]  # cancelled before step 1 was reported
    assert [e.node_id for e in sink.of(RunCancelled)] == ["loop"]
    assert calls["test.output"] == 0


def test_cancel_with_a_timer_during_a_long_loop(registry, calls):
    """A cancel at an arbitrary moment: at most the step in flight is reported after it."""
    token = CancelToken()
    steps_at_cancel = []

    def cancel() -> None:
        token.cancel()
        steps_at_cancel.append(sink.count(Step))

    timer = threading.Timer(0.05, cancel)

    def start_timer_at_the_first_step(event, recorder):
        if isinstance(event, Step) and recorder.count(Step) == 1:
            timer.start()

    sink = Recorder(start_timer_at_the_first_step)
    try:
        run = Background(
            Executor(registry), loop_workflow(steps=10_000, delay=0.005),
            on_event=sink, cancel=token,
        )
        assert run.join(WAIT_S), "the run did not stop after cancel"
    finally:
        timer.cancel()
    assert isinstance(run.error, Cancelled)
    assert len(steps_at_cancel) == 1, "the run ended before the timer cancelled it"
    assert 0 < sink.count(Step) <= steps_at_cancel[0] + 1
    assert [e.node_id for e in sink.of(RunCancelled)] == ["loop"]


def test_cancel_between_nodes_stops_before_the_next_node(registry, calls, linear_workflow):
    token = CancelToken()

    def hook(event, _recorder):
        if isinstance(event, NodeFinished) and event.node_id == "src":
            token.cancel()

    sink = Recorder(hook)
    with pytest.raises(Cancelled):
        Executor(registry).run(linear_workflow, on_event=sink, cancel=token)
    assert calls == Counter({"test.source": 1})
    assert sink.started() == ["src"]
    assert sink.count(RunCancelled) == 1
    assert sink.of(RunCancelled)[0].node_id is None, "no node was running"
    assert sink.count(RunFinished) == 0


def test_token_cancelled_before_the_run_runs_nothing(registry, calls, linear_workflow):
    token = CancelToken()
    token.cancel()
    sink = Recorder()
    executor = Executor(registry)
    with pytest.raises(Cancelled):
        executor.run(linear_workflow, on_event=sink, cancel=token)
    assert sum(calls.values()) == 0
    assert sink.count(NodeStarted) == 0
    assert sink.count(NodeCached) == 0
    assert sink.count(RunFinished) == 0
    assert sink.count(RunCancelled) == 1
    assert sink.of(RunCancelled)[0].node_id is None
    assert len(executor.cache) == 0
    # The executor is free again afterwards.
    assert executor.run(linear_workflow).outputs == {"out": {"out": 2.0}}


# -- step gate ---------------------------------------------------------------


def test_step_gate_pauses_steps_and_resumes(registry, calls):
    gate = StepGate()
    gate.pause()
    assert gate.paused
    sink = Recorder()
    run = Background(Executor(registry), loop_workflow(steps=10), on_event=sink, gate=gate)

    def steps_are(n):
        return lambda rec: rec.count(Step) >= n

    # Blocks after its first step: parked at the gate with one step reported.
    assert sink.wait_for(steps_are(1))
    assert wait_until_parked(WAIT_S)
    assert sink.count(Step) == 1
    assert not run.finished.is_set()

    # Exactly two more steps, then parked again.
    gate.step(2)
    assert sink.wait_for(steps_are(3))
    assert wait_until_parked(WAIT_S)
    assert sink.count(Step) == 3
    assert [e.index for e in sink.of(Step)] == [0, 1, 2]
    assert not run.finished.is_set()

    # One more.
    gate.step()
    assert sink.wait_for(steps_are(4))
    assert wait_until_parked(WAIT_S)
    assert sink.count(Step) == 4

    gate.resume()
    assert not gate.paused
    assert run.join(WAIT_S)
    assert run.error is None
    assert run.result.outputs == {"out": {"out": 11.0}}
    assert sink.count(Step) == 10
    assert calls["test.loop"] == 1


def test_cancel_while_paused_ends_the_run(registry, calls):
    gate = StepGate()
    gate.pause()
    token = CancelToken()
    sink = Recorder()
    run = Background(
        Executor(registry), loop_workflow(steps=10), on_event=sink, gate=gate, cancel=token
    )
    assert sink.wait_for(lambda rec: rec.count(Step) >= 1)
    assert not run.finished.is_set()
    token.cancel()
    assert run.join(WAIT_S), "the paused run did not end on cancel"
    assert gate.paused  # the cancel ended it, not a resume
    assert isinstance(run.error, Cancelled)
    assert sink.count(Step) == 1
    assert [e.node_id for e in sink.of(RunCancelled)] == ["loop"]
    assert calls["test.output"] == 0


def test_gate_that_is_not_paused_does_not_block(registry):
    gate = StepGate()
    result = Executor(registry).run(loop_workflow(steps=20), gate=gate)
    assert result.outputs == {"out": {"out": 21.0}}


def test_step_permits_given_before_pause_are_dropped():
    gate = StepGate()
    gate.step(5)
    gate.pause()
    released = threading.Event()

    def waiter():
        gate.wait()
        released.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert wait_until_parked(WAIT_S)  # blocked: the early permits were dropped
    assert not released.is_set()
    gate.resume()
    assert released.wait(WAIT_S)


# -- failure -----------------------------------------------------------------


def failing_workflow():
    workflow = chain(
        ("src", "test.source", {"value": 1.0}),
        ("bad", "test.fail", {"message": "kaboom"}),
        ("out", "test.output", {}),
        links=[("src", "out", "bad", "x"), ("bad", "out", "out", "x")],
    )
    workflow.nodes["bad"].title = "Exploder"
    return workflow


def test_failing_node_raises_execution_failed(registry, calls):
    sink = Recorder()
    with pytest.raises(ExecutionFailed) as info:
        Executor(registry).run(failing_workflow(), on_event=sink)
    error = info.value
    assert error.node_id == "bad"
    assert error.node_title == "Exploder"
    assert isinstance(error.__cause__, RuntimeError)
    assert str(error.__cause__) == "kaboom"
    assert error.error is error.__cause__
    assert "bad" in str(error) and "kaboom" in str(error)

    failed = sink.of(NodeFailed)
    assert len(failed) == 1
    assert failed[0].node_id == "bad"
    assert failed[0].node_title == "Exploder"
    assert failed[0].error is error.__cause__
    assert "kaboom" in failed[0].traceback
    assert "RuntimeError" in failed[0].traceback
    run_failed = sink.of(RunFailed)
    assert len(run_failed) == 1
    assert run_failed[0].node_id == "bad"
    assert run_failed[0].node_title == "Exploder"
    assert "kaboom" in run_failed[0].message
    assert sink.count(RunFinished) == 0
    assert sink.count(RunCancelled) == 0
    assert "bad" not in [e.node_id for e in sink.of(NodeFinished)]
    assert calls == Counter({"test.source": 1, "test.fail": 1})


def test_results_before_a_failure_are_cached(registry, calls):
    executor = Executor(registry)
    with pytest.raises(ExecutionFailed):
        executor.run(failing_workflow())

    fixed = failing_workflow()
    fixed.remove_node("bad")
    fixed.add_node(Node("bad", "test.scale", params={"factor": 3.0}))
    fixed.connect("src", "out", "bad", "x")
    fixed.connect("bad", "out", "out", "x")

    sink = Recorder()
    result = executor.run(fixed, on_event=sink)
    assert result.outputs == {"out": {"out": 3.0}}
    assert result.cached == ("src",)
    assert result.executed == ("bad", "out")
    assert sink.cached() == ["src"]
    assert calls["test.source"] == 1


def test_failed_node_is_not_cached(registry, calls):
    executor = Executor(registry)
    for _ in range(2):
        with pytest.raises(ExecutionFailed):
            executor.run(failing_workflow())
    assert calls == Counter({"test.source": 1, "test.fail": 2})


# -- events ------------------------------------------------------------------


def test_progress_and_step_events(registry):
    sink = Recorder()
    result = Executor(registry).run(loop_workflow(steps=3, value=1.0), on_event=sink)
    assert result.outputs == {"out": {"out": 4.0}}

    steps = sink.of(Step)
    assert [(s.node_id, s.index, s.total, s.t, s.x_t) for s in steps] == [
        ("loop", 0, 3, 3.0, 2.0),
        ("loop", 1, 3, 2.0, 3.0),
        ("loop", 2, 3, 1.0, 4.0),
    ]
    progress = sink.of(Progress)
    assert [(p.node_id, p.step, p.total) for p in progress] == [
        ("loop", 1, 3), ("loop", 2, 3), ("loop", 3, 3),
    ]
    # Steps and progress lie between the loop's start and finish.
    kinds = [type(e).__name__ for e in sink.events if getattr(e, "node_id", None) == "loop"]
    assert kinds[0] == "NodeStarted" and kinds[-1] == "NodeFinished"
    assert kinds[1:-1] == ["Step", "Progress"] * 3


def test_step_events_carry_tensors_only_with_previews(registry):
    def tensor_loop(previews):
        sink = Recorder()
        workflow = loop_workflow(steps=2)
        Executor(stub_registry()).run(workflow, on_event=sink, previews=previews)
        return sink.of(Step)

    with_previews = tensor_loop(True)
    assert [s.x_t for s in with_previews] == [2.0, 3.0]

    without = tensor_loop(False)
    assert len(without) == 2
    assert all(s.x_t is None and s.x0 is None and s.eps is None for s in without)
    assert all(not s.extra for s in without)
    assert [(s.index, s.total, s.t) for s in without] == [(0, 2, 2.0), (1, 2, 1.0)]


def test_run_started_reports_cpu_and_fp32(registry, linear_workflow):
    sink = Recorder()
    result = Executor(registry).run(linear_workflow, on_event=sink, device="cpu")
    started = sink.of(RunStarted)
    assert len(started) == 1
    assert started[0].device == "cpu"
    assert started[0].dtype == "fp32"
    assert (result.device, result.dtype) == ("cpu", "fp32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_raises_device_error(registry, calls, linear_workflow):
    sink = Recorder()
    executor = Executor(registry)
    with pytest.raises(DeviceError):
        executor.run(linear_workflow, on_event=sink, device="cuda")
    assert sink.events == []
    assert sum(calls.values()) == 0
    assert executor.run(linear_workflow).outputs == {"out": {"out": 2.0}}


def test_unknown_device_or_dtype_raises_device_error(registry, linear_workflow):
    executor = Executor(registry)
    with pytest.raises(DeviceError):
        executor.run(linear_workflow, device="tpu")
    with pytest.raises(DeviceError):
        executor.run(linear_workflow, device="cpu", dtype="fp8")


# -- validation --------------------------------------------------------------


def _missing_input():
    return chain(
        ("scale", "test.scale", {}),
        ("out", "test.output", {}),
        links=[("scale", "out", "out", "x")],
    )


def _no_output():
    return chain(
        ("src", "test.source", {}),
        ("scale", "test.scale", {}),
        links=[("src", "out", "scale", "x")],
    )


def _bad_value():
    return chain(
        ("src", "test.source", {"value": 1000.0}),
        ("out", "test.output", {}),
        links=[("src", "out", "out", "x")],
    )


def _cycle():
    return chain(
        ("a", "test.add", {}),
        ("b", "test.add", {}),
        ("out", "test.output", {}),
        links=[("a", "out", "b", "a"), ("b", "out", "a", "a"), ("b", "out", "out", "x")],
    )


def _unknown_type():
    return chain(
        ("src", "test.nonexistent", {}),
        ("out", "test.output", {}),
        links=[("src", "out", "out", "x")],
    )


def _type_mismatch():
    return chain(
        ("img", "test.image", {}),
        ("out", "test.output", {}),
        links=[("img", "image", "out", "x")],
    )


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (_missing_input, "missing_input"),
        (_no_output, "no_output"),
        (_bad_value, "bad_value"),
        (_cycle, "cycle"),
        (_unknown_type, "unknown_type"),
        (_type_mismatch, "type_mismatch"),
    ],
)
def test_invalid_workflow_raises_before_anything_runs(registry, calls, build, kind):
    sink = Recorder()
    executor = Executor(registry)
    with pytest.raises(ValidationError) as info:
        executor.run(build(), on_event=sink)
    assert kind in {p.kind for p in info.value.problems}
    assert sink.events == []
    assert sum(calls.values()) == 0
    assert len(executor.cache) == 0
    # The executor is usable again.
    assert executor.run(loop_workflow(steps=1)).outputs == {"out": {"out": 2.0}}


def test_validate_lists_problems_without_running(registry, calls):
    problems = Executor(registry).validate(_missing_input())
    assert [p.kind for p in problems if p.severity == "error"] == ["missing_input"]
    assert sum(calls.values()) == 0


# -- node outputs ------------------------------------------------------------


def pair_registry(calls, returned):
    """The stub registry plus a two-output node returning ``returned``."""
    registry = stub_registry(calls)
    registry.register(NodeSpec(
        type_id="test.pair",
        title="Pair",
        category="test",
        fn=lambda ctx, x: returned(x),
        inputs=(Input("x", PortType.LATENT),),
        outputs=(Output("first", PortType.LATENT), Output("second", PortType.LATENT)),
    ))
    return registry


def pair_workflow(output: str = "second"):
    return chain(
        ("src", "test.source", {"value": 2.0}),
        ("pair", "test.pair", {}),
        ("out", "test.output", {}),
        links=[("src", "out", "pair", "x"), ("pair", output, "out", "x")],
    )


@pytest.mark.parametrize(
    "returned",
    [
        lambda x: (x, -x),
        lambda x: {"first": x, "second": -x},
    ],
    ids=["tuple", "dict"],
)
def test_node_with_several_outputs_may_return_tuple_or_dict(calls, returned):
    registry = pair_registry(calls, returned)
    assert Executor(registry).run(pair_workflow("second")).outputs == {"out": {"out": -2.0}}
    assert Executor(registry).run(pair_workflow("first")).outputs == {"out": {"out": 2.0}}


@pytest.mark.parametrize(
    "returned",
    [
        lambda x: {"first": x, "wrong": -x},
        lambda x: {"first": x},
        lambda x: {"first": x, "second": -x, "third": 0},
        lambda x: (x, -x, 0),
        lambda x: (x,),
        lambda x: [x, -x],
        lambda x: x,
    ],
    ids=["dict-wrong-key", "dict-missing-key", "dict-extra-key", "tuple-too-long",
         "tuple-too-short", "list", "lone-value"],
)
def test_node_returning_the_wrong_outputs_fails(calls, returned):
    registry = pair_registry(calls, returned)
    sink = Recorder()
    executor = Executor(registry)
    with pytest.raises(ExecutionFailed) as info:
        executor.run(pair_workflow(), on_event=sink)
    assert info.value.node_id == "pair"
    assert info.value.node_title == "Pair"
    assert isinstance(info.value.error, NodeOutputError)
    assert info.value.__cause__ is info.value.error
    assert [e.node_id for e in sink.of(RunFailed)] == ["pair"]
    assert calls["test.output"] == 0
    # The bad value was not cached.
    assert "pair" not in [*sink.cached()]
    assert len(executor.cache) == 1  # only the source


# -- snapshot and concurrency --------------------------------------------------


def test_editing_the_workflow_during_a_run_does_not_affect_it(registry, calls, linear_workflow):
    def hook(event, _recorder):
        if isinstance(event, NodeStarted) and event.node_id == "src":
            linear_workflow.nodes["scale"].params["factor"] = 10.0
            linear_workflow.nodes["src"].params["value"] = 7.0
            linear_workflow.remove_node("out")

    executor = Executor(registry)
    result = executor.run(linear_workflow, on_event=Recorder(hook))
    assert result.outputs == {"out": {"out": 2.0}}
    assert result.executed == ("src", "scale", "out")

    # The edits did land in the document: running it again uses them.
    linear_workflow.add_node(Node("out", "test.output"))
    linear_workflow.connect("scale", "out", "out", "x")
    assert executor.run(linear_workflow).outputs == {"out": {"out": 70.0}}


def test_a_second_run_on_a_busy_executor_raises(registry, calls, linear_workflow):
    gate = StepGate()
    gate.pause()
    sink = Recorder()
    executor = Executor(registry)
    run = Background(executor, loop_workflow(steps=3), on_event=sink, gate=gate)
    assert sink.wait_for(lambda rec: rec.count(Step) >= 1)

    other = Recorder()
    try:
        # In a thread of its own, so that a second run that waits instead of
        # refusing fails the test rather than hanging it.
        second = Background(executor, linear_workflow, on_event=other)
        assert second.join(WAIT_S), "the second run waited for the first"
        assert type(second.error) is RuntimeError
        assert "already running" in str(second.error)
        assert other.events == []
        assert calls["test.scale"] == 0
        assert not run.finished.is_set()
    finally:
        gate.resume()
    assert run.join(WAIT_S)
    assert run.error is None
    assert run.result.outputs == {"out": {"out": 4.0}}
    # Once the first run is over, the executor accepts runs again.
    assert executor.run(linear_workflow).outputs == {"out": {"out": 2.0}}


def test_two_executors_may_run_at_the_same_time(registry, calls, linear_workflow):
    gate = StepGate()
    gate.pause()
    sink = Recorder()
    run = Background(Executor(registry), loop_workflow(steps=2), on_event=sink, gate=gate)
    try:
        assert sink.wait_for(lambda rec: rec.count(Step) >= 1)
        assert Executor(registry).run(linear_workflow).outputs == {"out": {"out": 2.0}}
    finally:
        gate.resume()
    assert run.join(WAIT_S)
    assert run.result.outputs == {"out": {"out": 3.0}}

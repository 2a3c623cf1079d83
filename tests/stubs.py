"""Cheap stub nodes for engine tests: numbers flow where latents would.

Every function records its calls in ``calls`` (type id -> count), so tests
can tell what ran and what came from the cache.
"""
from __future__ import annotations

import time
from collections import Counter

from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType
from core.registry import NodeRegistry
from core.workflow import Node, Workflow

L = PortType.LATENT


def stub_specs(calls: Counter) -> list[NodeSpec]:
    def counted(type_id, fn):
        def wrapper(ctx, **kwargs):
            calls[type_id] += 1
            return fn(ctx, **kwargs)
        return wrapper

    def loop(ctx, x, steps, delay):
        for index in range(steps):
            if delay:
                time.sleep(delay)
            x = x + 1
            ctx.step(index, steps, t=float(steps - index), x_t=x)
        return x

    def fail(ctx, x, message):
        raise RuntimeError(message)

    specs = [
        ("test.source", "Source", [Input("value", PortType.FLOAT, 1.0, min=-100, max=100)],
         [Output("out", L)], lambda ctx, value: value, False),
        ("test.scale", "Scale", [Input("x", L), Input("factor", PortType.FLOAT, 2.0)],
         [Output("out", L)], lambda ctx, x, factor: x * factor, False),
        ("test.add", "Add", [Input("a", L), Input("b", L, optional=True)],
         [Output("out", L)], lambda ctx, a, b: a + (b or 0), False),
        ("test.loop", "Loop", [Input("x", L), Input("steps", PortType.INT, 5, min=1, max=10000),
                               Input("delay", PortType.FLOAT, 0.0, min=0.0)],
         [Output("out", L)], loop, False),
        ("test.fail", "Fail", [Input("x", L), Input("message", PortType.STRING, "boom")],
         [Output("out", L)], fail, False),
        ("test.choose", "Choose", [Input("x", L),
                                   Input("mode", PortType.STRING, "keep", choices=("keep", "negate"))],
         [Output("out", L)], lambda ctx, x, mode: x if mode == "keep" else -x, False),
        ("test.image", "Image source", [], [Output("image", PortType.IMAGE)],
         lambda ctx: None, False),
        ("test.output", "Output", [Input("x", L)], [Output("out", L)], lambda ctx, x: x, True),
    ]
    return [
        NodeSpec(type_id=type_id, title=title, category="test", fn=counted(type_id, fn),
                 inputs=tuple(inputs), outputs=tuple(outputs), is_output=is_output)
        for type_id, title, inputs, outputs, fn, is_output in specs
    ]


def stub_registry(calls: Counter | None = None) -> NodeRegistry:
    return NodeRegistry(stub_specs(calls if calls is not None else Counter()))


def chain(*nodes: tuple[str, str, dict], links=()) -> Workflow:
    """Build a workflow from (id, type, params) triples and (src, out, dst, in) links."""
    workflow = Workflow()
    for node_id, type_id, params in nodes:
        workflow.add_node(Node(node_id, type_id, params=dict(params)))
    for link in links:
        workflow.connect(*link)
    return workflow

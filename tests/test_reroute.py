"""Reroute (dot) nodes: they pass any value on, and links through them are
checked against the type at the start of the chain (core.port_flow)."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.executor import Executor
from core.port_flow import is_pass_through, traced_source
from core.ports import PortType
from core.registry import NodeRegistry
from core.validation import errors_only, validate
from core.workflow import Link, Node, Workflow, load
from nodes import default_registry
from nodes.reroute import NODES as REROUTE, TYPE_ID
from tests.stubs import chain, stub_specs

TXT2IMG = Path(__file__).resolve().parents[1] / "workflows" / "txt2img.json"


@pytest.fixture(scope="module")
def catalogue() -> NodeRegistry:
    return default_registry(plugins=False)[0]


def rerouted(workflow: Workflow, link: Link, *dots: str) -> Workflow:
    """``workflow`` with ``link`` replaced by a chain through new reroutes ``dots``."""
    workflow.links.remove(link)
    source = (link.src_node, link.src_output)
    for dot in dots:
        workflow.add_node(Node(dot, TYPE_ID))
        workflow.connect(*source, dot, "value")
        source = (dot, "value")
    workflow.connect(*source, link.dst_node, link.dst_input)
    return workflow


def link_into(workflow: Workflow, node: str, input_: str) -> Link:
    return next(ln for ln in workflow.links if (ln.dst_node, ln.dst_input) == (node, input_))


def test_the_reroute_is_in_the_catalogue_as_a_pass_through(catalogue):
    spec = catalogue.get(TYPE_ID)
    assert spec is not None and is_pass_through(spec)
    assert not is_pass_through(catalogue.get("diffusion.sampler"))


def test_a_chain_of_two_reroutes_validates_and_carries_the_source_type(catalogue):
    workflow = load(TXT2IMG)
    rerouted(workflow, link_into(workflow, "sampler", "model"), "r1", "r2")
    assert errors_only(validate(workflow, catalogue)) == []
    assert traced_source(workflow, catalogue, "r2", "value") == (PortType.MODEL, ("r2", "r1"))


def test_a_model_routed_into_a_vae_input_is_refused_with_the_route_named(catalogue):
    workflow = load(TXT2IMG)
    workflow.links.remove(link_into(workflow, "decode", "vae"))
    workflow.add_node(Node("r1", TYPE_ID))
    workflow.add_node(Node("r2", TYPE_ID))
    workflow.connect("checkpoint", "model", "r1", "value")
    workflow.connect("r1", "value", "r2", "value")
    workflow.connect("r2", "value", "decode", "vae")
    problems = [p for p in errors_only(validate(workflow, catalogue)) if p.kind == "type_mismatch"]
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.node_id, problem.field) == ("decode", "vae")
    assert "carries MODEL (through 'r2', 'r1') but this input takes VAE" in problem.message


def test_an_unfed_reroute_is_reported_as_a_missing_input(catalogue):
    workflow = load(TXT2IMG)
    workflow.links.remove(link_into(workflow, "sampler", "model"))
    workflow.add_node(Node("r1", TYPE_ID))
    workflow.connect("r1", "value", "sampler", "model")
    problems = errors_only(validate(workflow, catalogue))
    assert [(p.kind, p.node_id, p.field) for p in problems] == [("missing_input", "r1", "value")]


def test_a_loop_of_reroutes_is_a_cycle_not_a_hang(catalogue):
    workflow = load(TXT2IMG)
    workflow.add_node(Node("r1", TYPE_ID))
    workflow.add_node(Node("r2", TYPE_ID))
    workflow.connect("r1", "value", "r2", "value")
    workflow.connect("r2", "value", "r1", "value")
    assert traced_source(workflow, catalogue, "r1", "value")[0] is PortType.ANY
    assert "cycle" in [p.kind for p in validate(workflow, catalogue)]


def test_the_executor_passes_the_value_through_unchanged():
    from collections import Counter

    registry = NodeRegistry([*stub_specs(Counter()), *REROUTE])
    workflow = chain(("src", "test.source", {"value": 7.0}), ("r1", TYPE_ID, {}),
                     ("r2", TYPE_ID, {}), ("out", "test.output", {}),
                     links=[("src", "out", "r1", "value"), ("r1", "value", "r2", "value"),
                            ("r2", "value", "out", "x")])
    assert validate(workflow, registry) == []
    result = Executor(registry).run(workflow)
    assert result.outputs["out"]["out"] == 7.0

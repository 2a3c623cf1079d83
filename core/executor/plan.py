"""From a document to an execution plan: validated, ordered, signed.

The plan pulls from the output nodes, so nodes that feed no output never
run. Each planned node gets a *signature*: a hash of its type, type version,
params and, recursively, the signatures of the nodes that feed it (plus the
device and dtype). Bypassed and muted nodes are resolved first
(:mod:`core.workflow.modes`): the plan is made from the graph that really
runs, so a consumer rerouted around a bypass gets a new signature. Equal
signatures mean equal outputs, which is what makes the cache safe: change a
sampler's seed and only the sampler and what comes after it get new
signatures.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from core import graph
from core.nodespec import NodeSpec
from core.registry import NodeRegistry
from core.validation import (
    Problem,
    ValidationError,
    display_title,
    errors_only,
    resolve_params,
    run_roots,
    validate,
)
from core.workflow import modes
from core.workflow.model import Workflow


@dataclass(frozen=True)
class PlannedNode:
    node_id: str
    title: str
    spec: NodeSpec
    params: Mapping[str, Any]  # unlinked params, resolved and coerced
    links: Mapping[str, tuple[str, str]]  # input name -> (source node id, output name)
    signature: str


@dataclass(frozen=True)
class Plan:
    order: tuple[str, ...]
    nodes: Mapping[str, PlannedNode]
    outputs: tuple[str, ...]
    warnings: tuple[Problem, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)  # node id -> why (a mute)


def make_plan(workflow: Workflow, registry: NodeRegistry, salt: str = "",
              outputs: Sequence[str] | None = None) -> Plan:
    """Validate and order ``workflow``; raise :class:`ValidationError` listing every error.
    ``outputs`` ("run to here") replaces the output nodes as what the run pulls from."""
    if outputs is not None:
        outputs = list(outputs)
        for node_id in outputs:
            workflow.node(node_id)  # WorkflowError for an unknown id
    problems = validate(workflow, registry, outputs)
    errors = errors_only(problems)
    if errors:
        raise ValidationError(errors)
    resolved = modes.resolve(workflow, registry)
    workflow = resolved.workflow
    roots = run_roots(workflow, registry, outputs)
    upstream = graph.upstream_edges(workflow.nodes, workflow.links)
    order = graph.execution_order(roots, upstream)
    planned: dict[str, PlannedNode] = {}
    for node_id in order:
        planned[node_id] = _plan_node(workflow, registry, node_id, planned, salt)
    warnings = tuple(p for p in problems if p.severity == "warning")
    return Plan(tuple(order), planned, tuple(roots), warnings, dict(resolved.skipped))


def _plan_node(
    workflow: Workflow,
    registry: NodeRegistry,
    node_id: str,
    planned: Mapping[str, PlannedNode],
    salt: str,
) -> PlannedNode:
    node = workflow.nodes[node_id]
    spec = registry.get(node.type)
    assert spec is not None  # validation guarantees it
    links = {
        name: (link.src_node, link.src_output) for name, link in workflow.links_into(node_id).items()
    }
    resolved = resolve_params(node, spec)
    params = {p.name: p.coerce(resolved[p.name]) for p in spec.params if p.name not in links}
    upstream = sorted(
        (name, planned[src].signature, output) for name, (src, output) in links.items()
    )
    signature = _signature(spec, params, upstream, salt)
    return PlannedNode(node_id, display_title(node, spec), spec, params, links, signature)


def _signature(spec: NodeSpec, params: Mapping[str, Any], upstream: list, salt: str) -> str:
    fingerprint = ""
    if spec.fingerprint is not None:
        try:
            fingerprint = str(spec.fingerprint(params))
        except Exception as error:  # let the node itself report the problem when it runs
            fingerprint = f"unavailable: {error!r}"
    payload = [spec.type_id, spec.version, params, upstream, fingerprint, salt]
    text = json.dumps(payload, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

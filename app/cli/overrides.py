"""``--set NODE.PARAM=VALUE``: change a parameter from the command line.

``NODE`` is a node id or a node title that only one node has; ``PARAM`` is
one of that node's parameters; ``VALUE`` is parsed by the parameter's type
and checked against its range and choices. Every error names node and field.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from core.nodespec import Input
from core.ports import PortType
from core.registry import NodeRegistry
from core.validation import display_title
from core.workflow.model import Node, Workflow

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class OverrideError(ValueError):
    """A ``--set`` that cannot be applied."""


@dataclass(frozen=True)
class Override:
    node: str
    param: str
    raw: str


def parse_override(text: str) -> Override:
    """Split ``NODE.PARAM=VALUE`` (the node part may itself contain dots)."""
    target, sep, raw = text.partition("=")
    node, dot, param = target.rpartition(".")
    if not sep or not dot or not node or not param:
        raise OverrideError(f"--set {text!r}: expected NODE.PARAM=VALUE")
    return Override(node.strip(), param.strip(), raw)


def apply_overrides(workflow: Workflow, registry: NodeRegistry, texts: Iterable[str]) -> Workflow:
    """A copy of ``workflow`` with every ``--set`` applied, or OverrideError."""
    result = workflow.copy()
    for text in texts:
        override = parse_override(text)
        node = find_node(result, registry, override.node)
        item = _param(result, registry, node, override)
        value = parse_value(item, override.raw)
        problem = item.check(value)
        if problem:
            raise OverrideError(f"{_where(node, registry, item.name)}: {problem}")
        node.params[item.name] = value
    return result


def find_node(workflow: Workflow, registry: NodeRegistry, name: str) -> Node:
    """The node whose id is ``name``, else the one node titled ``name``."""
    if name in workflow.nodes:
        return workflow.nodes[name]
    matches = [
        n for n in workflow if display_title(n, registry.get(n.type)) == name
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(sorted(n.id for n in matches))
        raise OverrideError(f"--set: the title {name!r} is shared by nodes {ids}; use a node id")
    known = ", ".join(sorted(workflow.nodes))
    raise OverrideError(f"--set: no node has the id or title {name!r} (node ids: {known})")


def parse_value(item: Input, raw: str) -> Any:
    """Text from the command line as a value of the parameter's type."""
    text = raw.strip()
    try:
        if item.type is PortType.INT:
            return int(text)
        if item.type is PortType.FLOAT:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
    except ValueError:
        kind = "an integer" if item.type is PortType.INT else "a finite number"
        raise OverrideError(f"--set: {item.name!r} needs {kind}, got {raw!r}") from None
    if item.type is PortType.BOOLEAN:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise OverrideError(f"--set: {item.name!r} needs true or false, got {raw!r}")
    return raw


def _param(workflow: Workflow, registry: NodeRegistry, node: Node, override: Override) -> Input:
    spec = registry.get(node.type)
    if spec is None:
        raise OverrideError(
            f"node {node.id!r}: its type {node.type!r} is unknown, so its params cannot be set"
        )
    item = spec.input(override.param)
    if item is None or not item.is_param:
        names = ", ".join(p.name for p in spec.params) or "none"
        raise OverrideError(
            f"{_where(node, registry, override.param)}: no such parameter (parameters: {names})"
        )
    if override.param in workflow.links_into(node.id):
        raise OverrideError(
            f"{_where(node, registry, override.param)}: this input is fed by a link, "
            "so setting it would have no effect"
        )
    return item


def _where(node: Node, registry: NodeRegistry, field: str) -> str:
    return f"node {node.id!r} ({display_title(node, registry.get(node.type))}), field {field!r}"

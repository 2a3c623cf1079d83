"""The type a link really carries when it passes through reroute nodes.

A pass-through node (ComfyUI's Reroute, ``util.reroute``) has one socket of
type ANY and ANY outputs, and hands on whatever is linked in. Checking its
ANY ends with :func:`~core.ports.compatible` alone would let a MODEL reach an
IMAGE input by way of a reroute, so validation and the canvas ask
:func:`traced_source` for the type at the start of the chain instead.
"""
from __future__ import annotations

from core.nodespec import NodeSpec
from core.ports import PortType
from core.registry import NodeRegistry
from core.workflow.model import Workflow


def is_pass_through(spec: NodeSpec | None) -> bool:
    """A node whose only socket and every output are ANY: its outputs carry
    whatever its socket receives."""
    if spec is None or not spec.outputs:
        return False
    sockets = spec.sockets
    return (len(sockets) == 1 and sockets[0].type is PortType.ANY
            and all(o.type is PortType.ANY for o in spec.outputs))


def traced_source(workflow: Workflow, registry: NodeRegistry, node_id: str,
                  output: str) -> tuple[PortType | None, tuple[str, ...]]:
    """The type that ``node_id.output`` carries and the pass-through nodes it
    came through (nearest first). ANY when a chain of reroutes starts from
    nothing; None when a node or output is unknown (reported elsewhere)."""
    via: list[str] = []
    while True:
        node = workflow.nodes.get(node_id)
        spec = registry.get(node.type) if node is not None else None
        port = spec.output(output) if spec is not None else None
        if port is None:
            return None, tuple(via)
        if not is_pass_through(spec) or node_id in via:  # a loop is reported as a cycle
            return port.type, tuple(via)
        via.append(node_id)
        socket = spec.sockets[0].name
        feed = next((ln for ln in workflow.links
                     if ln.dst_node == node_id and ln.dst_input == socket), None)
        if feed is None:
            return PortType.ANY, tuple(via)
        node_id, output = feed.src_node, feed.src_output


def origin_of(workflow: Workflow, registry: NodeRegistry, node_id: str,
              output: str) -> tuple[str, str]:
    """The (node, output) at the start of the chain of pass-through nodes that
    ``node_id.output`` ends; itself when it is no pass-through node."""
    seen: set[str] = set()
    while node_id not in seen:
        node = workflow.nodes.get(node_id)
        spec = registry.get(node.type) if node is not None else None
        if not is_pass_through(spec):
            break
        seen.add(node_id)
        feed = next((ln for ln in workflow.links
                     if ln.dst_node == node_id and ln.dst_input == spec.sockets[0].name), None)
        if feed is None:
            break
        node_id, output = feed.src_node, feed.src_output
    return node_id, output

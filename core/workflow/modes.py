"""Bypass and mute: the graph a run really executes (ComfyUI's semantics).

Modes are resolved *before* validation and planning, by rewriting a copy of
the document, so the executor's loop, its cache and its checks stay as they
are:

* a **bypassed** node is taken out; each link from one of its outputs is
  rerouted to what feeds the node's first *linked* input of the same port
  type (through chains of bypassed nodes). When there is none, the consumer
  gets a problem ("bypassed 'VAE decode' has no IMAGE input to pass through").
* a **muted** node is taken out with every node that needs its outputs
  (through a required input; a link into an optional input is just dropped).
  Output nodes taken out this way are *skipped*, with the reason.

Because rerouted consumers now hang off other nodes, their cache signatures
change with the mode: toggling a mode invalidates exactly what depends on it.
A node whose mode is not in :data:`MODES` runs as normal here; validation
reports it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.workflow.model import MODES, Link, Workflow

BYPASS, MUTE = "bypass", "mute"


@dataclass(frozen=True)
class Unmatched:
    """A consumer input fed by a bypassed node that has nothing to pass through."""

    node_id: str  # the consumer
    input: str
    message: str


@dataclass
class Resolved:
    """The document as it will run, and what the modes left out."""

    workflow: Workflow
    skipped: dict[str, str] = field(default_factory=dict)  # node id -> why it does not run
    unmatched: list[Unmatched] = field(default_factory=list)


def mode_of(node) -> str:
    return node.mode if node.mode in MODES else "normal"


def title_of(workflow: Workflow, registry: Any, node_id: str) -> str:
    node = workflow.nodes[node_id]
    spec = registry.get(node.type)
    return node.title or (spec.title if spec else node.type)


def resolve(workflow: Workflow, registry: Any) -> Resolved:
    """``workflow`` without its bypassed and muted nodes (see the module doc).
    ``registry`` needs only ``get(type_id)`` returning a spec or None."""
    modes = {node_id: mode_of(node) for node_id, node in workflow.nodes.items()}
    if all(mode == "normal" for mode in modes.values()):
        return Resolved(workflow)
    into: dict[str, dict[str, Link]] = {}
    for link in workflow.links:
        into.setdefault(link.dst_node, {})[link.dst_input] = link
    result = Resolved(Workflow(ui=workflow.ui))
    dead = {node_id: None for node_id, mode in modes.items() if mode == MUTE}  # id -> muted root

    def source(link: Link) -> tuple[str, str] | str | None:
        """The (node, output) a link really reads, a muted root's id, or None (unmatched)."""
        seen = set()
        src, output = link.src_node, link.src_output
        while modes.get(src) == BYPASS and src not in seen:
            seen.add(src)
            spec = registry.get(workflow.nodes[src].type)
            port = spec.output(output) if spec else None
            feed = _first_linked(spec, port, into.get(src, {})) if port else None
            if feed is None:
                return None
            src, output = feed.src_node, feed.src_output
        if src in dead:
            return dead[src] or src
        return src, output

    changed = True
    while changed:  # a node dies when a required input reads a dead node
        changed = False
        for node_id in sorted(workflow.nodes):
            if node_id in dead or modes[node_id] == BYPASS:
                continue
            spec = registry.get(workflow.nodes[node_id].type)
            for name, link in into.get(node_id, {}).items():
                found = source(link)
                if isinstance(found, str) and _required(spec, name):
                    dead[node_id] = found
                    changed = True
                    break
    for node_id, node in workflow.nodes.items():
        if modes[node_id] == "normal" and node_id not in dead:
            result.workflow.nodes[node_id] = node
        elif modes[node_id] == "normal":
            muted = title_of(workflow, registry, dead[node_id])
            result.skipped[node_id] = f"skipped: it needs the output of muted {muted!r}"
    for link in workflow.links:
        if link.dst_node not in result.workflow.nodes:
            continue
        found = source(link)
        if found is None:
            result.unmatched.append(_unmatched(workflow, registry, link))
        elif isinstance(found, tuple):
            result.workflow.links.append(Link(found[0], found[1], link.dst_node, link.dst_input))
    return result


def _first_linked(spec, port, links: dict[str, Link]) -> Link | None:
    """The link into the first input of ``port``'s type that has one."""
    for item in spec.sockets:
        if item.type == port.type and item.name in links:
            return links[item.name]
    return None


def _required(spec, name: str) -> bool:
    item = spec.input(name) if spec else None
    return item is None or not getattr(item, "optional", False)


def _unmatched(workflow: Workflow, registry: Any, link: Link) -> Unmatched:
    """Name the bypassed node at the end of the chain that has no matching input."""
    src, output = link.src_node, link.src_output
    into = workflow.links_into
    while True:
        spec = registry.get(workflow.nodes[src].type)
        port = spec.output(output) if spec else None
        feed = _first_linked(spec, port, into(src)) if port else None
        if feed is None or workflow.nodes[feed.src_node].mode != BYPASS:
            break
        src, output = feed.src_node, feed.src_output
    title = title_of(workflow, registry, src)
    what = f"no {port.type.value} input" if port else "no known outputs (its type is unknown)"
    return Unmatched(link.dst_node, link.dst_input,
                     f"bypassed {title!r} has {what} to pass through")

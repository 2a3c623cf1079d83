"""The workflow document: nodes, links and a free-form ``ui`` block.

This is the app's own file format (NodeGraphQt's session format is never
written). The engine reads ``nodes`` and ``links`` and ignores ``ui``
(positions, groups, viewport), which belongs to the GUI.

A node whose type is unknown (a plugin that is not installed) is kept as it
is, params and links included, so loading and saving never lose it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from core.workflow.jsondata import copy_value

#: Node ids become file names (``<node-id>_<index>.png``): keep them plain.
#: (``\Z``, not ``$``, which would also accept a final newline.)
NODE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}\Z")

#: How a node takes part in a run (ComfyUI's modes): ``normal`` runs it;
#: ``bypass`` skips it and passes each output through from its first linked
#: input of the same type; ``mute`` skips it and whatever needs its outputs.
#: A closed set: a file with another mode loads (and saves) unchanged, and
#: validation names the node.
MODES = ("normal", "bypass", "mute")
NORMAL = "normal"


class WorkflowError(ValueError):
    """An edit that would make the document inconsistent."""


@dataclass
class Node:
    """One node of a workflow: a stable id, its type and its parameter values."""

    id: str
    type: str
    version: int = 1
    title: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    mode: str = NORMAL


@dataclass(frozen=True, order=True)
class Link:
    """A link from an output of one node to an input of another."""

    src_node: str
    src_output: str
    dst_node: str
    dst_input: str

    def __str__(self) -> str:
        return f"{self.src_node}.{self.src_output} -> {self.dst_node}.{self.dst_input}"


@dataclass
class Workflow:
    """A graph of nodes and links, plus GUI state the engine never reads."""

    nodes: dict[str, Node] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    ui: dict[str, Any] = field(default_factory=dict)

    # -- reading -----------------------------------------------------------
    def node(self, node_id: str) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise WorkflowError(f"no node with id {node_id!r}") from None

    def links_into(self, node_id: str) -> dict[str, Link]:
        """The links that feed ``node_id``, by input name."""
        return {ln.dst_input: ln for ln in self.links if ln.dst_node == node_id}

    def links_from(self, node_id: str) -> list[Link]:
        return [ln for ln in self.links if ln.src_node == node_id]

    def find_by_title(self, title: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.title == title]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    # -- editing -----------------------------------------------------------
    def add_node(self, node: Node) -> Node:
        if not NODE_ID_PATTERN.match(node.id):
            raise WorkflowError(
                f"node id {node.id!r} must be 1-64 letters, digits, '_' or '-'"
            )
        if node.id in self.nodes:
            raise WorkflowError(f"a node with id {node.id!r} already exists")
        self.nodes[node.id] = node
        return node

    def new_id(self, stem: str) -> str:
        """A fresh node id made from ``stem`` (``sampler``, ``sampler_2`` …)."""
        # An id cannot start with "-" (NODE_ID_PATTERN).
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", stem).lstrip("-")[:56] or "node"
        if stem not in self.nodes:
            return stem
        index = 2
        while f"{stem}_{index}" in self.nodes:
            index += 1
        return f"{stem}_{index}"

    def remove_node(self, node_id: str) -> None:
        self.node(node_id)
        del self.nodes[node_id]
        self.links = [ln for ln in self.links if node_id not in (ln.src_node, ln.dst_node)]

    def connect(self, src_node: str, src_output: str, dst_node: str, dst_input: str) -> Link:
        """Link an output to an input, replacing any link already into that input."""
        self.node(src_node)
        self.node(dst_node)
        self.disconnect(dst_node, dst_input)
        link = Link(src_node, src_output, dst_node, dst_input)
        self.links.append(link)
        return link

    def disconnect(self, dst_node: str, dst_input: str) -> None:
        self.links = [
            ln for ln in self.links if (ln.dst_node, ln.dst_input) != (dst_node, dst_input)
        ]

    def copy(self, with_ui: bool = True) -> "Workflow":
        """A deep copy: the executor runs on one (without the ``ui`` block it
        never reads) so edits never race a run. Copying never recurses, so
        values of any depth copy (validation and saving then refuse them)."""
        nodes = {
            node_id: Node(node.id, node.type, node.version, node.title,
                          copy_value(node.params), node.mode)
            for node_id, node in self.nodes.items()
        }
        ui = copy_value(self.ui) if with_ui else {}
        return Workflow(nodes, list(self.links), ui)

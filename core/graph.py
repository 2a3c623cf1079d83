"""Graph algorithms on a workflow's links: pulling, ordering, cycles.

All functions are iterative (no recursion limit on long chains) and
deterministic (ties broken by node id), so the same document always runs in
the same order.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

Edges = Mapping[str, Sequence[str]]  # node id -> ids of the nodes that feed it


def upstream_edges(node_ids: Iterable[str], links: Iterable) -> dict[str, list[str]]:
    """For each node, the sorted ids of the nodes whose outputs feed it."""
    edges: dict[str, set[str]] = {node_id: set() for node_id in node_ids}
    for link in links:
        if link.dst_node in edges and link.src_node in edges:
            edges[link.dst_node].add(link.src_node)
    return {node_id: sorted(sources) for node_id, sources in edges.items()}


def pulled_from(roots: Iterable[str], upstream: Edges) -> set[str]:
    """The roots and every node that feeds them, directly or not."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        node_id = stack.pop()
        if node_id not in seen:
            seen.add(node_id)
            stack.extend(upstream.get(node_id, ()))
    return seen


def execution_order(roots: Sequence[str], upstream: Edges) -> list[str]:
    """Depth-first post-order from the roots: every node after all it needs.

    A cycle is cut where it closes (check with :func:`cycles` first: the
    order inside a cycle means nothing).
    """
    order: list[str] = []
    done: set[str] = set()
    for root in sorted(roots):
        stack: list[tuple[str, int]] = [(root, 0)]
        on_path = {root}
        while stack:
            node_id, next_child = stack.pop()
            if node_id in done:
                continue
            children = upstream.get(node_id, ())
            if next_child < len(children):
                stack.append((node_id, next_child + 1))
                child = children[next_child]
                if child not in done and child not in on_path:
                    on_path.add(child)
                    stack.append((child, 0))
            else:
                done.add(node_id)
                on_path.discard(node_id)
                order.append(node_id)
    return order


def cycles(upstream: Edges) -> list[list[str]]:
    """Every group of nodes that feed each other (Tarjan's strongly connected
    components of size > 1, plus nodes that feed themselves), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(upstream):
        if start in index:
            continue
        work: list[tuple[str, int]] = [(start, 0)]
        while work:
            node_id, child_pos = work.pop()
            if child_pos == 0:
                index[node_id] = low[node_id] = counter
                counter += 1
                stack.append(node_id)
                on_stack.add(node_id)
            children = upstream.get(node_id, ())
            if child_pos < len(children):
                work.append((node_id, child_pos + 1))
                child = children[child_pos]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node_id] = min(low[node_id], index[child])
                continue
            if low[node_id] == index[node_id]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node_id:
                        break
                if len(component) > 1 or node_id in upstream.get(node_id, ()):
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node_id])
    return sorted(found)

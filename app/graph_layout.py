"""Placing a graph's nodes when its file has no positions: layered columns.

A node's column is the length of the longest chain of links that leads to
it (sources on the left, outputs on the right, as data flows). Each column
is stacked from the top, a node below the full height of the one above
(at least ``MIN_ROW``),
ordered by where its inputs come from (the barycentre of its upstream
nodes' rows, Sugiyama et al. 1981), which keeps links from crossing much.
Pure geometry: no Qt, so it is tested and reused without a window.
"""
from __future__ import annotations

from typing import Hashable, Iterable, Mapping

COLUMN_GAP = 100.0
ROW_GAP = 30.0
#: The least height a node takes in its column, however short: at the fitted
#: zoom of a small window the overview draws titles taller than a short node.
MIN_ROW = 120.0


def columns(nodes: Iterable[Hashable], links: Iterable[tuple[Hashable, Hashable]]) -> dict:
    """node → its column: 0 for a node nothing feeds, else 1 + its deepest input's.
    A cycle (not a valid workflow, but a file may hold one) stops the climb."""
    nodes = list(nodes)
    inputs: dict = {node: set() for node in nodes}
    for source, target in links:
        if source in inputs and target in inputs and source != target:
            inputs[target].add(source)
    column: dict = {}

    def depth(node, seen: frozenset) -> int:
        if node in column:
            return column[node]
        upstream = [s for s in inputs[node] if s not in seen]
        column[node] = 1 + max((depth(s, seen | {node}) for s in upstream), default=-1)
        return column[node]

    for node in nodes:
        depth(node, frozenset())
    return column


def layered_positions(sizes: Mapping[Hashable, tuple[float, float]],
                      links: Iterable[tuple[Hashable, Hashable]]) -> dict:
    """node → (x, y) of its top-left corner, from each node's (width, height)."""
    links = list(links)
    column = columns(sizes, links)
    by_column: dict[int, list] = {}
    for node in sizes:  # file order within a column, until the barycentres sort it
        by_column.setdefault(column[node], []).append(node)
    inputs: dict = {node: [] for node in sizes}
    for source, target in links:
        if source in sizes and target in sizes:
            inputs[target].append(source)
    row: dict = {}
    positions: dict = {}
    x = 0.0
    for index in sorted(by_column):
        order = {node: i for i, node in enumerate(by_column[index])}
        members = sorted(order, key=lambda n: _barycentre(n, inputs, row, order[n]))
        y = 0.0
        for rank, node in enumerate(members):
            row[node] = rank
            positions[node] = (x, y)
            y += max(sizes[node][1], MIN_ROW) + ROW_GAP
        x += max(sizes[n][0] for n in members) + COLUMN_GAP
    return positions


def _barycentre(node, inputs, row, fallback: int) -> float:
    placed = [row[s] for s in inputs[node] if s in row]
    return sum(placed) / len(placed) if placed else float(fallback)

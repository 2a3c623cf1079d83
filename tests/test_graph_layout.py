"""Layered placement of a workflow without positions (app.graph_layout)."""
from __future__ import annotations

from app.graph_layout import COLUMN_GAP, MIN_ROW, ROW_GAP, columns, layered_positions


def test_a_column_is_the_longest_chain_of_links_into_the_node():
    links = [("a", "b"), ("b", "c"), ("a", "c"), ("d", "c")]
    assert columns("abcd", links) == {"a": 0, "b": 1, "c": 2, "d": 0}


def test_a_cycle_does_not_hang_and_every_node_gets_a_column():
    got = columns("abc", [("a", "b"), ("b", "a"), ("b", "c")])
    assert set(got) == {"a", "b", "c"} and got["c"] > got["b"]


def test_nodes_stack_below_the_full_height_of_the_one_above():
    sizes = {"tall": (100, 400), "short": (50, 40), "next": (80, 80)}
    placed = layered_positions(sizes, [("tall", "next"), ("short", "next")])
    assert placed["tall"] == (0.0, 0.0)
    assert placed["short"] == (0.0, 400 + ROW_GAP)  # not into the tall node
    assert placed["next"] == (100 + COLUMN_GAP, 0.0)
    below_short = layered_positions({"s": (50, 40), "t": (50, 40)}, [])["t"]
    assert below_short == (0.0, MIN_ROW + ROW_GAP)


def test_a_column_is_ordered_by_where_its_inputs_are():
    sizes = {name: (10, 10) for name in ("top", "bottom", "from_bottom", "from_top")}
    placed = layered_positions(sizes, [("bottom", "from_bottom"), ("top", "from_top")])
    assert placed["from_top"][1] < placed["from_bottom"][1]

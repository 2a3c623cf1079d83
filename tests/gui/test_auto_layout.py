"""Opening a workflow without positions lays its nodes out in columns by
their depth in the graph, none covering another (NodeGraphQt's own layout
spaced a column by the *next* node's height, so a tall node, such as a
checkpoint loader, overlapped the one below it)."""
from __future__ import annotations

import itertools
import json

import pytest

from tests.gui.conftest import REPO

SIZE = (1400, 860)  # the default window; smaller ones: see test_canvas_readability
UNPLACED = [p for p in sorted((REPO / "workflows").glob("*.json"))
            if not json.loads(p.read_text()).get("ui", {}).get("nodes")]


def rect(node):
    from PySide6 import QtCore

    x, y = node.pos()
    return QtCore.QRectF(x, y, node.view.width, node.view.height)


@pytest.mark.parametrize("path", UNPLACED, ids=lambda p: p.stem)
def test_no_node_covers_another_after_opening(window, path):
    assert window.open_path(path)
    nodes = window.graph.all_nodes()
    for a, b in itertools.combinations(nodes, 2):
        assert not rect(a).intersects(rect(b)), (a.name(), b.name())


def test_columns_follow_the_links(window):
    assert window.open_path(REPO / "workflows" / "clip-guidance.json")
    x = {node.name(): node.pos()[0] for node in window.graph.all_nodes()}
    assert x["Checkpoint loader"] < x["CLIP guidance"] < x["Sampler (no prompt)"] < x["To pixels"]
    assert x["Noise-aware CLIP loader"] < x["CLIP guidance"]


@pytest.mark.parametrize("path", UNPLACED, ids=lambda p: p.stem)
def test_overview_titles_of_a_laid_out_workflow_do_not_cover_each_other(qtbot, window, path):
    from PySide6 import QtWidgets

    from app import graph_adapter as adapter

    window.resize(*SIZE)
    QtWidgets.QApplication.processEvents()
    assert window.open_path(path)
    for _ in range(3):
        QtWidgets.QApplication.processEvents()
        qtbot.wait(20)
    viewer = window.graph.viewer()
    labels = [(node.name(), node.view.title_label) for node in adapter.workflow_nodes(window.graph)]
    rects = [(name, label.deviceTransform(viewer.viewportTransform()).mapRect(label.boundingRect()))
             for name, label in labels if label.isVisible()]
    overlaps = [(a, b) for i, (a, ra) in enumerate(rects) for b, rb in rects[i + 1:]
                if ra.intersects(rb)]
    assert overlaps == []

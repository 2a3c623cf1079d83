"""How long the editor takes with a large graph: open, delete all, undo, save.

Opens the real main window offscreen and gives it a workflow of N image nodes
(pattern -> add-noise pairs in a grid, N/2 links, as tests/gui/test_large_graph.py
builds), then times opening it, selecting and deleting every node, undoing
that, fitting and repainting the view, and reading the document back for a
save. Embedded parameter widgets are most of the cost (FACTS: 200 nodes take
0.25 s bare, 1.2 s with three widgets each). Target: a 500-node graph opens in
under 60 s. Run: ``python bench/large_graph.py [--nodes N] [--repeats R]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtCore  # noqa: E402

from app.gui.app import application, make_window  # noqa: E402
from core.workflow import Workflow  # noqa: E402
from core.workflow.model import Node  # noqa: E402

TARGET_OPEN_S = 60.0


def grid_workflow(count: int) -> Workflow:
    """``count`` nodes: pattern -> add-noise pairs, 25 to a column."""
    workflow = Workflow()
    for index in range(count):
        if index % 2 == 0:
            node = Node(f"pattern_{index}", "image.pattern", params={})
        else:
            node = Node(f"noise_{index}", "image.add_noise", params={"seed": index})
        workflow.add_node(node)
        if index % 2 == 1:
            workflow.connect(f"pattern_{index - 1}", "image", node.id, "image")
        column, row = divmod(index, 25)
        workflow.ui.setdefault("nodes", {})[node.id] = {"pos": [column * 260.0, row * 160.0]}
    return workflow


def isolate_settings() -> None:
    """The window's QSettings go to a temporary folder, never the person's own."""
    folder = tempfile.mkdtemp(prefix="dw-bench-settings-")
    for fmt in (QtCore.QSettings.Format.NativeFormat, QtCore.QSettings.Format.IniFormat):
        QtCore.QSettings.setPath(fmt, QtCore.QSettings.Scope.UserScope, folder)


def _timed(action) -> tuple[float, float]:
    """Wall-clock and CPU seconds of ``action``: on shared cores the CPU time is
    the steadier of the two."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure_once(window, workflow: Workflow) -> dict[str, float]:
    """(wall, CPU) seconds per phase for one open-edit-save cycle of ``workflow``."""
    times = {"open": _timed(lambda: window.document.open_workflow(workflow, "big"))}
    times["delete all"] = _timed(lambda: (window.select_all(), window.delete_selected()))
    times["undo"] = _timed(window.undo)

    def repaint() -> None:
        window.fit_view()
        window.graph.viewer().viewport().repaint()

    times["fit + repaint"] = _timed(repaint)
    times["read back (save)"] = _timed(window.document.workflow)
    window.graph.undo_stack().setClean()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    isolate_settings()
    app = application()
    window = make_window(autosave_path=Path(tempfile.mkdtemp()) / "recovery.json")
    window.show()
    app.processEvents()
    workflow = grid_workflow(args.nodes)
    runs = [measure_once(window, workflow) for _ in range(args.repeats)]
    print(f"{args.nodes} nodes, {len(workflow.links)} links, median of {args.repeats} "
          "(each open after the first also clears the graph before):")
    print(f"  {'phase':18s} {'wall':>8s} {'CPU':>8s}")
    for phase in runs[0]:
        wall = statistics.median(r[phase][0] for r in runs)
        cpu = statistics.median(r[phase][1] for r in runs)
        print(f"  {phase:18s} {wall:7.2f}s {cpu:7.2f}s")
    opened = statistics.median(r["open"][0] for r in runs)
    verdict = "met" if opened < TARGET_OPEN_S else "NOT met"
    print(f"target open < {TARGET_OPEN_S:.0f} s: {verdict}")
    window.close()
    app.processEvents()


if __name__ == "__main__":
    main()

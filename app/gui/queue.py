"""The run queue: Run while a run is going waits its turn instead of being refused.

Each item holds its own copy of the workflow as it was when queued (later
edits to the canvas do not leak into it). Items start one after another when
the window reports a run finished; one that fails validation (or whose model
file is not given) is skipped with a log message, and the queue goes on.
"Run N times" queues N copies with the seed of every sampler raised by 0 … N−1.
The status bar shows a "Queue: n" button whose menu cancels items one by one.
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtCore, QtWidgets

from core.workflow import Workflow

#: Node types whose ``seed`` "Run N times" raises: the samplers.
SAMPLER_TYPES = frozenset({"diffusion.sampler"})
_SEED_LIMIT = 2**63  # the samplers' seed range is 0 … 2**63 − 1


def with_seed_offset(workflow: Workflow, offset: int) -> Workflow:
    """A copy of ``workflow`` with ``offset`` added to every sampler's seed."""
    copy = workflow.copy()
    for node in copy:
        if node.type in SAMPLER_TYPES and isinstance(node.params.get("seed"), int):
            node.params["seed"] = (node.params["seed"] + offset) % _SEED_LIMIT
    return copy


def sampler_seeds(workflow: Workflow) -> list[int]:
    return [n.params["seed"] for n in workflow
            if n.type in SAMPLER_TYPES and isinstance(n.params.get("seed"), int)]


@dataclass(frozen=True)
class QueueItem:
    number: int
    label: str
    workflow: Workflow


class RunQueue(QtCore.QObject):
    """Waiting runs of one window, first in, first out."""

    changed = QtCore.Signal()

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.items: list[QueueItem] = []
        self._numbers = 0
        window.run_finished.connect(self._run_finished)

    def add(self, workflow: Workflow, label: str | None = None) -> QueueItem:
        """Queue a copy of ``workflow``; it starts when the runs before it are done."""
        self._numbers += 1
        seeds = sampler_seeds(workflow)
        label = label or (f"#{self._numbers} {self.window.document.display_name()}"
                          + (f", seed {seeds[0]}" if seeds else ""))
        item = QueueItem(self._numbers, label, workflow.copy())
        self.items.append(item)
        self.window.log.add(f"queued {item.label} ({len(self.items)} waiting)", "info")
        self.changed.emit()
        return item

    def run_or_queue(self, workflow: Workflow) -> bool:
        """Start ``workflow`` now when nothing runs, else queue it."""
        if self.window.runner.running or self.items:
            self.add(workflow)
            self.start_next()
            return True
        return self.window.run_graph(workflow)

    def run_times(self, count: int) -> None:
        """Run the document ``count`` times, the samplers' seeds raised by 0 … count−1."""
        base = self.window.document.workflow()
        for offset in range(count):
            self.add(with_seed_offset(base, offset))
        self.start_next()

    def run_times_dialog(self) -> None:
        count, ok = QtWidgets.QInputDialog.getInt(
            self.window, "Run N times", "Runs (the seed goes up by one each time):", 4, 1, 1000)
        if ok:
            self.run_times(count)

    def cancel(self, number: int) -> bool:
        """Drop the waiting item ``number``; False when it is not waiting (any more)."""
        kept = [item for item in self.items if item.number != number]
        if len(kept) == len(self.items):
            return False
        self.items = kept
        self.window.log.add(f"removed queued run #{number}", "info")
        self.changed.emit()
        return True

    def clear(self) -> None:
        if self.items:
            self.items = []
            self.window.log.add("the run queue was cleared", "info")
            self.changed.emit()

    @QtCore.Slot(object)
    def _run_finished(self, _outcome) -> None:
        # After every other slot of run_finished has seen the run end.
        QtCore.QTimer.singleShot(0, self.start_next)

    @QtCore.Slot()
    def start_next(self) -> None:
        """Start the first waiting item that passes validation; skip the others."""
        while self.items and not self.window.runner.running and self.window.isVisible():
            item = self.items.pop(0)
            self.changed.emit()
            if self.window.run_graph(item.workflow):
                self.window.log.add(f"started queued run {item.label}", "info")
                return
            self.window.log.add(f"skipped queued run {item.label}: it cannot run "
                                "(see the problems above)", "warning")


class QueueButton(QtWidgets.QToolButton):
    """"Queue: n" in the status bar; its menu removes waiting runs one by one."""

    def __init__(self, queue: RunQueue, parent=None) -> None:
        super().__init__(parent)
        self.queue = queue
        self.setObjectName("run_queue")
        self.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        self.setMenu(QtWidgets.QMenu(self))
        queue.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        items = self.queue.items
        self.setText(f"Queue: {len(items)}")
        self.setToolTip("Runs waiting their turn; choose one to remove it")
        self.setVisible(bool(items))
        menu = self.menu()
        menu.clear()
        for item in items:
            action = menu.addAction(f"Remove {item.label}")
            action.triggered.connect(lambda _=False, n=item.number: self.queue.cancel(n))
        if items:
            menu.addSeparator()
            menu.addAction("Clear the queue", self.queue.clear)


def install(window) -> RunQueue:
    """Give the window a run queue and its status-bar button."""
    queue = RunQueue(window)
    window.statusBar().addPermanentWidget(QueueButton(queue))
    return queue

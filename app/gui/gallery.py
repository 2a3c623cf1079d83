"""The history of run images (a gallery) that outlives the document.

The Images dock's top strip shows the latest run of the *open* workflow;
this history keeps every run's images, newest first, across opened files,
each with the workflow JSON it came from, so "Open its workflow" brings the
graph that made a picture back. Memory is bounded: past ``limit_bytes`` the
oldest runs' images are dropped (the PNGs a person saved are on disk anyway).

Labels name the image node's title, the batch index and the seed of the
sampler upstream, because every thumbnail once read "save".
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable

from PySide6 import QtCore, QtGui, QtWidgets

from app.gui.previews import Playback
from core.workflow import Workflow, loads

DEFAULT_LIMIT_BYTES = 256 * 2**20


def upstream_seed(workflow: Workflow, node_id: str) -> int | None:
    """The seed of the nearest node upstream of ``node_id`` that has one (its sampler)."""
    seen, frontier = set(), [node_id]
    while frontier:
        following = []
        for current in frontier:
            for link in workflow.links_into(current).values():
                if link.src_node in seen or link.src_node not in workflow.nodes:
                    continue
                seen.add(link.src_node)
                params = workflow.nodes[link.src_node].params
                if isinstance(params.get("seed"), int):
                    return params["seed"]
                following.append(link.src_node)
        frontier = sorted(following)
    return None


def image_labels(workflow: Workflow, node_ids: Iterable[str]) -> list[str]:
    """One label per image, in order: "<node title> #<batch index> · seed <s>"."""
    labels, counts = [], {}
    for node_id in node_ids:
        counts[node_id] = counts.get(node_id, 0) + 1
        node = workflow.nodes.get(node_id)
        title = (node.title if node is not None and node.title else node_id)
        seed = upstream_seed(workflow, node_id)
        labels.append(f"{title} #{counts[node_id]}" + ("" if seed is None else f" · seed {seed}"))
    return labels


@dataclass(frozen=True)
class GalleryEntry:
    """One image of one run, with what it takes to reproduce it."""

    image: QtGui.QImage
    label: str
    node_id: str
    workflow_json: str
    run: int
    source: str  # the document's name when the run finished
    playback: Playback | None = None  # a video clip: ``image`` is its filmstrip

    def caption(self) -> str:
        return f"run {self.run} of {self.source}: {self.label}"


class Gallery(QtCore.QObject):
    """Runs' images, oldest first, within a memory budget."""

    changed = QtCore.Signal()

    def __init__(self, limit_bytes: int = DEFAULT_LIMIT_BYTES, parent=None) -> None:
        super().__init__(parent)
        self.limit_bytes = limit_bytes
        self.entries: deque[GalleryEntry] = deque()
        self.runs = 0

    def add_run(self, images, labels, workflow_json: str, source: str,
                playback=None) -> list[GalleryEntry]:
        self.runs += 1
        playback = list(playback or [None] * len(images))
        added = [GalleryEntry(image, label, node_id, workflow_json, self.runs, source, clip)
                 for (node_id, image), label, clip in zip(images, labels, playback)]
        self.entries.extend(added)
        while len(self.entries) > len(added) and self.bytes_used() > self.limit_bytes:
            self.entries.popleft()
        self.changed.emit()
        return added

    def bytes_used(self) -> int:
        return sum(entry.image.sizeInBytes() for entry in self.entries)


#: A thumbnail's cell in a strip: a label longer than this wraps (or is elided
#: at its last line) instead of widening the cell, so more pictures show.
CELL_WIDTH = 164


def make_thumbnail_strip(strip: QtWidgets.QListWidget, icon_px: int, lines: int) -> None:
    """A one-row strip of thumbnails whose labels take ``lines`` lines in fixed
    cells; the strip is exactly as tall as a cell (the picture above needs the rest)."""
    strip.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
    strip.setIconSize(QtCore.QSize(icon_px, icon_px))
    strip.setFlow(QtWidgets.QListView.Flow.LeftToRight)
    strip.setWrapping(False)
    strip.setWordWrap(True)
    strip.setTextElideMode(QtCore.Qt.TextElideMode.ElideRight)
    strip.setUniformItemSizes(True)
    cell = QtCore.QSize(CELL_WIDTH, icon_px + lines * strip.fontMetrics().lineSpacing() + 8)
    strip.setGridSize(cell)
    scrollbar = strip.horizontalScrollBar().sizeHint().height()
    strip.setFixedHeight(cell.height() + scrollbar + 2 * strip.frameWidth() + 2)


class GalleryStrip(QtWidgets.QListWidget):
    """The history as thumbnails, newest first; the chosen entry is ``current_entry()``."""

    entry_chosen = QtCore.Signal(object)  # GalleryEntry

    def __init__(self, gallery: Gallery, parent=None) -> None:
        super().__init__(parent)
        self.gallery = gallery
        self.setObjectName("gallery")
        make_thumbnail_strip(self, 40, lines=2)  # "run 3: Save image #2 · seed 7"
        self.shown: list[GalleryEntry] = []
        gallery.changed.connect(self.refresh)
        self.currentRowChanged.connect(self._row_changed)

    def refresh(self) -> None:
        with QtCore.QSignalBlocker(self):
            self.clear()
            self.shown = list(reversed(self.gallery.entries))
            for entry in self.shown:
                item = QtWidgets.QListWidgetItem(QtGui.QIcon(QtGui.QPixmap.fromImage(entry.image)),
                                                 f"run {entry.run}: {entry.label}")
                item.setToolTip(entry.caption())
                self.addItem(item)

    def current_entry(self) -> GalleryEntry | None:
        row = self.currentRow()
        return self.shown[row] if 0 <= row < len(self.shown) else None

    def _row_changed(self, row: int) -> None:
        if 0 <= row < len(self.shown):
            self.entry_chosen.emit(self.shown[row])


def install(window) -> Gallery:
    """Wire the Images dock to the window: a newly opened document clears the
    latest-run strip (the history stays), and "Open its workflow" opens the
    chosen image's workflow as an unsaved document."""
    viewer = window.images
    state = {"nodes": _nodes(window.graph)}

    def document_changed() -> None:
        # Opened, new or recovered: every node was replaced and the undo history
        # cleared. A save (or Save As) keeps the nodes; a person who deleted them
        # all has that on the undo stack.
        nodes = _nodes(window.graph)
        opened = not (nodes & state["nodes"]) and window.graph.undo_stack().count() == 0
        state["nodes"] = nodes
        # The document names itself after the load: say the name once it is known.
        if opened or (viewer.shown is None and not viewer.entries):
            earlier = " Earlier images are in the history below." if viewer.gallery.entries else ""
            viewer.clear_current(f"{window.document.display_name()}: no run yet.{earlier}")

    def open_workflow(workflow_json: str, name: str) -> None:
        from app.gui import file_actions

        if not file_actions.maybe_save(window):
            return
        window.document.open_workflow(loads(workflow_json), name)
        window.states.clear()
        window.fit_view()
        window.statusBar().showMessage(f"Opened the workflow of {name}", 5000)

    window.document.changed.connect(document_changed)
    viewer.open_workflow_requested.connect(open_workflow)
    return viewer.gallery


def _nodes(graph) -> set:
    """The canvas nodes themselves (held, so their ids cannot be reused meanwhile)."""
    return set(graph.all_nodes())

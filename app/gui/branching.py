"""Branch from step k: pick a step on the timeline, change settings, run only
what is left from that step's x_t, and compare the result with the original.

The graph is built by ``core.workflow.branch.branch_at``: a prefix sampler
repeats steps 1…k bit for bit (the executor's cache keeps the original's
result) and a branch sampler continues from its x_k with the new settings;
everything downstream is copied, so the run yields the original's images
(A) and the branch's (B). The branch graph records its branch point and can
be saved as a workflow of its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from core.diffusion.registry import SAMPLERS
from core.workflow import Workflow, save
from core.workflow.branch import SAMPLER_TYPE, branch_at
from core.nodespec import MAX_SEED

PROMPT_TYPE = "conditioning.encode"
CONTROLNET_TYPE = "conditioning.controlnet"
NO_POINT = "Choose a step of a sampler of this graph on the timeline to branch from"
THUMB = 96  # A/B thumbnails: one row of them fits the short bottom dock area
#: Wider than this, the settings and the A/B comparison sit side by side.
SIDE_BY_SIDE = 560


@dataclass(frozen=True)
class BranchPoint:
    """Where a branch starts: a sampler of the document's graph after k ≥ 1 of its
    steps ("step k/N" on the timeline, k steps done); steps k+1…N are rerun."""

    workflow: Workflow
    sampler_id: str
    step: int
    prompt_id: str | None = None      # a prompt node feeding the sampler's 'positive' directly
    controlnet_id: str | None = None  # a ControlNet node feeding the sampler directly


@dataclass
class Branch:
    """A built branch graph and, after its run, the images of both sides."""

    point: BranchPoint
    workflow: Workflow
    sampler_id: str
    original: list[QtGui.QImage] = field(default_factory=list)
    branch: list[QtGui.QImage] = field(default_factory=list)


def branch_point(workflow: Workflow, sampler_id: str, step: int) -> BranchPoint | None:
    """The branch point after ``step`` steps of a sampler in ``workflow`` (None if it
    cannot branch there: not this graph's sampler, or no step left after it)."""
    if sampler_id not in workflow.nodes or workflow.nodes[sampler_id].type != SAMPLER_TYPE or step < 1:
        return None
    stop = int(workflow.nodes[sampler_id].params.get("stop_at_step", 0) or 0)
    if stop and step >= stop:
        return None
    feeds = workflow.links_into(sampler_id)
    prompt = feeds.get("positive")
    prompt_id = prompt.src_node if prompt and workflow.nodes[prompt.src_node].type == PROMPT_TYPE else None
    controlnet_id = next((link.src_node for link in feeds.values()
                          if workflow.nodes[link.src_node].type == CONTROLNET_TYPE), None)
    return BranchPoint(workflow, sampler_id, step, prompt_id, controlnet_id)


def split_images(images: list[tuple[str, QtGui.QImage]], original: Workflow) -> tuple[list, list]:
    """A run's output images: those of the original graph's nodes (A), then the copies' (B)."""
    a = [image for node_id, image in images if node_id in original.nodes]
    b = [image for node_id, image in images if node_id not in original.nodes]
    return a, b


class BranchPanel(QtWidgets.QWidget):
    """The settings of a branch, its run and save buttons, and the A/B comparison."""

    run_requested = QtCore.Signal(object)  # Branch

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.point: BranchPoint | None = None
        self.last: Branch | None = None
        self.where = QtWidgets.QLabel(NO_POINT)
        self.where.setWordWrap(True)
        self.guidance = QtWidgets.QDoubleSpinBox()
        self.guidance.setRange(0.0, 50.0)
        self.guidance.setSingleStep(0.5)
        self.sampler = QtWidgets.QComboBox()
        self.sampler.addItems(list(SAMPLERS))
        self.seed = QtWidgets.QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Seed of the noise the remaining steps draw (ancestral samplers)")
        self.prompt = QtWidgets.QLineEdit()
        self.strength = QtWidgets.QDoubleSpinBox()
        self.strength.setRange(0.0, 3.0)
        self.strength.setSingleStep(0.05)
        self.run_button = QtWidgets.QPushButton("Run branch")
        self.run_button.clicked.connect(self.request_run)
        self.save_button = QtWidgets.QPushButton("Save branch as…")
        self.save_button.clicked.connect(self._save_dialog)
        self.comparison = QtWidgets.QGridLayout()
        self.comparison.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        self.comparison.setVerticalSpacing(2)
        self.comparison_box = QtWidgets.QWidget()
        self.comparison_box.setLayout(self.comparison)
        self.box = QtWidgets.QBoxLayout(QtWidgets.QBoxLayout.Direction.BottomToTop, self)
        self._layout()
        self._set_enabled(False)

    def _layout(self) -> None:
        form = QtWidgets.QFormLayout()
        form.addRow("Guidance scale", self.guidance)
        form.addRow("Sampler", self.sampler)
        form.addRow("Seed (remaining noise)", self.seed)
        form.addRow("Prompt", self.prompt)
        form.addRow("ControlNet strength", self.strength)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.save_button)
        settings = QtWidgets.QVBoxLayout()
        settings.addWidget(self.where)
        settings.addLayout(buttons)  # above the form: in view in the short bottom dock
        settings.addLayout(form)
        settings.addStretch(1)
        self.box.addLayout(settings)
        self.box.addWidget(self.comparison_box, 1, QtCore.Qt.AlignmentFlag.AlignTop)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Side by side when wide; stacked with the A/B comparison on top when
        narrow, so a result is never below the visible part of the dock."""
        Direction = QtWidgets.QBoxLayout.Direction
        self.box.setDirection(Direction.LeftToRight if event.size().width() >= SIDE_BY_SIDE
                              else Direction.BottomToTop)
        super().resizeEvent(event)

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (self.guidance, self.sampler, self.seed, self.run_button):
            widget.setEnabled(enabled)
        point = self.point
        self.prompt.setEnabled(enabled and point is not None and point.prompt_id is not None)
        self.strength.setEnabled(enabled and point is not None and point.controlnet_id is not None)
        self.save_button.setEnabled(enabled)

    # -- the branch point --------------------------------------------------------------
    def set_point(self, point: BranchPoint | None, total: int | None = None,
                  reason: str = NO_POINT) -> None:
        """Fill the editors with the sampler's (and its inputs') current settings;
        the same point again keeps what the person typed. None disables the
        panel and says ``reason``."""
        if point is not None and point == self.point:
            return
        self.point = point
        if point is None:
            self.where.setText(reason)
            self._set_enabled(False)
            return
        params = point.workflow.node(point.sampler_id).params
        of = f"/{total}" if total else ""
        rest = f"steps {point.step + 1}–{total}" if total else "the remaining steps"
        self.where.setText(f"Branch {point.sampler_id!r} after step {point.step}{of}: {rest} "
                           "run again from there with these settings")
        self.guidance.setValue(float(params.get("guidance", 1.0)))
        self.sampler.setCurrentText(str(params.get("sampler", "euler")))
        self.seed.setValue(min(int(params.get("seed", 0)), self.seed.maximum()))
        if point.prompt_id:
            self.prompt.setText(str(point.workflow.node(point.prompt_id).params.get("text", "")))
        if point.controlnet_id:
            self.strength.setValue(float(point.workflow.node(point.controlnet_id).params.get("strength", 1.0)))
        self._set_enabled(True)

    def changes(self) -> dict[str, dict[str, Any]]:
        """The settings that differ from the original, per node (what branch_at takes)."""
        point = self.point
        params = point.workflow.node(point.sampler_id).params
        wanted = {"guidance": self.guidance.value(), "sampler": self.sampler.currentText(),
                  "seed": min(self.seed.value(), MAX_SEED)}
        sampler = {k: v for k, v in wanted.items() if params.get(k) != v}
        changes = {point.sampler_id: sampler} if sampler else {}
        if point.prompt_id and self.prompt.text() != point.workflow.node(point.prompt_id).params.get("text", ""):
            changes[point.prompt_id] = {"text": self.prompt.text()}
        if point.controlnet_id:
            strength = point.workflow.node(point.controlnet_id).params.get("strength", 1.0)
            if abs(self.strength.value() - float(strength)) > 1e-9:
                changes[point.controlnet_id] = {"strength": self.strength.value()}
        return changes

    def build(self) -> Branch:
        """The branch graph for the current point and settings."""
        point = self.point
        workflow, sampler_id = branch_at(point.workflow, point.sampler_id, point.step, self.changes())
        return Branch(point, workflow, sampler_id)

    # -- actions -------------------------------------------------------------------------
    def request_run(self) -> None:
        if self.point is None:
            return
        self.last = self.build()
        self.run_requested.emit(self.last)

    def save_branch(self, path: str | Path) -> Path:
        """Write the branch graph (with its branch point in ``ui.branches``) as a workflow."""
        branch = self.build()
        path = Path(path)
        save(branch.workflow, path)
        return path

    def _save_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save branch as", "branch.json",
                                                        "Workflows (*.json)")
        if path:
            self.save_branch(path)

    def show_result(self, branch: Branch, images: list[tuple[str, QtGui.QImage]]) -> None:
        """Lay out each image's A (original) and B (branch) side by side in one
        row (one row fits the short bottom dock), and bring them into view."""
        branch.original, branch.branch = split_images(images, branch.point.workflow)
        while self.comparison.count():
            self.comparison.takeAt(0).widget().deleteLater()
        self.result_labels: list[QtWidgets.QLabel] = []
        self.comparison.addWidget(QtWidgets.QLabel(
            f"A: original · B: branch after step {branch.point.step}"), 0, 0, 1, -1)
        pairs = list(zip(branch.original, branch.branch))
        for item, pair in enumerate(pairs):
            for side, image in enumerate(pair):
                label = QtWidgets.QLabel()
                label.setPixmap(QtGui.QPixmap.fromImage(image).scaled(
                    THUMB, THUMB, QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                    QtCore.Qt.TransformationMode.FastTransformation))
                caption = QtWidgets.QLabel(f"{'AB'[side]} #{item + 1}" if len(pairs) > 1 else "AB"[side])
                caption.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
                self.comparison.addWidget(label, 1, 2 * item + side)
                self.comparison.addWidget(caption, 2, 2 * item + side)
                self.result_labels.append(label)
        scroll = self.parent()
        while scroll is not None and not isinstance(scroll, QtWidgets.QScrollArea):
            scroll = scroll.parent()
        if scroll is not None:
            QtCore.QTimer.singleShot(0, lambda: scroll.ensureWidgetVisible(self.comparison_box, 0, 0))

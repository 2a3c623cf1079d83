"""Issue 6 in the window: watch and steer the denoising loop.

:func:`install` adds the docks (steps, timeline, schedule plot, forward
process, branch) and the Run menu's Pause / Step / Continue and export
commands, and wires them to the window's run controller. The
:class:`Steering` object keeps the step history and routes a selected step
to every view; it runs no torch itself (the run's worker made the images;
decodes, plots' tables and exports go to :class:`~app.gui.jobs.Jobs`).
"""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from app.gui.branching import Branch, BranchPanel, branch_point
from app.gui.forward_explorer import ForwardExplorer
from app.gui.jobs import Jobs
from app.gui.previews import StepPreview
from app.gui.schedule_plot import SchedulePlot
from app.gui.step_export import export_steps, parse_steps
from app.gui.step_history import StepHistory
from app.gui.step_view import StepView
from app.gui.timeline import Timeline
from core.workflow.chains import sampler_chains

Key = QtGui.QKeySequence
MB = 2**20


class Steering(QtCore.QObject):
    """The history of steps and the views that show, scrub and branch them."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        budget = int(window.settings.value("steer/history_mb", 256))
        self.history = StepHistory(budget * MB)
        self.jobs = Jobs(self)
        self.step_view = StepView(self.jobs)
        self.timeline = Timeline(self.history)
        self.timeline.budget_box.setValue(budget)
        self.timeline.every_box.setValue(int(window.settings.value("steer/every", 1)))
        self.schedule_plot = SchedulePlot(self.jobs)
        self.forward = ForwardExplorer(self.jobs)
        self.branch_panel = BranchPanel()
        self.pending_branch: Branch | None = None
        self.last_record: StepPreview | None = None
        self.pause_label = QtWidgets.QLabel("")  # permanent: progress messages would overwrite it
        window.statusBar().addPermanentWidget(self.pause_label)
        self._schedules_timer = QtCore.QTimer(self, singleShot=True, interval=300)
        self._schedules_timer.timeout.connect(self.refresh_schedules)
        self._workflow = None  # the document's graph, serialised once per edit, not per scrub
        self._chains: dict[str, str] = {}  # the running samplers that continue another

    # -- wiring ------------------------------------------------------------------------
    def wire(self) -> None:
        runner = self.window.runner
        runner.step_preview.connect(self.on_step)
        runner.started.connect(self.on_run_started)
        self.window.run_finished.connect(self.on_run_finished)
        self.window.document.changed.connect(self._graph_changed)  # opened, saved, new
        self.window.graph.undo_stack().indexChanged.connect(self._graph_changed)  # every edit
        self.timeline.step_selected.connect(self.on_selected)
        self.timeline.budget_changed.connect(self.set_budget)
        self.timeline.every_box.valueChanged.connect(
            lambda n: self.window.settings.setValue("steer/every", n))
        self.branch_panel.run_requested.connect(self.run_branch)
        docks = self.window.docks  # background tabs compute nothing until they are shown
        docks["schedule"].visibilityChanged.connect(self.schedule_plot.set_active)
        docks["forward"].visibilityChanged.connect(self.forward.set_active)

    # -- slots on the GUI thread -----------------------------------------------------------
    @QtCore.Slot(object)
    def on_step(self, record: StepPreview) -> None:
        if record.x_t is None:  # previews were off: nothing to show or keep
            return
        self.history.add(record, self._chains.get(record.node_id))
        self.timeline.step_added(record)
        self.last_record = record
        gate = self.window.runner.gate
        if gate is not None and gate.paused:
            self._show_paused(record)

    def _show_paused(self, record: StepPreview) -> None:
        """The worker stops right after emitting a step, so the last step seen is
        where it waits (a step already on its way corrects this when it arrives)."""
        self.pause_label.setText(f"Paused after step {record.index + 1}/{record.total}: "
                                 "Step (F7) or Continue (F8)")

    @QtCore.Slot()
    def on_run_started(self) -> None:
        workflow = self.window.runner.running_workflow
        self._chains = sampler_chains(workflow, self.window.runner.registry) if workflow else {}
        self.last_record = None
        self.pause_label.setText("")
        self._update_actions()

    @QtCore.Slot(object)
    def on_run_finished(self, outcome) -> None:
        self.pause_label.setText("")
        self._update_actions()
        branch, self.pending_branch = self.pending_branch, None
        if branch is not None and outcome.status == "finished":
            self.branch_panel.show_result(branch, outcome.images)
            self.window.docks["branch"].raise_()
        self.refresh_schedules()
        record = self.timeline.current()
        if record is not None:  # the branch point can only be taken from a graph at rest
            self.on_selected(record)

    @QtCore.Slot(object)
    def on_selected(self, record: StepPreview) -> None:
        """One step chosen (live or scrubbed): show it everywhere."""
        self.step_view.show_step(record)
        self.schedule_plot.set_steps(self.timeline.steps(), record)
        if not self.window.runner.running:
            self._offer_branch(record)

    def _offer_branch(self, record: StepPreview) -> None:
        """Branch after the selected step: "step k/N" means k steps done (the
        numbering of the timeline and the progress bar), so the branch reruns
        steps k+1…N, and after the last step there is nothing left to branch."""
        done = record.index + 1
        if done >= record.total:
            self.branch_panel.set_point(None, reason=f"Step {done}/{record.total} is the last step: "
                                        "nothing is left to branch. Choose an earlier step on the timeline.")
            return
        self.branch_panel.set_point(branch_point(self.workflow(), record.node_id, done), record.total)

    def workflow(self):
        """The document's workflow (cached until the graph changes)."""
        if self._workflow is None:
            self._workflow = self.window.document.workflow()
        return self._workflow

    @QtCore.Slot()
    def _graph_changed(self, *_args) -> None:
        self._workflow = None
        self._schedules_timer.start()

    @QtCore.Slot(int)
    def set_budget(self, megabytes: int) -> None:
        self.history.set_budget(megabytes * MB)
        self.window.settings.setValue("steer/history_mb", megabytes)
        self.timeline.refresh_tracks()

    @QtCore.Slot()
    def refresh_schedules(self) -> None:
        self.schedule_plot.set_workflow(self.workflow())

    # -- commands --------------------------------------------------------------------------
    def pause(self) -> None:
        self.window.runner.pause()
        if self.last_record is not None and self.window.runner.running:
            self._show_paused(self.last_record)
        self._update_actions()

    def step_once(self) -> None:
        self.window.runner.step_once()

    def resume(self) -> None:
        self.window.runner.resume()
        self.pause_label.setText("")
        self._update_actions()

    def run_branch(self, branch: Branch) -> None:
        if self.window.run_graph(branch.workflow):
            self.pending_branch = branch

    def export_dialog(self) -> None:
        """Ask for the animation's name; its format follows the chosen filter (GIF or WebP)."""
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(
            self.window, "Export steps: animation (a filmstrip PNG is written beside it)",
            "steps.gif", "GIF animation (*.gif);;WebP animation (*.webp)")
        if not path:
            return
        text, accepted = QtWidgets.QInputDialog.getText(
            self.window, "Export steps", "Steps in the filmstrip (e.g. 1, 5, 10-12; "
            "empty: 8 evenly spread):")
        if not accepted:
            return
        try:
            steps = parse_steps(text)
        except ValueError as error:
            self.window.statusBar().showMessage(f"Export: {error}", 8000)
            return
        path = Path(path)
        fmt = "webp" if "webp" in chosen or path.suffix.lower() == ".webp" else "gif"
        self.export_to(path.parent, fmt, stem=path.stem, steps=steps)

    def export_to(self, folder: Path, animation_format: str = "gif", done=None,
                  stem: str | None = None, steps: list[int] | None = None) -> None:
        """Filmstrip PNG and animation of the scrubbed track, written in a worker."""
        key = self.timeline.current_track()
        if key is None:
            self.window.statusBar().showMessage("No steps to export yet: run a workflow")
            return
        records = self.history.steps(key)
        stem = stem or key[1]

        def finished(paths) -> None:
            self.window.statusBar().showMessage("Exported " + ", ".join(p.name for p in paths), 8000)
            if done is not None:
                done(paths)

        self.jobs.submit("export", lambda: export_steps(records, folder, stem, steps=steps,
                                                        animation_format=animation_format),
                         finished, lambda error: self.window.log.add(f"export failed: {error}", "error"))

    def _update_actions(self) -> None:
        actions = self.window.actions_by_name
        gate = self.window.runner.gate
        running = self.window.runner.running
        paused = gate is not None and gate.paused
        actions["steer_pause"].setEnabled(running and not paused)
        actions["steer_step"].setEnabled(running and paused)
        actions["steer_continue"].setEnabled(running and paused)


# (name, text, Steering method, shortcut, menu)
ACTIONS = (
    ("steer_pause", "&Pause at next step", "pause", "F6", "&Run"),
    ("steer_step", "&Step one sampler step", "step_once", "F7", "&Run"),
    ("steer_continue", "C&ontinue", "resume", "F8", "&Run"),
    ("steer_export", "Export &steps (filmstrip, animation)…", "export_dialog", "", "&Run"),
)


def install(window) -> Steering:
    """Add issue 6's docks and commands to ``window``; return the steering object."""
    steering = Steering(window)
    area = QtCore.Qt.DockWidgetArea
    window.add_dock("steps", "Steps", steering.step_view, area.RightDockWidgetArea)
    window.add_dock("timeline", "Timeline", steering.timeline, area.BottomDockWidgetArea)
    window.add_dock("schedule", "Schedule plot", steering.schedule_plot, area.RightDockWidgetArea,
                    scrollable=True)
    window.add_dock("forward", "Forward process", steering.forward, area.RightDockWidgetArea,
                    scrollable=True)
    window.add_dock("branch", "Branch", steering.branch_panel, area.RightDockWidgetArea,
                    scrollable=True)
    # where these docks go (tabs under the timeline) is the window's layout: layout_docks
    menus = {menu.title(): menu for menu in (a.menu() for a in window.menuBar().actions()) if menu}
    run_menu = menus["&Run"]
    run_menu.addSeparator()
    for name, text, method, shortcut, _menu in ACTIONS:
        action = run_menu.addAction(text)
        if shortcut:
            action.setShortcut(Key(shortcut))
        action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(getattr(steering, method))
        window.actions_by_name[name] = action
    steering.wire()
    steering._update_actions()
    return steering

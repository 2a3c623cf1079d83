"""The main window: the canvas in the middle, docks around it, menus on top.

Docks are registered through :meth:`MainWindow.add_dock`, which also lists
them in the View menu and lets QSettings restore their layout, so later
views (live steps, scrubber, schedule plot) are one call each.
"""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from app import graph_adapter as adapter
from app.gui import file_actions
from app.gui.actions import MENU_TABLE, key_sequences
from app.gui.autosave import Autosaver
from app.gui.document import Document
from app.gui.canvas_minimap import install as install_minimap
from app.gui.examples import install as install_examples
from app.gui.gallery import install as install_gallery
from app.gui.generate_panel import install as install_generate
from app.gui.canvas_inline_preview import install as install_inline_previews
from app.gui.queue import install as install_queue
from app.gui.canvas_node_menu import install as install_node_menu
from app.gui.graph import WorkbenchGraph
from app.gui.image_viewer import ImageViewer
from app.gui.layout_docks import MIN_CANVAS_SHARE, DockLayout  # noqa: F401 - re-exported for tests
from app.gui.log_dock import LogView
from app.gui.missing_files import ask_with_dialog, resolve_missing_files
from app.gui.node_states import NodeStates
from app.gui.palette import NodePalette, add_beside_selection
from app.gui.properties import PropertiesPanel
from app.gui.run_settings import install as install_run_settings
from app.gui.runner import RunController, RunOutcome
from app.gui.steer import install as install_steering
from core.registry import NodeRegistry
from core.validation import Problem

APP_NAME = "Diffusion Workbench"


#: Bumped whenever docks are added or removed (or the default layout changes): a
#: window state saved with other docks would stack the new ones where the old
#: layout left room.
LAYOUT_VERSION = 4


class MainWindow(QtWidgets.QMainWindow):
    """One document, its canvas, and the run machinery."""

    run_finished = QtCore.Signal(object)  # RunOutcome

    def __init__(self, registry: NodeRegistry, settings: QtCore.QSettings | None = None,
                 autosave_path: Path | None = None) -> None:
        super().__init__()
        self.registry = registry
        self.ask_for_file = ask_with_dialog  # where a missing model file is asked for (tests swap it)
        self.settings = settings or QtCore.QSettings()
        self.graph = WorkbenchGraph(registry, self)
        self.document = Document(self.graph, registry, self)
        self.states = NodeStates(self.graph)
        self.runner = RunController(registry, self)
        self.docks: dict[str, QtWidgets.QDockWidget] = {}
        self.dock_layout = DockLayout(self)
        self.actions_by_name: dict[str, QtGui.QAction] = {}
        self.setCentralWidget(self.graph.widget)
        self.setAcceptDrops(True)
        self._build_docks()
        self._build_menus()
        self._build_status_bar()
        self._wire()
        self.autosaver = Autosaver(self.document, autosave_path, parent=self)
        self.steer = install_steering(self)  # issue 6: steps, scrubber, pause, branch, plots
        self.run_settings = install_run_settings(self)  # device, precision, free models
        install_examples(self)  # File → Examples…
        self.gallery = install_gallery(self)  # run history that survives opening files
        self.queue = install_queue(self)  # Run while running queues; Run N times
        self.node_menu = install_node_menu(self)  # right-click a node; Ctrl+B / Ctrl+M
        self.generate = install_generate(self)  # prompt, seed, steps… bound to the graph's nodes
        self.inline_previews = install_inline_previews(self)  # x̂₀ and images drawn under nodes
        self.minimap = install_minimap(self)  # the whole graph in the canvas's corner
        self.resize(1400, 860)
        self._restore_layout()
        self._update_title()
        self._canvas_checked = False

    # -- construction ----------------------------------------------------------
    def add_dock(self, name: str, title: str, widget: QtWidgets.QWidget,
                 area: QtCore.Qt.DockWidgetArea, scrollable: bool = False) -> QtWidgets.QDockWidget:
        """Add a dock that the View menu can show and QSettings remembers.
        ``scrollable`` puts a wide widget in a scroll area, so that its dock
        area can be narrower than the widget (and leave room for the canvas)."""
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(f"dock_{name}")
        if scrollable:
            scroll = QtWidgets.QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
            scroll.setWidget(widget)
            widget = scroll
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.docks[name] = dock
        self.dock_layout.added(name, dock, area)
        if hasattr(self, "view_menu"):
            self.view_menu.addAction(dock.toggleViewAction())
        return dock

    def _build_docks(self) -> None:
        area = QtCore.Qt.DockWidgetArea
        self.palette = NodePalette(self.registry)
        self.properties = PropertiesPanel(self.graph)
        self.images = ImageViewer()
        self.log = LogView()
        self.add_dock("palette", "Nodes", self.palette, area.LeftDockWidgetArea)
        self.add_dock("properties", "Properties", self.properties, area.RightDockWidgetArea)
        self.add_dock("images", "Images", self.images, area.RightDockWidgetArea)
        self.add_dock("log", "Log", self.log, area.BottomDockWidgetArea)
        self.dock_layout.watch_selection(self.graph.scene())

    def _build_menus(self) -> None:
        menus: dict[str, QtWidgets.QMenu] = {}
        for menu_name, text, method, keys in MENU_TABLE:
            menu = menus.get(menu_name) or menus.setdefault(menu_name, self.menuBar().addMenu(menu_name))
            if method is None:
                self.recent_menu = menu.addMenu(text)
                continue
            action = menu.addAction(text)
            action.setShortcuts(key_sequences(keys))
            action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(getattr(self, method))
            self.actions_by_name[method] = action
        self.view_menu = menus["&View"]
        self.view_menu.addSeparator()
        for dock in self.docks.values():
            self.view_menu.addAction(dock.toggleViewAction())
        self.actions_by_name["cancel_run"].setEnabled(False)
        tab = QtGui.QShortcut(QtGui.QKeySequence("Tab"), self.graph.viewer())
        tab.setContext(QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut)
        tab.activated.connect(self.node_search)
        file_actions.fill_recent_menu(self)

    def _build_status_bar(self) -> None:
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setMaximumWidth(200)
        self.progress_bar.setVisible(False)
        self.device_label = QtWidgets.QLabel("")
        self.statusBar().addPermanentWidget(self.progress_bar)
        self.statusBar().addPermanentWidget(self.device_label)

    def _wire(self) -> None:
        self.document.changed.connect(self._update_title)
        self.graph.connection_refused.connect(self._connection_refused)
        self.graph.files_dropped.connect(self.open_dropped)
        self.palette.node_requested.connect(lambda t: add_beside_selection(self.graph, t))
        self.runner.node_state.connect(self._node_state)
        self.runner.progress.connect(self._progress)
        self.runner.log.connect(self.log.add)
        self.runner.finished.connect(self._run_done)

    # -- title, settings ---------------------------------------------------------
    def _update_title(self) -> None:
        self.setWindowTitle(f"{self.document.display_name()}[*] — {APP_NAME}")
        self.setWindowModified(self.document.modified)

    def _restore_layout(self) -> None:
        """The default layout (layout_docks), then the saved one over it if it is
        of this layout version; sizes come at the first show, when they are known."""
        self.dock_layout.arrange()
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self._layout_restored = state is not None and self.restoreState(state, LAYOUT_VERSION)
        self.dock_layout.readable_tabs()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if not self._canvas_checked:
            self._canvas_checked = True
            sized = self.keep_canvas_visible if getattr(self, "_layout_restored", False) \
                else self.dock_layout.default_sizes
            QtCore.QTimer.singleShot(0, sized)  # once the window has its real size

    def keep_canvas_visible(self) -> None:
        """Side docks back to their default widths when the canvas has less than
        MIN_CANVAS_SHARE of the window (a narrow screen, a layout saved on a
        wider one); also done after every resize."""
        self.dock_layout.keep_canvas_visible()

    def save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState(LAYOUT_VERSION))
        self.settings.sync()

    # -- file commands (bodies in file_actions) --------------------------------------
    def file_new(self) -> None:
        file_actions.new(self)

    def file_open_dialog(self) -> None:
        file_actions.open_dialog(self)

    def open_path(self, path: str | Path) -> bool:
        return file_actions.open_path(self, path)

    def open_dropped(self, paths: list[str]) -> None:
        if paths:
            self.open_path(paths[0])

    def file_save(self) -> bool:
        return file_actions.save(self)

    def file_save_as_dialog(self) -> bool:
        return file_actions.save_as_dialog(self)

    def export_image_dialog(self) -> None:
        self.images.save_dialog()

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # noqa: N802
        self.open_dropped([u.toLocalFile() for u in event.mimeData().urls() if u.toLocalFile()])

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802
        if not file_actions.maybe_save(self):
            event.ignore()
            return
        if self.runner.running:
            self.runner.cancel()
            self.runner.wait()
        self.autosaver.discard()
        self.save_layout()
        self.properties.detach()
        event.accept()

    # -- edit commands -------------------------------------------------------------
    def undo(self) -> None:
        self.graph.undo_stack().undo()

    def redo(self) -> None:
        self.graph.undo_stack().redo()

    def cut(self) -> None:
        self.graph.cut_nodes()

    def copy(self) -> None:
        self.graph.copy_nodes()

    def paste(self) -> None:
        self.graph.paste_nodes()

    def duplicate(self) -> None:
        self.graph.duplicate_nodes(self.graph.selected_nodes())

    def delete_selected(self) -> None:
        if self.graph.selected_nodes():
            self.graph.delete_nodes(self.graph.selected_nodes())

    def select_all(self) -> None:
        self.graph.select_all()

    def group_selection(self) -> None:
        self.graph.backdrop_selection()

    def toggle_bypass(self) -> None:
        self.node_menu.toggle_mode("bypass")  # app.gui.canvas_node_menu

    def toggle_mute(self) -> None:
        self.node_menu.toggle_mode("mute")

    def toggle_collapse(self) -> None:
        self.node_menu.toggle_collapsed()

    def add_node_at_centre(self, node_type: str):
        centre = self.graph.viewer().mapToScene(self.graph.viewer().viewport().rect().center())
        return self.graph.create_node(node_type, pos=(centre.x(), centre.y()))

    # -- view commands ---------------------------------------------------------------
    def fit_view(self) -> None:
        nodes = self.graph.all_nodes()
        if nodes:
            self.graph.viewer().zoom_to_nodes([n.view for n in nodes])

    def zoom_in(self) -> None:
        self.graph.set_zoom(self.graph.get_zoom() + 1)

    def zoom_out(self) -> None:
        self.graph.set_zoom(self.graph.get_zoom() - 1)

    def reset_zoom(self) -> None:
        self.graph.reset_zoom()

    def node_search(self) -> None:
        self.graph.show_tab_search()

    # -- running ------------------------------------------------------------------------
    def run_workflow(self) -> bool:
        """Validate, mark problems on their nodes, and start a run if nothing blocks it;
        while a run is going, queue a copy of the workflow (app.gui.queue)."""
        return self.queue.run_or_queue(self.document.workflow())

    def run_times_dialog(self) -> None:
        self.queue.run_times_dialog()

    def run_graph(self, workflow, outputs: list[str] | None = None) -> bool:
        """Run ``workflow`` (the document's, or one derived from it, such as a branch);
        ``outputs`` runs only to those nodes ("run to here")."""
        if self.runner.running:
            return False
        workflow = resolve_missing_files(self, workflow, self.ask_for_file)
        if workflow is None:
            return False
        self.states.clear()
        problems = self.runner.start(workflow, outputs)
        self.show_problems(problems)
        if not self.runner.running:
            self.statusBar().showMessage(f"Cannot run: {len(problems)} problem(s), see the nodes and the log")
            return False
        self.actions_by_name["cancel_run"].setEnabled(True)  # Run stays enabled: it queues
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(True)
        return True

    def show_problems(self, problems: list[Problem]) -> None:
        by_node: dict[str, list[Problem]] = {}
        for problem in problems:
            level = "error" if problem.severity == "error" else "warning"
            self.log.add(str(problem), level)
            if problem.node_id is not None:
                by_node.setdefault(problem.node_id, []).append(problem)
        for node_id, found in by_node.items():
            errors = [p for p in found if p.severity == "error"]
            state = "invalid" if errors else "warning"
            text = "; ".join(p.message if p.field is None else f"{p.field}: {p.message}" for p in found)
            self.states.set(node_id, state, f"{len(found)} problem(s)", text)

    def cancel_run(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            self.statusBar().showMessage("Cancelling…")

    @QtCore.Slot(str, str, str, str)
    def _node_state(self, node_id: str, state: str, text: str, tooltip: str) -> None:
        self.states.set(node_id, state, text, tooltip or None)

    @QtCore.Slot(int, str)
    def _progress(self, percent: int, text: str) -> None:
        self.progress_bar.setValue(percent)
        self.device_label.setText(self.runner.device_name)
        self.statusBar().showMessage(text)

    @QtCore.Slot(object)
    def _run_done(self, outcome: RunOutcome) -> None:
        self.actions_by_name["cancel_run"].setEnabled(False)
        self.actions_by_name["run_workflow"].setEnabled(True)
        self.progress_bar.setVisible(False)
        if outcome.status == "finished":
            self.images.set_images(outcome.images, outcome.workflow_json, outcome.labels,
                                   self.document.display_name(), outcome.playback)
            self.docks["images"].raise_()
        elif outcome.status == "failed":
            self.statusBar().showMessage(f"Failed: {outcome.message}")
            self.log.add(outcome.message, "error")
            self.docks["log"].raise_()
        else:
            self.statusBar().showMessage("The run was cancelled")
        self.run_finished.emit(outcome)

    def _connection_refused(self, message: str) -> None:
        self.statusBar().showMessage(message, 8000)
        self.log.add(message, "warning")

    def node(self, node_id: str):
        """The canvas node with workflow id ``node_id`` (for tests and scripts)."""
        return adapter.find_node(self.graph, node_id)

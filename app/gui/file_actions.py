"""File commands of the main window: new, open, save, recent files and the
"save changes?" guard. Kept apart from the window so each stays short."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtWidgets

from core.workflow import WorkflowFormatError

MAX_RECENT = 10
FILTER_OPEN = ("Workflows, workbench images and videos (*.json *.png *.gif *.webp);;"
               "All files (*)")
FILTER_SAVE = "Workflow (*.json)"


def new(window) -> None:
    if maybe_save(window):
        window.document.new()
        window.states.clear()


def open_dialog(window) -> None:
    if not maybe_save(window):
        return
    path, _ = QtWidgets.QFileDialog.getOpenFileName(window, "Open workflow", _start_dir(window),
                                                    FILTER_OPEN)
    if path:
        open_path(window, path, ask=False)


def open_path(window, path: str | Path, ask: bool = True) -> bool:
    """Open a workflow JSON or workbench PNG; report errors without losing the current one."""
    if ask and not maybe_save(window):
        return False
    try:
        refused = window.document.open(path)
    except WorkflowFormatError as error:
        window.log.add(str(error), "error")
        window.statusBar().showMessage(f"Cannot open: {error}")
        return False
    window.states.clear()
    for message in refused:
        window.log.add(message, "warning")
    window.show_problems(window.runner.check(window.document.workflow()))
    add_recent(window, Path(path))
    window.statusBar().showMessage(f"Opened {Path(path).name}", 5000)
    window.fit_view()
    return True


def save(window) -> bool:
    if window.document.path is None:
        return save_as_dialog(window)
    return _save_to(window, window.document.path)


def save_as_dialog(window) -> bool:
    suggestion = str(Path(_start_dir(window)) / (Path(window.document.display_name()).stem + ".json"))
    path, _ = QtWidgets.QFileDialog.getSaveFileName(window, "Save workflow", suggestion, FILTER_SAVE)
    if not path:
        return False
    if not path.endswith(".json"):
        path += ".json"
    return _save_to(window, Path(path))


def _save_to(window, path: Path) -> bool:
    try:
        window.document.save(path)
    except (OSError, ValueError) as error:
        QtWidgets.QMessageBox.critical(window, "Save failed", str(error))
        return False
    window.autosaver.discard()
    add_recent(window, path)
    window.statusBar().showMessage(f"Saved {path.name}", 5000)
    return True


def maybe_save(window) -> bool:
    """Ask before unsaved work is dropped; False means the person cancelled."""
    if not window.document.modified:
        return True
    buttons = QtWidgets.QMessageBox.StandardButton
    answer = QtWidgets.QMessageBox.question(
        window, "Save changes?",
        f"Save the changes to {window.document.display_name()} before closing it?",
        buttons.Save | buttons.Discard | buttons.Cancel, buttons.Save)
    if answer == buttons.Save:
        return save(window)
    return answer == buttons.Discard


# -- recent files --------------------------------------------------------------
def recent_files(window) -> list[str]:
    value = window.settings.value("recent_files", [])
    if isinstance(value, str):  # QSettings returns a lone string for a one-item list
        value = [value]
    return [str(v) for v in value or []]


def add_recent(window, path: Path) -> None:
    entry = str(path.resolve())
    files = [entry] + [f for f in recent_files(window) if f != entry]
    window.settings.setValue("recent_files", files[:MAX_RECENT])
    fill_recent_menu(window)


def fill_recent_menu(window) -> None:
    menu = window.recent_menu
    menu.clear()
    files = recent_files(window)
    for index, name in enumerate(files, 1):
        action = menu.addAction(f"&{index % 10} {Path(name).name}")
        action.setToolTip(name)
        action.triggered.connect(lambda _checked=False, n=name: open_path(window, n))
    menu.setEnabled(bool(files))


def _start_dir(window) -> str:
    files = recent_files(window)
    return str(Path(files[0]).parent) if files else str(Path.cwd())

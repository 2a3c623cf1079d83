"""The models folders in the GUI: "Add models folder…" and "Forget models
folders" in the Run menu, remembered in QSettings and combined with the
command line's ``--models-dir`` and the ``DIFFUSION_WORKBENCH_MODELS``
variable. A folder added now is searched at once for names typed in a
loader's path; the loader dropdowns list its files from the next start (a
node type's choices are fixed when the catalogue is built)."""
from __future__ import annotations

from PySide6 import QtWidgets

from core.checkpoints import library

SETTINGS_KEY = "models/dirs"


def stored_dirs(settings) -> list[str]:
    value = settings.value(SETTINGS_KEY, [])
    if isinstance(value, str):  # QSettings gives a one-item list back as a string
        value = [value]
    return [str(v) for v in value or [] if str(v).strip()]


def apply_stored_dirs(settings) -> None:
    """Search the remembered folders after any the command line set."""
    remembered = stored_dirs(settings)
    if remembered:
        library.set_models_dirs([*(library.configured_dirs()), *remembered])


class ModelsFolders:
    """The Run menu's models-folder actions of one window."""

    def __init__(self, window) -> None:
        self.window = window
        self.command_line = library.configured_dirs()

    def build(self, run_menu: QtWidgets.QMenu) -> None:
        add = run_menu.addAction("Add &models folder…")
        add.setToolTip("A folder of your checkpoints, VAEs, ControlNets and LoRAs")
        add.triggered.connect(lambda: self.add(self._ask()))
        forget = run_menu.addAction("Forget models folders")
        forget.triggered.connect(self.forget)
        self.window.actions_by_name["add_models_folder"] = add
        self.window.actions_by_name["forget_models_folders"] = forget

    def _ask(self) -> str:
        return QtWidgets.QFileDialog.getExistingDirectory(self.window, "Add a models folder")

    def add(self, folder: str) -> bool:
        if not folder:
            return False
        dirs = [d for d in stored_dirs(self.window.settings) if d != folder] + [folder]
        self._store(dirs)
        found = len(library.scan([folder]))
        self.window.log.add(f"models folder added: {folder} ({found} model file(s); the loader "
                            "dropdowns list them from the next start, names resolve now)", "info")
        return True

    def forget(self) -> None:
        self._store([])
        self.window.log.add("models folders forgotten (the command line's stay)", "info")

    def _store(self, dirs: list[str]) -> None:
        self.window.settings.setValue(SETTINGS_KEY, dirs)
        library.set_models_dirs([*self.command_line, *dirs])
        library.clear_cache()

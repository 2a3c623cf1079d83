"""Where and how runs compute: the Run menu's Device and Precision choices
(remembered in QSettings, used by the next run) and "Free models", which
drops the executor's cached outputs (the loaded networks among them) to give
their memory back. Nothing here runs torch: freeing only drops references.
"""
from __future__ import annotations

from PySide6 import QtGui, QtWidgets

from app.gui.models_folders import ModelsFolders
from core.device import DEVICE_CHOICES, DTYPE_CHOICES

LABELS = {
    "auto": "Automatic",
    "cpu": "CPU", "cuda": "CUDA GPU", "mps": "Apple GPU (MPS)",
    "fp32": "fp32 (full)", "fp16": "fp16 (half)", "bf16": "bf16 (brain float)",
}


class RunSettings:
    """The device and precision of the next run, and freeing cached models."""

    def __init__(self, window) -> None:
        self.window = window
        self.runner = window.runner
        self.runner.device = self._stored("run/device", DEVICE_CHOICES)
        self.runner.dtype = self._stored("run/dtype", DTYPE_CHOICES)
        self.groups: dict[str, QtGui.QActionGroup] = {}

    def _stored(self, key: str, choices) -> str:
        value = str(self.window.settings.value(key, "auto"))
        return value if value in choices else "auto"

    def build(self, run_menu: QtWidgets.QMenu) -> None:
        run_menu.addSeparator()
        self._choice_menu(run_menu, "&Device", "run/device", DEVICE_CHOICES, "device")
        self._choice_menu(run_menu, "&Precision", "run/dtype", DTYPE_CHOICES, "dtype")
        free = run_menu.addAction("&Free models")
        free.setToolTip("Forget the loaded models and cached results to give memory back")
        free.triggered.connect(self.free_models)
        self.window.actions_by_name["free_models"] = free
        run_menu.addSeparator()
        self.folders = ModelsFolders(self.window)
        self.folders.build(run_menu)

    def _choice_menu(self, run_menu, title, key, choices, attribute) -> None:
        menu = run_menu.addMenu(title)
        group = QtGui.QActionGroup(menu)
        group.setExclusive(True)
        for choice in choices:
            action = menu.addAction(LABELS[choice])
            action.setCheckable(True)
            action.setData(choice)
            action.setChecked(choice == getattr(self.runner, attribute))
            group.addAction(action)
            self.window.actions_by_name[f"{attribute}_{choice}"] = action
        group.triggered.connect(lambda action: self._chosen(key, attribute, action.data()))
        self.groups[attribute] = group

    def _chosen(self, key: str, attribute: str, value: str) -> None:
        setattr(self.runner, attribute, value)
        self.window.settings.setValue(key, value)
        self.window.log.add(f"{attribute}: {LABELS[value]} (from the next run; models are "
                            "loaded again for it)", "info")

    def free_models(self) -> bool:
        """Drop the cached models; refused while a run uses them."""
        if self.runner.running:
            self.window.statusBar().showMessage("Free models: wait for the run to end")
            return False
        used = self.runner.executor.cache.bytes_used
        self.runner.executor.free()
        self.window.log.add(f"freed the cached models and results ({used / 2**20:.0f} MB)", "info")
        self.window.statusBar().showMessage("Models freed: the next run loads them again")
        return True


def install(window) -> RunSettings:
    settings = RunSettings(window)
    menus = {menu.title(): menu for menu in (a.menu() for a in window.menuBar().actions()) if menu}
    settings.build(menus["&Run"])
    return settings

"""The window's modules import before a QApplication exists (a script, a plugin
or a test may do that); building QKeySequences at import time crashed."""
from __future__ import annotations

import os
import subprocess
import sys


def test_main_window_imports_without_an_application():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", "import app.gui.main_window"], env=env,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-500:]


def test_menu_shortcuts_are_still_bound(window):
    def keys(method):
        return [k.toString() for k in window.actions_by_name[method].shortcuts()]

    assert keys("file_save_as_dialog") == ["Ctrl+Shift+S"]
    assert keys("run_workflow") == ["Ctrl+Return", "Ctrl+Enter"] and keys("cancel_run") == ["Esc"]
    assert keys("undo") == ["Ctrl+Z"] and "Ctrl+Shift+Z" in keys("redo")
    assert "Ctrl+S" in keys("file_save")  # a standard key, bound through keyBindings

"""The window's menus and shortcuts, declared as a table so each command
lives in one place (the window's method) and one row says how to reach it."""
from __future__ import annotations

from PySide6 import QtGui

Key = QtGui.QKeySequence

# (menu, text, window method, shortcuts): standard keys or key strings, made
# into QKeySequences by ``key_sequences`` once a QApplication exists (building
# them at import time, before one, crashed the interpreter).
MENU_TABLE = [
    ("&File", "&New", "file_new", [Key.StandardKey.New]),
    ("&File", "&Open…", "file_open_dialog", [Key.StandardKey.Open]),
    ("&File", "Open &Recent", None, []),
    ("&File", "&Save", "file_save", [Key.StandardKey.Save]),
    ("&File", "Save &As…", "file_save_as_dialog", ["Ctrl+Shift+S"]),
    ("&File", "&Export image…", "export_image_dialog", ["Ctrl+E"]),
    ("&File", "&Quit", "close", [Key.StandardKey.Quit]),
    ("&Edit", "&Undo", "undo", ["Ctrl+Z"]),
    ("&Edit", "&Redo", "redo", ["Ctrl+Shift+Z", "Ctrl+Y"]),
    ("&Edit", "Cu&t", "cut", [Key.StandardKey.Cut]),
    ("&Edit", "&Copy", "copy", [Key.StandardKey.Copy]),
    ("&Edit", "&Paste", "paste", [Key.StandardKey.Paste]),
    ("&Edit", "&Duplicate", "duplicate", ["Ctrl+D"]),
    ("&Edit", "De&lete", "delete_selected", [Key.StandardKey.Delete, "Backspace"]),
    ("&Edit", "Select &All", "select_all", [Key.StandardKey.SelectAll]),
    ("&Edit", "&Group into backdrop", "group_selection", ["Ctrl+G"]),
    ("&Edit", "&Bypass selected nodes", "toggle_bypass", ["Ctrl+B"]),
    ("&Edit", "&Mute selected nodes", "toggle_mute", ["Ctrl+M"]),
    ("&Edit", "C&ollapse selected nodes", "toggle_collapse", ["Alt+C"]),
    ("&View", "&Fit to view", "fit_view", ["F"]),
    ("&View", "Zoom &in", "zoom_in", [Key.StandardKey.ZoomIn, "Ctrl+="]),
    ("&View", "Zoom &out", "zoom_out", [Key.StandardKey.ZoomOut]),
    ("&View", "&Reset zoom", "reset_zoom", ["Ctrl+0"]),
    ("&View", "&Node search", "node_search", []),  # Tab, on the canvas only
    ("&Run", "&Run", "run_workflow", ["Ctrl+Return", "Ctrl+Enter"]),
    ("&Run", "Run &N times…", "run_times_dialog", ["Ctrl+Shift+Return"]),
    ("&Run", "&Cancel", "cancel_run", ["Esc"]),
]


def key_sequences(keys) -> list[QtGui.QKeySequence]:
    """A row's shortcuts as QKeySequences (a standard key may stand for several)."""
    sequences: list[QtGui.QKeySequence] = []
    for key in keys:
        if isinstance(key, str):
            sequences.append(QtGui.QKeySequence(key))
        else:
            sequences.extend(QtGui.QKeySequence.keyBindings(key))
    return sequences

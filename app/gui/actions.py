"""The window's menus and shortcuts, declared as a table so each command
lives in one place (the window's method) and one row says how to reach it."""
from __future__ import annotations

from PySide6 import QtGui

Key = QtGui.QKeySequence

# (menu, text, window method, shortcuts)
MENU_TABLE = [
    ("&File", "&New", "file_new", [Key.StandardKey.New]),
    ("&File", "&Open…", "file_open_dialog", [Key.StandardKey.Open]),
    ("&File", "Open &Recent", None, []),
    ("&File", "&Save", "file_save", [Key.StandardKey.Save]),
    ("&File", "Save &As…", "file_save_as_dialog", [Key("Ctrl+Shift+S")]),
    ("&File", "&Export image…", "export_image_dialog", [Key("Ctrl+E")]),
    ("&File", "&Quit", "close", [Key.StandardKey.Quit]),
    ("&Edit", "&Undo", "undo", [Key("Ctrl+Z")]),
    ("&Edit", "&Redo", "redo", [Key("Ctrl+Shift+Z"), Key("Ctrl+Y")]),
    ("&Edit", "Cu&t", "cut", [Key.StandardKey.Cut]),
    ("&Edit", "&Copy", "copy", [Key.StandardKey.Copy]),
    ("&Edit", "&Paste", "paste", [Key.StandardKey.Paste]),
    ("&Edit", "&Duplicate", "duplicate", [Key("Ctrl+D")]),
    ("&Edit", "De&lete", "delete_selected", [Key(Key.StandardKey.Delete), Key("Backspace")]),
    ("&Edit", "Select &All", "select_all", [Key.StandardKey.SelectAll]),
    ("&Edit", "&Group into backdrop", "group_selection", [Key("Ctrl+G")]),
    ("&View", "&Fit to view", "fit_view", [Key("F")]),
    ("&View", "Zoom &in", "zoom_in", [Key.StandardKey.ZoomIn, Key("Ctrl+=")]),
    ("&View", "Zoom &out", "zoom_out", [Key.StandardKey.ZoomOut]),
    ("&View", "&Reset zoom", "reset_zoom", [Key("Ctrl+0")]),
    ("&View", "&Node search", "node_search", []),  # Tab, on the canvas only
    ("&Run", "&Run", "run_workflow", [Key("Ctrl+Return"), Key("Ctrl+Enter")]),
    ("&Run", "&Cancel", "cancel_run", [Key("Esc")]),
]

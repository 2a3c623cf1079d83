"""Parameter editors embedded in a node's body on the canvas.

A thin ``NodeBaseWidget`` around a :mod:`app.gui.param_editors` editor:
NodeGraphQt wires ``value_changed`` to ``set_property``, which makes every
edit one undo step and keeps the value's Python type.
"""
from __future__ import annotations

from typing import Any

from NodeGraphQt import NodeBaseWidget

from app.gui.param_editors import make_editor
from core.nodespec import Input


class ParamNodeWidget(NodeBaseWidget):
    """One parameter of a node, edited in place on the canvas."""

    def __init__(self, parent, prop_name: str, item: Input) -> None:
        super().__init__(parent, name=prop_name, label=item.name)
        self.editor = make_editor(item, compact=True)
        self.editor.set_value(item.default)
        self.editor.edited.connect(self._edited)
        self.set_custom_widget(self.editor)

    def _edited(self, _value: Any) -> None:
        self.on_value_changed()

    def get_value(self) -> Any:
        return self.editor.value()

    def set_value(self, value: Any) -> None:
        self.editor.set_value(value)

"""The properties panel: the selected node's title and parameters, each with
the editor its type asks for. Edits go through ``set_property`` so they are
undoable and the node's own widgets follow."""
from __future__ import annotations

from typing import Any

from NodeGraphQt import BaseNode
from PySide6 import QtCore, QtWidgets

from app import graph_adapter as adapter
from app.gui.param_editors import ParamEditor, make_editor

#: Loaders whose panel says what the chosen file is (header only, nothing loaded).
DESCRIBED_LOADERS = frozenset({"model.checkpoint", "model.controlnet", "model.vae", "model.lora"})


class PropertiesPanel(QtWidgets.QScrollArea):
    """Shows one node at a time; empty when nothing or several are selected."""

    def __init__(self, graph, parent=None) -> None:
        super().__init__(parent)
        self.graph = graph
        self.node: BaseNode | None = None
        self.editors: dict[str, ParamEditor] = {}
        self.file_info: QtWidgets.QLabel | None = None
        self.setWidgetResizable(True)
        self._show_nothing()
        graph.property_changed.connect(self._property_changed)
        graph.scene().selectionChanged.connect(self._selection_changed)

    def detach(self) -> None:
        """Stop following the graph (its scene emits while the window is torn down)."""
        self.graph.scene().selectionChanged.disconnect(self._selection_changed)
        self.graph.property_changed.disconnect(self._property_changed)

    def _selection_changed(self) -> None:
        selected = [n for n in self.graph.selected_nodes()
                    if isinstance(n, (adapter.SpecNode, adapter.PlaceholderNode))]
        self.show_node(selected[0] if len(selected) == 1 else None)

    def show_node(self, node: BaseNode | None) -> None:
        if node is self.node:
            return
        self.node = node
        self.editors = {}
        self.file_info: QtWidgets.QLabel | None = None
        if node is None:
            self._show_nothing()
            return
        form_host = QtWidgets.QWidget()
        form = QtWidgets.QFormLayout(form_host)
        spec = adapter.spec_of(node)
        self.title_edit = QtWidgets.QLineEdit(node.name())
        self.title_edit.editingFinished.connect(self._title_edited)
        form.addRow("Title", self.title_edit)
        form.addRow("Id", QtWidgets.QLabel(adapter.node_id_of(node)))
        form.addRow("Type", QtWidgets.QLabel(node.get_property(adapter.TYPE_PROP)))
        if spec is None:
            form.addRow(QtWidgets.QLabel("This node type is not installed.\n"
                                         "Its parameters are kept as they are."))
            for name, value in (node.get_property(adapter.EXTRA_PROP) or {}).items():
                form.addRow(name, QtWidgets.QLabel(repr(value)))
        else:
            for item in spec.params:
                editor = make_editor(item)
                editor.set_value(node.get_property(adapter.param_prop(item.name)))
                editor.edited.connect(lambda value, n=item.name: self._edited(n, value))
                self.editors[item.name] = editor
                form.addRow(item.name, editor)
            self._form = form
            self._show_applicable()
            if spec.type_id in DESCRIBED_LOADERS:
                self.file_info = QtWidgets.QLabel()
                self.file_info.setWordWrap(True)
                self.file_info.setObjectName("file_info")
                form.addRow("What it is", self.file_info)
                self._describe_file()
        self.setWidget(form_host)

    def _show_applicable(self) -> None:
        """Hide the parameters that do not apply to the node's other choices (a
        sampler's η when the sampler takes none); they keep their values."""
        spec = adapter.spec_of(self.node)
        params = {i.name: self.node.get_property(adapter.param_prop(i.name)) for i in spec.params}
        for item in spec.params:
            if item.shown_when is not None and item.name in self.editors:
                self._form.setRowVisible(self.editors[item.name], item.shown_for(params))

    def _describe_file(self) -> None:
        """The chosen model file as the header-only detector sees it (no loading)."""
        from nodes.loaders import describe_choice

        params = {name: self.node.get_property(adapter.param_prop(name)) for name in ("name", "path")
                  if self.node.has_property(adapter.param_prop(name))}
        self.file_info.setText(describe_choice(params) or "(no file chosen)")

    def _show_nothing(self) -> None:
        label = QtWidgets.QLabel("Select one node to edit its parameters.")
        label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        label.setWordWrap(True)
        self.setWidget(label)

    def _edited(self, name: str, value: Any) -> None:
        if self.node is not None:
            self.node.set_property(adapter.param_prop(name), value)

    def _title_edited(self) -> None:
        text = self.title_edit.text().strip()
        if self.node is not None and text and text != self.node.name():
            self.node.set_name(text)

    def _property_changed(self, node, name: str, value: Any) -> None:
        """Keep the panel in step with edits made on the canvas or by undo."""
        if node is not self.node:
            return
        if name.startswith(adapter.PARAM_PREFIX):
            editor = self.editors.get(name[len(adapter.PARAM_PREFIX):])
            if editor is not None:
                editor.set_value(value)
                self._show_applicable()
            if self.file_info is not None and name[len(adapter.PARAM_PREFIX):] in ("name", "path"):
                self._describe_file()
        elif name == "name":
            self.title_edit.setText(str(value))

"""The Generate panel: prompt, seed, steps, guidance, size and sampler in one
compact form, for people who do not want to wire.

Why it edits the graph and keeps no copy: the canvas stays the one truth, so
a change here is an ordinary undoable ``set_property`` that the canvas and
the Properties panel show, and an edit on the canvas (or an undo) shows here
through ``graph.property_changed``. The panel finds its nodes along the
links from the Sampler (:func:`find_nodes`) and says which it could not
find; the fields of a missing node are disabled rather than guessed.
"""
from __future__ import annotations

from typing import Any

from PySide6 import QtCore, QtWidgets

from app import graph_adapter as adapter
from app.gui.param_editors import MultilineEditor, ParamEditor, make_editor

SAMPLER = "diffusion.sampler"
PROMPTS = ("conditioning.encode", "conditioning.text")
#: Role → (the Sampler input it is linked to, the node types that can fill it).
SOURCES = {"positive": ("positive", PROMPTS), "negative": ("negative", PROMPTS),
           "schedule": ("schedule", ("diffusion.schedule",)), "latent": ("latent", ("latent.empty",))}
#: How a role is named when it is missing.
ROLE_TEXT = {"sampler": "Sampler", "positive": "Prompt (a Text encode on the Sampler's positive)",
             "negative": "Negative prompt (a Text encode on the Sampler's negative)",
             "schedule": "Schedule (linked to the Sampler)",
             "latent": "Empty latent (linked to the Sampler)"}
#: The panel's fields: key, label, role, parameter of the role's node.
FIELDS = (("prompt", "Prompt", "positive", "text"), ("negative", "Negative", "negative", "text"),
          ("seed", "Seed", "sampler", "seed"), ("steps", "Steps", "schedule", "steps"),
          ("guidance", "Guidance", "sampler", "guidance"), ("width", "Width", "latent", "width"),
          ("height", "Height", "latent", "height"), ("sampler", "Sampler", "sampler", "sampler"))
#: Node types whose spec gives each field its editor (range, choices, Random).
FIELD_SPECS = {"positive": "conditioning.encode", "negative": "conditioning.encode",
               "sampler": SAMPLER, "schedule": "diffusion.schedule", "latent": "latent.empty"}


def type_of(node) -> str:
    return node.get_property(adapter.TYPE_PROP) if node.has_property(adapter.TYPE_PROP) else ""


def _upstream(node, port_name: str):
    port = node.inputs().get(port_name)
    linked = port.connected_ports() if port is not None else []
    return linked[0].node() if linked else None


def find_source(sampler, port_name: str, types: tuple[str, ...], depth: int = 8):
    """The node of one of ``types`` that feeds the Sampler's ``port_name``,
    passing through nodes in between (ControlNet apply, Flux guidance, a time
    shift) by their input of the same name or else of the same port type."""
    wanted = sampler.port_type(port_name, True)
    node = _upstream(sampler, port_name)
    while node is not None and depth > 0:
        if type_of(node) in types:
            return node
        if not isinstance(node, adapter.SpecNode):
            return None
        names = [port_name] + [n for n in node.inputs() if node.port_type(n, True) is wanted]
        node = next((up for up in (_upstream(node, n) for n in names) if up is not None), None)
        depth -= 1
    return None


def find_nodes(graph, current=None) -> tuple[dict[str, Any], dict[str, str]]:
    """The nodes the panel edits, by role, and why each missing one is missing.
    With several Samplers the selected one is used (else ``current`` if it is
    still there): the panel never guesses between samplers."""
    samplers = [n for n in adapter.workflow_nodes(graph) if type_of(n) == SAMPLER]
    selected = [n for n in samplers if n.selected()]
    if len(samplers) == 1:
        sampler = samplers[0]
    elif len(selected) == 1:
        sampler = selected[0]
    else:
        sampler = current if current in samplers else None
    if sampler is None:
        why = "no Sampler node" if not samplers else f"{len(samplers)} Samplers: select one on the canvas"
        return {}, {role: why for role in ROLE_TEXT}
    found, missing = {"sampler": sampler}, {}
    for role, (port, types) in SOURCES.items():
        node = find_source(sampler, port, types)
        if node is None:
            missing[role] = f"no {ROLE_TEXT[role]}"
        else:
            found[role] = node
    return found, missing


class GeneratePanel(QtWidgets.QWidget):
    """The form; ``nodes`` maps each role to the canvas node it edits."""

    def __init__(self, window) -> None:
        super().__init__()
        self.window = window
        self.graph = window.graph
        self.nodes: dict[str, Any] = {}
        self.missing: dict[str, str] = {}
        self.editors: dict[str, ParamEditor] = {}
        self.labels: dict[str, QtWidgets.QLabel] = {}
        layout = QtWidgets.QVBoxLayout(self)
        self.status = QtWidgets.QLabel()
        self.status.setWordWrap(True)
        self.status.setObjectName("generate_status")
        layout.addWidget(self.status)
        self.generate_button = QtWidgets.QPushButton("Generate")  # on top: never scrolled away
        self.generate_button.setToolTip("Run the graph (the same as Run, Ctrl+Enter)")
        self.generate_button.clicked.connect(self.generate)
        layout.addWidget(self.generate_button)
        form = QtWidgets.QFormLayout()
        registry = window.registry
        for key, label, role, param in FIELDS:
            item = registry.get(FIELD_SPECS[role]).input(param)
            editor = MultilineEditor(item, lines=3) if param == "text" else make_editor(item)
            editor.edited.connect(lambda value, k=key: self._edited(k, value))
            self.editors[key] = editor
            if key == "height":  # width × height share the row "Size"
                self.labels[key] = QtWidgets.QLabel("×")
                row = QtWidgets.QHBoxLayout()
                row.addWidget(self.editors["width"])
                row.addWidget(self.labels[key])
                row.addWidget(editor)
                form.addRow(self.labels["width"], row)
            else:
                self.labels[key] = QtWidgets.QLabel("Size" if key == "width" else label)
                if key != "width":
                    form.addRow(self.labels[key], editor)
        layout.addLayout(form)
        layout.addStretch(1)
        self._rebind_soon = QtCore.QTimer(self, singleShot=True, interval=0)
        self._rebind_soon.timeout.connect(self.rebind)
        self._wire()
        self.rebind()

    def _wire(self) -> None:
        graph = self.graph
        graph.property_changed.connect(self._property_changed)
        for signal in (graph.node_created, graph.nodes_deleted, graph.port_connected,
                       graph.port_disconnected, graph.undo_stack().indexChanged,
                       graph.scene().selectionChanged):
            signal.connect(self._rebind_soon.start)  # a load emits many: rebind once after
        self.window.document.changed.connect(self.rebind)  # opened, new: at once

    def field(self, key: str) -> tuple[str, str]:
        """The role and parameter behind field ``key``."""
        _key, _label, role, param = next(f for f in FIELDS if f[0] == key)
        return role, param

    @QtCore.Slot()
    def rebind(self) -> None:
        """Find the nodes again and show their values; disable what is missing."""
        before = self.nodes
        self.nodes, self.missing = find_nodes(self.graph, before.get("sampler"))
        for key, _label, role, param in FIELDS:
            node, editor = self.nodes.get(role), self.editors[key]
            editor.setEnabled(node is not None)
            self.labels[key].setEnabled(node is not None)
            if node is not None:
                # A node still bound is kept up to date by property_changed: a prompt
                # being typed is not reset by some other edit.
                if node is not before.get(role):
                    editor.set_value(node.get_property(adapter.param_prop(param)))
                editor.setToolTip(f"{node.name()}: {param}")
            else:
                editor.setToolTip(f"Not found: {self.missing[role]}")
        self.generate_button.setEnabled("sampler" in self.nodes)
        self.status.setText(self.describe())

    def describe(self) -> str:
        """What the panel is bound to, or what it could not find."""
        if "sampler" not in self.nodes:
            return f"Nothing to edit: {self.missing['sampler']}."
        if not self.missing:
            return f"Editing {self.nodes['sampler'].name()} and the nodes linked to it."
        return "Not found: " + "; ".join(self.missing.values()) + ". Those fields are disabled."

    def _edited(self, key: str, value: Any) -> None:
        role, param = self.field(key)
        node = self.nodes.get(role)
        if node is not None:
            node.set_property(adapter.param_prop(param), value)  # undoable; canvas follows

    def _property_changed(self, node, name: str, value: Any) -> None:
        for key, _label, role, param in FIELDS:
            if self.nodes.get(role) is node and name == adapter.param_prop(param):
                self.editors[key].set_value(value)

    def commit_text(self) -> None:
        """A prompt being typed counts when its box loses focus; Generate counts it too."""
        for key in ("prompt", "negative"):
            editor, (role, param) = self.editors[key], self.field(key)
            node = self.nodes.get(role)
            if node is not None and editor.value() != node.get_property(adapter.param_prop(param)):
                self._edited(key, editor.value())

    @QtCore.Slot()
    def generate(self) -> bool:
        self.commit_text()
        return self.window.run_workflow()


def install(window) -> GeneratePanel:
    """Add the Generate dock (tabbed behind Properties: layout_docks)."""
    panel = GeneratePanel(window)
    window.add_dock("generate", "Generate", panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea,
                    scrollable=True)
    return panel

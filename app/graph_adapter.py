"""The one bridge between the engine's model and NodeGraphQt.

* :func:`node_classes` turns every :class:`~core.nodespec.NodeSpec` into a
  NodeGraphQt node class (ports coloured by type, one embedded editor per
  parameter); there is no hand-written class per node.
* :func:`load_into` draws a :class:`~core.workflow.Workflow` on a graph and
  :func:`to_workflow` reads one back. NodeGraphQt's session format is never
  written: the file is the engine's JSON.
* :func:`link_problem` is the port type check NodeGraphQt lacks (its rules
  key on node types and code paths bypass them).

Each node keeps its stable workflow id in a hidden property, because
NodeGraphQt's own ids change on every load and paste. Parameters live in
properties named ``param_<name>`` (``width``/``height`` are reserved there).
A node type that is not installed loads as a placeholder that keeps its
params and links, so saving never loses it.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any, Iterable

from NodeGraphQt import BackdropNode, BaseNode, NodeGraph

from app.gui.canvas_node_item import CanvasNodeItem
from app.gui.canvas_reroute import RerouteItem, traced_type
from core.port_flow import is_pass_through
from core.nodespec import NodeSpec
from core.ports import PortType, compatible
from core.registry import NodeRegistry
from core.workflow.model import Link, Node, Workflow

IDENTIFIER = "wb"
PARAM_PREFIX = "param_"
ID_PROP = "wb_id"
TYPE_PROP = "wb_type"
VERSION_PROP = "wb_version"
TITLE_PROP = "wb_title"  # the title as the file had it ("" for none)
GIVEN_PROP = "wb_given"  # params the file spelled out (saved even when default)
EXTRA_PROP = "wb_extra"  # params the spec does not know: kept, never edited
MODE_PROP = "wb_mode"  # normal, bypass or mute (core.workflow.model.MODES); undoable
COLLAPSED_PROP = "wb_collapsed"  # drawn as its title bar only; saved in ui.nodes; undoable

#: Port colours by type (RGB). Similar families share a hue.
PORT_COLOURS: dict[PortType, tuple[int, int, int]] = {
    PortType.MODEL: (180, 120, 255),
    PortType.CLIP: (255, 210, 80),
    PortType.CONDITIONING: (255, 160, 60),
    PortType.SCHEDULE: (90, 200, 200),
    PortType.LATENT: (255, 110, 170),
    PortType.IMAGE: (100, 170, 255),
    PortType.MASK: (120, 220, 120),
    PortType.VAE: (255, 90, 90),
    PortType.CONTROLNET: (60, 220, 170),
    PortType.NOISE: (200, 200, 200),
    PortType.TRAJECTORY: (230, 230, 120),
    PortType.CLASSIFIER: (235, 130, 100),
    PortType.NOISY_CLIP: (235, 175, 40),
    PortType.PRIOR: (200, 140, 230),
    PortType.EMBEDDING: (250, 230, 170),
    PortType.VIDEO: (70, 130, 230),
    PortType.ANY: (150, 150, 150),
    PortType.INT: (120, 200, 255),
    PortType.FLOAT: (140, 220, 255),
    PortType.STRING: (200, 255, 200),
    PortType.BOOLEAN: (255, 200, 255),
}
PLACEHOLDER_COLOUR = (110, 40, 40)
DEFAULT_NODE_COLOUR = (13, 18, 23)  # NodeGraphQt's NodeModel default


def port_colour(port_type: PortType) -> tuple[int, int, int]:
    """The colour of a port type; a type added later gets a stable colour from its name."""
    known = PORT_COLOURS.get(port_type)
    if known is not None:
        return known
    digest = zlib.crc32(port_type.value.encode())
    return (80 + digest % 160, 80 + (digest >> 8) % 160, 80 + (digest >> 16) % 160)


def param_prop(name: str) -> str:
    return PARAM_PREFIX + name


class SpecNode(BaseNode):
    """Base of the generated classes; ``SPEC`` says what the node is."""

    __identifier__ = IDENTIFIER
    NODE_NAME = "node"
    SPEC: NodeSpec | None = None

    def __init__(self) -> None:
        spec = self.SPEC
        super().__init__(qgraphics_item=RerouteItem if is_pass_through(spec) else CanvasNodeItem)
        _hidden_props(self, spec.type_id, spec.version)
        for item in spec.sockets:
            label = item.name if not item.optional else f"{item.name} (optional)"
            port = self.add_input(item.name, color=port_colour(item.type))
            port.view.setToolTip(f"{label}: {item.type.value}\n{item.tooltip}".strip())
        for output in spec.outputs:
            port = self.add_output(output.name, color=port_colour(output.type))
            port.view.setToolTip(f"{output.name}: {output.type.value}\n{output.tooltip}".strip())
        self._add_param_widgets(spec)

    def _add_param_widgets(self, spec: NodeSpec) -> None:
        from app.gui.node_widgets import ParamNodeWidget  # Qt widgets, created per node

        for item in spec.params:
            widget = ParamNodeWidget(self.view, param_prop(item.name), item)
            self.add_custom_widget(widget)

    def port_type(self, port_name: str, is_input: bool) -> PortType | None:
        spec = self.SPEC
        item = spec.input(port_name) if is_input else spec.output(port_name)
        if item is not None and is_pass_through(spec):
            return traced_type(self, is_input)  # a reroute: the type of its links
        return item.type if item is not None else None


class PlaceholderNode(BaseNode):
    """A node whose type is not installed: visible, linked, carried through saves."""

    __identifier__ = IDENTIFIER
    NODE_NAME = "Missing node"
    SPEC = None

    def __init__(self) -> None:
        super().__init__(qgraphics_item=CanvasNodeItem)
        _hidden_props(self, "", 1)
        self.set_port_deletion_allowed(True)  # its ports come from the file's links
        self.model.color = PLACEHOLDER_COLOUR + (255,)

    def port_type(self, port_name: str, is_input: bool) -> PortType | None:
        return None  # unknown: any link is kept


def _hidden_props(node: BaseNode, type_id: str, version: int) -> None:
    node.create_property(ID_PROP, "")
    node.create_property(TYPE_PROP, type_id)
    node.create_property(VERSION_PROP, version)
    node.create_property(TITLE_PROP, "")
    node.create_property(GIVEN_PROP, [])
    node.create_property(EXTRA_PROP, {})
    node.create_property(MODE_PROP, "normal")
    node.create_property(COLLAPSED_PROP, False)


def node_classes(registry: NodeRegistry) -> list[type[BaseNode]]:
    """One generated NodeGraphQt class per spec, plus the placeholder class."""
    classes: list[type[BaseNode]] = [PlaceholderNode]
    for spec in registry:
        name = "n_" + re.sub(r"\W", "_", spec.type_id)
        classes.append(type(name, (SpecNode,), {"NODE_NAME": spec.title, "SPEC": spec}))
    return classes


def graph_type_of(spec: NodeSpec) -> str:
    """The NodeGraphQt type string of the class generated for ``spec``."""
    return f"{IDENTIFIER}.n_" + re.sub(r"\W", "_", spec.type_id)


def spec_of(node: BaseNode) -> NodeSpec | None:
    return getattr(node, "SPEC", None)


def workflow_nodes(graph: NodeGraph) -> list[BaseNode]:
    """The graph's workflow nodes (backdrops are not nodes of the workflow)."""
    return [n for n in graph.all_nodes() if isinstance(n, (SpecNode, PlaceholderNode))]


def node_id_of(node: BaseNode) -> str:
    return node.get_property(ID_PROP)


def find_node(graph: NodeGraph, node_id: str) -> BaseNode | None:
    for node in workflow_nodes(graph):
        if node_id_of(node) == node_id:
            return node
    return None


# -- the type check NodeGraphQt does not have -------------------------------
def link_problem(src: BaseNode, src_output: str, dst: BaseNode, dst_input: str) -> str | None:
    """Why ``src.src_output -> dst.dst_input`` may not be linked, or None."""
    if src is dst:
        return "a node cannot feed itself"
    out_type = src.port_type(src_output, is_input=False)
    in_type = dst.port_type(dst_input, is_input=True)
    if out_type is None or in_type is None or compatible(out_type, in_type):
        return None
    return (f"cannot link {src.name()}.{src_output} ({out_type.value}) to "
            f"{dst.name()}.{dst_input} ({in_type.value}): the types differ")


# -- workflow -> graph --------------------------------------------------------
def load_into(graph: NodeGraph, workflow: Workflow, registry: NodeRegistry) -> list[RefusedLink]:
    """Replace the graph's contents with ``workflow``; return what was refused.

    Nothing is pushed on the undo stack: a freshly opened file has no history.
    The view is fitted to the nodes, however the file was opened (a path, a
    dropped PNG, a recovered autosave).
    """
    graph.clear_session()
    positions = workflow.ui.get("nodes", {}) if isinstance(workflow.ui.get("nodes"), dict) else {}
    made: dict[str, BaseNode] = {}
    for node in workflow:
        made[node.id] = _add_node(graph, node, registry, workflow, positions.get(node.id))
    refused = add_links(graph, made, workflow.links)
    for group in workflow.ui.get("groups", []) or []:
        _add_backdrop(graph, group)
    if made and not all(node_id in positions for node_id in made):
        lay_out(made, workflow.links)
    graph.clear_selection()
    graph.fit_to_selection()  # with nothing selected: every node
    graph.clear_undo_stack()
    return refused


def lay_out(made: dict[str, BaseNode], links: Iterable[Link]) -> None:
    """Place the nodes in layered columns (``app.graph_layout``), not with
    NodeGraphQt's ``auto_layout_nodes``, which spaced a column by the next
    node's height, so a tall node covered the one below it."""
    from app.graph_layout import layered_positions

    sizes = {node_id: (item.view.width, item.view.height) for node_id, item in made.items()}
    edges = [(link.src_node, link.dst_node) for link in links]
    for node_id, (x, y) in layered_positions(sizes, edges).items():
        made[node_id].set_pos(x, y)


def _add_node(graph, node: Node, registry, workflow: Workflow, ui: Any) -> BaseNode:
    spec = registry.get(node.type)
    if spec is None:
        item = graph.create_node(f"{IDENTIFIER}.PlaceholderNode", push_undo=False, selected=False)
        _placeholder_ports(item, node.id, workflow.links)
        item.model.set_property(EXTRA_PROP, dict(node.params))
        item.set_name(node.title or placeholder_name(node.type))
        item.view.setToolTip(f"Node type {node.type!r} is not installed; "
                             "its params and links are kept when saving.")
    else:
        item = graph.create_node(graph_type_of(spec), push_undo=False, selected=False)
        params = dict(node.params)
        if node.version < spec.version and spec.migrate is not None:
            params = dict(spec.migrate(params, node.version))
        given = sorted(k for k in params if spec.input(k) is not None)
        item.model.set_property(GIVEN_PROP, given)
        item.model.set_property(EXTRA_PROP, {k: v for k, v in params.items() if spec.input(k) is None})
        for name in given:
            item.set_property(param_prop(name), params[name], push_undo=False)
        item.set_property("name", node.title or spec.title, push_undo=False)
    item.model.set_property(ID_PROP, node.id)
    item.model.set_property(TYPE_PROP, node.type)
    item.model.set_property(VERSION_PROP, spec.version if spec else node.version)
    item.model.set_property(TITLE_PROP, node.title or "")
    item.model.set_property(MODE_PROP, node.mode)
    if hasattr(item.view, "set_mode"):
        item.view.set_mode(node.mode)
    if isinstance(ui, dict) and _is_xy(ui.get("pos")):
        item.set_pos(float(ui["pos"][0]), float(ui["pos"][1]))
    if isinstance(ui, dict) and _is_xy(ui.get("color"), 3):
        colour = tuple(max(0, min(255, int(c))) for c in ui["color"][:3])
        item.set_property("color", colour + (255,), push_undo=False)
    if isinstance(ui, dict) and ui.get("collapsed") is True:
        item.model.set_property(COLLAPSED_PROP, True)
        if hasattr(item.view, "set_collapsed"):
            item.view.set_collapsed(True)
    return item


def placeholder_name(type_id: str) -> str:
    return f"{type_id} (not installed)"


def _placeholder_ports(item: BaseNode, node_id: str, links: Iterable[Link]) -> None:
    inputs = sorted({ln.dst_input for ln in links if ln.dst_node == node_id})
    outputs = sorted({ln.src_output for ln in links if ln.src_node == node_id})
    for name in inputs:
        item.add_input(name, color=PORT_COLOURS[PortType.ANY])
    for name in outputs:
        item.add_output(name, color=PORT_COLOURS[PortType.ANY])


@dataclass(frozen=True)
class RefusedLink:
    """A link of a file that the canvas cannot draw, and why."""

    link: Link
    reason: str

    def __str__(self) -> str:
        return f"link {self.link}: {self.reason}"


def add_links(graph: NodeGraph, made: dict[str, BaseNode], links: Iterable[Link],
              push_undo: bool = False) -> list[RefusedLink]:
    """Connect ``links`` between ``made`` nodes; return the links refused."""
    refused = []
    for link in links:
        src, dst = made.get(link.src_node), made.get(link.dst_node)
        out_port = src.outputs().get(link.src_output) if src else None
        in_port = dst.inputs().get(link.dst_input) if dst else None
        if out_port is None or in_port is None:
            refused.append(RefusedLink(link, "no such port"))
            continue
        problem = link_problem(src, link.src_output, dst, link.dst_input)
        if problem:
            refused.append(RefusedLink(link, problem))
            continue
        out_port.connect_to(in_port, push_undo=push_undo, emit_signal=False)
    return refused


def _add_backdrop(graph: NodeGraph, group: Any) -> None:
    if not isinstance(group, dict) or not _is_rect(group.get("rect")):
        return
    x, y, w, h = (float(v) for v in group["rect"])
    backdrop = graph.create_node("nodeGraphQt.nodes.BackdropNode", push_undo=False, selected=False)
    backdrop.set_name(str(group.get("title", "Group")))
    backdrop.set_pos(x, y)
    backdrop.set_size(w, h)
    if _is_xy(group.get("color"), 3):
        backdrop.set_color(*(int(c) for c in group["color"][:3]))


def _is_xy(value: Any, length: int = 2) -> bool:
    return (isinstance(value, list) and len(value) >= length
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[:length]))


def _is_rect(value: Any) -> bool:
    return _is_xy(value, 4)


# -- graph -> workflow --------------------------------------------------------
def to_workflow(graph: NodeGraph, base_ui: dict | None = None) -> Workflow:
    """The graph as the engine's document; ``base_ui`` keeps ui keys we do not own."""
    workflow = Workflow(ui=dict(base_ui or {}))
    positions = {}
    for item in workflow_nodes(graph):
        node = _node_of(item)
        workflow.nodes[node.id] = node
        positions[node.id] = {"pos": [round(item.pos()[0], 1), round(item.pos()[1], 1)]}
        if tuple(item.color()[:3]) != _default_colour(item):
            positions[node.id]["color"] = list(item.color()[:3])
        if item.get_property(COLLAPSED_PROP):
            positions[node.id]["collapsed"] = True
        for name, port in item.inputs().items():
            for source in port.connected_ports():
                workflow.links.append(
                    Link(node_id_of(source.node()), source.name(), node.id, name))
    workflow.links.sort()
    workflow.ui["nodes"] = positions
    groups = [_group_of(b) for b in graph.all_nodes() if isinstance(b, BackdropNode)]
    if groups:
        workflow.ui["groups"] = groups
    else:
        workflow.ui.pop("groups", None)
    return workflow


def _node_of(item: BaseNode) -> Node:
    spec = spec_of(item)
    file_title = item.get_property(TITLE_PROP) or None
    default = spec.title if spec else placeholder_name(item.get_property(TYPE_PROP))
    shown = file_title or default
    title = file_title if item.name() == shown else item.name()
    params = dict(item.get_property(EXTRA_PROP) or {})
    if spec is not None:
        given = set(item.get_property(GIVEN_PROP) or ())
        for param in spec.params:
            value = item.get_property(param_prop(param.name))
            if param.name in given or value != param.default:
                params[param.name] = value
    return Node(node_id_of(item), item.get_property(TYPE_PROP),
                item.get_property(VERSION_PROP), title, params,
                item.get_property(MODE_PROP) or "normal")


def _default_colour(item: BaseNode) -> tuple[int, int, int]:
    """A node's colour before anyone picks one: only a picked colour is saved."""
    return PLACEHOLDER_COLOUR if isinstance(item, PlaceholderNode) else DEFAULT_NODE_COLOUR


def _group_of(backdrop: BackdropNode) -> dict[str, Any]:
    x, y = backdrop.pos()
    w, h = backdrop.size()
    return {"title": backdrop.name(), "rect": [round(x, 1), round(y, 1), round(w, 1), round(h, 1)],
            "color": list(backdrop.color()[:3])}

"""The reroute (dot) node: a link bent around other nodes, nothing more.

Its socket and output are ANY, and :mod:`core.port_flow` gives the output the
type linked into the socket, so a MODEL routed into an IMAGE input is still
refused. The canvas draws it as a small pill (:mod:`app.gui.canvas_reroute`).
"""
from __future__ import annotations

from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType

TYPE_ID = "util.reroute"


def reroute(ctx, value):
    """Pass the value on unchanged (the same object: nothing is copied)."""
    return {"value": value}


NODES = (
    NodeSpec(
        type_id=TYPE_ID,
        title="Reroute",
        category="util",
        description="A dot that bends a link: passes its input on unchanged, with its type.",
        fn=reroute,
        inputs=(Input("value", PortType.ANY, tooltip="anything; the output has its type"),),
        outputs=(Output("value", PortType.ANY, tooltip="what came in"),),
    ),
)

"""Reroute (dot) nodes on the canvas: a small pill that takes the type of its
links, so a link through it is checked like a direct one (mouse drags)."""
from __future__ import annotations

from app import graph_adapter as adapter
from app.gui.canvas_reroute import HEIGHT, WIDTH
from core.validation import errors_only, validate
from nodes.reroute import TYPE_ID
from tests.gui.conftest import SCREENSHOTS
from tests.gui.helpers import drag_link


def _reroute(window, registry, x, y):
    node = window.graph.create_node(adapter.graph_type_of(registry.get(TYPE_ID)), pos=(x, y))
    return node


def test_links_pass_through_a_reroute_and_keep_their_type(qtbot, txt2img, registry):
    window = txt2img
    checkpoint, decode = window.node("checkpoint"), window.node("decode")
    checkpoint.outputs()["vae"].disconnect_from(decode.inputs()["vae"])
    cx, cy = checkpoint.pos()
    dot = _reroute(window, registry, cx + checkpoint.view.width + 60, cy + 280)
    spare = _reroute(window, registry, cx + checkpoint.view.width + 60, cy + 360)
    assert (dot.view.width, dot.view.height) == (WIDTH, HEIGHT)  # a pill, not a node box
    assert not dot.view.text_item.isVisible()
    window.graph.viewer().zoom_to_nodes([checkpoint.view, dot.view, spare.view, decode.view])
    qtbot.wait(10)

    drag_link(qtbot, window, checkpoint, "vae", dot, "value")
    drag_link(qtbot, window, dot, "value", decode, "vae")
    assert dot.inputs()["value"].connected_ports() == [checkpoint.outputs()["vae"]]
    assert decode.inputs()["vae"].connected_ports() == [dot.outputs()["value"]]
    workflow = window.document.workflow()
    assert errors_only(validate(workflow, registry)) == []
    window.grab().save(str(SCREENSHOTS / "gui-reroute.png"))

    # The dot feeds a VAE input now, so a MODEL may not come into it...
    drag_link(qtbot, window, checkpoint, "model", dot, "value")
    assert dot.inputs()["value"].connected_ports() == [checkpoint.outputs()["vae"]]
    assert "types differ" in window.statusBar().currentMessage()
    # ...and a dot carrying a MODEL may not feed the VAE decode's latent input.
    drag_link(qtbot, window, checkpoint, "model", spare, "value")
    assert spare.inputs()["value"].connected_ports() == [checkpoint.outputs()["model"]]
    window.statusBar().clearMessage()
    drag_link(qtbot, window, spare, "value", decode, "latent")
    assert spare.outputs()["value"] not in decode.inputs()["latent"].connected_ports()
    assert "MODEL" in window.statusBar().currentMessage()

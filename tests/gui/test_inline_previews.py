"""Issue 11, beyond the anchors: the Sampler shows its latest x̂₀ under the node
during a run, Save image shows its picture, and View → Inline previews hides them."""
from __future__ import annotations

from PySide6 import QtWidgets

from tests.gui.conftest import SCREENSHOTS
from tests.gui.test_run import _few_steps, _run


def _thumbnails(node) -> list[QtWidgets.QGraphicsPixmapItem]:
    """The node's pixmap children (NodeGraphQt's own icon item, hidden, among them)."""
    return [c for c in node.view.childItems() if isinstance(c, QtWidgets.QGraphicsPixmapItem)]


def _shown(node) -> QtWidgets.QGraphicsPixmapItem:
    items = [i for i in _thumbnails(node) if i.isVisible()]
    assert len(items) == 1
    return items[0]


def _not_blank(item) -> bool:
    image = item.pixmap().toImage()
    colours = {image.pixel(x, y) for x in range(0, image.width(), 4) for y in range(0, image.height(), 4)}
    return not image.isNull() and len(colours) > 1


def test_the_sampler_and_save_image_show_their_pictures_under_the_node(qtbot, txt2img):
    window = txt2img
    _few_steps(window)
    seen = []  # the thumbnail follows the steps while the run goes

    def on_step(_record) -> None:
        seen.append(_shown(window.node("sampler")).toolTip())

    window.runner.step_preview.connect(on_step)
    assert _run(qtbot, window, key=False).status == "finished"
    window.runner.step_preview.disconnect(on_step)
    assert seen == ["x̂₀ step 1/2", "x̂₀ step 2/2"]
    sampler, save = window.node("sampler"), window.node("save")
    thumb = _shown(sampler)
    assert _not_blank(thumb) and max(thumb.pixmap().width(), thumb.pixmap().height()) == 96
    assert thumb.pos().y() >= sampler.view.boundingRect().bottom()  # under the node
    picture = _shown(save)
    assert _not_blank(picture) and "Save image (1 of 2)" in picture.toolTip()
    window.fit_view()  # zoomed out: titles are drawn large, and the pictures go under them
    viewer = window.graph.viewer()
    for node in (sampler, save):
        on_screen = [item.deviceTransform(viewer.viewportTransform()).mapRect(item.boundingRect())
                     for item in (node.view.title_label, _shown(node))]
        assert node.view.title_label.isVisible() and not on_screen[0].intersects(on_screen[1])
        assert viewer.transform().m11() < 0.7 and on_screen[1].width() >= 70  # readable, not a stamp
    window.graph.widget.grab().save(str(SCREENSHOTS / "gui-inline-previews.png"))

    toggle = window.actions_by_name["inline_previews"]
    assert toggle.isChecked() and toggle in window.view_menu.actions()
    toggle.trigger()
    assert not any(i.isVisible() for i in _thumbnails(sampler) + _thumbnails(save))
    assert window.settings.value("view/inline_previews") == "false"
    window.node("sampler").set_property("param_seed", 1)  # a new run while hidden …
    assert _run(qtbot, window, key=False).status == "finished"
    assert not any(i.isVisible() for i in _thumbnails(sampler))
    toggle.trigger()  # … is what shows when they are shown again
    assert _not_blank(_shown(sampler)) and _shown(sampler).toolTip() == "x̂₀ step 2/2"
    assert _not_blank(_shown(save))


def test_no_thumbnails_before_a_run(txt2img):
    assert not any(i.isVisible() for node in txt2img.graph.all_nodes() for i in _thumbnails(node))


def test_a_load_image_node_shows_its_file_after_a_run(window, tmp_path):
    from PySide6 import QtGui

    from app.gui.runner import RunOutcome

    picture = QtGui.QImage(300, 200, QtGui.QImage.Format.Format_RGB888)
    picture.fill(QtGui.QColor(200, 40, 40))
    picture.save(str(tmp_path / "red.png"))
    node = window.graph.create_node("wb.n_image_load")
    node.set_property("param_path", str(tmp_path / "red.png"))
    window.inline_previews.on_run_finished(RunOutcome("finished"))
    thumb = _shown(node)
    assert (thumb.pixmap().width(), thumb.pixmap().height()) == (96, 64)  # decoded at thumbnail size

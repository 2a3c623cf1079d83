"""Issue 11, items 2 and 9: the default dock layout at 1024×700, 1400×860 and
1600×1000 — the canvas keeps most of the width, dock tabs show whole titles,
Properties shows every parameter of the Sampler, and growth goes to the canvas."""
from __future__ import annotations

import pytest
from PySide6 import QtCore, QtWidgets

from app.gui.main_window import MainWindow
from tests.gui.conftest import REPO, SCREENSHOTS
from tests.gui.test_run import _few_steps, _run


def _open(qtbot, registry, settings, tmp_path, width, height):
    win = MainWindow(registry, settings=settings, autosave_path=tmp_path / "recovery.json")
    win.resize(width, height)
    win.show()
    qtbot.waitExposed(win)
    qtbot.wait(50)  # the default sizes are applied once the window has its size
    return win


def _close(win):
    win.graph.undo_stack().setClean()
    win.close()
    win.runner.wait()


def _tab_titles_whole(win) -> list[str]:
    """The dock tab titles that are elided or pushed out of their tab bar."""
    bad = []
    for bar in win.findChildren(QtWidgets.QTabBar):
        if bar.parent() is not win or not bar.isVisible():
            continue
        for i in range(bar.count()):
            rect, text = bar.tabRect(i), bar.tabText(i)
            if rect.width() < bar.fontMetrics().horizontalAdvance(text) or not bar.rect().contains(rect):
                bad.append(text)
    return bad


def _hidden_editors(panel) -> list[str]:
    """Parameters of the shown node whose editor is not wholly in the panel's view."""
    view = panel.viewport().rect()
    return [name for name, editor in panel.editors.items() if editor.isVisibleTo(panel)
            and not view.contains(QtCore.QRect(editor.mapTo(panel.viewport(), QtCore.QPoint(0, 0)),
                                              editor.size()))]


def _cut_palette_titles(win) -> list[str]:
    """Node titles in the palette whose text runs past the list's visible width."""
    tree = win.palette.tree
    width, bad = tree.viewport().width(), []
    for group in (tree.topLevelItem(i) for i in range(tree.topLevelItemCount())):
        for item in (group.child(j) for j in range(group.childCount())):
            start = tree.visualItemRect(item).left()
            if start + tree.fontMetrics().horizontalAdvance(item.text(0)) + 4 > width:
                bad.append(item.text(0))
    return bad


def _select(qtbot, win, node_id):
    win.graph.clear_selection()
    win.node(node_id).set_selected(True)
    qtbot.waitUntil(lambda: bool(win.properties.editors))
    qtbot.wait(50)  # the panel grows on the next turn of the event loop


def test_every_sampler_parameter_shows_at_1400x860(qtbot, txt2img):
    """Item 2: Properties was ~90 px tall and showed one Sampler parameter."""
    win = txt2img
    assert (win.width(), win.height()) == (1400, 860)
    _select(qtbot, win, "sampler")
    assert len(win.properties.editors) >= 8
    assert _hidden_editors(win.properties) == []
    assert win.properties.verticalScrollBar().maximum() == 0
    # the separator under Properties is wide enough to grab, not the Images title bar
    extent = win.style().pixelMetric(QtWidgets.QStyle.PixelMetric.PM_DockWidgetSeparatorExtent)
    assert extent >= 6


def test_a_samplers_own_options_show_only_while_it_is_chosen(qtbot, txt2img):
    """η belongs to ddim, its ancestral η to euler_ancestral, the variance to ddpm:
    the panel shows each only while its sampler is chosen (the values are kept)."""
    win = txt2img
    _select(qtbot, win, "sampler")
    panel, node = win.properties, win.node("sampler")
    shown = lambda: {n for n in ("eta", "ancestral_eta", "variance")  # noqa: E731
                     if panel.editors[n].isVisibleTo(panel)}
    assert node.get_property("param_sampler") == "dpmpp_2m" and shown() == set()
    for sampler, options in (("ddim", {"eta"}), ("euler_ancestral", {"ancestral_eta"}),
                             ("ddpm", {"variance"}), ("euler", set())):
        node.set_property("param_sampler", sampler)  # as the canvas or an undo would
        assert shown() == options, sampler
    assert _hidden_editors(panel) == [] and panel.verticalScrollBar().maximum() == 0


def test_1024x700_gives_the_canvas_most_of_the_width_and_whole_tab_titles(
        qtbot, registry, settings, tmp_path):
    """Item 9: the canvas had 30 % of the width and the tabs read "I…", "S…"."""
    win = _open(qtbot, registry, settings, tmp_path, 1024, 700)
    try:
        assert win.centralWidget().width() >= 0.5 * win.width()
        assert win.centralWidget().height() >= 0.5 * win.height()
        assert _tab_titles_whole(win) == []
        assert _cut_palette_titles(win) == []  # "Latent to ima…", "Apply Control…" were cut
        assert win.docks["properties"].height() >= 250
        before = win.centralWidget().size()
        win.resize(1600, 1000)
        qtbot.waitUntil(lambda: win.centralWidget().width() > before.width())
        qtbot.wait(50)
        grown = win.centralWidget().size()
        assert grown.width() - before.width() >= 0.8 * (1600 - 1024)  # growth goes to the canvas
        assert grown.height() > before.height()
        assert win.centralWidget().width() >= 0.55 * win.width()
        assert _tab_titles_whole(win) == []
        win.resize(1024, 700)  # and back: the docks do not keep the canvas from its share
        qtbot.waitUntil(lambda: win.width() == 1024)
        qtbot.wait(50)
        assert win.centralWidget().width() >= 0.5 * win.width()
    finally:
        _close(win)


@pytest.mark.parametrize("size", [(1400, 860), (1024, 700)])
def test_screenshot_of_the_default_workflow_after_a_short_run(qtbot, registry, settings, tmp_path,
                                                              size):
    win = _open(qtbot, registry, settings, tmp_path, *size)
    try:
        assert win.open_path(REPO / "workflows" / "txt2img.json")
        _few_steps(win)
        assert _run(qtbot, win, key=False).status == "finished"
        _select(qtbot, win, "sampler")
        assert win.centralWidget().width() >= 0.5 * win.width()
        assert _tab_titles_whole(win) == []
        if size == (1400, 860):
            assert _hidden_editors(win.properties) == []
        win.grab().save(str(SCREENSHOTS / f"gui-layout-{size[0]}x{size[1]}.png"))
    finally:
        _close(win)

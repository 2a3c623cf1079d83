"""The default dock layout, and the rules that keep the canvas usable.

Why a layout of its own: with every view tabbed in one right-hand column,
that column was as wide as its widest tab (the step grid), the canvas got
30 % of a 1024-pixel window, tab titles shrank to "I…", and Properties got
the ~90 pixels left above the tabs. The layout here:

- left: the node palette (and any other left docks, tabbed);
- right: Properties on top, tall enough for a Sampler's parameters (with
  Generate as a tab behind it: both edit nodes, and share the column), over
  Images (and any other right docks, tabbed); the right column runs the full
  height of the window;
- bottom: the Timeline (one compact strip) over one tab group of the run's
  views: Steps, Branch, Schedule plot, Forward process, Log (and any other
  bottom docks). It is wide, so the tab titles are never elided.

Side widths are shares of the window clamped in pixels, applied when the
window is first shown without a saved layout and again whenever a resize
leaves the canvas under ``MIN_CANVAS_SHARE``; growth goes to the canvas.
"""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

Area = QtCore.Qt.DockWidgetArea
Horizontal, Vertical = QtCore.Qt.Orientation.Horizontal, QtCore.Qt.Orientation.Vertical

#: The least share of the window's width the canvas keeps (the docks give way).
MIN_CANVAS_SHARE = 0.4
#: Known docks: their area and their order within it. Others keep the area
#: they were added with and are tabbed behind that area's group.
HOME = {"palette": Area.LeftDockWidgetArea, "properties": Area.RightDockWidgetArea,
        "generate": Area.RightDockWidgetArea, "images": Area.RightDockWidgetArea,
        "timeline": Area.BottomDockWidgetArea, "steps": Area.BottomDockWidgetArea,
        "branch": Area.BottomDockWidgetArea, "schedule": Area.BottomDockWidgetArea,
        "forward": Area.BottomDockWidgetArea, "log": Area.BottomDockWidgetArea}
ORDER = list(HOME)
#: Docks that sit above their area's tab group instead of in it.
HEADS = {Area.RightDockWidgetArea: "properties", Area.BottomDockWidgetArea: "timeline"}
#: Docks tabbed behind a head; the head stays the tab in front.
HEAD_TABS = {"generate": "properties"}


def _clamp(value: float, low: int, high: int) -> int:
    return int(max(low, min(high, value)))


class DockLayout(QtCore.QObject):
    """Arranges the window's docks and watches its size (an event filter)."""

    def __init__(self, window: QtWidgets.QMainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.arranged = False
        self.areas: dict[str, Area] = {}  # the area each dock was added with
        self._check = QtCore.QTimer(self, singleShot=True, interval=0)
        self._check.timeout.connect(self.keep_canvas_visible)
        self._fit = QtCore.QTimer(self, singleShot=True, interval=0)
        self._fit.timeout.connect(self.fit_properties)
        window.installEventFilter(self)
        window.setCorner(QtCore.Qt.Corner.BottomRightCorner, Area.RightDockWidgetArea)
        base = QtWidgets.QStyleFactory.create(window.style().name())
        self.style = WideSeparators(base) if base is not None else None
        if self.style is not None:
            window.setStyle(self.style)  # the window only: children keep the application's style

    # -- where docks go --------------------------------------------------------------
    def added(self, name: str, dock: QtWidgets.QDockWidget, area: Area) -> None:
        """A dock was added: remember its area; after the arrangement, tab it into its group."""
        self.areas[name] = area
        if self.arranged and HEAD_TABS.get(name) in self.window.docks:
            self.window.tabifyDockWidget(self.window.docks[HEAD_TABS[name]], dock)
            self.window.docks[HEAD_TABS[name]].raise_()
        elif self.arranged:
            group = self._groups().get(HOME.get(name, area), [])
            lead = next((self.window.docks[n] for n in group if n != name and n not in HEADS.values()
                         and n not in HEAD_TABS), None)
            if lead is not None and lead is not dock:
                self.window.tabifyDockWidget(lead, dock)
            self.readable_tabs()

    def _groups(self) -> dict[Area, list[str]]:
        groups: dict[Area, list[str]] = {}
        for name in self.window.docks:
            groups.setdefault(HOME.get(name, self.areas.get(name, Area.RightDockWidgetArea)), []).append(name)
        for names in groups.values():
            names.sort(key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
        return groups

    def arrange(self) -> None:
        """Put every dock where the default layout wants it (adding a dock again
        moves it; visibility is left as it is)."""
        window, docks = self.window, self.window.docks
        for area, names in self._groups().items():
            head = HEADS.get(area) if HEADS.get(area) in names else None
            rest = [n for n in names if n != head and n not in HEAD_TABS]
            orientation = Vertical if area in (Area.LeftDockWidgetArea, Area.RightDockWidgetArea) else Horizontal
            if head is not None:
                window.addDockWidget(area, docks[head], orientation)
            if rest:
                if head is not None:
                    window.splitDockWidget(docks[head], docks[rest[0]], Vertical)
                else:
                    window.addDockWidget(area, docks[rest[0]], orientation)
                for name in rest[1:]:
                    window.tabifyDockWidget(docks[rest[0]], docks[name])
                docks[rest[0]].raise_()
            behind = [n for n in names if head is not None and HEAD_TABS.get(n) == head]
            for name in behind:  # after the split: a split beside a tabbed dock would tab instead
                window.tabifyDockWidget(docks[head], docks[name])
            if behind:
                docks[head].raise_()
        self.arranged = True
        self.readable_tabs()

    # -- sizes --------------------------------------------------------------------------
    def default_sizes(self) -> None:
        """Side widths and heights as shares of the window, clamped in pixels."""
        window, docks = self.window, self.window.docks
        width, height = window.width(), window.height()
        sides = [(docks.get("palette"), _clamp(0.15 * width, 206, 240)),  # whole node titles
                 (docks.get("properties"), _clamp(0.27 * width, 280, 400))]
        sides = [(d, w) for d, w in sides if d is not None and d.isVisible()]
        if sides:
            window.resizeDocks([d for d, _ in sides], [w for _, w in sides], Horizontal)
        column = height - window.menuBar().height() - window.statusBar().height()
        pairs = [(docks.get("properties"), min(_clamp(0.58 * column, 250, 470), column - 150)),
                 (docks.get("timeline"), docks["timeline"].minimumSizeHint().height()
                  if "timeline" in docks else 0),
                 (docks.get("steps"), _clamp(0.24 * height, 150, 280))]
        pairs = [(d, h) for d, h in pairs if d is not None and d.isVisible()]
        if pairs:
            window.resizeDocks([d for d, _ in pairs], [h for _, h in pairs], Vertical)

    def keep_canvas_visible(self) -> None:
        """A resize (or a layout saved on a wider screen) left the canvas a sliver:
        the side docks go back to their default widths."""
        window = self.window
        if window.centralWidget().width() < MIN_CANVAS_SHARE * window.width():
            self.default_sizes()

    def fit_properties(self) -> None:
        """Grow Properties (never shrink it) until the selected node's parameters
        all show, up to 70 % of its column."""
        panel, dock = self.window.properties, self.window.docks.get("properties")
        if dock is None or not dock.isVisible() or dock.isFloating() or panel.widget() is None:
            return
        missing = panel.widget().sizeHint().height() + 2 * panel.frameWidth() - panel.viewport().height()
        if missing <= 0:
            return
        window = self.window
        column = window.height() - window.menuBar().height() - window.statusBar().height()
        target = min(dock.height() + missing, int(0.7 * max(column, dock.height())))
        if target > dock.height():
            self.window.resizeDocks([dock], [target], Vertical)

    def readable_tabs(self) -> None:
        """Dock tab bars show whole titles and scroll instead of eliding them."""
        for bar in self.window.findChildren(QtWidgets.QTabBar):
            if bar.parent() is self.window:
                bar.setElideMode(QtCore.Qt.TextElideMode.ElideNone)
                bar.setUsesScrollButtons(True)
                bar.setExpanding(False)

    def watch_selection(self, scene) -> None:
        scene.selectionChanged.connect(self._fit.start)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind == QtCore.QEvent.Type.Resize and self.arranged:
            self._check.start()
        elif kind == QtCore.QEvent.Type.ChildAdded and isinstance(event.child(), QtWidgets.QTabBar):
            QtCore.QTimer.singleShot(0, self.readable_tabs)  # Qt made a tab bar for a new group
        return False


class WideSeparators(QtWidgets.QProxyStyle):
    """Dock separators wide enough to grab: a thin one beside a title bar made
    a drag start on the title instead, which moved the dock into other tabs."""

    EXTENT = 7

    def pixelMetric(self, metric, option=None, widget=None) -> int:  # noqa: N802 - Qt's name
        if metric == QtWidgets.QStyle.PixelMetric.PM_DockWidgetSeparatorExtent:
            return self.EXTENT
        return super().pixelMetric(metric, option, widget)

"""The schedule plot dock: β_t, ᾱ_t and SNR_t (log scale) of every schedule in
the graph, overlaid (optionally with linear and cosine for reference, as in
Nichol & Dhariwal 2021, Fig. 5), with the timesteps the scrubbed sampler
actually visited marked and the selected step highlighted. A flow-matching
schedule has no β; its SNR ((1 − t)/t)² and VP-equivalent ᾱ are drawn at
1000 t, so its steps are marked on the same axis.

The tables are computed in a background job (torch, float64, via
``core.diffusion.schedules``); the GUI thread only draws numpy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from app.gui.jobs import Jobs
from core.workflow import Workflow

SCHEDULE_TYPE = "diffusion.schedule"
REFERENCES = (("linear", 1000, False), ("cosine", 1000, False))
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948")
TINY = 1e-12  # log-scale floor: zero-terminal-SNR schedules reach SNR = 0 exactly
FLOW_SPEC = ("flow", 1000, False)
FLOW_AXIS = 1000.0  # flow times t ∈ [0, 1] are drawn at 1000 t, beside T = 1000 tables


@dataclass(frozen=True)
class Curves:
    """One schedule's tables as numpy arrays, ready to draw."""

    label: str
    betas: np.ndarray  # NaN where a schedule has no β (flow matching)
    alphas_cumprod: np.ndarray
    snr: np.ndarray
    x: np.ndarray | None = None  # positions on the timestep axis (default 0 … T−1)


def schedule_specs(workflow: Workflow) -> list[tuple[str, int, bool]]:
    """(name, T, zero SNR) of every diffusion schedule node in the graph, once each."""
    specs = []
    for node in workflow.nodes.values():
        if node.type != SCHEDULE_TYPE:
            continue
        spec = (str(node.params.get("name", "scaled_linear")), int(node.params.get("timesteps", 1000)),
                bool(node.params.get("zero_snr", False)))
        if spec[0] == "flow":
            spec = FLOW_SPEC
        if spec not in specs:
            specs.append(spec)
    return specs


def compute_curves(specs: list[tuple[str, int, bool]]) -> list[Curves]:
    """The tables of each schedule (runs in a worker: torch)."""
    from core.diffusion.schedules import make_schedule

    curves = []
    for name, timesteps, zero_snr in specs:
        if name == "flow":
            curves.append(flow_curves())
            continue
        table = make_schedule(name, timesteps, zero_snr)
        label = f"{name}{' (zero SNR)' if zero_snr else ''}, T = {timesteps}"
        curves.append(Curves(label, table.betas.numpy(), table.alphas_cumprod.numpy(),
                             np.clip(table.snr.numpy(), TINY, None)))
    return curves


def flow_curves(points: int = 999) -> Curves:
    """Flow matching's x_t = (1 − t) x_0 + t ε on the same axis, at 1000 t:
    SNR = ((1 − t)/t)² and its VP equivalent ᾱ = SNR/(1 + SNR); no β."""
    t = np.linspace(0, 1, points + 2)[1:-1]
    snr = ((1 - t) / t) ** 2
    return Curves("flow (rectified), t × 1000", np.full_like(t, np.nan), snr / (1 + snr),
                  np.clip(snr, TINY, None), FLOW_AXIS * t)


class SchedulePlot(QtWidgets.QWidget):
    """Three stacked plots sharing the timestep axis."""

    def __init__(self, jobs: Jobs, parent=None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.specs: list[tuple[str, int, bool]] = []
        self.curves: list[Curves] = []
        self.active = False  # whether its dock is on screen (not a background tab)
        self._stale = False  # tables wanted while hidden: computed when shown
        self.reference = QtWidgets.QCheckBox("Overlay linear and cosine (Nichol && Dhariwal)")
        self.reference.setChecked(True)
        self.reference.toggled.connect(lambda _on: self._recompute())
        self.layout_widget = pg.GraphicsLayoutWidget()
        self.layout_widget.setBackground("w")
        self.plots = {key: self._plot(key, title, row) for row, (key, title) in enumerate(
            (("beta", "β_t (log)"), ("alpha_bar", "ᾱ_t"), ("snr", "SNR_t (log)")))}
        self.plots["beta"].setLogMode(y=True)  # cosine's β reaches 0.999 where linear's is 0.02
        self.plots["snr"].setLogMode(y=True)
        self.plots["alpha_bar"].setXLink(self.plots["beta"])
        self.plots["snr"].setXLink(self.plots["beta"])
        self.plots["alpha_bar"].addLegend(offset=(-10, 10))  # top right: where ᾱ curves are not
        # PlotDataItems (not ScatterPlotItems): only they follow the SNR plot's log scale.
        self.visited = {key: pg.PlotDataItem([], [], pen=None, symbol="o", symbolSize=7,
                                             symbolBrush=pg.mkBrush(0, 0, 0, 170), symbolPen=None)
                        for key in ("alpha_bar", "snr")}
        self.current = {key: pg.PlotDataItem([], [], pen=None, symbol="o", symbolSize=15,
                                             symbolBrush=pg.mkBrush("#d62728"), symbolPen=pg.mkPen("k"))
                        for key in ("alpha_bar", "snr")}
        self.cursor = {key: pg.InfiniteLine(angle=90, pen=pg.mkPen("#d62728", style=QtCore.Qt.PenStyle.DashLine))
                       for key in self.plots}
        for key, plot in self.plots.items():
            plot.addItem(self.cursor[key])
            self.cursor[key].setVisible(False)
        for key in self.visited:
            self.plots[key].addItem(self.visited[key])
            self.plots[key].addItem(self.current[key])
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.reference)
        layout.addWidget(self.layout_widget, 1)

    def _plot(self, key: str, title: str, row: int) -> pg.PlotItem:
        plot = self.layout_widget.addPlot(row=row, col=0)
        plot.setLabel("left", title)
        plot.showGrid(x=True, y=True, alpha=0.25)
        if row == 2:
            plot.setLabel("bottom", "timestep t")
        return plot

    # -- schedules -------------------------------------------------------------------
    def set_workflow(self, workflow: Workflow) -> None:
        """Plot the schedules of this graph (recomputed only when they change)."""
        specs = schedule_specs(workflow)
        if specs != self.specs:
            self.specs = specs
            self._recompute()

    def set_active(self, active: bool) -> None:
        """Its dock came on screen or went behind another tab."""
        self.active = active
        if active and self._stale:
            self._recompute()

    def _recompute(self) -> None:
        """Compute the tables in the background, only while the plot can be seen
        (the first job imports torch, which holds the interpreter for a while)."""
        self._stale = not self.active
        if self._stale:
            return
        specs = list(self.specs)
        if self.reference.isChecked():
            specs += [s for s in REFERENCES if s not in specs]
        self.jobs.submit("schedules", lambda: compute_curves(specs), self._draw_curves)

    def _draw_curves(self, curves: list[Curves]) -> None:
        self.curves = curves
        for key, plot in self.plots.items():
            for item in list(plot.listDataItems()):
                if item not in self.visited.values() and item not in self.current.values():
                    plot.removeItem(item)
        for number, curve in enumerate(curves):
            pen = pg.mkPen(COLOURS[number % len(COLOURS)], width=2 if number < len(self.specs) else 1,
                           style=QtCore.Qt.PenStyle.SolidLine if number < len(self.specs)
                           else QtCore.Qt.PenStyle.DashLine)
            t = curve.x if curve.x is not None else np.arange(len(curve.betas))
            if not np.isnan(curve.betas).all():
                self.plots["beta"].plot(t, curve.betas, pen=pen)
            self.plots["alpha_bar"].plot(t, curve.alphas_cumprod, pen=pen, name=curve.label)
            self.plots["snr"].plot(t, curve.snr, pen=pen)

    def curve_labels(self) -> list[str]:
        return [c.label for c in self.curves]

    # -- the sampler's steps -------------------------------------------------------------
    def set_steps(self, records: list, selected=None) -> None:
        """Mark the timesteps the sampler visited; highlight ``selected``."""
        points = [r for r in records if _plottable(r)]
        self.visited["alpha_bar"].setData([_x(r) for r in points], [r.alpha_bar for r in points])
        self.visited["snr"].setData([_x(r) for r in points], [max(r.snr, TINY) for r in points])
        show = bool(selected is not None and _plottable(selected))
        for key in self.current:
            value = (selected.alpha_bar if key == "alpha_bar" else max(selected.snr, TINY)) if show else None
            self.current[key].setData([_x(selected)] if show else [], [value] if show else [])
        for line in self.cursor.values():
            line.setVisible(show)
            if show:
                line.setValue(_x(selected))

    def visited_timesteps(self) -> list[float]:
        x, _ = self.visited["alpha_bar"].getData()
        return [] if x is None else [float(v) for v in x]

    def highlighted_timestep(self) -> float | None:
        x, _ = self.current["alpha_bar"].getData()
        return float(x[0]) if x is not None and len(x) else None


def _plottable(record) -> bool:
    """Steps with a place on the timestep axis and a finite SNR."""
    return bool(record.timestep is not None and record.timestep >= 0
                and record.snr is not None and np.isfinite(record.snr))


def _x(record) -> float:
    """Where a step sits on the axis: its timestep, or 1000 t for a flow time t."""
    return record.timestep * FLOW_AXIS if record.parameterization == "flow" else record.timestep

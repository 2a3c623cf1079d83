"""GUI event-loop latency while the default workflow runs.

Opens the real main window offscreen on ``workflows/txt2img.json``, runs it
(a new seed each time, so nothing comes from the cache but the loaded model)
and meanwhile measures how late a 10 ms QTimer fires on the GUI thread. The
lateness is how long a click or a repaint would wait. Target: under 50 ms
(max) during a run. Run: ``python bench/gui_latency.py [--runs N] [--steps S]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtCore  # noqa: E402

from app.gui.app import application, make_window  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TICK_MS = 10


class LatencyProbe(QtCore.QObject):
    """A fast timer on the GUI thread that records how late each tick is."""

    def __init__(self) -> None:
        super().__init__()
        self.lateness_ms: list[float] = []
        self._last = None
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self.tick)

    @QtCore.Slot()
    def tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.lateness_ms.append(max(0.0, (now - self._last) * 1000 - TICK_MS))
        self._last = now

    def start(self) -> None:
        self.lateness_ms.clear()
        self._last = None
        self.timer.start(TICK_MS)

    def stop(self) -> list[float]:
        self.timer.stop()
        return list(self.lateness_ms)


def isolate_settings() -> None:
    """The window's QSettings (layout, recent files) go to a temporary folder,
    never into the person's own configuration."""
    folder = tempfile.mkdtemp(prefix="dw-bench-settings-")
    for fmt in (QtCore.QSettings.Format.NativeFormat, QtCore.QSettings.Format.IniFormat):
        QtCore.QSettings.setPath(fmt, QtCore.QSettings.Scope.UserScope, folder)


def measure(runs: int, steps: int | None) -> dict:
    isolate_settings()
    app = application()
    window = make_window(autosave_path=Path(tempfile.mkdtemp()) / "recovery.json")
    window.show()
    window.open_path(REPO / "workflows" / "txt2img.json")
    if steps:
        window.node("schedule").set_property("param_steps", steps)
    probe = LatencyProbe()
    loop = QtCore.QEventLoop()
    window.run_finished.connect(lambda _outcome: loop.quit())
    samples, durations, idle = [], [], []
    probe.start()
    QtCore.QTimer.singleShot(1000, loop.quit)
    loop.exec()
    idle = probe.stop()
    for run in range(runs + 1):  # run 0 loads the model: measured apart
        window.node("sampler").set_property("param_seed", run + 1)
        probe.start()
        started = time.perf_counter()
        window.run_workflow()
        loop.exec()
        lateness = probe.stop()
        if run == 0:
            first = (time.perf_counter() - started, lateness)
        else:
            durations.append(time.perf_counter() - started)
            samples += lateness
    window.graph.undo_stack().setClean()
    window.close()
    app.processEvents()
    return {"idle": idle, "first": first, "samples": samples, "durations": durations,
            "device": window.runner.device_name}


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return (f"p50 {statistics.median(ordered):.2f} ms, p95 {p95:.2f} ms, "
            f"max {ordered[-1]:.2f} ms ({len(ordered)} ticks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, help="override the schedule's steps (default 25)")
    args = parser.parse_args()
    result = measure(args.runs, args.steps)
    first_s, first_lateness = result["first"]
    print(f"device: {result['device']}")
    print(f"idle window:          {_summary(result['idle'])}")
    print(f"first run (loads the model, {first_s:.2f} s): {_summary(first_lateness)}")
    print(f"runs ({len(result['durations'])}, median {statistics.median(result['durations']):.2f} s): "
          f"{_summary(result['samples'])}")
    verdict = "met" if max(result["samples"]) < 50 else "NOT met"
    print(f"target max < 50 ms during a run: {verdict}")


if __name__ == "__main__":
    main()

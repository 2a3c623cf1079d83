"""The user guide's main pictures, from a real run of the default workflow.

The GUI tests save screenshots too, but of tiny 2-step runs (fast, and
enough to check the views); a guide should show what a person sees:
``workflows/txt2img.json`` at its own 25 steps and batch of 4. Run:
``QT_QPA_PLATFORM=offscreen python scripts/guide_screenshots.py [OUT_DIR]``
(default ``docs/images``); writes ``guide-*.png``, about 10 s on a laptop CPU.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtCore  # noqa: E402

from app.gui.app import application, make_window  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRUB_TO = 12  # a middle step: the noise is half gone and the shape already there


def isolated_settings() -> None:
    """Layout and recent files go to a temporary folder, not the person's own."""
    folder = tempfile.mkdtemp(prefix="dw-guide-settings-")
    for fmt in (QtCore.QSettings.Format.NativeFormat, QtCore.QSettings.Format.IniFormat):
        QtCore.QSettings.setPath(fmt, QtCore.QSettings.Scope.UserScope, folder)


def run_to_the_end(app, window) -> None:
    loop = QtCore.QEventLoop()
    outcomes = []
    window.run_finished.connect(lambda outcome: (outcomes.append(outcome), loop.quit()))
    window.run_workflow()
    loop.exec()
    if outcomes[0].status != "finished":
        raise SystemExit(f"the run did not finish: {outcomes[0].status}")
    app.processEvents()


def main(out: Path) -> None:
    isolated_settings()
    app = application()
    window = make_window(autosave_path=Path(tempfile.mkdtemp()) / "recovery.json")
    window.resize(1400, 860)
    window.show()
    window.open_path(REPO / "workflows" / "txt2img.json")
    run_to_the_end(app, window)
    out.mkdir(parents=True, exist_ok=True)
    window.docks["images"].raise_()
    app.processEvents()
    window.grab().save(str(out / "guide-after-run.png"))
    window.docks["steps"].raise_()
    window.steer.timeline.scrub_to(SCRUB_TO)
    app.processEvents()
    window.grab().save(str(out / "guide-steps.png"))
    view = window.steer.step_view
    view.grab().save(str(out / "guide-step-view.png"))
    view.decode_button.click()  # the exact VAE decode of the shown step, in the background
    while not view.decoded:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 50)
    view.grab().save(str(out / "guide-step-view-decoded.png"))
    window.document.graph.undo_stack().setClean()  # nothing to save: no prompt
    window.close()
    print(f"wrote guide-after-run.png, guide-steps.png, guide-step-view(-decoded).png to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "images")

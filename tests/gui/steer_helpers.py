"""Shared steps of the issue-6 GUI tests: a tiny default run (12 steps, batch 2)."""
from __future__ import annotations

STEPS = 12
BATCH = 2
RUN_TIMEOUT_MS = 120_000


def tiny(window, steps: int = STEPS, batch: int = BATCH) -> None:
    window.node("schedule").set_property("param_steps", steps)
    window.node("latent").set_property("param_batch_size", batch)


def run(qtbot, window, start=None):
    """Start a run (the window's own, or ``start()``) and wait for its outcome."""
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        assert (start or window.run_workflow)()
    return blocker.args[0]


def settle(qtbot, steering) -> None:
    """Wait until the background jobs are done and their results delivered."""
    qtbot.waitUntil(steering.jobs.idle, timeout=30_000)

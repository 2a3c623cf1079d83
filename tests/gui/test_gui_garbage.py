"""Cyclic garbage is collected on the GUI thread, never in a worker thread."""
from __future__ import annotations

import gc
import threading
import weakref


def test_cycles_are_collected_by_the_gui_threads_timer(qtbot):
    assert not gc.isenabled()  # no collection can start inside a run's worker thread
    seen = []

    class Cycle:
        def __init__(self):
            self.me = self

        def __del__(self):
            seen.append(threading.current_thread() is threading.main_thread())

    probe = weakref.ref(Cycle())
    kept = [[] for _ in range(2000)]  # cross the first generation's threshold
    qtbot.waitUntil(lambda: probe() is None, timeout=5000)
    gc.collect()  # older generations too, still on the main thread
    assert seen and all(seen) and kept

"""Cyclic garbage is collected on the GUI thread, never in a worker thread."""
from __future__ import annotations

import gc
import threading
import weakref


class Cycle:
    """Refers to itself; says in which thread it was finalised."""

    def __init__(self, seen: list):
        self.me, self.seen = self, seen

    def __del__(self):
        self.seen.append(threading.current_thread() is threading.main_thread())


def test_cycles_are_collected_by_the_gui_threads_timer(qtbot, gui_thread_garbage_collection):
    assert not gc.isenabled() and gui_thread_garbage_collection.active
    seen: list = []
    probe = weakref.ref(Cycle(seen))
    qtbot.waitUntil(lambda: probe() is None, timeout=5000)
    assert seen == [True]


def test_a_cycle_is_collected_even_when_frees_outnumber_allocations(
        qtbot, gui_thread_garbage_collection):
    """Freeing objects lowers Python's young-generation count; a collector
    that waited for that count to pass its threshold never collected (CI)."""
    gc.collect()
    made = [[] for _ in range(5000)]
    gc.collect(0)  # made is now older than the cycle below
    seen: list = []
    probe = weakref.ref(Cycle(seen))
    del made  # 5000 frees: the young count drops back to 0 at once
    qtbot.waitUntil(lambda: probe() is None, timeout=5000)
    assert seen == [True]


def test_python_collects_again_once_the_gui_is_gone(gui_thread_garbage_collection):
    gui_thread_garbage_collection.stop()
    assert gc.isenabled()
    gui_thread_garbage_collection.start()


def test_the_startup_heap_is_frozen_out_of_full_collections():
    from app.gui.app import freeze_startup_heap, warm_imports

    warm_imports()
    freeze_startup_heap()
    assert gc.get_freeze_count() > 100_000  # the model libraries' objects
    gc.unfreeze()  # the rest of the suite's objects stay collectable

"""Whether a run's thread is parked at a paused :class:`StepGate` (test helper).

"Paused" used to be checked by waiting a while and seeing no new step: a
check that passes when a stray step is merely slow and costs that while on
every call. Here the test looks at the threads' Python stacks instead: a
thread blocked on the gate's condition inside ``StepGate.wait`` is parked,
and it cannot report a step until something lets it through.
"""
from __future__ import annotations

import sys
import threading
import time

from core.executor import StepGate

_GATE_WAIT = StepGate.wait.__code__
_CONDITION_WAIT = threading.Condition.wait.__code__


def parked_at_gate() -> bool:
    """True while some thread is blocked on a StepGate's condition."""
    for frame in sys._current_frames().values():
        if frame.f_code is not _CONDITION_WAIT:
            continue
        caller = frame.f_back
        if caller is not None and caller.f_code is _GATE_WAIT:
            return True
    return False


def wait_until_parked(timeout: float = 5.0) -> bool:
    """Wait until a thread is parked at a gate; False on timeout. (GUI tests
    poll ``parked_at_gate`` with ``qtbot.waitUntil``, which keeps Qt running.)"""
    deadline = time.monotonic() + timeout
    while not parked_at_gate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True

"""Every fuzz target (``tests/fuzz``), briefly: each generated case must be handled.

A few dozen cases per target keep this fast; ``bench/fuzz.py --cases N``
runs the same targets at length. Derandomized and without a database, so a
CI run is repeatable; a failure is shrunk to a small case and printed.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz import FuzzTarget, all_targets

CASES_PER_TARGET = 25


@pytest.mark.parametrize("target", all_targets(), ids=lambda target: target.name)
def test_every_generated_case_is_handled(target: FuzzTarget):
    @settings(max_examples=CASES_PER_TARGET, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much, HealthCheck.large_base_example])
    @given(target.cases)
    def handled(case) -> None:
        target.run(case)

    handled()

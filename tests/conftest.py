from __future__ import annotations

from collections import Counter

import pytest
import torch

from core.workflow import Workflow
from tests.stubs import chain, stub_registry


# The tests use tiny tensors, for which a second intra-op thread only adds
# wake-up latency (milliseconds per op on shared cores); one thread keeps the
# suite fast and steady. Subprocess tests run the CLI with its own defaults.
torch.set_num_threads(1)


@pytest.fixture
def calls() -> Counter:
    return Counter()


@pytest.fixture
def registry(calls):
    return stub_registry(calls)


@pytest.fixture
def linear_workflow() -> Workflow:
    """source -> scale -> output: value 1.0 * 2.0 = 2.0."""
    return chain(
        ("src", "test.source", {"value": 1.0}),
        ("scale", "test.scale", {"factor": 2.0}),
        ("out", "test.output", {}),
        links=[("src", "out", "scale", "x"), ("scale", "out", "out", "x")],
    )

"""Out of memory in a node: a message that says what to change, the cached
models freed, and an executor that still runs the next workflow."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from core.executor import ExecutionFailed, Executor
from core.executor.memory import OutOfMemory, is_out_of_memory
from tests.stubs import chain, stub_registry


def _small():
    return chain(("src", "test.source", {"value": 2.0}), ("out", "test.output", {}),
                 links=[("src", "out", "out", "x")])


def _failing(message):
    return chain(("src", "test.source", {}), ("fail", "test.fail", {"message": message}),
                 ("out", "test.output", {}),
                 links=[("src", "out", "fail", "x"), ("fail", "out", "out", "x")])


def test_out_of_memory_is_explained_and_frees_the_cache():
    executor = Executor(stub_registry(Counter()))
    executor.run(_small(), device="cpu")
    assert len(executor.cache) > 0
    with pytest.raises(ExecutionFailed) as failure:
        executor.run(_failing("CUDA out of memory. Tried to allocate 2.00 GiB"), device="cpu")
    assert isinstance(failure.value.error, OutOfMemory)
    message = str(failure.value)
    assert "node 'fail'" in message and "smaller batch" in message and "fp16" in message
    assert len(executor.cache) == 0
    assert executor.run(_small(), device="cpu").outputs == {"out": {"out": 2.0}}


def test_other_errors_keep_their_message_and_the_cache():
    executor = Executor(stub_registry(Counter()))
    executor.run(_small(), device="cpu")
    with pytest.raises(ExecutionFailed) as failure:
        executor.run(_failing("boom"), device="cpu")
    assert isinstance(failure.value.error, RuntimeError) and "boom" in str(failure.value)
    assert len(executor.cache) > 0


@pytest.mark.parametrize("error, expected", [
    (torch.OutOfMemoryError("CUDA error"), True),
    (MemoryError(), True),
    (RuntimeError("MPS backend out of memory"), True),
    (RuntimeError("shape mismatch"), False),
    (ValueError("out of memory"), False),
])
def test_what_counts_as_out_of_memory(error, expected):
    assert is_out_of_memory(error) is expected

"""Running workflows: plan, cache, cancel, pause, and report events."""
from core.executor.cache import NodeCache, estimate_bytes
from core.executor.context import NodeContext
from core.executor.control import Cancelled, CancelToken, StepGate
from core.executor.executor import ExecutionFailed, Executor, NodeOutputError, RunResult
from core.executor.plan import Plan, make_plan

__all__ = [
    "Cancelled",
    "CancelToken",
    "ExecutionFailed",
    "Executor",
    "NodeCache",
    "NodeContext",
    "NodeOutputError",
    "Plan",
    "RunResult",
    "StepGate",
    "estimate_bytes",
    "make_plan",
]

"""What a node function gets besides its inputs: device, cancel, progress.

Long nodes call :meth:`NodeContext.step` once per iteration (every sampler
step): it checks cancellation, emits the step's payload and progress, and
waits at the pause/step gate. Short nodes may ignore the context entirely.
"""
from __future__ import annotations

from typing import Any

from core.events import EventSink, Progress, Step
from core.executor.control import CancelToken, StepGate


class NodeContext:
    """Per-node view of the run; cheap enough to call at every step."""

    def __init__(
        self,
        run_id: str,
        node_id: str,
        device: Any,
        dtype: Any,
        token: CancelToken,
        gate: StepGate | None,
        emit: EventSink,
        previews: bool = True,
    ) -> None:
        self.run_id = run_id
        self.node_id = node_id
        self.device = device
        self.dtype = dtype
        self.previews = previews
        self._token = token
        self._gate = gate
        self._emit = emit

    @property
    def cancelled(self) -> bool:
        return self._token.cancelled

    def check_cancelled(self) -> None:
        """Raise :class:`~core.executor.control.Cancelled` if the run was cancelled."""
        self._token.raise_if_cancelled()

    def progress(self, step: int, total: int) -> None:
        """Report that ``step`` of ``total`` units of work are done."""
        self._token.raise_if_cancelled()
        self._emit(Progress(self.run_id, self.node_id, step, total))

    def step(
        self,
        index: int,
        total: int,
        *,
        t: float | None = None,
        x_t: Any = None,
        x0: Any = None,
        eps: Any = None,
        **extra: Any,
    ) -> None:
        """One iteration of a long node is done: report it, then honour cancel and pause.

        Tensors are only forwarded when previews are on; the caller must not
        modify them afterwards (pass fresh tensors, not buffers reused in place).
        """
        self._token.raise_if_cancelled()
        if self.previews:
            extra = _split_decoder(extra)
            self._emit(Step(self.run_id, self.node_id, index, total, t, x_t, x0, eps, extra))
        else:
            self._emit(Step(self.run_id, self.node_id, index, total, t))
        self._emit(Progress(self.run_id, self.node_id, index + 1, total))
        if self._gate is not None:
            self._gate.wait(self._token)


def _split_decoder(extra: dict) -> dict:
    """A decoder that says it is ``approximate`` (a TAESD-class preview decoder)
    travels as ``preview_decoder``, for the live previews; ``decoder`` stays the
    exact one it stands in front of, because its consumers (the step view's
    "Decode with VAE", exports, the CLI's trajectory frames) promise exact pixels."""
    decoder = extra.get("decoder")
    if not getattr(decoder, "approximate", False):
        return extra
    return {**extra, "decoder": getattr(decoder, "exact", None), "preview_decoder": decoder}

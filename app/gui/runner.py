"""Running a workflow without freezing the window.

:class:`RunWorker` lives on a ``QThread`` and calls the executor on a
snapshot of the workflow. Whatever it produces (core events, step previews,
output images) it converts there (tensors become QImages in the worker) and
sends through signals connected to ``@Slot`` methods of
:class:`RunController`, which lives on the GUI thread, so Qt queues them
across threads. (In PySide6 a signal connected to a plain function or lambda
runs in the sender's thread even when queued.) The GUI thread never runs
torch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from PySide6 import QtCore, QtGui

from app.gui.gallery import image_labels
from app.gui.previews import Playback, StepPreview, batch_to_qimages, step_preview
from core import events as ev
from core.executor import Cancelled, CancelToken, ExecutionFailed, Executor, StepGate
from core.ports import PortType
from core.registry import NodeRegistry
from core.video import filmstrips
from core.validation import Problem, ValidationError, errors_only
from core.workflow import Workflow, dumps

#: The share of the progress bar that the stepping nodes (samplers) fill, step by
#: step; the quick nodes (loaders, encoders, decoders) share the rest. Sampling is
#: nearly all of a run's time, so the percent follows the steps.
STEPPING_SHARE = 0.9


def is_stepping(spec) -> bool:
    """A node that reports steps (a sampler, a step-by-step process): it takes a
    schedule or a step count and does not make a schedule. An estimate for the
    progress bar only: a quick node that reports steps still moves the bar."""
    if spec is None or spec.output("schedule") is not None:
        return False
    return spec.input("steps") is not None or any(i.type is PortType.SCHEDULE for i in spec.sockets)


@dataclass
class RunOutcome:
    """How a run ended, with its images (already QImages)."""

    status: str  # finished, failed, cancelled
    message: str = ""
    images: list[tuple[str, QtGui.QImage]] = field(default_factory=list)
    executed: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()
    duration_s: float = 0.0
    device: str = ""
    workflow_json: str = ""
    failed_node: str | None = None
    labels: list[str] = field(default_factory=list)  # per image: node title, batch index, seed
    # per image: a video clip's frames and rate (the image is its filmstrip), or None
    playback: list[Playback | None] = field(default_factory=list)


class RunWorker(QtCore.QObject):
    """Runs one workflow snapshot; lives on the run's QThread."""

    event = QtCore.Signal(object)   # core events other than Step
    step = QtCore.Signal(object)    # StepPreview
    done = QtCore.Signal(object)    # RunOutcome

    def __init__(self, executor: Executor, workflow: Workflow, token: CancelToken,
                 device: str = "auto", previews: bool = True, gate: StepGate | None = None,
                 dtype: str = "auto", outputs: list[str] | None = None) -> None:
        super().__init__()
        self.outputs = outputs  # "run to here": the nodes to run to, instead of the outputs
        self.executor = executor
        self.workflow = workflow
        self.token = token
        self.gate = gate
        self.device = device
        self.dtype = dtype
        self.previews = previews

    @QtCore.Slot()
    def run(self) -> None:
        outcome = self._run()
        self.done.emit(outcome)

    def _run(self) -> RunOutcome:
        json_text = dumps(self.workflow)
        try:
            result = self.executor.run(self.workflow, on_event=self._forward, cancel=self.token,
                                       gate=self.gate, device=self.device, dtype=self.dtype,
                                       previews=self.previews, outputs=self.outputs)
        except Cancelled:
            return RunOutcome("cancelled", "the run was cancelled", workflow_json=json_text)
        except ExecutionFailed as error:
            return RunOutcome("failed", str(error), workflow_json=json_text,
                              failed_node=error.node_id)
        except ValidationError as error:
            return RunOutcome("failed", str(error), workflow_json=json_text)
        except Exception as error:  # a device error or a bug: report, never crash the GUI
            return RunOutcome("failed", f"{type(error).__name__}: {error}", workflow_json=json_text)
        images, playback = self._images(result)
        labels = image_labels(self.workflow, [node_id for node_id, _ in images])
        return RunOutcome("finished", "", images, result.executed, result.cached,
                          result.duration_s, result.device, json_text, labels=labels,
                          playback=playback)

    def _forward(self, event: ev.Event) -> None:
        if isinstance(event, ev.Step):
            if self.previews:
                self.step.emit(step_preview(event))
            return
        self.event.emit(event)

    def _images(self, result) -> tuple[list[tuple[str, QtGui.QImage]], list[Playback | None]]:
        """The outputs' pictures, and for each one its playback when it is a clip."""
        images, playback = [], []
        for node_id, values in sorted(result.outputs.items()):
            spec = self.executor.registry.get(self.workflow.nodes[node_id].type)
            for output in spec.outputs:
                value = values[output.name]
                if output.type is PortType.IMAGE:
                    shown = [(node_id, image) for image in batch_to_qimages(value)]
                    playback += [None] * len(shown)
                elif output.type is PortType.VIDEO:  # each clip as a filmstrip
                    shown = [(node_id, image) for image in batch_to_qimages(filmstrips(value))]
                    playback += [Playback(value.frames.shape[1], value.fps)] * len(shown)
                else:
                    continue
                images += shown
        return images, playback


class RunController(QtCore.QObject):
    """Starts runs, turns worker signals into what the window shows."""

    started = QtCore.Signal()
    node_state = QtCore.Signal(str, str, str, str)   # node id, state, label, tooltip
    progress = QtCore.Signal(int, str)               # percent, status text
    step_preview = QtCore.Signal(object)             # StepPreview, for step views
    log = QtCore.Signal(str, str)                    # message, level
    finished = QtCore.Signal(object)                 # RunOutcome

    def __init__(self, registry: NodeRegistry, parent=None) -> None:
        super().__init__(parent)
        self.registry = registry
        self.executor = Executor(registry)
        self.device = "auto"  # the Run menu's Device and Precision (app.gui.run_settings)
        self.dtype = "auto"
        self.previews = True
        self._thread: QtCore.QThread | None = None
        self._worker: RunWorker | None = None
        self._token: CancelToken | None = None
        self.gate: StepGate | None = None  # pause/step/continue of the current run
        self._order: tuple[str, ...] = ()
        self._weights: dict[str, float] = {}  # each visited node's share of the bar
        self._done_weight = 0.0
        self._shown_percent = 0
        self._workflow: Workflow | None = None
        self._step_clock: tuple[str, float, int] | None = None
        self.device_name = ""
        self.last_outcome: RunOutcome | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def running_workflow(self) -> Workflow | None:
        """The snapshot the current (or last) run works on."""
        return self._workflow

    def check(self, workflow: Workflow, outputs: list[str] | None = None) -> list[Problem]:
        """The engine's validation (pure Python, cheap enough for the GUI thread)."""
        return self.executor.validate(workflow, outputs)

    def start(self, workflow: Workflow, outputs: list[str] | None = None) -> list[Problem]:
        """Start a run on a snapshot; return the errors that prevent it (then nothing runs).
        ``outputs``: run only to these nodes ("run to here")."""
        if self.running:
            return []
        problems = self.check(workflow, outputs)
        if errors_only(problems):
            return problems
        self._token = CancelToken()
        self.gate = StepGate()
        self._thread = QtCore.QThread()
        self._workflow = workflow.copy()
        self._worker = RunWorker(self.executor, self._workflow, self._token,
                                 self.device, self.previews, self.gate, self.dtype, outputs)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.event.connect(self.on_event)
        self._worker.step.connect(self.on_step)
        self._worker.done.connect(self.on_done)
        self._done_weight, self._shown_percent, self._order, self._weights = 0.0, 0, (), {}
        self._thread.start()
        self.started.emit()
        return problems

    def cancel(self) -> None:
        if self._token is not None:
            self._token.cancel()
            self.log.emit("cancelling…", "info")

    def pause(self) -> None:
        """Stop at the next step boundary of a long node (a sampler step)."""
        if self.gate is not None:
            self.gate.pause()

    def step_once(self) -> None:
        """While paused, let exactly one more step run."""
        if self.gate is not None:
            self.gate.step()

    def resume(self) -> None:
        if self.gate is not None:
            self.gate.resume()

    def wait(self, timeout_ms: int = 60000) -> bool:
        """Block until the run's thread ends (for shutdown). The thread's event loop
        is told to quit here: ``on_done`` would do it, but it needs this (GUI) thread,
        which is blocked in this call, so the wait would last the whole timeout."""
        if self._thread is None:
            return True
        self._thread.quit()  # takes effect once the worker's run() has returned
        return self._thread.wait(timeout_ms)

    # -- slots on the GUI thread ---------------------------------------------
    @QtCore.Slot(object)
    def on_event(self, event: ev.Event) -> None:
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is not None:
            handler(event)

    @QtCore.Slot(object)
    def on_step(self, preview: StepPreview) -> None:
        self.step_preview.emit(preview)

    @QtCore.Slot(object)
    def on_done(self, outcome: RunOutcome) -> None:
        self._thread.quit()
        self._thread.wait()
        self._worker.deleteLater()
        self._thread.deleteLater()
        self._thread = self._worker = self._token = self.gate = None
        self.last_outcome = outcome
        self.finished.emit(outcome)

    # -- one method per core event -------------------------------------------
    def _on_RunStarted(self, event: ev.RunStarted) -> None:
        self._order = event.node_ids
        self._weights = self._bar_weights(event.node_ids)
        self.device_name = f"{event.device} {event.dtype}"
        for node_id in event.node_ids:
            self.node_state.emit(node_id, "queued", "queued", "")
        self.progress.emit(0, f"running on {self.device_name}")

    def _on_NodeStarted(self, event: ev.NodeStarted) -> None:
        self.node_state.emit(event.node_id, "running", "running", "")
        self.log.emit(f"{event.node_title}: started", "info")

    def _on_NodeCached(self, event: ev.NodeCached) -> None:
        self._done_weight += self._weights.get(event.node_id, 0.0)
        self.node_state.emit(event.node_id, "cached", "cached", "")
        self.log.emit(f"{event.node_title}: served from the cache", "info")
        self._report(0.0, "")

    def _on_NodeFinished(self, event: ev.NodeFinished) -> None:
        self._done_weight += self._weights.get(event.node_id, 0.0)
        self.node_state.emit(event.node_id, "done", f"done {event.duration_s:.2f} s", "")
        self.log.emit(f"{event.node_title}: done in {event.duration_s:.2f} s", "info")
        self._step_clock = None
        self._report(0.0, "")

    def _on_NodeFailed(self, event: ev.NodeFailed) -> None:
        message = f"{type(event.error).__name__}: {event.error}"
        self.node_state.emit(event.node_id, "failed", "failed", message)
        self.log.emit(f"{event.node_title} failed: {message}\n{event.traceback}", "error")

    def _on_RunCancelled(self, event: ev.RunCancelled) -> None:
        if event.node_id:
            self.node_state.emit(event.node_id, "cancelled", "cancelled", "")
        self.log.emit("the run was cancelled", "warning")

    def _on_RunFinished(self, event: ev.RunFinished) -> None:
        if event.cached and not event.executed:
            text = f"everything served from the cache ({len(event.cached)} nodes)"
        else:
            text = (f"finished in {event.duration_s:.2f} s: {len(event.executed)} ran, "
                    f"{len(event.cached)} from the cache")
        self.log.emit(text, "info")
        self.progress.emit(100, f"{text} — {self.device_name}")

    def _on_Progress(self, event: ev.Progress) -> None:
        now = time.perf_counter()
        if self._step_clock is None or self._step_clock[0] != event.node_id:
            self._step_clock = (event.node_id, now, event.step)
        node_id, since, first = self._step_clock
        rate = (event.step - first) / (now - since) if now > since and event.step > first else 0.0
        label = f"{event.step}/{event.total}"
        self.node_state.emit(event.node_id, "running", f"running {label}", "")
        speed = f", {rate:.1f} it/s" if rate else ""
        fraction = min(event.step / max(event.total, 1), 1.0)
        self._report(fraction * self._weights.get(event.node_id, 0.0), f"step {label}{speed}")

    def _bar_weights(self, order: tuple[str, ...]) -> dict[str, float]:
        """Each node's share of the bar: the stepping nodes split STEPPING_SHARE,
        the others the rest (all of it when one kind is missing)."""
        nodes = self._workflow.nodes if self._workflow is not None else {}
        stepping = {node_id for node_id in order if node_id in nodes
                    and is_stepping(self.registry.get(nodes[node_id].type))}
        quick = len(order) - len(stepping)
        share = STEPPING_SHARE if stepping and quick else (1.0 if stepping else 0.0)
        return {node_id: share / len(stepping) if node_id in stepping else (1 - share) / quick
                for node_id in order}

    def _report(self, partial: float, detail: str) -> None:
        """Emit the percent done: finished nodes' shares plus the running node's
        part; never backwards (a long node's weight is only an estimate)."""
        percent = int(100 * min(1.0, self._done_weight + partial) + 1e-9)
        self._shown_percent = max(self._shown_percent, min(percent, 99))
        text = f"{detail} — {self.device_name}" if detail else f"running on {self.device_name}"
        self.progress.emit(self._shown_percent, text)

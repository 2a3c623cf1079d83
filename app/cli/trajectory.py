"""``run --trajectory DIR``: keep every sampler step of the run and write it
out as a filmstrip and an animation (``core.trajectory_export``), decoded
with the model's own VAE where the model knows it, else with its linear
latent preview."""
from __future__ import annotations

from pathlib import Path

from core import events


class StepRecorder:
    """An event sink that keeps the steps that carry x_t and x̂_0, per node."""

    def __init__(self) -> None:
        self.frames: dict[str, list] = {}
        self.mappings: dict[str, object] = {}

    def wrapping(self, inner):
        """A sink that records, then passes every event on to ``inner``."""

        def sink(event: events.Event) -> None:
            self(event)
            inner(event)

        return sink

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.RunStarted):
            self.frames.clear()
        if not isinstance(event, events.Step) or event.x_t is None or event.x0 is None:
            return
        from core.trajectory_export import Frame

        self.frames.setdefault(event.node_id, []).append(
            Frame(event.index, float(event.t or 0.0), event.x_t, event.x0, event.eps))
        self.mappings[event.node_id] = (event.extra.get("decoder"), event.extra.get("latent_rgb"))

    def export(self, folder: Path) -> list[Path]:
        from core.previews import preview_rgb
        from core.trajectory_export import export
        from core.video import as_pictures

        written = []
        for node_id, frames in self.frames.items():
            decoder, mapping = self.mappings.get(node_id, (None, None))
            if decoder is not None:  # exact: the model's own VAE (a run's few frames are cheap)
                decode = decoder.decode
            else:
                decode = lambda x, m=mapping: preview_rgb(x, m)  # noqa: E731
            # a video model's clips come back as filmstrips
            written += export(frames, lambda x, d=decode: as_pictures(x, d), folder, node_id)
        return written

"""The VIDEO value that flows between nodes, and video files that carry workflows.

Convention: a VIDEO holds ``frames``, a float32 CPU tensor of shape
(B, T, 3, H, W) in [0, 1] — B clips of T frames, CogVideoX's layout — and
the frame rate it plays at. Latents of a video model travel as ordinary
LATENT values of shape (B, T, C, h, w); decoding folds the frames into the
batch of the image VAE and unfolds them again.

Files: GIF and WebP through Pillow (always there), MP4 (H.264) through PyAV
when it is installed (``pip install av``; the ``video`` extra). The workflow
JSON rides in the GIF's comment and the WebP's XMP packet, as it rides in a
PNG's text chunk; an MP4 carries it in its ``comment`` metadata tag.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.workflow.io import write_bytes_atomic

FORMATS = ("gif", "webp", "mp4")
MAX_FPS = 60.0


@dataclass(frozen=True)
class Video:
    """Clips of frames (B, T, 3, H, W) in [0, 1], played at ``fps``; a Save
    video node sets the ``container`` its files are written in."""

    frames: Any
    fps: float = 8.0
    container: str = "gif"


def check_video(video: Any, what: str = "video") -> None:
    """Raise ValueError unless ``video`` follows the VIDEO convention."""
    import torch

    if not isinstance(video, Video) or not isinstance(video.frames, torch.Tensor):
        raise ValueError(f"{what} is not a video (got {type(video).__name__})")
    if video.frames.ndim != 5 or video.frames.shape[2] != 3:
        raise ValueError(f"{what} must hold frames of shape (B, T, 3, H, W), got "
                         f"{tuple(video.frames.shape)}")
    if not 0 < video.fps <= MAX_FPS:
        raise ValueError(f"{what} plays at {video.fps:g} frames a second; it must be above "
                         f"0 and at most {MAX_FPS:g}")


def frames_of(latents: Any) -> tuple[Any, int]:
    """(B, T, C, h, w) → ((B·T, C, h, w), T): a video's frames folded into the batch."""
    if latents.ndim != 5:
        raise ValueError(f"not a video latent: shape {tuple(latents.shape)}, expected "
                         "(batch, frames, channels, height, width)")
    return latents.flatten(0, 1), latents.shape[1]


def as_strips(pixels: Any, frames: int) -> Any:
    """Pixels (B·T, 3, H, W) of ``frames``-frame clips as filmstrips (B, 3, H, T·W);
    ``frames`` 0 (pictures): as they are."""
    if not frames:
        return pixels
    import torch

    return torch.cat(pixels.unflatten(0, (-1, frames)).unbind(1), dim=-1)


def as_pictures(latents: Any, to_rgb) -> Any:
    """``to_rgb`` (a decoder or preview map, (N, C, h, w) → (N, 3, H, W)) over
    latents: a video's frames folded into its batch and each clip returned as
    a filmstrip, so every view of a step shows a video too."""
    if latents.ndim != 5:
        return to_rgb(latents)
    return as_strips(to_rgb(latents.flatten(0, 1)), latents.shape[1])


def filmstrips(video: Video) -> Any:
    """Every clip of a video as a filmstrip: (B, 3, H, T·W)."""
    return as_strips(video.frames.flatten(0, 1), video.frames.shape[1])


def _pil_frames(clip: Any) -> list:
    from core.images import to_pil

    return [to_pil(frame) for frame in clip]


def encode_video(clip: Any, fps: float, form: str, workflow_json: str | None = None) -> bytes:
    """One clip (T, 3, H, W) in [0, 1] as the bytes of a ``form`` file."""
    return encode_pictures(_pil_frames(clip), fps, form, workflow_json)


def encode_pictures(frames: list, fps: float, form: str, workflow_json: str | None = None) -> bytes:
    """PIL frames as the bytes of a ``form`` (gif, webp, mp4) file, the
    workflow inside; no torch (the GUI's Images dock saves clips with it)."""
    if form not in FORMATS:
        raise ValueError(f"unknown video format {form!r}; choose one of {', '.join(FORMATS)}")
    if not frames:
        raise ValueError("a video needs at least one frame")
    if form == "mp4":
        return _encode_mp4(frames, fps, workflow_json)
    duration = round(1000 / fps)  # milliseconds a frame
    out = io.BytesIO()
    extra: dict[str, Any] = {}
    if workflow_json is not None:
        extra = ({"comment": workflow_json.encode("utf-8")} if form == "gif"
                 else {"xmp": _xmp(workflow_json)})
    if form == "webp":
        extra["lossless"] = True
    frames[0].save(out, format=form.upper(), save_all=True, append_images=frames[1:],
                   duration=duration, loop=0, **extra)
    return out.getvalue()


def _xmp(workflow_json: str) -> bytes:
    """An XMP packet holding the workflow (WebP's place for text metadata)."""
    from xml.sax.saxutils import escape

    return ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            'xmlns:dw="https://diffusion-workbench/ns/1.0/"><dw:workflow>'
            f'{escape(workflow_json)}</dw:workflow></rdf:Description></rdf:RDF></x:xmpmeta>'
            ).encode("utf-8")


def _encode_mp4(pictures: list, fps: float, workflow_json: str | None) -> bytes:
    """H.264 in MP4 through PyAV (its own FFmpeg); sides are padded to even."""
    try:
        import av
    except ImportError:
        raise ValueError("saving MP4 needs PyAV (pip install av); GIF and WebP need "
                         "nothing more") from None
    import numpy as np

    frames = [np.asarray(picture.convert("RGB")) for picture in pictures]
    height, width = frames[0].shape[:2]
    pad = ((0, height % 2), (0, width % 2), (0, 0))
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        if workflow_json is not None:
            container.metadata["comment"] = workflow_json
        stream = container.add_stream("libx264", rate=max(1, round(fps)))
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(np.pad(frame, pad, mode="edge"), format="rgb24")
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    return out.getvalue()


def save_video(clip: Any, path: str | os.PathLike, fps: float, workflow_json: str | None = None) -> Path:
    """Write one clip (T, 3, H, W) as the format its suffix names, atomically."""
    return save_pictures(_pil_frames(clip), path, fps, workflow_json)


def save_pictures(frames: list, path: str | os.PathLike, fps: float,
                  workflow_json: str | None = None) -> Path:
    """Write PIL frames as the format the suffix names, atomically."""
    path = Path(path)
    write_bytes_atomic(path, encode_pictures(frames, fps, path.suffix.lstrip(".").lower(),
                                             workflow_json))
    return path


ANIMATION_MAGIC = (b"GIF87a", b"GIF89a")  # and RIFF....WEBP, see is_animation


def is_animation(data: bytes) -> bool:
    """Whether ``data`` starts as a GIF or a WebP file does."""
    return data.startswith(ANIMATION_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def workflow_text_from_animation(data: bytes) -> str:
    """The workflow JSON a GIF or WebP written here carries (GIF comment, WebP
    XMP), or ValueError naming the problem. Takes the bytes, as the PNG reader does."""
    import re
    from xml.sax.saxutils import unescape

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as picture:
            info = dict(picture.info)
    except Exception as error:  # Pillow raises many kinds on a damaged file
        raise ValueError(f"the animation is damaged ({type(error).__name__}: {error})") from None
    comment = info.get("comment")
    if isinstance(comment, bytes) and comment.lstrip().startswith(b"{"):
        return comment.decode("utf-8", errors="replace")
    xmp = info.get("xmp")
    if isinstance(xmp, bytes):
        found = re.search(rb"<dw:workflow>(.*?)</dw:workflow>", xmp, re.S)
        if found:
            return unescape(found.group(1).decode("utf-8", errors="replace"))
    raise ValueError("this animation carries no Diffusion Workbench workflow")

"""Video nodes: a video model's empty latent, decoding its frames through the
image VAE, and the VIDEO value's outputs (files, filmstrips, frames).

A video latent is an ordinary LATENT of shape (B, T, C, h, w) (CogVideoX's
layout); samplers never look past the batch dimension, so they run on it
unchanged. Decoding folds the frames into the VAE's batch.
"""
from __future__ import annotations

from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType

MAX_FRAMES = 128


def empty_video_latent(ctx, model, frames, width, height, batch_size):
    """Zeros (B, T, C, h, w) shaped for a video model; the model refuses
    here a size it cannot sample, before any sampling."""
    import torch

    from core.latent_sizes import check_latent
    from core.values import Latent

    if not model.frames:
        raise ValueError(f"{model.name!r} samples pictures, not videos: use 'Empty latent'")
    if width % model.downscale or height % model.downscale:
        raise ValueError(f"width and height must be multiples of {model.downscale} for this "
                         "model")
    shape = (batch_size, frames, model.latent_channels, height // model.downscale,
             width // model.downscale)
    check_latent(model, shape, "this node's width and height")
    return Latent(torch.zeros(shape))


def decode_video(ctx, vae, latent, fps):
    """Latents (B, T, C, h, w) → a VIDEO, every frame through the image VAE."""
    from core.video import Video, frames_of

    folded, count = frames_of(latent.samples)
    pixels = vae.decode(folded)  # (B·T, 3, H, W)
    return Video(pixels.unflatten(0, (-1, count)).float().cpu(), float(fps))


def save_video(ctx, video, container):
    """An output: the command line writes each clip as <node-id>_<index>.<container>
    with its workflow; the GUI shows each as a filmstrip."""
    from dataclasses import replace

    from core.video import FORMATS, check_video

    check_video(video)
    if container not in FORMATS:
        raise ValueError(f"unknown video format {container!r}; choose one of "
                         f"{', '.join(FORMATS)}")
    if container == "mp4":
        try:
            import av  # noqa: F401
        except ImportError:
            raise ValueError("saving MP4 needs PyAV (pip install av); GIF and WebP need "
                             "nothing more") from None
    return replace(video, container=container)


def video_to_images(ctx, video, layout):
    """A VIDEO as IMAGE: each clip as one filmstrip (frames left to right), or
    every frame as its own picture (frames folded into the batch)."""
    from core.video import check_video, filmstrips

    check_video(video)
    if layout == "filmstrip":
        return filmstrips(video)
    return video.frames.flatten(0, 1)


NODES = (
    NodeSpec(
        type_id="latent.empty_video",
        title="Empty video latent",
        category="latent",
        description="A blank video latent (batch, frames, channels, height, width) to sample "
                    "into, sized for a video model.",
        fn=empty_video_latent,
        inputs=(
            Input("model", PortType.MODEL, tooltip="A video model: takes its channels and "
                                                   "downscale"),
            Input("frames", PortType.INT, 8, min=1, max=MAX_FRAMES,
                  tooltip="Frames per clip (the model was trained on its own count; its "
                          "positions stretch to others)"),
            Input("width", PortType.INT, 64, min=8, max=4096, step=8),
            Input("height", PortType.INT, 64, min=8, max=4096, step=8),
            Input("batch_size", PortType.INT, 1, min=1, max=64),
        ),
        outputs=(Output("latent", PortType.LATENT),),
    ),
    NodeSpec(
        type_id="vae.decode_video",
        title="VAE decode (video)",
        category="latent",
        description="Turn a video latent into frames, each through the image VAE.",
        fn=decode_video,
        inputs=(
            Input("vae", PortType.VAE),
            Input("latent", PortType.LATENT),
            Input("fps", PortType.FLOAT, 8.0, min=0.5, max=60.0, step=0.5,
                  tooltip="Frames a second the video plays at"),
        ),
        outputs=(Output("video", PortType.VIDEO),),
    ),
    NodeSpec(
        type_id="video.save",
        title="Save video",
        category="image",
        description="An output: each clip is written as <node-id>_<index>.gif|webp|mp4 with "
                    "its workflow.",
        fn=save_video,
        inputs=(
            Input("video", PortType.VIDEO),
            Input("container", PortType.STRING, "gif", choices=("gif", "webp", "mp4"),
                  tooltip="GIF and WebP always work; MP4 (H.264) needs PyAV (pip install av)"),
        ),
        outputs=(Output("video", PortType.VIDEO),),
        is_output=True,
    ),
    NodeSpec(
        type_id="video.to_images",
        title="Video to images",
        category="image",
        description="Show or save a video's frames as pictures: a filmstrip per clip, or "
                    "every frame on its own.",
        fn=video_to_images,
        inputs=(
            Input("video", PortType.VIDEO),
            Input("layout", PortType.STRING, "filmstrip", choices=("filmstrip", "frames"),
                  tooltip="filmstrip: one wide picture per clip; frames: one picture per frame"),
        ),
        outputs=(Output("images", PortType.IMAGE),),
    ),
)

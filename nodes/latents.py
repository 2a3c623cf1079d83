"""Latent nodes: empty latents, and the pixel-space image ↔ latent pair."""
from __future__ import annotations

from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType


def empty_latent(ctx, model, width, height, batch_size):
    """Zeros shaped for ``model`` (channels, downscale); SD's 4 × /8 without one.
    A linked model refuses here a size it cannot sample, before any sampling."""
    import torch

    from core.latent_sizes import check_latent
    from core.values import Latent

    channels = model.latent_channels if model is not None else 4
    downscale = model.downscale if model is not None else 8
    if width % downscale or height % downscale:
        raise ValueError(f"width and height must be multiples of {downscale} for this model")
    shape = (batch_size, channels, height // downscale, width // downscale)
    if model is not None:
        check_latent(model, shape, "this node's width and height")
    return Latent(torch.zeros(shape))


def image_to_latent(ctx, image):
    """Pixels [0, 1] → the [−1, 1] data space of pixel-space models."""
    from core.images import check_image
    from core.values import Latent

    check_image(image)
    return Latent(image[:, :3] * 2 - 1)


def latent_to_image(ctx, latent):
    """The [−1, 1] data space of pixel-space models → pixels [0, 1]."""
    samples = latent.samples
    if samples.shape[1] not in (1, 3):
        raise ValueError(
            f"this latent has {samples.shape[1]} channels: decode it with its model's VAE"
        )
    return ((samples.float() + 1) / 2).clamp(0, 1)


NODES = (
    NodeSpec(
        type_id="latent.empty",
        title="Empty latent",
        category="latent",
        description="A blank latent to sample into, sized for the model.",
        fn=empty_latent,
        inputs=(
            Input("model", PortType.MODEL, optional=True,
                  tooltip="Takes channels and downscale from the model (else 4 and 8, as SD)"),
            Input("width", PortType.INT, 64, min=8, max=8192, step=8),
            Input("height", PortType.INT, 64, min=8, max=8192, step=8),
            Input("batch_size", PortType.INT, 1, min=1, max=256),
        ),
        outputs=(Output("latent", PortType.LATENT),),
    ),
    NodeSpec(
        type_id="latent.from_pixels",
        title="Image to latent (pixels)",
        category="latent",
        description="Use an image as the latent of a pixel-space model ([0, 1] → [−1, 1]).",
        fn=image_to_latent,
        inputs=(Input("image", PortType.IMAGE),),
        outputs=(Output("latent", PortType.LATENT),),
    ),
    NodeSpec(
        type_id="latent.to_pixels",
        title="Latent to image (pixels)",
        category="latent",
        description="Show a pixel-space model's latent as an image ([−1, 1] → [0, 1]).",
        fn=latent_to_image,
        inputs=(Input("latent", PortType.LATENT),),
        outputs=(Output("image", PortType.IMAGE),),
    ),
)

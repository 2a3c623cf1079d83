"""VAE nodes: between pixels and a latent diffusion model's latents."""
from __future__ import annotations

from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType


def vae_decode(ctx, vae, latent):
    """Latents → pixels [0, 1]."""
    return vae.decode(latent.samples)


def vae_encode(ctx, vae, image):
    """Pixels [0, 1] → scaled latents (the encoder's mean)."""
    from core.images import check_image
    from core.values import Latent

    check_image(image)
    height, width = image.shape[-2:]
    if height % vae.downscale or width % vae.downscale:
        raise ValueError(f"image sides must be multiples of {vae.downscale} for this VAE")
    return Latent(vae.encode(image).float().cpu())


NODES = (
    NodeSpec(
        type_id="vae.decode",
        title="VAE decode",
        category="latent",
        description="Turn latents into an image with the model's VAE decoder.",
        fn=vae_decode,
        inputs=(Input("vae", PortType.VAE), Input("latent", PortType.LATENT)),
        outputs=(Output("image", PortType.IMAGE),),
    ),
    NodeSpec(
        type_id="vae.encode",
        title="VAE encode",
        category="latent",
        description="Turn an image into latents with the model's VAE encoder (for img2img).",
        fn=vae_encode,
        inputs=(Input("vae", PortType.VAE), Input("image", PortType.IMAGE)),
        outputs=(Output("latent", PortType.LATENT),),
    ),
)

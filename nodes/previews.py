"""Preview nodes: better live step previews from a tiny decoder the user holds."""
from __future__ import annotations

from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType
from nodes.loaders import files_fingerprint

FILE_TIP = ("A TAESD-class decoder: taesd (SD 1.x/2.x), taesdxl (SDXL), taesd3 (SD3), "
            "taef1 (Flux) — a *_decoder file from ComfyUI's vae_approx, or a diffusers "
            "AutoencoderTiny folder or file")


def preview_decoder(ctx, model, path):
    """The model with a tiny decoder for its step previews. Only the previews
    change: the tiny decoder stands in front of the model's own decoder, which
    stays what exact decodes use, and the VAE decode node still uses the VAE."""
    import dataclasses

    from core.checkpoints import CheckpointError
    from core.checkpoints.library import resolve
    from core.models.taesd import load_tiny_decoder

    if not path.strip():
        raise ValueError("choose a tiny decoder file (taesd_decoder.safetensors …)")
    tiny = load_tiny_decoder(resolve(path.strip()), ctx.device, ctx.dtype)
    if tiny.latent_channels != model.latent_channels:
        raise CheckpointError(
            f"{tiny.source}: a {tiny.latent_channels}-channel TAESD cannot preview "
            f"{model.name}'s {model.latent_channels}-channel latents (taesd/taesdxl are for "
            "4-channel SD/SDXL latents, taesd3/taef1 for 16-channel SD3/Flux ones)")
    exact = getattr(model.decoder, "exact", model.decoder)  # never stack two tiny decoders
    return dataclasses.replace(model, decoder=dataclasses.replace(tiny, exact=exact))


NODES = (
    NodeSpec(
        type_id="model.preview_decoder",
        title="Preview decoder (TAESD)",
        category="model",
        description="Show every denoising step through a tiny decoder (TAESD family): near-VAE "
                    "previews at little cost. The final image still comes from the VAE.",
        fn=preview_decoder,
        inputs=(Input("model", PortType.MODEL),
                Input("path", PortType.STRING, "", widget="file", tooltip=FILE_TIP)),
        outputs=(Output("model", PortType.MODEL),),
        fingerprint=files_fingerprint,
    ),
)

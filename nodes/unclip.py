"""unCLIP nodes (DALL·E 2, Ramesh et al. 2022): CLIP image embeddings as
values in the graph — made from a caption by the prior, from a picture by
CLIP's image side, mixed on the sphere — and handed to the decoder on a
conditioning."""
from __future__ import annotations

from core.nodespec import MAX_SEED, Input, NodeSpec, Output
from core.ports import PortType



def sample_prior(ctx, prior, clip, prompt, batch_size, steps, guidance, seed):
    """Image embeddings for a caption from an unCLIP prior (DALL·E 2 §2.2)."""
    from core.models.unclip import sample_embeddings

    return sample_embeddings(prior, clip, [prompt.strip()] * batch_size, steps, guidance, seed,
                             ctx.device, on_step=lambda info, step: ctx.progress(step.index + 1,
                                                                                  steps))


def encode_image(ctx, clip, image):
    """CLIP's image embedding of a picture (its image side at t = 0): what the
    decoder draws variations of (DALL·E 2 §3.1)."""
    import torch

    from core.images import check_image
    from core.models.concat import source_channels

    check_image(image)
    network = clip.network
    size = network.config["image"]["sample_size"]
    pixels = source_channels(image, network.config["image"]["in_channels"], (size, size))
    device = next(network.parameters()).device
    with torch.no_grad():
        z = network.encode_image(pixels.to(device), torch.zeros(len(pixels), device=device))
    return z.cpu()  # (B, D)


def embedding_condition(ctx, embedding, positive=None):
    """An image embedding on a conditioning, for the unCLIP decoder."""
    from dataclasses import replace

    from core.models.unclip import EMBEDDING_KEY
    from core.values import Conditioning

    _check_embedding(embedding)
    cond = positive or Conditioning()
    return replace(cond, extras={**cond.extras, EMBEDDING_KEY: embedding})


def mix_embeddings(ctx, a, b, factor):
    """Spherical interpolation between two embeddings (DALL·E 2 §3.2: blending
    two images); 0 gives a, 1 gives b."""
    from core.models.unclip import slerp

    for embedding in (a, b):
        _check_embedding(embedding)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"cannot mix a {a.shape[-1]}- and a {b.shape[-1]}-dimensional embedding")
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        raise ValueError(f"{len(a)} and {len(b)} embeddings: give as many of each, or one")
    return slerp(a, b, factor)


def _check_embedding(embedding) -> None:
    import torch

    if not isinstance(embedding, torch.Tensor) or embedding.ndim != 2:
        raise ValueError("an embedding is a (B, D) tensor")


NODES = (
    NodeSpec(
        type_id="unclip.prior_sampler", title="Prior sampler", category="unclip",
        description="Sample CLIP image embeddings for a caption with an unCLIP prior.",
        fn=sample_prior,
        inputs=(
            Input("prior", PortType.PRIOR),
            Input("clip", PortType.NOISY_CLIP, tooltip="The CLIP the prior was trained with"),
            Input("prompt", PortType.STRING, "a large red circle", widget="multiline"),
            Input("batch_size", PortType.INT, 4, min=1, max=256),
            Input("steps", PortType.INT, 25, min=1, max=1000),
            Input("guidance", PortType.FLOAT, 1.0, min=0.0, max=20.0, step=0.5,
                  tooltip="Classifier-free guidance of the prior against the empty caption"),
            Input("seed", PortType.INT, 0, min=0, max=MAX_SEED, widget="seed"),
        ),
        outputs=(Output("embedding", PortType.EMBEDDING),),
    ),
    NodeSpec(
        type_id="unclip.encode_image", title="Encode image (CLIP)", category="unclip",
        description="A picture's CLIP image embedding: the decoder draws variations of it.",
        fn=encode_image,
        inputs=(Input("clip", PortType.NOISY_CLIP), Input("image", PortType.IMAGE)),
        outputs=(Output("embedding", PortType.EMBEDDING),),
    ),
    NodeSpec(
        type_id="unclip.embedding_condition", title="Embedding condition", category="unclip",
        description="Put an image embedding on a conditioning, for the unCLIP decoder.",
        fn=embedding_condition,
        inputs=(Input("embedding", PortType.EMBEDDING),
                Input("positive", PortType.CONDITIONING, optional=True,
                      tooltip="A conditioning to add it to (optional)")),
        outputs=(Output("conditioning", PortType.CONDITIONING),),
    ),
    NodeSpec(
        type_id="unclip.mix", title="Mix embeddings (slerp)", category="unclip",
        description="Interpolate two image embeddings on the sphere: blend two pictures.",
        fn=mix_embeddings,
        inputs=(Input("a", PortType.EMBEDDING), Input("b", PortType.EMBEDDING),
                Input("factor", PortType.FLOAT, 0.5, min=0.0, max=1.0, step=0.05,
                      widget="slider", tooltip="0 = a, 1 = b")),
        outputs=(Output("embedding", PortType.EMBEDDING),),
    ),
)

"""Conditioning nodes: what a model is asked for."""
from __future__ import annotations

from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType


def text_prompt(ctx, text):
    """A prompt as conditioning; models that match captions (the ideal
    denoiser) read it directly, text encoders turn it into embeddings."""
    from core.values import Conditioning

    return Conditioning(text=text.strip())


def encode_text(ctx, clip, text):
    """The prompt through the model's text encoder: (1, L, D) embeddings."""
    import torch

    from core.values import Conditioning

    with torch.no_grad():
        embeddings = clip.encode([text.strip()], ctx.device)
    return Conditioning(text=text.strip(), embeddings=embeddings)


NODES = (
    NodeSpec(
        type_id="conditioning.text",
        title="Text prompt",
        category="conditioning",
        description="A prompt for models that read captions directly.",
        fn=text_prompt,
        inputs=(Input("text", PortType.STRING, "", widget="multiline"),),
        outputs=(Output("conditioning", PortType.CONDITIONING),),
    ),
    NodeSpec(
        type_id="conditioning.encode",
        title="Text encoder",
        category="conditioning",
        description="Encode a prompt with a checkpoint's text encoder (CLIP).",
        fn=encode_text,
        inputs=(Input("clip", PortType.CLIP), Input("text", PortType.STRING, "", widget="multiline")),
        outputs=(Output("conditioning", PortType.CONDITIONING),),
    ),
)

"""Conditioning nodes: what a model is asked for."""
from __future__ import annotations

from core.nodespec import MAX_SEED, Input, NodeSpec, Output
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

    if clip is None:
        raise ValueError("this checkpoint has no text encoder (an image-to-image model reads "
                         "a source image instead: use 'Image condition (concat)')")
    with torch.no_grad():
        embeddings, pooled = clip.encode_pooled([text.strip()], ctx.device)
    return Conditioning(text=text.strip(), embeddings=embeddings, extras={"pooled": pooled})


def apply_controlnet(ctx, positive, negative, controlnet, image, strength, start=0.0, end=1.0):
    """Attach a ControlNet and its hint image to the prompts (to both, as
    diffusers' pipelines do, so guidance keeps the hint); several can stack.
    ``start``/``end``: the fraction of the steps it acts on (diffusers'
    ``control_guidance_start``/``end``); the sampler binds it to its steps."""
    from dataclasses import replace

    from core.images import check_image
    from core.models.families.controlnet import TimedControlHint
    from core.values import Conditioning

    check_image(image)
    rgb = image[:, :3] if image.shape[1] >= 3 else image[:, :1].expand(-1, 3, -1, -1)
    if not 0.0 <= start < end <= 1.0:
        raise ValueError(f"the ControlNet acts from start to end of the steps: need "
                         f"0 ≤ start < end ≤ 1, got start {start:g} and end {end:g}")
    hint = TimedControlHint(controlnet, rgb, strength, start, end)  # ControlNets take RGB hints

    def attach(cond):
        return replace(cond, extras={**cond.extras, "control": (*cond.extras.get("control", ()), hint)})

    return {"positive": attach(positive), "negative": attach(negative or Conditioning())}


def image_condition(ctx, image, positive=None, augmentation=0.0, seed=0):
    """The source image of an image-to-image model (Palette, or the
    super-resolution stage of a cascade), which stacks it onto x_t: it rides
    on the conditioning, and the model resizes it and takes the channels it
    was trained on (a colouriser: the luminance; SR: the upsampled picture).
    ``augmentation``: the noise conditioning augmentation level a cascade's
    SR model reads its input with (Ho et al. 2022, §4.1); 0 for others."""
    from dataclasses import replace

    from core.images import check_image
    from core.models.concat import CONCAT_KEY, ConcatImage
    from core.values import Conditioning

    check_image(image)
    cond = positive or Conditioning()
    if not 0.0 <= augmentation <= 1.0:
        raise ValueError(f"the augmentation level is a fraction of the schedule (0 to 1), "
                         f"not {augmentation:g}")
    source = ConcatImage(image, float(augmentation), int(seed))
    return replace(cond, extras={**cond.extras, CONCAT_KEY: source})


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
    NodeSpec(
        type_id="conditioning.controlnet",
        title="Apply ControlNet",
        category="conditioning",
        description="Condition on an image hint (outlines, edges…) through a ControlNet.",
        fn=apply_controlnet,
        inputs=(
            Input("positive", PortType.CONDITIONING),
            Input("negative", PortType.CONDITIONING, optional=True),
            Input("controlnet", PortType.CONTROLNET),
            Input("image", PortType.IMAGE, tooltip="The hint, e.g. an outline: white on black"),
            Input("strength", PortType.FLOAT, 1.0, min=0.0, max=3.0, step=0.05,
                  tooltip="Scales the ControlNet's residuals; 0 = off"),
            Input("start", PortType.FLOAT, 0.0, min=0.0, max=1.0, step=0.05,
                  tooltip="The fraction of the steps before it starts acting"),
            Input("end", PortType.FLOAT, 1.0, min=0.0, max=1.0, step=0.05,
                  tooltip="The fraction of the steps after which it stops"),
        ),
        outputs=(Output("positive", PortType.CONDITIONING),
                 Output("negative", PortType.CONDITIONING)),
    ),
    NodeSpec(
        type_id="conditioning.image_concat",
        title="Image condition (concat)",
        category="conditioning",
        description="Give an image-to-image model (Palette, a cascade's super-resolution "
                    "stage) its source image, which it stacks onto x_t; it goes where a "
                    "prompt would (positive).",
        fn=image_condition,
        inputs=(
            Input("image", PortType.IMAGE, tooltip="The source: e.g. a gray picture to "
                                                   "colourise, a small picture to upsample"),
            Input("positive", PortType.CONDITIONING, optional=True,
                  tooltip="A prompt to add the image to (optional)"),
            Input("augmentation", PortType.FLOAT, 0.0, min=0.0, max=1.0, step=0.05,
                  tooltip="Super-resolution only: noise the source to this fraction of the "
                          "schedule and tell the model so (noise conditioning augmentation); "
                          "more hides the base model's flaws, less keeps its detail"),
            Input("seed", PortType.INT, 0, min=0, max=MAX_SEED, widget="seed",
                  tooltip="The augmentation noise's seed"),
        ),
        outputs=(Output("conditioning", PortType.CONDITIONING),),
    ),
)

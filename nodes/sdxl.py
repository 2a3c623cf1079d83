"""SDXL's micro-conditioning as a node: the sizes and crop the model is told
about (Podell et al. 2023, §2.2), and the refiner's aesthetic score."""
from __future__ import annotations

from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType

SIZE_TIP = "Pixels; 0 = the size of the image being made"


def sdxl_conditioning(ctx, conditioning, original_width, original_height, crop_left, crop_top,
                      target_width, target_height, aesthetic_score):
    """The conditioning with SDXL's size/crop conditions and aesthetic score
    (the refiner reads the score; diffusers gives the prompt 6 and the
    negative prompt 2.5)."""
    from dataclasses import replace

    extras = dict(conditioning.extras)
    if original_width and original_height:
        extras["original_size"] = (int(original_height), int(original_width))
    if target_width and target_height:
        extras["target_size"] = (int(target_height), int(target_width))
    extras["crop"] = (int(crop_top), int(crop_left))
    extras["aesthetic_score"] = float(aesthetic_score)
    return replace(conditioning, extras=extras)


def _size(name: str) -> Input:
    return Input(name, PortType.INT, 0, min=0, max=16384, step=8, tooltip=SIZE_TIP)


NODES = (
    NodeSpec(
        type_id="conditioning.sdxl",
        title="SDXL conditioning",
        category="conditioning",
        description="SDXL's size and crop conditions and the refiner's aesthetic score "
                    "(a high score for the prompt, a low one for the negative).",
        fn=sdxl_conditioning,
        inputs=(
            Input("conditioning", PortType.CONDITIONING),
            _size("original_width"), _size("original_height"),
            Input("crop_left", PortType.INT, 0, min=0, max=16384, step=8),
            Input("crop_top", PortType.INT, 0, min=0, max=16384, step=8),
            _size("target_width"), _size("target_height"),
            Input("aesthetic_score", PortType.FLOAT, 6.0, min=0.0, max=10.0, step=0.5,
                  tooltip="Refiner only: 6 for the prompt, 2.5 for the negative (diffusers)"),
        ),
        outputs=(Output("conditioning", PortType.CONDITIONING),),
    ),
)

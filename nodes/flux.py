"""Flux.1 and SD3 nodes: Flux's distilled guidance and time shift, and the
text encoders users keep as separate files (ComfyUI's ``text_encoders/``)."""
from __future__ import annotations

from pathlib import Path

from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType

FILE_TIP = "A .safetensors text-encoder file (ComfyUI's text_encoders folder)"


def flux_guidance(ctx, conditioning, guidance):
    """Flux-dev's distilled guidance strength, carried on the conditioning
    (``extras["flux_guidance"]``): an input of the network, not classifier-free
    guidance, which stays off (sampler guidance 1)."""
    from dataclasses import replace

    from core.models.families.flux import GUIDANCE_KEY

    return replace(conditioning, extras={**conditioning.extras, GUIDANCE_KEY: float(guidance)})


def flux_time_shift(ctx, width, height):
    """The ``shift`` of the flow schedule Flux-dev samples with at this size."""
    from core.models.families.flux import flux_shift

    return flux_shift(int(height), int(width))


def load_sd3_text_encoders_node(ctx, clip_l, clip_g, t5xxl):
    """SD3's CLIP value from separate CLIP-L, CLIP-G and (optional) T5-XXL files."""
    from core.models.families.sd3 import load_sd3_text_encoders

    return load_sd3_text_encoders(_path(clip_l, "CLIP-L"), _path(clip_g, "CLIP-G"),
                                  _path(t5xxl) if t5xxl.strip() else None, ctx.device, ctx.dtype)


def load_flux_text_encoders_node(ctx, clip_l, t5xxl, variant):
    """Flux's CLIP value from separate CLIP-L and T5-XXL files."""
    from core.models.families.flux import load_flux_text_encoders

    return load_flux_text_encoders(_path(clip_l, "CLIP-L"), _path(t5xxl, "T5-XXL"), variant,
                                   ctx.device, ctx.dtype)


def _path(text: str, what: str = "") -> Path:
    if not text.strip():
        raise ValueError(f"choose the {what} text-encoder file")
    return Path(text.strip()).expanduser()


def files_fingerprint(params) -> str:
    """Changes when any of the chosen files changes."""
    parts = []
    for key in ("clip_l", "clip_g", "t5xxl"):
        text = str(params.get(key, "")).strip()
        path = Path(text).expanduser() if text else None
        if path is not None and path.is_file():
            stat = path.stat()
            parts.append(f"{key}:{stat.st_mtime_ns}:{stat.st_size}")
        else:
            parts.append(f"{key}:missing")
    return "|".join(parts)


NODES = (
    NodeSpec(
        type_id="flux.guidance",
        title="Flux guidance",
        category="conditioning",
        description="Flux-dev's distilled guidance strength, an input of the model "
                    "(leave classifier-free guidance at 1).",
        fn=flux_guidance,
        inputs=(Input("conditioning", PortType.CONDITIONING),
                Input("guidance", PortType.FLOAT, 3.5, min=0.0, max=100.0, step=0.1,
                      tooltip="3.5 is Flux-dev's default; schnell ignores it")),
        outputs=(Output("conditioning", PortType.CONDITIONING),),
    ),
    NodeSpec(
        type_id="flux.time_shift",
        title="Flux time shift",
        category="schedule",
        description="The flow schedule's shift Flux-dev uses at this image size "
                    "(exp μ of diffusers' FluxPipeline).",
        fn=flux_time_shift,
        inputs=(Input("width", PortType.INT, 1024, min=16, max=8192, step=16),
                Input("height", PortType.INT, 1024, min=16, max=8192, step=16)),
        outputs=(Output("shift", PortType.FLOAT),),
    ),
    NodeSpec(
        type_id="loaders.sd3_text_encoders",
        title="SD3 text encoders",
        category="model",
        description="CLIP-L, CLIP-G and T5-XXL files as SD3's text encoder (T5 optional).",
        fn=load_sd3_text_encoders_node,
        inputs=(Input("clip_l", PortType.STRING, "", widget="file", tooltip=FILE_TIP),
                Input("clip_g", PortType.STRING, "", widget="file", tooltip=FILE_TIP),
                Input("t5xxl", PortType.STRING, "", widget="file",
                      tooltip="Optional: without T5, SD3 runs on CLIP alone (T5 tokens zero)")),
        outputs=(Output("clip", PortType.CLIP),),
        fingerprint=files_fingerprint,
    ),
    NodeSpec(
        type_id="loaders.flux_text_encoders",
        title="Flux text encoders",
        category="model",
        description="CLIP-L and T5-XXL files as Flux's text encoder.",
        fn=load_flux_text_encoders_node,
        inputs=(Input("clip_l", PortType.STRING, "", widget="file", tooltip=FILE_TIP),
                Input("t5xxl", PortType.STRING, "", widget="file", tooltip=FILE_TIP),
                Input("variant", PortType.STRING, "dev", choices=("dev", "schnell"),
                      tooltip="dev reads 512 T5 tokens, schnell 256")),
        outputs=(Output("clip", PortType.CLIP),),
        fingerprint=files_fingerprint,
    ),
)

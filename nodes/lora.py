"""The LoRA loader: a model and its text encoder with a LoRA file applied."""
from __future__ import annotations

from pathlib import Path

from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType


def load_lora_node(ctx, model, clip, path, strength_model, strength_clip):
    """MODEL and CLIP with the LoRA added (kohya/A1111 or diffusers names);
    the incoming MODEL and CLIP stay as they are for every other node."""
    from core.models.lora import apply_lora

    if not path.strip():
        raise ValueError("choose a LoRA .safetensors file")
    patched_model, patched_clip = apply_lora(model, clip, path.strip(), strength_model,
                                             strength_clip)
    return {"model": patched_model, "clip": patched_clip}


def lora_fingerprint(params) -> str:
    """Changes when the LoRA file changes on disk (so cached outputs do not go stale)."""
    file = Path(params["path"].strip()).expanduser() if params["path"].strip() else None
    if file is None or not file.is_file():
        return "missing"
    stat = file.stat()
    return f"{stat.st_mtime_ns}:{stat.st_size}"


NODES = (
    NodeSpec(
        type_id="model.lora",
        title="LoRA loader",
        category="model",
        description="Apply a LoRA file (kohya/A1111 or diffusers) to a model and its text "
                    "encoder; several stack.",
        fn=load_lora_node,
        inputs=(
            Input("model", PortType.MODEL),
            Input("clip", PortType.CLIP),
            Input("path", PortType.STRING, "", widget="file", tooltip="A LoRA .safetensors file"),
            Input("strength_model", PortType.FLOAT, 1.0, min=-10.0, max=10.0, step=0.05,
                  tooltip="s in W + s·(α/r)·B·A for the U-Net; 0 = off"),
            Input("strength_clip", PortType.FLOAT, 1.0, min=-10.0, max=10.0, step=0.05,
                  tooltip="The same for the text encoder"),
        ),
        outputs=(Output("model", PortType.MODEL), Output("clip", PortType.CLIP)),
        fingerprint=lora_fingerprint,
    ),
)

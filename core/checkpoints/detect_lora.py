"""Header rule for LoRA files: key style, base model, patched parts, rank.

Key styles: kohya/A1111 (``lora_unet_…``, ``lora_te_``/``lora_te1_``/
``lora_te2_`` with ``.lora_down.weight``/``.lora_up.weight``/``.alpha``),
PEFT as diffusers writes it (``unet.….lora_A.weight``), older diffusers
attention processors (``….lora.down.weight``), LyCORIS (``hada_``/``lokr_``).
The base model shows in the down projection of a cross-attention key
(``attn2.to_k``): its input width is the text context width (768 SD 1.x,
1024 SD 2.x, 2048 SDXL), or in key names (Flux's ``double_blocks``/
``single_transformer_blocks``, SD3's ``joint_blocks``).
"""
from __future__ import annotations

import re

from core.checkpoints.detect_keys import BASE_BY_CONTEXT, Finding, Keys

_DOWN = r"(?:\.lora_down|\.lora_A|\.lora\.down|_lora\.down|\.lora_linear_layer\.down)(?:\.default)?\.weight"
LORA_MARKER = re.compile(rf".*(?:{_DOWN}|\.lora_up\.weight|\.lora_B(?:\.default)?\.weight"
                         r"|\.hada_w1_a|\.lokr_w1)")

#: kohya key prefix -> component slot ("model" is the unet or transformer).
KOHYA_PARTS = (("lora_unet_", "model"), ("lora_te1_", "text_encoder"),
               ("lora_te2_", "text_encoder_2"), ("lora_te3_", "t5"), ("lora_te_", "text_encoder"))
DIFFUSERS_PARTS = (("unet.", "unet"), ("transformer.", "transformer"),
                   ("text_encoder.", "text_encoder"), ("text_encoder_2.", "text_encoder_2"),
                   ("text_encoder_3.", "t5"), ("diffusion_model.", "model"))
#: kohya's ``ss_base_model_version`` metadata -> base.
METADATA_BASES = (("sdxl", "sdxl"), ("sd_v1", "sd1"), ("sd_v2", "sd2"), ("flux", "flux"),
                  ("sd3", "sd3"))


def is_lora(keys: Keys) -> bool:
    return any(LORA_MARKER.fullmatch(key) for key in keys.tensors)


def classify_lora(keys: Keys) -> Finding:
    style = _style(keys)
    base = _base(keys)
    notes = []
    if base is None:
        notes.append("its base model could not be told from its key names or shapes")
    rank = _ranks(keys)
    if rank:
        notes.append(rank)
    model_slot = "transformer" if base in ("flux", "sd3") else "unet"
    parts = KOHYA_PARTS if style in ("kohya", "lycoris") else DIFFUSERS_PARTS
    components = []
    for prefix, slot in parts:
        if keys.any_with_prefix(prefix):
            slot = model_slot if slot == "model" else slot
            if slot not in components:
                components.append(slot)
    if not components:  # PEFT keys of one bare model (``base_model.model.…``)
        components.append(model_slot)
    return Finding("lora", style, base=base, layout=style, components=tuple(components),
                   notes=tuple(notes))


def _style(keys: Keys) -> str:
    names = keys.tensors
    if any(".hada_w1_a" in k or ".lokr_w1" in k for k in names):
        return "lycoris"
    if any(k.startswith(("lora_unet_", "lora_te")) for k in names):
        return "kohya"
    if any(".lora_A." in k for k in names):
        return "peft"
    return "diffusers"


def _base(keys: Keys) -> str | None:
    names = keys.tensors
    if any("double_blocks" in k or "single_blocks" in k or "single_transformer_blocks" in k
           for k in names):
        return "flux"
    if any("joint_blocks" in k for k in names):
        return "sd3"
    cross = keys.first(rf".*attn2[._]to_k(?:_lora)?{_DOWN}")
    if cross is not None and keys.dim(cross, 1) in BASE_BY_CONTEXT:
        return BASE_BY_CONTEXT[keys.dim(cross, 1)]
    joint = keys.first(rf"transformer\.transformer_blocks\.\d+\.attn\.to_k{_DOWN}")
    if joint is not None:  # a diffusers MM-DiT: Flux is 3072 wide, SD3 1536 / 2432
        return "flux" if keys.dim(joint, 1) == 3072 else "sd3"
    if any(k.startswith(("lora_te2_", "text_encoder_2.")) for k in names):
        return "sdxl"
    text = keys.first(rf"(?:lora_te_|text_encoder\.).*(?:self_attn[._]k_proj){_DOWN}")
    if text is not None:  # the only text encoder: CLIP-L 768 wide (SD 1.x), OpenCLIP-H 1024 (SD 2.x)
        base = {768: "sd1", 1024: "sd2"}.get(keys.dim(text, 1))
        if base:
            return base
    declared = keys.metadata.get("ss_base_model_version", "").lower()
    return next((base for start, base in METADATA_BASES if declared.startswith(start)), None)


def _ranks(keys: Keys) -> str | None:
    down = re.compile(rf".*{_DOWN}")
    ranks = {info.shape[0] for key, info in keys.tensors.items()
             if down.fullmatch(key) and info.shape}
    if not ranks:
        return None
    low, high = min(ranks), max(ranks)
    return f"rank {low}" if low == high else f"ranks {low}–{high}"

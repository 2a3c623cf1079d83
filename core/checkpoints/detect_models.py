"""Header rules for model files: SD 1.x/2.x/XL U-Nets, SD3, Flux, ControlNets, VAEs, text encoders.

Each rule looks for marker keys (the ones diffusers' ``CHECKPOINT_KEY_NAMES``
and converters in ``loaders/single_file_utils.py`` use) and reads widths from
shapes: the U-Net's cross-attention context width (768 SD 1.x, 1024 SD 2.x,
2048 SDXL, 1280 SDXL refiner), the input conv's channels (9 inpainting),
SDXL's ``label_emb`` input (2816 base, 2560 refiner), SD3's joint block count
and dual attention, Flux's guidance embedder. What shapes cannot tell (SD 2.x
ε vs v, SD vs SDXL VAE, SD3 vs Flux VAE) becomes a choice for the user.
"""
from __future__ import annotations

from core.checkpoints.detect_keys import (
    BASE_BY_CONTEXT, CLIP_KIND_BY_WIDTH, ENCODER_SLOTS, Finding, Keys, bundled_encoders,
    with_bundled_parts,
)

UNET_PREFIX = "model.diffusion_model."
PREDICTION_CHOICE = {"prediction": ("epsilon", "v_prediction")}
VAE_CHOICES = {4: {"vae_kind": ("sd", "sdxl")}, 16: {"vae_kind": ("sd3", "flux")}}
#: U-Net input channels other than 4: what they mean.
INPUT_VARIANTS = {9: "inpainting", 8: "pix2pix", 5: "depth", 7: "upscale"}

#: Families diffusers knows but this workbench does not load: (name, marker keys).
OTHER_FAMILIES = (
    ("Flux.2", ("single_stream_modulation.lin.weight",)),
    ("Chroma", ("distilled_guidance_layer.in_proj.bias",)),
    ("AuraFlow", ("double_layers.0.attn.w2q.weight", "cond_seq_linear.weight")),
    ("Stable Cascade", ("clip_txt_mapper.weight", "down_blocks.1.0.channelwise.0.weight")),
    ("HunyuanVideo", ("txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.bias",)),
    ("LTX-Video", ("patchify_proj.weight",)),
    ("Mochi", ("blocks.0.attn.qkv_x.weight",)),
    ("Wan", ("head.modulation",)),
    ("Lumina 2", ("cap_embedder.0.weight",)),
    ("HiDream", ("double_stream_blocks.0.block.adaLN_modulation.1.bias",)),
    ("AnimateDiff motion module", (
        "down_blocks.0.motion_modules.0.temporal_transformer.norm.weight",
        "mid_block.motion_modules.0.temporal_transformer.norm.bias")),
)


def classify_model(keys: Keys) -> Finding | None:
    """The first rule that recognises the file, or None."""
    for rule in (_controlnet, _sd3, _flux, _ldm_unet, _diffusers_unet, _diffusers_sd3,
                 _diffusers_flux, _vae, _text_encoders):
        finding = rule(keys)
        if finding is not None:
            return finding
    return None


def other_family(keys: Keys) -> str | None:
    """The name of a family diffusers knows but the workbench does not load, or None."""
    for name, markers in OTHER_FAMILIES:
        for marker in markers:
            if marker in keys or UNET_PREFIX + marker in keys:
                return name
    return None


def _model_prefix(keys: Keys, marker: str) -> str | None:
    """``model.diffusion_model.`` or ``""``: where ``marker`` is, or None."""
    return next((p for p in (UNET_PREFIX, "") if p + marker in keys), None)


# -- original-layout backbones --------------------------------------------------------------
def _ldm_unet(keys: Keys) -> Finding | None:
    prefix = _model_prefix(keys, "input_blocks.0.0.weight")
    if prefix is None or prefix + "out.2.weight" not in keys:
        return None
    family, notes = _unet_family(keys, prefix)
    if family is None:
        return None
    components, encoders = with_bundled_parts(keys, "unet")
    channels = keys.dim(prefix + "input_blocks.0.0.weight", 1)
    variant, choice = _unet_variant(keys, family, channels)
    return Finding(family, variant, layout="original", components=components,
                   text_encoders=encoders, prefix=prefix, needs_choice=choice, notes=notes)


def _unet_family(keys: Keys, prefix: str) -> tuple[str | None, tuple[str, ...]]:
    """sd1/sd2/sdxl/sdxl_refiner from SDXL's label_emb, else the context width."""
    label_in = keys.dim(prefix + "label_emb.0.0.weight", 1)
    if label_in == 2816:
        return "sdxl", ()
    if label_in == 2560:
        return "sdxl_refiner", ()
    context = _context_width(keys, prefix)
    family = BASE_BY_CONTEXT.get(context) if context else None
    if family is None:
        family = _family_from_encoders(keys)
    if family is None:
        return None, ()
    notes = ()
    if label_in is not None and family in ("sd1", "sd2"):
        notes = (f"it has an extra embedding input of {label_in} (an unCLIP or upscaler model?)",)
    return family, notes


def _context_width(keys: Keys, prefix: str) -> int | None:
    key = keys.first(rf"{_re(prefix)}.*attn2\.to_k\.weight")
    return keys.dim(key, 1) if key else None


def _family_from_encoders(keys: Keys) -> str | None:
    slots = dict(bundled_encoders(keys))
    if slots.get("text_encoder_2") == "clip_g":
        return "sdxl" if "text_encoder" in slots else "sdxl_refiner"
    return {"clip_l": "sd1", "openclip_h": "sd2"}.get(slots.get("text_encoder", ""))


def _unet_variant(keys: Keys, family: str, channels: int | None):
    variant = INPUT_VARIANTS.get(channels) if channels else None
    if family != "sd2" or variant is not None:
        return variant, {}
    declared = keys.metadata.get("modelspec.prediction_type", "").lower()
    if declared in ("v", "v_prediction"):
        return "768-v", {}
    if declared in ("epsilon", "eps"):
        return "512-base", {}
    return "768-v?", dict(PREDICTION_CHOICE)


def _sd3(keys: Keys) -> Finding | None:
    prefix = _model_prefix(keys, "joint_blocks.0.context_block.adaLN_modulation.1.bias")
    if prefix is None:
        return None
    depth = keys.block_count(prefix + "joint_blocks.")
    dual = keys.first(rf"{_re(prefix)}joint_blocks\.\d+\.x_block\.attn2\..*") is not None
    qk_norm = keys.first(rf"{_re(prefix)}joint_blocks\.\d+\.x_block\.attn\.ln_q\..*") is not None
    variant, notes = _sd3_variant(depth, dual, qk_norm)
    components, encoders = with_bundled_parts(keys, "transformer")
    return Finding("sd3", variant, layout="original", components=components,
                   text_encoders=encoders, prefix=prefix, notes=notes)


#: Joint blocks of the published SD3/3.5 models.
SD3_DEPTHS = {"sd3_medium": 24, "sd35_medium": 24, "sd35_large": 38}


def _sd3_variant(depth: int, dual: bool, qk_norm: bool) -> tuple[str, tuple[str, ...]]:
    """SD3.5 Medium has dual attention (``x_block.attn2``); SD3.5 Large qk-norm
    (``ln_q``) without it; SD3 Medium neither. The depth only confirms it."""
    variant = "sd35_medium" if dual else "sd35_large" if qk_norm else "sd3_medium"
    if depth == SD3_DEPTHS[variant]:
        return variant, ()
    return variant, (f"{depth} joint blocks where the published model has {SD3_DEPTHS[variant]}",)


def _flux(keys: Keys) -> Finding | None:
    prefix = _model_prefix(keys, "double_blocks.0.img_attn.norm.key_norm.scale")
    if prefix is None:
        return None
    if prefix + "guidance_in.in_layer.weight" not in keys:
        variant = "schnell"
    else:
        variant = {384: "fill", 128: "depth"}.get(keys.dim(prefix + "img_in.weight", 1), "dev")
    components, encoders = with_bundled_parts(keys, "transformer")
    return Finding("flux", variant, layout="original", components=components,
                   text_encoders=encoders, prefix=prefix)


def _re(prefix: str) -> str:
    return prefix.replace(".", r"\.")


# -- ControlNets ----------------------------------------------------------------------------
def _controlnet(keys: Keys) -> Finding | None:
    if "control_model.input_hint_block.0.weight" in keys or "control_model.time_embed.0.weight" in keys:
        return _controlnet_found(keys, "original", "control_model.",
                                 "control_model.input_hint_block.0.weight",
                                 "control_model.label_emb.0.0.weight")
    if "input_hint_block.0.weight" in keys and "zero_convs.0.0.weight" in keys:  # ControlNet-v1-1
        return _controlnet_found(keys, "original", "", "input_hint_block.0.weight",
                                 "label_emb.0.0.weight")
    if "controlnet_cond_embedding.conv_in.weight" in keys:
        return _controlnet_found(keys, "diffusers", "", "controlnet_cond_embedding.conv_in.weight",
                                 "add_embedding.linear_1.weight")
    if "controlnet_x_embedder.weight" in keys:
        return Finding("controlnet", "diffusers", base="flux", layout="diffusers",
                       components=("controlnet",))
    if "pos_embed_input.proj.weight" in keys:
        return Finding("controlnet", "diffusers", base="sd3", layout="diffusers",
                       components=("controlnet",))
    return None


def _controlnet_found(keys: Keys, layout: str, prefix: str, hint: str, label: str) -> Finding:
    label_in = keys.dim(label, 1)
    base = {2816: "sdxl", 2560: "sdxl_refiner"}.get(label_in)
    if base is None:
        context = _context_width(keys, prefix)
        base = BASE_BY_CONTEXT.get(context) if context else None
    notes = []
    hint_channels = keys.dim(hint, 1)
    if hint_channels not in (None, 3):
        notes.append(f"its control image has {hint_channels} channels")
    if base is None:
        notes.append("its base model could not be told from its shapes")
    return Finding("controlnet", layout, base=base, layout=layout, components=("controlnet",),
                   prefix=prefix, notes=tuple(notes))


# -- diffusers-layout single models (a component folder's weights file) --------------------
def _diffusers_unet(keys: Keys) -> Finding | None:
    if "time_embedding.linear_1.weight" not in keys or "conv_in.weight" not in keys:
        return None
    if "down_blocks.0.resnets.0.conv1.weight" not in keys:
        return None
    base = {2816: "sdxl", 2560: "sdxl_refiner"}.get(keys.dim("add_embedding.linear_1.weight", 1))
    if base is None:
        context = _context_width(keys, "")
        base = BASE_BY_CONTEXT.get(context) if context else None
    if base is None:
        return None
    variant, choice = _unet_variant(keys, base, keys.dim("conv_in.weight", 1))
    return Finding(base, variant, layout="diffusers", components=("unet",), needs_choice=choice)


def _diffusers_sd3(keys: Keys) -> Finding | None:
    if "pos_embed.proj.weight" not in keys or "context_embedder.weight" not in keys:
        return None
    if "transformer_blocks.0.attn.add_k_proj.weight" not in keys or "x_embedder.weight" in keys:
        return None
    depth = keys.block_count("transformer_blocks.")
    dual = keys.first(r"transformer_blocks\.\d+\.attn2\..*") is not None
    variant, notes = _sd3_variant(depth, dual, "transformer_blocks.0.attn.norm_q.weight" in keys)
    return Finding("sd3", variant, layout="diffusers", components=("transformer",), notes=notes)


def _diffusers_flux(keys: Keys) -> Finding | None:
    if "x_embedder.weight" not in keys or "single_transformer_blocks.0.proj_mlp.weight" not in keys:
        return None
    guided = "time_text_embed.guidance_embedder.linear_1.weight" in keys
    variant = {384: "fill", 128: "depth"}.get(keys.dim("x_embedder.weight", 1), "dev") if guided \
        else "schnell"
    return Finding("flux", variant, layout="diffusers", components=("transformer",))


# -- VAEs -----------------------------------------------------------------------------------
def _vae(keys: Keys) -> Finding | None:
    prefix = next((p for p in ("", "first_stage_model.", "vae.")
                   if p + "encoder.conv_in.weight" in keys and p + "decoder.conv_out.weight" in keys),
                  None)
    if prefix is None or (prefix and keys.any_with_prefix(UNET_PREFIX)):
        return None  # a bundled VAE beside a backbone no rule recognised
    channels = keys.dim(prefix + "decoder.conv_in.weight", 1)
    moments = keys.dim(prefix + "encoder.conv_out.weight", 0)
    if channels is None and moments is not None:
        channels = moments // 2
    layout = "diffusers" if keys.any_with_prefix(prefix + "encoder.down_blocks.") else "original"
    choice = dict(VAE_CHOICES.get(channels, {}))
    notes = ()
    if choice:
        kinds = {4: "SD and SDXL", 16: "SD3 and Flux"}[channels]
        notes = (f"{kinds} VAEs have the same shapes: which one this is cannot be told "
                 "from the file",)
    variant = f"{channels}-channel" if channels else None
    return Finding("vae", variant, layout=layout, components=("vae",), prefix=prefix,
                   needs_choice=choice, notes=notes)


# -- text encoders --------------------------------------------------------------------------
def _text_encoders(keys: Keys) -> Finding | None:
    """A standalone text encoder (or several, as an SD3/Flux text-encoder bundle)."""
    bundled = bundled_encoders(keys)
    if bundled:
        slots = tuple(dict.fromkeys(slot for slot, _ in bundled))
        return Finding("text_encoder", bundled[0][1] if len(bundled) == 1 else "bundle",
                       components=slots, text_encoders=tuple(kind for _, kind in bundled))
    kind, prefix, layout = _single_text_encoder(keys)
    if kind is None:
        return None
    slot = ENCODER_SLOTS.get(kind, "text_encoder")
    return Finding("text_encoder", kind, layout=layout, components=(slot,),
                   text_encoders=(kind,), prefix=prefix)


def _single_text_encoder(keys: Keys) -> tuple[str | None, str, str | None]:
    """(kind, key prefix, layout) of a lone CLIP, OpenCLIP or T5 encoder."""
    key = keys.first(r"(.*?)(?:text_model\.)?embeddings\.token_embedding\.weight")
    if key is not None and keys.first(r".*encoder\.layers\.0\.self_attn\.q_proj\.weight"):
        width = keys.dim(key, 1)
        prefix = key[: key.index("embeddings.token_embedding.weight")].removesuffix("text_model.")
        return CLIP_KIND_BY_WIDTH.get(width, f"clip ({width} wide)"), prefix, "transformers"
    if "token_embedding.weight" in keys and "transformer.resblocks.0.attn.in_proj_weight" in keys:
        width = keys.dim("token_embedding.weight", 1)
        return CLIP_KIND_BY_WIDTH.get(width, f"openclip ({width} wide)"), "", "open_clip"
    key = keys.first(r"(.*?)encoder\.block\.0\.layer\.0\.SelfAttention\.q\.weight")
    if key is not None:
        width = keys.dim(key, 1)
        prefix = key[: key.index("encoder.block.0")]
        return ("t5xxl" if width == 4096 else f"t5 ({width} wide)"), prefix, "transformers"
    return None, "", None

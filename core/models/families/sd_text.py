"""The text encoders of SD 1.x / 2.x / SDXL / SDXL refiner and how each family
reads them (the conventions of diffusers' pipelines, ``encode_prompt``):

- SD 1.x — CLIP ViT-L/14: ``last_hidden_state`` (final layer norm applied),
  (B, 77, 768) (``StableDiffusionPipeline``: ``text_encoder(ids)[0]``).
- SD 2.x — OpenCLIP ViT-H/14 run to its penultimate block: a 23-layer
  ``CLIPTextModel`` whose ``last_hidden_state`` (final layer norm applied)
  is the context, (B, 77, 1024). The files hold all 24 blocks; the last one
  is dropped, as diffusers' ``convert_open_clip_checkpoint`` does.
- SDXL base — CLIP-L's and bigG's penultimate hidden states
  (``hidden_states[-2]``, no final norm) side by side, (B, 77, 768 + 1280);
  pooled = bigG's projected ``text_embeds`` (B, 1280)
  (``StableDiffusionXLPipeline.encode_prompt``).
- SDXL refiner — bigG only: ``hidden_states[-2]`` (B, 77, 1280) and its
  ``text_embeds``.

CLIP-L pads prompts with ``<|endoftext|>``, OpenCLIP (SD 2.x, bigG) with
``!`` (id 0), as diffusers' ``tokenizer`` / ``tokenizer_2`` do.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

import torch

from core.checkpoints import CheckpointError
from core.models.families import text_files
from core.models.families.weights import open_tensors, under_prefix

Tokenize = Callable[[Sequence[str]], torch.Tensor]

#: component → (kind, the argument naming its separate file), per family.
ENCODERS = {
    "sd1": {"text_encoder": ("clip_l", "clip_l")},
    "sd2": {"text_encoder": ("clip_h", "clip_g")},
    "sdxl": {"text_encoder": ("clip_l", "clip_l"), "text_encoder_2": ("clip_g", "clip_g")},
    "sdxl_refiner": {"text_encoder_2": ("clip_g", "clip_g")},
}
#: Where each family's all-in-one file keeps its encoders.
PREFIXES = {
    ("sd1", "text_encoder"): "cond_stage_model.transformer.",
    ("sd2", "text_encoder"): "cond_stage_model.model.",
    ("sdxl", "text_encoder"): "conditioner.embedders.0.transformer.",
    ("sdxl", "text_encoder_2"): "conditioner.embedders.1.model.",
    ("sdxl_refiner", "text_encoder_2"): "conditioner.embedders.0.model.",
}
TITLES = {"clip_l": "CLIP-L", "clip_h": "OpenCLIP ViT-H", "clip_g": "OpenCLIP bigG"}
PENULTIMATE = ("sdxl", "sdxl_refiner")  # families that read hidden_states[-2]


def default_tokenizer(kind: str) -> Tokenize:
    from core.models.tokenizers import END, clip_token_ids

    pad = END if kind == "clip_l" else "!"
    return lambda texts: clip_token_ids(list(texts), pad)


class SDTextEncoders:
    """A family's text encoders as the CLIP value: texts → (hidden, pooled)."""

    def __init__(self, family: str, encoders: Mapping[str, torch.nn.Module],
                 tokenizers: Mapping[str, Tokenize]) -> None:
        self.family = family
        self.encoders = dict(encoders)
        self.tokenizers = dict(tokenizers)

    @property
    def model(self) -> torch.nn.Module:
        """The first encoder (``text_encoder``; the refiner's bigG)."""
        return next(iter(self.encoders.values()))

    def torch_modules(self) -> dict[str, torch.nn.Module]:
        """diffusers' component names → modules, for LoRA patches."""
        return dict(self.encoders)

    @property
    def description(self) -> str:
        return " + ".join(TITLES[ENCODERS[self.family][c][0]] for c in self.encoders)

    def encode(self, texts: Sequence[str], device: Any = "cpu") -> torch.Tensor:
        return self.encode_pooled(texts, device)[0]

    @torch.no_grad()
    def encode_pooled(self, texts: Sequence[str], device: Any = "cpu"):
        """(hidden (B, 77, D), pooled (B, P)) in float32 (see the module doc)."""
        outputs = {}
        for name, model in self.encoders.items():
            ids = self.tokenizers[name](texts).to(next(model.parameters()).device)  # (B, 77)
            outputs[name] = model(input_ids=ids, output_hidden_states=self.family in PENULTIMATE)
        if self.family not in PENULTIMATE:  # SD 1.x / 2.x: the final (normed) layer
            out = outputs["text_encoder"]
            return out.last_hidden_state.float().to(device), out.pooler_output.float().to(device)
        states = [o.hidden_states[-2].float() for o in outputs.values()]
        hidden = torch.cat(states, dim=-1)  # (B, 77, ΣD)
        pooled = outputs["text_encoder_2"].text_embeds.float()  # (B, P)
        return hidden.to(device), pooled.to(device)


def _build(weights: Mapping[str, torch.Tensor], path, kind: str, dtype, device,
           overrides: Mapping[str, Mapping[str, Any]]):
    """A transformers module of ``kind`` from the encoder's tensors."""
    if kind == "clip_h" and "transformer.resblocks.0.attn.in_proj_weight" in weights:
        weights = _without_last_block(weights)
    role, projection = {"clip_l": ("clip_l", "none"), "clip_h": ("clip_g", "none"),
                        "clip_g": ("clip_g", "file")}[kind]
    return text_files.build_clip(weights, path, role, dtype, device, projection, overrides.get(kind))


def _without_last_block(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP ViT-H without its last resblock: SD 2.x conditions on the
    penultimate block's output (then ``ln_final``)."""
    blocks = {int(m[1]) for k in weights if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))}
    last = f"transformer.resblocks.{max(blocks)}."
    return {k: v for k, v in weights.items() if not k.startswith(last)}


def _inside(tensors: Mapping[str, torch.Tensor], family: str, component: str, kind: str):
    """The encoder's tensors in an all-in-one file (prefix removed), or None."""
    found = under_prefix(tensors, PREFIXES[(family, component)])
    if any(m in found for m in text_files.CLIP_MARKERS):
        return found
    return None


def _from_file(path, family: str, component: str, kind: str, dtype, device, overrides):
    """A separate text-encoder file (transformers, OpenCLIP or checkpoint layout)."""
    tensors = open_tensors(path)
    weights = _inside(tensors, family, component, kind)
    if weights is None:
        weights = text_files.find_encoder(tensors, "clip_l" if kind == "clip_l" else "clip_g")
    if weights is None:
        raise CheckpointError(f"{path}: no {TITLES[kind]} text encoder in this file "
                              f"({len(tensors)} tensors, e.g. {next(iter(tensors), 'none')})")
    return _build(weights, path, kind, dtype, device, overrides)


def load_sd_text_encoders(family: str, tensors: Mapping[str, torch.Tensor], path, *, clip_l=None,
                          clip_g=None, dtype: torch.dtype = torch.float32, device: Any = "cpu",
                          overrides: Mapping[str, Mapping[str, Any]] | None = None) -> SDTextEncoders:
    """The family's encoders from the all-in-one ``tensors`` (read from
    ``path``), else from the separate ``clip_l`` / ``clip_g`` files (SD 2.x's
    OpenCLIP ViT-H: either argument). ``overrides`` maps ``clip_l``,
    ``clip_h``, ``clip_g`` to config values shapes cannot tell."""
    overrides = overrides or {}
    separate = {"clip_l": clip_l, "clip_g": clip_g}
    encoders, missing = {}, []
    for component, (kind, argument) in ENCODERS[family].items():
        weights = _inside(tensors, family, component, kind)
        if weights is not None:
            encoders[component] = _build(weights, path, kind, dtype, device, overrides)
            continue
        file = separate[argument] or (clip_l if family == "sd2" else None)
        if file is None:
            missing.append(f"{TITLES[kind]} (the {argument} file)")
            continue
        encoders[component] = _from_file(file, family, component, kind, dtype, device, overrides)
    if missing:
        raise CheckpointError(f"{path}: this file holds no {' and no '.join(missing)} text "
                              f"encoder, which {family} needs: choose the file(s)")
    tokenizers = {c: default_tokenizer(ENCODERS[family][c][0]) for c in encoders}
    return SDTextEncoders(family, encoders, tokenizers)

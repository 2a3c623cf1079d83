"""LoRA files (Hu et al. 2021): low-rank updates W + s·(α/r)·B·A, reversibly.

Two key spellings are read:

- kohya / A1111: ``lora_unet_<path>``, ``lora_te_<path>`` (SD 1.x) or
  ``lora_te1_`` / ``lora_te2_`` (SDXL), each with ``.lora_down.weight`` (A),
  ``.lora_up.weight`` (B) and ``.alpha``. The U-Net path is diffusers' module
  path for SD 1.x files but the *original* ldm path (``input_blocks_4_1_…``,
  ``middle_block_1_…``, ``in_layers_2``…) for SDXL files, because kohya trains
  SDXL on its own sgm U-Net; both spellings are recognised.
- diffusers / peft: ``unet.<path>.lora_A.weight`` / ``lora_B.weight``
  (``text_encoder.``, ``text_encoder_2.``), α = r unless an ``.alpha`` is given.

Names are matched against a table built from the modules actually loaded
(module path with dots → underscores, as kohya builds its names), so the
mapping cannot drift from the model. A patch never writes a weight: it
adds B(A x)·scale to the output of each patched Linear/Conv2d through a
forward hook that exists only while the patched model (or text encoder)
runs. The base model — cached by the executor and maybe feeding another
branch — keeps its exact weights, and "removing" a LoRA is not using it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F

from core.checkpoints.boundary import CheckpointError, ChoiceError, checkpoint_boundary

log = logging.getLogger(__name__)

KOHYA_PREFIXES = {"lora_unet_": "unet", "lora_te_": "text_encoder",
                  "lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2"}
PEFT_PREFIXES = {"unet.": "unet", "text_encoder.": "text_encoder",
                 "text_encoder_2.": "text_encoder_2"}
SUFFIXES = {".lora_down.weight": "down", ".lora_up.weight": "up", ".alpha": "alpha",
            ".lora_A.weight": "down", ".lora_B.weight": "up",
            ".lora.down.weight": "down", ".lora.up.weight": "up"}
TEXT_COMPONENTS = ("text_encoder", "text_encoder_2")
SHOWN = 5  # unmatched keys listed in an error
MID_BLOCKS = {("resnets", 0): 0, ("attentions", 0): 1, ("resnets", 1): 2}  # diffusers → ldm


@dataclass(frozen=True)
class LoraLayer:
    """One module's update: ``down`` A (r, in[, k, k]), ``up`` B (out, r[, 1, 1]), α."""

    name: str  # the file's key stem, for error messages
    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.rank


# -- reading ----------------------------------------------------------------------
@checkpoint_boundary("LoRA file")
def read_lora_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a LoRA ``.safetensors`` file (memory-mapped)."""
    from core.checkpoints.pickles import is_pickle_path, load_pickled_tensors
    from core.checkpoints.safetensors_io import read_tensors

    path = Path(path).expanduser()
    if is_pickle_path(path):
        return load_pickled_tensors(path)  # refused with the reason unless allowed
    if not path.is_file():
        raise CheckpointError(f"{path}: no such LoRA file")
    return read_tensors(path)


def group_layers(tensors: Mapping[str, torch.Tensor], source: str = "") -> dict[str, LoraLayer]:
    """Key stem → LoraLayer; keys of any other kind are an error naming them."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, tensor in tensors.items():
        suffix = next((s for s in SUFFIXES if key.endswith(s)), None)
        if suffix is None:
            unknown.append(key)
            continue
        parts.setdefault(key[: -len(suffix)], {})[SUFFIXES[suffix]] = tensor
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} keys are not LoRA down/up/alpha "
                              f"tensors (LoHa, LoKr and DoRA are not supported), e.g. "
                              f"{', '.join(unknown[:SHOWN])}")
    layers = {}
    for stem, found in parts.items():
        if "down" not in found or "up" not in found:
            raise CheckpointError(f"{source}: {stem} lacks its "
                                  f"{'lora_down' if 'down' not in found else 'lora_up'} weight")
        _check_factors(stem, found, source)
        alpha = found.get("alpha")
        layers[stem] = LoraLayer(stem, found["down"], found["up"],
                                 None if alpha is None else _alpha(stem, alpha, source))
    return layers


def _check_factors(stem: str, found: Mapping[str, torch.Tensor], source: str) -> None:
    """Down and up are float matrices (or kernels) without NaN/inf: an integer
    factor would be cast into nonsense, a NaN one poisons every output. Every
    value is checked: patching copies every factor anyway (to the module's
    dtype and device), so this is one more pass over a file of a few MB."""
    from core.models.families.weights import all_finite

    for part in ("down", "up"):
        tensor = found[part]
        if not tensor.is_floating_point():
            raise CheckpointError(f"{source}: {stem} lora_{part} holds "
                                  f"{str(tensor.dtype).removeprefix('torch.')} values, not floats")
        if tensor.ndim not in (2, 4) or 0 in tensor.shape:
            raise CheckpointError(f"{source}: {stem} lora_{part} has shape {tuple(tensor.shape)}, "
                                  "not a matrix or a convolution kernel")
        if not all_finite(tensor):
            raise CheckpointError(f"{source}: {stem} lora_{part} holds NaN or infinite values")


def _alpha(stem: str, alpha: torch.Tensor, source: str) -> float:
    value = float(alpha.float().reshape(-1)[0]) if alpha.numel() == 1 else math.nan
    if not math.isfinite(value):
        raise CheckpointError(f"{source}: {stem}.alpha is {tuple(alpha.shape)} "
                              f"{str(alpha.dtype).removeprefix('torch.')} = "
                              f"{alpha.flatten()[:3].tolist()}…, not one finite number")
    return value


# -- matching file names to modules -------------------------------------------------
def module_table(component: str, module: torch.nn.Module) -> dict[str, str]:
    """Underscore name → module path, for every Linear/Conv2d of ``module``: the
    diffusers/transformers path, plus the original ldm path for a U-Net and
    both ``text_model_`` spellings for a CLIP text model."""
    table = {}
    config = getattr(module, "config", None)
    for path, child in module.named_modules():
        if not isinstance(child, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        names = {path}
        if component == "unet":
            names.add(ldm_unet_path(path, config))
        elif component in TEXT_COMPONENTS:
            bare = path.removeprefix("text_model.")
            names.update({bare, "text_model." + bare})
        for name in names:
            if name:
                table[name.replace(".", "_")] = path
    return table


LDM_TOP_LEVEL = {"conv_in": "input_blocks.0.0", "conv_out": "out.2",
                 "time_embedding.linear_1": "time_embed.0",
                 "time_embedding.linear_2": "time_embed.2",
                 "add_embedding.linear_1": "label_emb.0.0",
                 "add_embedding.linear_2": "label_emb.0.2"}
LDM_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
              "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
              "conv_shortcut": "skip_connection"}
_BLOCK = re.compile(r"(down|up)_blocks\.(\d+)\."
                    r"(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.?(.*)")
_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)\.?(.*)")


def ldm_unet_path(path: str, config: Any) -> str:
    """diffusers' ``UNet2DConditionModel`` module path → the original ldm/sgm
    path ("" for modules it has no name for)."""
    if path in LDM_TOP_LEVEL:
        return LDM_TOP_LEVEL[path]
    if match := _MID.fullmatch(path):
        kind, index, rest = match[1], int(match[2]), match[3]
        block = f"middle_block.{MID_BLOCKS.get((kind, index), -1)}"
    elif match := _BLOCK.fullmatch(path):
        kind, index, rest = match[3], int(match[4]), match[5]
        block = _ldm_block(match[1], int(match[2]), kind, index, config)
    else:
        return ""
    if kind == "resnets":
        rest = LDM_RESNET.get(rest, rest)
    elif kind == "downsamplers" and rest == "conv":
        rest = "op"
    return f"{block}.{rest}" if rest else block


def _ldm_block(side: str, b: int, kind: str, index: int, config: Any) -> str:
    """The ldm block of layer ``index`` of diffusers' block ``b``: each down block
    has ``layers`` slots plus a downsampler slot, each up block ``layers`` + 1."""
    layers = config.layers_per_block
    layers = layers if isinstance(layers, int) else layers[0]
    if side == "down":
        if kind == "downsamplers":
            return f"input_blocks.{(b + 1) * (layers + 1)}.0"
        return f"input_blocks.{1 + b * (layers + 1) + index}.{0 if kind == 'resnets' else 1}"
    row = b * (layers + 1)
    if kind == "upsamplers":
        with_attention = "CrossAttn" in config.up_block_types[b]
        return f"output_blocks.{row + layers}.{2 if with_attention else 1}"
    return f"output_blocks.{row + index}.{0 if kind == 'resnets' else 1}"


def _component_and_name(stem: str) -> tuple[str | None, str]:
    for prefixes in (KOHYA_PREFIXES, PEFT_PREFIXES):
        for prefix, component in prefixes.items():
            if stem.startswith(prefix):
                return component, stem[len(prefix):].replace(".", "_")
    return None, stem


# -- patches ------------------------------------------------------------------------
@dataclass(frozen=True)
class ModuleDelta:
    """A patch of one module: its output gains ``up(down(x))`` (scale folded in)."""

    module: torch.nn.Module
    down: torch.Tensor
    up: torch.Tensor

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        if isinstance(m, torch.nn.Conv2d):
            hidden = F.conv2d(x, self.down, stride=m.stride, padding=m.padding, dilation=m.dilation)
            return F.conv2d(hidden, self.up)
        return F.linear(F.linear(x, self.down), self.up)


@dataclass(frozen=True)
class LoraPatch:
    """The deltas of one or more LoRAs over some modules; :meth:`active` adds
    them to those modules' outputs for the duration of a ``with`` block."""

    deltas: tuple[ModuleDelta, ...] = ()

    def __add__(self, other: "LoraPatch") -> "LoraPatch":
        return LoraPatch(self.deltas + other.deltas)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        by_module: dict[int, list[ModuleDelta]] = {}
        for d in self.deltas:
            by_module.setdefault(id(d.module), []).append(d)
        handles = []
        try:
            for group in by_module.values():
                handles.append(group[0].module.register_forward_hook(_adder(tuple(group))))
            yield
        finally:
            for handle in handles:
                handle.remove()


def _adder(group: tuple[ModuleDelta, ...]):
    def hook(module, inputs, output):
        for d in group:
            output = output + d.delta(inputs[0])
        return output
    return hook


def make_patches(layers: Mapping[str, LoraLayer], modules: Mapping[str, torch.nn.Module],
                 strengths: Mapping[str, float], source: str = ""):
    """({component: patch}, matched stems) of ``layers`` over ``modules``
    (component → module) at ``strengths`` (component → s). Layers of a
    component not in ``modules`` are left out; shapes must fit exactly."""
    tables = {c: module_table(c, m) for c, m in modules.items()}
    deltas: dict[str, list[ModuleDelta]] = {c: [] for c in modules}
    matched = set()
    for stem, layer in layers.items():
        component, name = _component_and_name(stem)
        path = tables.get(component, {}).get(name) if component else None
        if path is None:
            continue
        matched.add(stem)
        strength = strengths.get(component, 0.0)
        if strength != 0.0:
            target = modules[component].get_submodule(path)
            deltas[component].append(_delta(layer, target, strength, source))
    return {c: LoraPatch(tuple(d)) for c, d in deltas.items()}, matched


def _delta(layer: LoraLayer, module: torch.nn.Module, strength: float, source: str) -> ModuleDelta:
    """The layer's tensors shaped for ``module``, in its dtype and device."""
    weight = module.weight
    down, up = layer.down, layer.up
    if isinstance(module, torch.nn.Linear):
        down, up = down.flatten(1), up.flatten(1)
        fits = down.shape[1] == weight.shape[1] and up.shape == (weight.shape[0], layer.rank)
    else:
        if down.ndim == 2:
            down, up = down[:, :, None, None], up[:, :, None, None]
        fits = (down.shape[1:] == weight.shape[1:] and up.shape[:2] == (weight.shape[0], layer.rank)
                and up.shape[2:] == (1, 1))
    if not fits:
        raise CheckpointError(f"{source}: {layer.name} has shapes down {tuple(layer.down.shape)}, "
                              f"up {tuple(layer.up.shape)}, which do not fit the module's weight "
                              f"{tuple(weight.shape)}")
    scale = strength * layer.scale
    return ModuleDelta(module, down.to(weight.device, weight.dtype),
                       (up.to(weight.device, torch.float32) * scale).to(weight.dtype))


@checkpoint_boundary("LoRA file")
def load_lora(path: str | os.PathLike, modules: Mapping[str, torch.nn.Module],
              strengths: Mapping[str, float]) -> dict[str, LoraPatch]:
    """A LoRA file as patches ({component: patch}) over ``modules`` (component
    name → module: ``unet``, ``text_encoder``, ``text_encoder_2``). Every key
    must match a module of its component; keys that match nothing are an
    error listing a few."""
    tensors = read_lora_file(path)
    layers = group_layers(tensors, str(path))
    if not layers:
        raise CheckpointError(f"{path}: a LoRA file without LoRA weights")
    patches, matched = make_patches(layers, modules, strengths, str(path))
    missing = [s for s in layers if s not in matched]
    absent = [s for s in missing if _component_and_name(s)[0] not in modules]
    unmatched = [s for s in missing if s not in absent]
    if unmatched or len(absent) == len(layers):
        shown = (unmatched or absent)[:SHOWN]
        raise CheckpointError(f"{path}: {len(unmatched or absent)} of {len(layers)} LoRA layers "
                              f"match no module of this model, e.g. {', '.join(shown)}: "
                              "a LoRA for another model family?")
    if absent:
        log.warning("%s: %d LoRA layers are for components this model lacks (%s…)",
                    path, len(absent), absent[0])
    return patches


# -- patched values -------------------------------------------------------------------
class LoraDenoiser:
    """A denoiser whose network runs with a LoRA patch active (the base
    denoiser, and its weights, are shared and never changed). It hands on the
    base denoiser's result as it is (x̂_0 and any learned variance)."""

    def __init__(self, base: Any, patch: LoraPatch) -> None:
        self.base = base
        self.patch = patch
        self.parameterization = base.parameterization

    def __call__(self, x: torch.Tensor, level, **extra: Any):
        with self.patch.active():
            return self.base(x, level, **extra)


class LoraTextEncoder:
    """A text encoder (CLIP value) that encodes with a LoRA patch active."""

    def __init__(self, base: Any, patch: LoraPatch) -> None:
        self.base = base
        self.patch = patch

    def encode(self, texts, device: Any = "cpu") -> torch.Tensor:
        return self.encode_pooled(texts, device)[0]

    def encode_pooled(self, texts, device: Any = "cpu"):
        with self.patch.active():
            return self.base.encode_pooled(texts, device)


Modules = dict[str, torch.nn.Module]


def torch_modules(model: Any, clip: Any) -> tuple[Modules, Modules]:
    """The torch modules a LoRA can patch: ({"unet": …}, {"text_encoder": …}).

    The one place that knows how today's values hold their networks (the
    built-in ``DiscreteTimeDenoiser(ConditionedUNet)`` and ``TextEncoder``; a
    CLIP value with ``torch_modules()``, as SD's, names its own encoders);
    to be replaced by an explicit ``modules`` mapping on MODEL and CLIP."""
    denoiser = model.denoiser.base if isinstance(model.denoiser, LoraDenoiser) else model.denoiser
    network = getattr(denoiser, "network", None)
    unet = getattr(network, "unet", None)
    if not isinstance(unet, torch.nn.Module):
        raise ChoiceError(f"LoRAs patch U-Net models; {model.name!r} has no U-Net")
    encoder = clip.base if isinstance(clip, LoraTextEncoder) else clip
    if callable(getattr(encoder, "torch_modules", None)):  # several encoders (SDXL)
        return {"unet": unet}, dict(encoder.torch_modules())
    text_model = getattr(encoder, "model", None)
    text = {"text_encoder": text_model} if isinstance(text_model, torch.nn.Module) else {}
    return {"unet": unet}, text


def apply_lora(model: Any, clip: Any, path: str | os.PathLike, strength_model: float = 1.0,
               strength_clip: float = 1.0) -> tuple[Any, Any]:
    """(MODEL, CLIP) with the LoRA file at ``path`` added to any LoRAs they
    carry; the values passed in are left as they are."""
    import dataclasses

    unet, text = torch_modules(model, clip)
    strengths = {"unet": strength_model, "text_encoder": strength_clip,
                 "text_encoder_2": strength_clip}
    patches = load_lora(path, {**unet, **text}, strengths)
    unet_patch = patches["unet"]
    text_patch = sum((patches[c] for c in text), LoraPatch())
    base = model.denoiser
    if isinstance(base, LoraDenoiser):
        base, unet_patch = base.base, base.patch + unet_patch
    name = Path(path).stem
    new_model = dataclasses.replace(model, denoiser=LoraDenoiser(base, unet_patch),
                                    description=f"{model.description} + LoRA {name} "
                                                f"({strength_model:g})")
    if clip is None:
        return new_model, None
    base_clip = clip
    if isinstance(clip, LoraTextEncoder):
        base_clip, text_patch = clip.base, clip.patch + text_patch
    return new_model, LoraTextEncoder(base_clip, text_patch)


"""Real ControlNet files (Zhang et al. 2023) and hints that act on part of the steps.

A ControlNet file comes in one of two key layouts:

- *original* (lllyasviel's ``ControlLDM``): ``control_model.`` + ldm module
  paths — ``input_blocks``, ``middle_block``, ``zero_convs``,
  ``middle_block_out``, ``input_hint_block`` (and ``label_emb`` for SDXL);
- *diffusers*: ``ControlNetModel``'s own names (``down_blocks``,
  ``controlnet_down_blocks``, ``controlnet_cond_embedding``…), as one
  ``.safetensors`` file or as a folder with ``config.json``.

Both become diffusers' ``ControlNetModel``. The config is read from the
tensor shapes (what a real file and a tiny test file share), so nothing is
fetched; what shapes cannot tell (attention heads, SDXL's time-id width) is
filled in by the rules of the published models and can be overridden.
Weights are read memory-mapped and kept in the file's dtype unless another
``dtype`` is asked for.

:class:`TimedControlHint` is a hint with diffusers' ``control_guidance_start``
/ ``control_guidance_end``: step i of N is controlled when i/N ≥ start and
(i + 1)/N ≤ end. A network call only sees the timestep t, so a hint is bound
once to the timesteps of the run's steps (:func:`bind_control_steps`) and
then knows which t belong to controlled steps.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from core.checkpoints.boundary import CheckpointError, checkpoint_boundary
from core.models.families.weights import (
    assign_weights,
    empty_parameters,
    finish,
    loading_errors,
    offline,
    open_tensors,
)

ORIGINAL_PREFIX = "control_model."
CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")
SDXL_PROJECTION = 2816  # pooled CLIP-G (1280) + 6 time ids × 256
SDXL_TIME_EMBED = 256


# -- loading --------------------------------------------------------------------
@checkpoint_boundary("ControlNet file")
def load_controlnet_file(path: str | os.PathLike, device: Any = "cpu",
                         dtype: torch.dtype | None = None,
                         overrides: Mapping[str, Any] | None = None):
    """A ControlNet file or diffusers folder as ``ControlNetModel`` in ``dtype``
    (default: the file's own), on ``device``, in eval mode without gradients.

    ``overrides`` replaces inferred config entries (e.g. ``attention_head_dim``
    or ``addition_time_embed_dim`` of a model that is not a published size)."""
    offline()
    path = Path(path).expanduser()
    weights_file, folder_config = _locate(path)
    tensors = open_tensors(weights_file)
    with loading_errors(weights_file, "ControlNet"):
        state = _diffusers_state(tensors, weights_file)
        config = {**(folder_config or infer_controlnet_config(state)), **(overrides or {})}
        return _build_controlnet(config, state, weights_file, device, dtype)


def _locate(path: Path) -> tuple[Path, dict | None]:
    """The weights file, and the folder's config when ``path`` is a diffusers folder."""
    if path.is_dir():
        weights = next((path / n for n in WEIGHT_NAMES if (path / n).is_file()), None)
        if weights is None:
            raise CheckpointError(f"{path}: a folder without {WEIGHT_NAMES[0]}")
        config_file = path / CONFIG_NAME
        if not config_file.is_file():
            return weights, None
        try:
            return weights, json.loads(config_file.read_text())
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{config_file}: damaged config ({error})") from None
    from core.checkpoints.pickles import is_pickle_path, refusal, pickles_allowed

    if is_pickle_path(path) and not pickles_allowed():
        raise CheckpointError(refusal(path))
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ControlNet file")
    return path, None


def is_original_layout(keys: Iterable[str]) -> bool:
    return any(k.removeprefix(ORIGINAL_PREFIX).startswith("input_hint_block") for k in keys)


def _diffusers_state(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The tensors under diffusers' names, converting an original-layout file."""
    if "controlnet_cond_embedding.conv_in.weight" in tensors:
        return tensors
    if not is_original_layout(tensors):
        raise CheckpointError(f"{path}: neither an original-layout (control_model.…) nor a "
                              "diffusers-layout ControlNet; no hint encoder found")
    return convert_original_controlnet(tensors, path)


def convert_original_controlnet(tensors: Mapping[str, torch.Tensor],
                                path: Path | str = "") -> dict[str, torch.Tensor]:
    """lllyasviel's layout → diffusers' names, with diffusers' own converter
    (``convert_controlnet_checkpoint``) plus SDXL's ``label_emb``, which it
    leaves out; every source tensor must land somewhere (no silent drops)."""
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    prefix = ORIGINAL_PREFIX if any(k.startswith(ORIGINAL_PREFIX) for k in tensors) else ""
    source = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    blocks = {k.split(".")[1] for k in source if k.startswith("input_blocks.")}
    levels = 1 + sum(1 for k in source if k.startswith("input_blocks.") and ".op.weight" in k)
    layers = (len(blocks) - 1 - (levels - 1)) // levels
    converted = convert_controlnet_checkpoint(source, {"layers_per_block": layers})
    for ldm, new in (("label_emb.0.0", "add_embedding.linear_1"),
                     ("label_emb.0.2", "add_embedding.linear_2")):
        for kind in ("weight", "bias"):
            if f"{ldm}.{kind}" in source:
                converted[f"{new}.{kind}"] = source[f"{ldm}.{kind}"]
    missing = [k for k, v in converted.items() if v is None]
    if missing:
        raise CheckpointError(f"{path}: the ControlNet lacks tensors for {', '.join(missing[:4])}")
    used = {id(v) for v in converted.values()}
    unused = [prefix + k for k, v in source.items() if id(v) not in used]
    if unused:
        raise CheckpointError(f"{path}: {len(unused)} tensors of the ControlNet were not "
                              f"understood, e.g. {', '.join(unused[:4])}")
    return converted


def infer_controlnet_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``ControlNetModel``'s config from the shapes of its diffusers-named tensors."""
    shape = {k: tuple(v.shape) for k, v in state.items()}
    levels = 1 + max(int(k.split(".")[1]) for k in shape if k.startswith("down_blocks."))
    channels, kinds, depth = [], [], []
    for b in range(levels):
        channels.append(shape[f"down_blocks.{b}.resnets.0.conv1.weight"][0])
        has_attention = f"down_blocks.{b}.attentions.0.proj_in.weight" in shape
        kinds.append("CrossAttnDownBlock2D" if has_attention else "DownBlock2D")
        depth.append(_count(shape, f"down_blocks.{b}.attentions.0.transformer_blocks.") or 1)
    layers = _count(shape, "down_blocks.0.resnets.")
    attention = next((k for k in shape if k.endswith("attn2.to_k.weight")), None)
    linear = any(len(s) == 2 for k, s in shape.items() if k.endswith("proj_in.weight"))
    hint = shape["controlnet_cond_embedding.conv_in.weight"]
    stages = _count(shape, "controlnet_cond_embedding.blocks.") // 2
    embedding = [hint[0]] + [shape[f"controlnet_cond_embedding.blocks.{2 * i + 1}.weight"][0]
                             for i in range(stages)]
    has_mid_attention = "mid_block.attentions.0.proj_in.weight" in shape
    config: dict[str, Any] = dict(
        in_channels=shape["conv_in.weight"][1], conditioning_channels=hint[1],
        block_out_channels=channels, down_block_types=kinds, layers_per_block=layers,
        cross_attention_dim=shape[attention][1] if attention else channels[-1],
        transformer_layers_per_block=depth, use_linear_projection=linear,
        attention_head_dim=[attention_heads(c, linear) for c in channels],
        conditioning_embedding_out_channels=embedding,
        mid_block_type="UNetMidBlock2DCrossAttn" if has_mid_attention else "UNetMidBlock2D",
    )
    if "add_embedding.linear_1.weight" in shape:
        config.update(_sdxl_added_conditioning(shape["add_embedding.linear_1.weight"][1]))
    return config


def _count(shape: Mapping[str, tuple], prefix: str) -> int:
    """How many numbered children ``prefix{i}.`` exist."""
    return len({k[len(prefix):].split(".")[0] for k in shape if k.startswith(prefix)})


def attention_heads(channels: int, linear_projection: bool) -> int:
    """Heads per attention (shapes cannot tell): SD 1.x uses 8 heads (and
    convolutional projections); SD 2.x and SDXL heads of 64 channels."""
    if linear_projection:
        return max(1, channels // 64)
    return 8 if channels % 8 == 0 else 1


def _sdxl_added_conditioning(projection_dim: int) -> dict[str, Any]:
    """SDXL's "text_time" embedding; the time-id width is 256 in SDXL (2816 =
    1280 + 6 × 256) and cannot be told from other sizes: pass it in overrides."""
    config: dict[str, Any] = dict(addition_embed_type="text_time",
                                  projection_class_embeddings_input_dim=projection_dim)
    if projection_dim == SDXL_PROJECTION:
        config["addition_time_embed_dim"] = SDXL_TIME_EMBED
    return config


def _build_controlnet(config: Mapping[str, Any], state: Mapping[str, torch.Tensor], path: Path,
                      device: Any, dtype: torch.dtype | None):
    """The module built without memory, then given the file's tensors (no copy
    when the dtype is the file's)."""
    import inspect

    from diffusers import ControlNetModel

    sdxl_style = config.get("addition_embed_type") == "text_time"
    if sdxl_style and not config.get("addition_time_embed_dim"):
        raise CheckpointError(f"{path}: an SDXL-style ControlNet of unusual size; give "
                              "addition_time_embed_dim in the overrides")
    accepted = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}
    with empty_parameters():
        model = ControlNetModel(**{k: v for k, v in config.items() if k in accepted})
    expected = model.state_dict()
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise CheckpointError(f"{path}: {len(unexpected)} ControlNet tensors do not fit its "
                              f"config, e.g. {', '.join(unexpected[:4])}")
    dtype = dtype or next(iter(state.values())).dtype
    assign_weights(model, state, path, "ControlNet", dtype)
    return finish(model, path, "ControlNet", device)


# -- hints ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class TimedControlHint:
    """A ControlNet, its hint image (1|B, 3, H, W) in [0, 1] and its strength,
    acting on the steps whose fraction of the run lies in [start, end].

    ``window`` is the timestep interval of the controlled steps, set by
    :meth:`for_steps`; an unbound hint acts everywhere and refuses a partial
    range (it cannot know the steps). Identity is the hint object (eq=False),
    so the positive and negative prompt can share one hint and one batched
    ControlNet call."""

    controlnet: Any
    image: torch.Tensor
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.start < self.end <= 1.0:
            raise ValueError(f"ControlNet start/end must satisfy 0 ≤ start < end ≤ 1, "
                             f"got {self.start} and {self.end}")

    @property
    def partial(self) -> bool:
        return self.start > 0.0 or self.end < 1.0

    def for_steps(self, timesteps: Sequence[float]) -> "TimedControlHint":
        """This hint bound to a run whose step i calls the network at
        ``timesteps[i]`` (descending, one per step)."""
        active = controlled_steps(len(timesteps), self.start, self.end)
        if not active:
            return dataclasses.replace(self, window=(float("inf"), float("inf")))
        ts = [float(t) for t in timesteps]
        first, last = active[0], active[-1]
        high = float("inf") if first == 0 else (ts[first - 1] + ts[first]) / 2
        low = float("-inf") if last == len(ts) - 1 else (ts[last] + ts[last + 1]) / 2
        return dataclasses.replace(self, window=(low, high))

    def active_rows(self, t: torch.Tensor) -> torch.Tensor | None:
        """A (B,) bool mask of the rows whose timestep is controlled; None: all."""
        if self.window is None:
            if self.partial:
                raise ValueError("a ControlNet with a start/end range must be bound to the run's "
                                 "steps first (bind_control_steps)")
            return None
        t64 = torch.as_tensor(t).detach().to("cpu", torch.float64).reshape(-1)
        low, high = self.window
        return (t64 >= low) & (t64 <= high)

    def residuals(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                  added_cond: Mapping[str, torch.Tensor] | None = None):
        """(down residuals, mid residual) in x_t's dtype, or (None, None) when
        no row of this call is in a controlled step. ``added_cond`` is SDXL's
        ``{"text_embeds", "time_ids"}`` for a "text_time" ControlNet."""
        rows = self.active_rows(t)
        if rows is not None and not bool(rows.any()):
            return None, None
        dtype = next(self.controlnet.parameters()).dtype
        extra = {}
        if added_cond is not None:
            extra["added_cond_kwargs"] = {k: v.to(dtype) for k, v in added_cond.items()}
        t_in = torch.as_tensor(t, device=x_t.device).to(dtype)
        down, mid = self.controlnet(x_t.to(dtype), t_in, encoder_hidden_states=context.to(dtype),
                                    controlnet_cond=self._hint(x_t, dtype),
                                    conditioning_scale=float(self.strength),
                                    return_dict=False, **extra)
        down, mid = [d.to(x_t.dtype) for d in down], mid.to(x_t.dtype)
        if rows is not None and not bool(rows.all()):
            keep = rows.to(device=x_t.device, dtype=x_t.dtype).reshape(-1, 1, 1, 1)
            down, mid = [d * keep for d in down], mid * keep
        return down, mid

    def _hint(self, x_t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The hint image at the ControlNet's input size, one per row of x_t."""
        factor = 2 ** (len(self.controlnet.config.conditioning_embedding_out_channels) - 1)
        size = (x_t.shape[-2] * factor, x_t.shape[-1] * factor)
        hint = self.image.to(device=x_t.device, dtype=dtype)
        if hint.shape[-2:] != size:
            hint = torch.nn.functional.interpolate(hint, size=size, mode="bilinear",
                                                   align_corners=False)
        if x_t.shape[0] % len(hint):
            raise ValueError(f"a ControlNet hint of {len(hint)} images cannot condition a "
                             f"batch of {x_t.shape[0]}")
        return hint.repeat(x_t.shape[0] // len(hint), 1, 1, 1)  # (B, 3, H·f, W·f)


def controlled_steps(steps: int, start: float, end: float) -> list[int]:
    """diffusers' ``controlnet_keep``: step i of N is controlled when
    i/N ≥ start and (i + 1)/N ≤ end."""
    return [i for i in range(steps) if i / steps >= start and (i + 1) / steps <= end]


def bind_control_steps(conditionings: Sequence[Any], timesteps: Sequence[float]) -> list[Any]:
    """``conditionings`` (Conditioning or ConditioningBatch, or None) with every
    TimedControlHint bound to the run's step ``timesteps``. A hint shared by
    several conditionings stays one object, so the ControlNet still runs once
    over the batch."""
    from core.values import ConditioningBatch

    bound: dict[int, TimedControlHint] = {}

    def bind_hint(hint):
        if not isinstance(hint, TimedControlHint):
            return hint
        if id(hint) not in bound:
            bound[id(hint)] = hint.for_steps(timesteps)
        return bound[id(hint)]

    def bind(cond):
        if cond is None:
            return None
        if isinstance(cond, ConditioningBatch):
            return ConditioningBatch(tuple(bind(part) for part in cond.parts))
        hints = cond.extras.get("control")
        if not hints:
            return cond
        return dataclasses.replace(cond, extras={**cond.extras,
                                                 "control": tuple(bind_hint(h) for h in hints)})

    return [bind(cond) for cond in conditionings]


def step_timesteps(model_schedule, levels: torch.Tensor) -> torch.Tensor:
    """The network timestep of each step's first evaluation: t(σ_i) for the
    levels σ_0 > … > σ_{N−1} of an N-step run (``levels`` has N + 1 entries),
    as :class:`~core.diffusion.denoisers.DiscreteTimeDenoiser` computes it."""
    sigmas = torch.as_tensor(levels, dtype=torch.float64)[:-1]
    return model_schedule.sigma_to_t(sigmas)

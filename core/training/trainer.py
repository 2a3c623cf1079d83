"""The training loop shared by every built-in model: AdamW, EMA weights,
periodic resumable checkpoints, a progress line and a loss curve.

A *task* says what is trained and how the loss is computed; the loop owns
everything else. All randomness comes from one seeded generator whose state
is checkpointed, so a resumed run continues the same stream.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch


class Task(Protocol):
    name: str

    def modules(self) -> dict[str, torch.nn.Module]:
        """The modules whose parameters are trained."""

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        """One batch's loss."""

    def export(self, path: Path, modules: dict[str, torch.nn.Module], recipe: dict) -> None:
        """Write the final model file from (EMA) modules."""


@dataclass
class TrainConfig:
    steps: int
    lr: float = 4e-4
    warmup: int = 200
    seed: int = 0
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    log_every: int = 25
    weight_decay: float = 0.0
    max_seconds: float | None = None  # a time budget: stop early, export what there is
    history: dict | None = None  # the recipe of the model fine-tuned from, if any
    lr_decay: str = "constant"  # or "cosine": to zero at ``steps`` (an annealing fine-tune)


LR_DECAYS = ("constant", "cosine")


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warmup, then constant or a cosine to zero at ``config.steps``
    (Loshchilov & Hutter 2017, SGDR eq. 5 with one cycle and η_min = 0)."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.lr_decay == "constant":
        return config.lr
    if config.lr_decay != "cosine":
        raise ValueError(f"unknown lr decay {config.lr_decay!r}; "
                         f"choose from {', '.join(LR_DECAYS)}")
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of weights (decay warmed up as in
    improved-diffusion: min(d, (1 + n)/(10 + n)))."""

    def __init__(self, modules: dict[str, torch.nn.Module], decay: float) -> None:
        self.decay = decay
        self.shadow = {name: copy.deepcopy(m).eval().requires_grad_(False) for name, m in modules.items()}

    @torch.no_grad()
    def update(self, modules: dict[str, torch.nn.Module], step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, module in modules.items():
            shadow = list(self.shadow[name].parameters())
            torch._foreach_lerp_(shadow, list(module.parameters()), 1 - decay)  # one kernel per group


def train(task: Task, config: TrainConfig, out: Path, resume: Path | None = None) -> Path:
    """Train until ``config.steps``, checkpointing to ``<out>.train.pt``; write ``out``."""
    modules = task.modules()
    params = [p for m in modules.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(modules, config.ema_decay)
    generator = torch.Generator().manual_seed(config.seed)
    state_path = out.with_suffix(".train.pt")
    step, losses = 0, []
    if resume is not None:
        step, losses = _restore(resume, modules, ema, optimizer, generator)
        print(f"resumed {task.name} at step {step} from {resume}", file=sys.stderr)
    for module in modules.values():
        module.train()
    started, smoothed = time.perf_counter(), _smoothed(losses)
    first_step = step
    while step < config.steps and not _out_of_time(started, config.max_seconds):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        loss = task.loss(generator)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"the loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema.update(modules, step)
        step += 1
        losses.append(loss.item())
        smoothed = _smoothed([loss.item()], smoothed)
        if step % config.log_every == 0 or step == config.steps:
            rate = (step - first_step) / (time.perf_counter() - started)
            print(f"{task.name} step {step}/{config.steps} loss {smoothed:.4f} {rate:.2f} it/s",
                  file=sys.stderr, flush=True)
        if step % config.checkpoint_every == 0 or step == config.steps:
            _save_state(state_path, step, losses, modules, ema, optimizer, generator)
            plot_losses(losses, out.with_suffix(".loss.png"), task.name)
    if step % config.checkpoint_every and step != config.steps:  # stopped by the time budget
        print(f"{task.name}: time budget spent at step {step}", file=sys.stderr)
        _save_state(state_path, step, losses, modules, ema, optimizer, generator)
        plot_losses(losses, out.with_suffix(".loss.png"), task.name)
    recipe = {"steps": step, "lr": config.lr, "lr_decay": config.lr_decay,
              "warmup": config.warmup, "seed": config.seed,
              "ema_decay": config.ema_decay, "final_loss": smoothed}
    if config.history is not None:
        recipe["fine_tuned_from"] = config.history
    task.export(out, ema.shadow, recipe)
    return out


def _smoothed(losses: list[float], start: float | None = None) -> float | None:
    """The exponential moving average (0.98) of ``losses`` continued from ``start``:
    what the progress line and the file's ``final_loss`` report, also after a
    resume (which once exported ``final_loss`` None when no step was left)."""
    smoothed = start
    for value in losses:
        smoothed = value if smoothed is None else 0.98 * smoothed + 0.02 * value
    return smoothed


def _out_of_time(started: float, budget: float | None) -> bool:
    return budget is not None and time.perf_counter() - started >= budget


def _save_state(path, step, losses, modules, ema, optimizer, generator) -> None:
    state = {
        "step": step,
        "losses": torch.tensor(losses),
        "modules": {n: m.state_dict() for n, m in modules.items()},
        "ema": {n: m.state_dict() for n, m in ema.shadow.items()},
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
    }
    temp = path.with_name(path.name + ".tmp")
    torch.save(state, temp)
    temp.replace(path)


def _restore(path: Path, modules, ema, optimizer, generator) -> tuple[int, list[float]]:
    state = torch.load(path, map_location="cpu", weights_only=True)  # no code runs on load
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name])
        ema.shadow[name].load_state_dict(state["ema"][name])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return int(state["step"]), state["losses"].tolist()


def plot_losses(losses: list[float], path: Path, title: str) -> None:
    """A loss curve (log scale, smoothed) drawn with Pillow: no plotting dependency."""
    from PIL import Image, ImageDraw

    width, height, margin = 640, 360, 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    values = torch.tensor(losses, dtype=torch.float64).clamp(min=1e-12).log10()
    window = max(1, len(values) // 200)
    if window > 1:
        values = values.unfold(0, window, window).mean(1)
    low, high = float(values.min()), float(values.max())
    span = max(high - low, 1e-6)
    points = [
        (margin + i * (width - 2 * margin) / max(len(values) - 1, 1),
         height - margin - (float(v) - low) / span * (height - 2 * margin))
        for i, v in enumerate(values)
    ]
    draw.rectangle([margin, margin, width - margin, height - margin], outline="gray")
    if len(points) > 1:
        draw.line(points, fill=(30, 90, 200), width=2)
    draw.text((margin, 10), f"{title}: loss (log10) over {len(losses)} steps", fill="black")
    draw.text((5, margin), f"{10 ** high:.3g}", fill="black")
    draw.text((5, height - margin - 10), f"{10 ** low:.3g}", fill="black")
    image.save(path)

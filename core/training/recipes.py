"""What ``diffusion-workbench train MODEL`` trains, with its default recipe."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.training.trainer import TrainConfig, train

MODELS_DIR = Path(__file__).resolve().parents[2] / "resources" / "models"


@dataclass(frozen=True)
class Recipe:
    steps: int
    batch: int
    lr: float
    pool: int
    make_task: Callable  # (pool, batch, device) -> Task


def _vae_task(pool, batch, device, **options):
    from core.training.vae_task import VAETask

    return VAETask(pool, batch, device)


def _ldm_task(pool, batch, device, weighting: str | None = None):
    from core.training.ldm_task import LDMTask

    return LDMTask(pool, batch, device, MODELS_DIR / "shapes-vae.safetensors", weighting or "v")


RECIPES: dict[str, Recipe] = {
    "shapes-vae": Recipe(steps=2000, batch=16, lr=1e-3, pool=20000, make_task=_vae_task),
    "shapes-ldm": Recipe(steps=6000, batch=64, lr=5e-4, pool=30000, make_task=_ldm_task),
}


def run_training(name: str, steps: int | None, batch: int | None, out: Path | None,
                 resume: Path | None, device, seed: int = 0, **options) -> Path:
    from core.training.data import ShapesPool

    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; trainable: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    pool = ShapesPool.render(recipe.pool, seed=1000 + seed)
    task = recipe.make_task(pool, batch or recipe.batch, device, **options)
    config = TrainConfig(steps=steps or recipe.steps, lr=recipe.lr, seed=seed)
    return train(task, config, out or MODELS_DIR / f"{name}.safetensors", resume)

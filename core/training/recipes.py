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
    make_task: Callable  # (pool, batch, device, **options) -> Task
    pixels: int = 64
    needs: tuple[str, ...] = ()  # model files it builds on, in resources/models


def _vae_task(pool, batch, device, **options):
    from core.training.vae_task import VAETask

    return VAETask(pool, batch, device)


def _ldm_task(pool, batch, device, weighting: str | None = None, **options):
    from core.training.ldm_task import LDMTask

    return LDMTask(pool, batch, device, _file("shapes-vae", options), weighting or "v")


def _controlnet_task(pool, batch, device, **options):
    from core.training.controlnet_task import ControlNetTask

    return ControlNetTask(pool, batch, device, _file("shapes-ldm", options))


def _ddpm_task(pool, batch, device, **options):
    from core.training.ddpm_task import DDPMTask

    return DDPMTask(pool, batch, device)


def _classifier_task(pool, batch, device, **options):
    from core.training.classifier_task import ClassifierTask

    return ClassifierTask(pool, batch, device)


def _flow_task(pool, batch, device, **options):
    from core.training.flow_task import FlowTask

    return FlowTask(pool, batch, device, _file("shapes-vae", options))


def _file(name: str, options: dict) -> Path:
    """A model a task builds on: from ``models_dir`` when given, else the shipped one."""
    return Path(options.get("models_dir") or MODELS_DIR) / f"{name}.safetensors"


RECIPES: dict[str, Recipe] = {
    "shapes-vae": Recipe(steps=2000, batch=16, lr=1e-3, pool=20000, make_task=_vae_task),
    "shapes-ldm": Recipe(steps=6000, batch=64, lr=5e-4, pool=30000, make_task=_ldm_task,
                         needs=("shapes-vae",)),
    "shapes-controlnet": Recipe(steps=4000, batch=64, lr=3e-4, pool=30000,
                                make_task=_controlnet_task, needs=("shapes-vae", "shapes-ldm")),
    "shapes-ddpm": Recipe(steps=8000, batch=64, lr=4e-4, pool=30000, make_task=_ddpm_task,
                          pixels=32),
    "shapes-classifier": Recipe(steps=3000, batch=128, lr=5e-4, pool=30000,
                                make_task=_classifier_task, pixels=32),
    "shapes-flow": Recipe(steps=8000, batch=64, lr=4e-4, pool=30000, make_task=_flow_task,
                          needs=("shapes-vae",)),
}


def run_training(name: str, steps: int | None, batch: int | None, out: Path | None,
                 resume: Path | None, device, seed: int = 0, pool: int | None = None,
                 workers: int = 1, max_seconds: float | None = None, lr: float | None = None,
                 **options) -> Path:
    from core.training.data import ShapesPool

    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; trainable: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    images = ShapesPool.render(pool or recipe.pool, seed=1000 + seed, pixels=recipe.pixels,
                               workers=workers)
    task = recipe.make_task(images, batch or recipe.batch, device, **options)
    config = TrainConfig(steps=steps or recipe.steps, lr=lr or recipe.lr, seed=seed,
                         max_seconds=max_seconds)
    return train(task, config, out or MODELS_DIR / f"{name}.safetensors", resume)

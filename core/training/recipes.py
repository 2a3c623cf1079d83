"""What ``diffusion-workbench train MODEL`` trains, with its default recipe."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.paths import MODELS_DIR
from core.training.trainer import LR_DECAYS, TrainConfig, train


@dataclass(frozen=True)
class Recipe:
    steps: int
    batch: int
    lr: float
    pool: int
    make_task: Callable  # (pool, batch, device, **options) -> Task
    pixels: int = 64
    needs: tuple[str, ...] = ()  # model files it builds on, in resources/models
    clips: bool = False  # trains on motion clips (ClipPool), not still scenes (ShapesPool)


def _vae_task(pool, batch, device, decoder_only: bool = False, **options):
    from core.training.vae_task import VAETask

    return VAETask(pool, batch, device, decoder_only)


def _ldm_task(pool, batch, device, weighting: str | None = None, **options):
    from core.training.ldm_task import LDMTask

    return LDMTask(pool, batch, device, _file("shapes-vae", options), weighting or "v")


def _refiner_task(pool, batch, device, **options):
    from core.training.refiner_task import RefinerTask

    return RefinerTask(pool, batch, device, _file("shapes-vae", options), _file("shapes-ldm", options))


def _controlnet_task(pool, batch, device, **options):
    from core.training.controlnet_task import ControlNetTask

    return ControlNetTask(pool, batch, device, _file("shapes-ldm", options))


def _ddpm_task(pool, batch, device, weighting: str | None = None, **options):
    from core.training.ddpm_task import DDPMTask

    return DDPMTask(pool, batch, device, weighting or "v")


def _classifier_task(pool, batch, device, **options):
    from core.training.classifier_task import ClassifierTask

    return ClassifierTask(pool, batch, device)


def _clip_task(pool, batch, device, **options):
    from core.training.clip_task import ClipTask

    return ClipTask(pool, batch, device)


def _palette_task(pool, batch, device, **options):
    from core.training.palette_task import PaletteTask

    return PaletteTask(pool, batch, device)


def _prior_task(pool, batch, device, **options):
    from core.training.unclip_task import PriorTask

    return PriorTask(pool, batch, device, _file("shapes-clip", options))


def _unclip_task(pool, batch, device, **options):
    from core.training.unclip_task import DecoderTask

    return DecoderTask(pool, batch, device, _file("shapes-clip", options))


def _t5_task(pool, batch, device, **options):
    from core.training.t5_task import T5PretrainTask

    return T5PretrainTask(pool, batch, device)


def _cascade_base_task(pool, batch, device, **options):
    from core.training.cascade_task import CascadeBaseTask

    return CascadeBaseTask(pool, batch, device, _file("shapes-t5", options))


def _cascade_base_clip_task(pool, batch, device, **options):
    from core.training.cascade_task import CascadeBaseTask

    return CascadeBaseTask(pool, batch, device, _file("shapes-clip", options),
                           name="shapes-cascade-base-clip")


def _sr_task(pool, batch, device, **options):
    from core.training.cascade_task import SuperResolutionTask

    return SuperResolutionTask(pool, batch, device)


def _dcae_task(pool, batch, device, **options):
    from core.training.dcae_task import DCAETask

    return DCAETask(pool, batch, device)


def _gemma_task(pool, batch, device, **options):
    from core.training.gemma_task import GemmaPretrainTask

    return GemmaPretrainTask(pool, batch, device)


def _sana_task(pool, batch, device, **options):
    from core.training.sana_task import SanaTask

    return SanaTask(pool, batch, device, _file("shapes-dcae", options),
                    _file("shapes-gemma", options))


def _video_task(pool, batch, device, **options):
    from core.training.video_task import VideoTask

    return VideoTask(pool, batch, device, _file("shapes-vae", options))


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
    "shapes-refiner": Recipe(steps=2000, batch=64, lr=1e-4, pool=30000, make_task=_refiner_task,
                             needs=("shapes-vae", "shapes-ldm")),
    "shapes-controlnet": Recipe(steps=4000, batch=64, lr=3e-4, pool=30000,
                                make_task=_controlnet_task, needs=("shapes-vae", "shapes-ldm")),
    "shapes-ddpm": Recipe(steps=8000, batch=64, lr=4e-4, pool=30000, make_task=_ddpm_task,
                          pixels=32),
    "shapes-classifier": Recipe(steps=3000, batch=128, lr=5e-4, pool=30000,
                                make_task=_classifier_task, pixels=32),
    "shapes-clip": Recipe(steps=4000, batch=256, lr=5e-4, pool=30000, make_task=_clip_task,
                          pixels=32),
    "shapes-palette": Recipe(steps=4000, batch=64, lr=4e-4, pool=30000,
                             make_task=_palette_task, pixels=32),
    "shapes-prior": Recipe(steps=4000, batch=256, lr=3e-4, pool=30000, make_task=_prior_task,
                           pixels=32, needs=("shapes-clip",)),
    "shapes-unclip": Recipe(steps=4000, batch=64, lr=4e-4, pool=30000, make_task=_unclip_task,
                            pixels=32, needs=("shapes-clip",)),
    "shapes-t5": Recipe(steps=3000, batch=128, lr=1e-3, pool=20000, make_task=_t5_task,
                        pixels=16),
    "shapes-cascade-base": Recipe(steps=3000, batch=64, lr=4e-4, pool=30000,
                                  make_task=_cascade_base_task, needs=("shapes-t5",)),
    "shapes-cascade-base-clip": Recipe(steps=3000, batch=64, lr=4e-4, pool=30000,
                                       make_task=_cascade_base_clip_task,
                                       needs=("shapes-clip",)),
    "shapes-sr": Recipe(steps=3000, batch=16, lr=4e-4, pool=30000, make_task=_sr_task),
    "shapes-dcae": Recipe(steps=2500, batch=16, lr=1e-3, pool=20000, make_task=_dcae_task),
    "shapes-gemma": Recipe(steps=3000, batch=128, lr=1e-3, pool=20000, make_task=_gemma_task,
                           pixels=16),
    "shapes-sana": Recipe(steps=3000, batch=64, lr=4e-4, pool=30000, make_task=_sana_task,
                          needs=("shapes-dcae", "shapes-gemma")),
    "shapes-video": Recipe(steps=6000, batch=8, lr=4e-4, pool=4000, make_task=_video_task,
                           needs=("shapes-vae",), clips=True),
    "shapes-flow": Recipe(steps=8000, batch=64, lr=4e-4, pool=30000, make_task=_flow_task,
                          needs=("shapes-vae",)),
}


def run_training(name: str, steps: int | None, batch: int | None, out: Path | None,
                 resume: Path | None, device, seed: int = 0, pool: int | None = None,
                 workers: int = 1, max_seconds: float | None = None, lr: float | None = None,
                 init: Path | None = None, lr_decay: str = "constant", **options) -> Path:
    from core.training.clips import ClipPool
    from core.training.data import ShapesPool

    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; trainable: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    if options.get("decoder_only") and init is None:  # before the pool's half-minute render
        raise ValueError("--decoder-only fine-tunes a VAE: give the file with --init")
    if lr_decay not in LR_DECAYS:
        raise ValueError(f"unknown lr decay {lr_decay!r}; choose from {', '.join(LR_DECAYS)}")
    if init is not None:
        _recipe_of(init)  # a missing or broken file is named now, not after rendering
    out = out or MODELS_DIR / f"{name}.safetensors"
    _make_folder(out.parent)  # now: the first checkpoint is minutes away
    data = ClipPool if recipe.clips else ShapesPool
    images = data.render(pool or recipe.pool, seed=1000 + seed, pixels=recipe.pixels,
                         workers=workers)
    task = recipe.make_task(images, batch or recipe.batch, device, **options)
    if init is not None:
        initialise(task, init)
    if getattr(task, "decoder_only", False):
        task.freeze_encoder(_scaling_factor(init))
    config = TrainConfig(steps=steps or recipe.steps, lr=lr or recipe.lr, seed=seed,
                         max_seconds=max_seconds, history=_recipe_of(init) if init else None,
                         lr_decay=lr_decay)
    return train(task, config, out, resume)


def _make_folder(folder: Path) -> None:
    """The folder the model file and its checkpoints go to, made if missing."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot write the model to {folder}: {error.strerror or error}") from None


def initialise(task, path: Path) -> None:
    """Start from a model file's weights (fine-tuning): each trained module
    takes the component of the same name, which must match exactly."""
    from core.checkpoints import CheckpointError, load_checkpoint
    from core.checkpoints.safetensors_io import component

    tensors, _meta = load_checkpoint(path)
    for name, module in task.modules().items():
        weights = component(tensors, name)
        if not weights:
            raise CheckpointError(f"{path}: has no {name!r} weights to start {task.name} from")
        try:
            module.load_state_dict({k: v.float() for k, v in weights.items()})
        except RuntimeError as error:  # another model's component of the same name
            first = str(error).strip().splitlines()
            detail = first[1].strip() if len(first) > 1 else first[0] if first else ""
            raise CheckpointError(f"{path}: its {name!r} weights do not fit {task.name} "
                                  f"({detail[:200]})") from None


def _recipe_of(path: Path) -> dict:
    from core.checkpoints import load_checkpoint

    return load_checkpoint(path)[1].get("recipe", {})


def _scaling_factor(path: Path) -> float:
    from core.checkpoints import load_checkpoint

    _tensors, meta = load_checkpoint(path)
    return float(meta["components"]["vae"]["config"]["scaling_factor"])

"""Training shapes-refiner: SDXL's refiner in miniature (Podell et al. 2023, §2.5).

SDXL's second stage is a latent diffusion model of its own, trained only on
the low-noise end of the schedule (the first 200 of 1000 discrete
timesteps). At sampling time the base model draws the layout over the
high-noise steps and hands its latent over; the refiner, specialised in the
little noise that is left, finishes the last steps. The lectures' point: a
network's capacity split by noise level (as eDiff-I's experts do too).

Here the refiner starts from shapes-ldm (its U-Net and text encoder) and
trains the U-Net only on t < :data:`REFINER_TIMESTEPS` with the same simple
loss (Ho et al. 2020, eq. 14); the text encoder stays frozen, copied into
the file so the refiner loads like any latent diffusion model. At low noise
1 + 1/SNR_t ≈ 1, so the plain ε loss is the v loss there.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.checkpoints import CheckpointError, load_checkpoint
from core.checkpoints.safetensors_io import component
from core.training.ldm_task import LDMTask

#: SDXL's refiner trains on the first 200 of 1000 timesteps (Podell et al. 2023, §2.5).
REFINER_TIMESTEPS = 200


class RefinerTask(LDMTask):
    name = "shapes-refiner"

    def __init__(self, pool, batch: int, device, vae_path: Path, base_path: Path,
                 max_timestep: int = REFINER_TIMESTEPS) -> None:
        super().__init__(pool, batch, device, vae_path, weighting="epsilon")
        if not 1 <= max_timestep <= self.schedule.num_timesteps:
            raise ValueError(f"the refiner's timesteps must be 1..{self.schedule.num_timesteps}, "
                             f"not {max_timestep}")
        self.max_timestep = max_timestep
        self.base_path = Path(base_path)
        tensors, _meta = load_checkpoint(self.base_path)
        for name, module in (("unet", self.unet), ("text_encoder", self.text_encoder)):
            weights = component(tensors, name)
            if not weights:
                raise CheckpointError(f"{base_path}: has no {name!r} weights to start the refiner from")
            module.load_state_dict({k: v.float() for k, v in weights.items()})
        self.text_encoder.requires_grad_(False).eval()

    def modules(self):
        return {"unet": self.unet}

    def timesteps(self, generator: torch.Generator) -> torch.Tensor:
        """Only the low-noise end: t uniform over 0 … max_timestep − 1."""
        return torch.randint(self.max_timestep, (self.batch,), generator=generator)

    def export(self, path: Path, modules, recipe) -> None:
        super().export(path, {"unet": modules["unet"], "text_encoder": self.text_encoder},
                       {**recipe, "init": self.base_path.name})

    def extra_metadata(self) -> dict:
        return {"refiner": {"timesteps": [0, self.max_timestep], "base": self.base_path.stem}}

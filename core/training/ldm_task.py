"""Training shapes-ldm: Stable Diffusion in miniature (Rombach et al. 2022).

The frozen shapes VAE encodes the pool once; each step draws latents from
the encoder's Gaussian, a caption with phrases dropped, a timestep t uniform
over the T = 1000 of SD's ``scaled_linear`` schedule, and minimises the
simple loss ‖ε − ε_θ(√ᾱ_t z_0 + √(1−ᾱ_t) ε, t, c)‖² (Ho et al. 2020,
Algorithm 1 / eq. 14). The U-Net and the text encoder train together.

Weighting: with the plain ε loss, an error in the predicted *layout* x̂_0 at
high noise costs only SNR_t times as much, so where the prompt alone decides
the picture (position, background) there is almost no signal to learn from;
a first run learned colour and size but left position at chance. The
``v`` weighting multiplies the ε loss by 1 + 1/SNR_t, which is exactly the
loss of v-prediction (Salimans & Ho 2022, §4) for an ε-predicting network,
truncated at ``noise_levels.MAX_WEIGHT`` so the last timesteps cannot dominate.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from core.checkpoints import save_checkpoint
from core.diffusion.forward import q_sample
from core.diffusion.schedules import make_schedule
from core.models.shapes import LDM_UNET_CONFIG, make_unet
from core.models.text import WordTokenizer, make_text_encoder, shapes_vocabulary, text_encoder_config
from core.models.vae import load_vae
from core.training.data import ShapesPool, dropped_caption
from core.training.noise_levels import snr_weight
from core.training.vae_task import _jsonable

SCHEDULE = ("scaled_linear", 1000)
WEIGHTINGS = ("v", "epsilon")


class LDMTask:
    name = "shapes-ldm"

    def __init__(self, pool: ShapesPool, batch: int, device, vae_path: Path,
                 weighting: str = "v") -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown loss weighting {weighting!r}; choose one of {WEIGHTINGS}")
        self.pool, self.batch, self.device, self.weighting = pool, batch, device, weighting
        vae, self.scaling = load_vae(vae_path, device)
        self.mean, self.std = encode_pool(vae, pool, device)  # (N, 4, 16, 16) each
        self.schedule = make_schedule(*SCHEDULE)
        self.tokenizer = WordTokenizer(shapes_vocabulary())
        self.text_config = text_encoder_config(len(self.tokenizer.vocabulary))
        self.text_encoder = make_text_encoder(self.text_config).to(device)
        self.unet = make_unet().to(device)
        self.captions = random.Random(0)

    def modules(self):
        return {"unet": self.unet, "text_encoder": self.text_encoder}

    def loss(self, generator: torch.Generator) -> torch.Tensor:
        indices = torch.randint(len(self.pool), (self.batch,), generator=generator)
        eps_z = torch.randn(self.mean[indices].shape, generator=generator)
        z0 = (self.mean[indices] + self.std[indices] * eps_z) * self.scaling  # sampled latent
        self.captions.seed(int(torch.randint(2**31, (1,), generator=generator)))
        texts = [dropped_caption(self.pool.scenes[i], self.captions) for i in indices.tolist()]
        t = self.timesteps(generator)
        noise = torch.randn(z0.shape, generator=generator)
        z_t = q_sample(z0, t, self.schedule, noise).to(self.device)  # DDPM eq. 4
        context = self.text_encoder(input_ids=self.tokenizer(texts).to(self.device)).last_hidden_state
        prediction = self.unet(z_t, t.to(self.device), encoder_hidden_states=context).sample
        error = ((prediction - noise.to(self.device)) ** 2).mean(dim=(1, 2, 3))  # DDPM eq. 14
        if self.weighting == "v":
            error = error * snr_weight(self.schedule, t).to(self.device)
        return error.mean()

    def timesteps(self, generator: torch.Generator) -> torch.Tensor:
        """The batch's t, uniform over the whole schedule."""
        return torch.randint(self.schedule.num_timesteps, (self.batch,), generator=generator)

    def export(self, path: Path, modules, recipe) -> None:
        tensors = {f"unet.{k}": v.half() for k, v in modules["unet"].state_dict().items()}
        tensors.update({f"text_encoder.{k}": v.half()
                        for k, v in modules["text_encoder"].state_dict().items()})
        save_checkpoint(path, tensors, {
            "format": "diffusion-workbench.model", "name": self.name, "kind": "ldm",
            "prediction": "epsilon", "schedule": {"name": SCHEDULE[0], "timesteps": SCHEDULE[1]},
            "vae": "shapes-vae",
            "components": {
                "unet": {"class": "UNet2DConditionModel", "config": _jsonable(LDM_UNET_CONFIG)},
                "text_encoder": {"class": "CLIPTextModel", "config": self.text_config,
                                 "vocabulary": self.tokenizer.vocabulary,
                                 "max_length": self.tokenizer.max_length},
            },
            **self.extra_metadata(),
            "recipe": {**recipe, "task": self.name.removeprefix("shapes-"), "batch": self.batch,
                       "pool": len(self.pool),
                       "loss_weighting": self.weighting,
                       "caption_dropout": "size 0.5, colour 0.15, position 0.4, background 0.5, "
                                          "empty 0.1"},
        })

    def extra_metadata(self) -> dict:
        """Keys a task built on this one adds to the model file."""
        return {}


@torch.no_grad()
def encode_pool(vae, pool: ShapesPool, device, chunk: int = 256):
    """The encoder's Gaussian (mean, std) for every pool image, on the CPU."""
    means, stds = [], []
    for start in range(0, len(pool), chunk):
        indices = torch.arange(start, min(start + chunk, len(pool)))
        dist = vae.encode(pool.image_batch(indices).to(device)).latent_dist
        means.append(dist.mean.cpu())
        stds.append(dist.std.cpu())
    return torch.cat(means), torch.cat(stds)

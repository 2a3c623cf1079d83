"""How much shape the shapes VAE alone keeps: rendered scenes read by the
analyser before and after an encode → decode round trip (issue 13).

Every latent model draws through this decoder, so its round trip caps the
shape accuracy shapes-ldm and shapes-flow can reach under the analyser.
``--vae`` takes any workbench autoencoder file: shapes-vae (a KL
autoencoder, encoded to its mean) or shapes-dcae (Sana's deep-compression
autoencoder, deterministic); the PSNR of the round trip is printed too.

    python bench/vae_shapes.py [--scenes N] [--seed S] [--vae FILE]
"""
from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from core.data.shapes import random_scene, render
from core.evaluation.analyser import analyse
from core.models.builtin import load_vae_handle
from core.paths import MODELS_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--vae", type=Path, default=MODELS_DIR / "shapes-vae.safetensors")
    args = parser.parse_args()
    vae, _preview = load_vae_handle(args.vae)
    rng = random.Random(args.seed)
    scenes = [random_scene(rng) for _ in range(args.scenes)]
    rendered = torch.stack([torch.from_numpy(np.array(render(s, 64)[0])).permute(2, 0, 1).float() / 255
                            for s in scenes])  # (N, 3, 64, 64) in [0, 1]
    decoded = vae.decode(vae.encode(rendered))  # [0, 1] → scaled latents → [0, 1]
    mse = float(((decoded - rendered) ** 2).mean())
    print(f"{args.vae.stem}: {vae.latent_channels} × {64 // vae.downscale}² latents, round-trip "
          f"PSNR {10 * np.log10(1 / mse):.1f} dB")
    for name, images in (("rendered", rendered), ("VAE round trip", decoded)):
        right, total = Counter(), Counter()
        for image, scene in zip(images, scenes):
            total[scene.shape, scene.background] += 1
            right[scene.shape, scene.background] += analyse(image).shape == scene.shape
        by_shape = {s: f"{sum(right[k] for k in total if k[0] == s)}/{sum(total[k] for k in total if k[0] == s)}"
                    for s in sorted({k[0] for k in total})}
        by_background = {b: f"{sum(right[k] for k in total if k[1] == b)}/{sum(total[k] for k in total if k[1] == b)}"
                         for b in sorted({k[1] for k in total})}
        print(f"{name}: shapes read right by shape {by_shape}, by background {by_background}")


if __name__ == "__main__":
    main()

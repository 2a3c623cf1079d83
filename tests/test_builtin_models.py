"""Latent-diffusion model files end to end: train a few steps, save, load
through the Checkpoint loader, encode a prompt, sample, decode."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from core.checkpoints import CheckpointError
from core.events import Step
from core.executor import ExecutionFailed, Executor
from core.models.builtin import load_ldm
from core.training.data import ShapesPool
from core.training.ldm_task import LDMTask
from core.training.trainer import TrainConfig, train
from core.training.vae_task import VAETask
from nodes import default_registry
from tests.stubs import chain


@pytest.fixture(scope="module")
def tiny_ldm(tmp_path_factory) -> Path:
    """An untrained-but-real shapes-ldm and its VAE, side by side."""
    folder = tmp_path_factory.mktemp("models")
    pool = ShapesPool.render(32, seed=0)
    quick = TrainConfig(steps=2, log_every=1, checkpoint_every=2)
    train(VAETask(pool, 4, "cpu"), quick, folder / "shapes-vae.safetensors")
    train(LDMTask(pool, 4, "cpu", folder / "shapes-vae.safetensors"), quick,
          folder / "shapes-ldm.safetensors")
    return folder / "shapes-ldm.safetensors"


def txt2img(model_path: str, steps: int = 3):
    return chain(
        ("checkpoint", "model.checkpoint", {"name": "file…", "path": model_path}),
        ("positive", "conditioning.encode", {"text": "a red circle"}),
        ("negative", "conditioning.encode", {"text": ""}),
        ("latent", "latent.empty", {"width": 64, "height": 64, "batch_size": 2}),
        ("schedule", "diffusion.schedule", {"spacing": "karras", "steps": steps}),
        ("sampler", "diffusion.sampler", {"sampler": "dpmpp_2m", "guidance": 3.0}),
        ("decode", "vae.decode", {}),
        ("save", "image.save", {}),
        links=[
            ("checkpoint", "model", "latent", "model"), ("checkpoint", "model", "sampler", "model"),
            ("checkpoint", "clip", "positive", "clip"), ("checkpoint", "clip", "negative", "clip"),
            ("positive", "conditioning", "sampler", "positive"),
            ("negative", "conditioning", "sampler", "negative"),
            ("schedule", "schedule", "sampler", "schedule"), ("latent", "latent", "sampler", "latent"),
            ("sampler", "latent", "decode", "latent"), ("checkpoint", "vae", "decode", "vae"),
            ("decode", "image", "save", "images"),
        ],
    )


def test_the_model_file_loads_as_model_clip_and_vae(tiny_ldm):
    loaded = load_ldm(str(tiny_ldm))
    assert loaded.model.parameterization == "ve" and loaded.model.latent_channels == 4
    assert loaded.model.downscale == 4 and loaded.vae.downscale == 4
    embeddings = loaded.clip.encode(["a red circle", ""])
    assert embeddings.shape == (2, 16, 64)
    latents = loaded.vae.encode(torch.rand(1, 3, 64, 64))
    assert latents.shape == (1, 4, 16, 16)
    assert loaded.vae.decode(latents).shape == (1, 3, 64, 64)


def test_txt2img_through_the_nodes(tiny_ldm):
    registry, _ = default_registry(plugins=False)
    steps = []
    result = Executor(registry).run(txt2img(str(tiny_ldm)), device="cpu",
                                    on_event=lambda e: isinstance(e, Step) and steps.append(e))
    images = result.outputs["save"]["images"]
    assert images.shape == (2, 3, 64, 64) and torch.isfinite(images).all()
    assert [s.index for s in steps] == [0, 1, 2]
    assert steps[0].x_t.shape == (2, 4, 16, 16)


def test_unknown_words_are_read_as_unk_with_a_warning(tiny_ldm, caplog):
    loaded = load_ldm(str(tiny_ldm))
    with caplog.at_level(logging.WARNING):
        ids = loaded.clip.tokenizer(["a purple dragon"])
    assert "'dragon'" in caplog.text
    assert ids[0, 3].item() == 3  # <unk>


def test_bad_model_files_fail_the_loader_node_with_the_file_named(tmp_path, tiny_ldm):
    registry, _ = default_registry(plugins=False)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(tiny_ldm.read_bytes()[:5000])
    with pytest.raises(ExecutionFailed, match="broken.safetensors"):
        Executor(registry).run(txt2img(str(broken)), device="cpu")
    with pytest.raises(CheckpointError, match="shapes-vae.safetensors: a .vae. file is not a backbone"):
        load_ldm(str(tiny_ldm.parent / "shapes-vae.safetensors"))
    with pytest.raises(ExecutionFailed, match="choose a model"):
        Executor(registry).run(txt2img(""), device="cpu")


def test_eval_and_train_commands(tiny_ldm, tmp_path, capsys):
    from app.cli.main import main

    grid = tmp_path / "grid.png"
    assert main(["eval", str(tiny_ldm), "--samples", "4", "--steps", "2", "--grid", str(grid),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| color |" in out and "| position |" in out and grid.exists()
    # which VAE decoded the pictures: the one beside the model file, named
    assert f"decoded by {tiny_ldm.parent / 'shapes-vae.safetensors'}" in out
    assert main(["eval", str(tmp_path / "none.safetensors"), "--device", "cpu"]) == 2
    assert "no such model file" in capsys.readouterr().err
    assert main(["train", "shapes-unicorn"]) == 2
    assert "trainable: shapes-vae, shapes-ldm" in capsys.readouterr().err

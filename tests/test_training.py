"""The training loop: EMA, checkpoints, exact resume, loss curves; the data."""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch

from core.training.data import ShapesPool, dropped_caption
from core.training.trainer import TrainConfig, learning_rate, train


class LineTask:
    """Fit y = 3x − 1 with one linear layer; export writes the EMA weights."""

    name = "line"

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(1, 1)
        self.exported: dict = {}

    def modules(self):
        return {"layer": self.layer}

    def loss(self, generator):
        x = torch.randn(32, 1, generator=generator)
        return ((self.layer(x) - (3 * x - 1)) ** 2).mean()

    def export(self, path: Path, modules, recipe):
        self.exported = {k: v.clone() for k, v in modules["layer"].state_dict().items()}
        self.recipe = recipe
        path.write_text("done")


def test_training_fits_and_exports_ema_weights(tmp_path):
    task = LineTask()
    train(task, TrainConfig(steps=300, lr=0.05, warmup=10, ema_decay=0.9, log_every=100,
                            checkpoint_every=100), tmp_path / "line.bin")
    assert task.exported["weight"].item() == pytest.approx(3, abs=0.05)
    assert task.exported["bias"].item() == pytest.approx(-1, abs=0.05)
    assert task.recipe["steps"] == 300
    assert (tmp_path / "line.loss.png").exists() and (tmp_path / "line.train.pt").exists()


def test_learning_rate_warms_up_then_stays_or_anneals_to_zero():
    constant = TrainConfig(steps=110, lr=1.0, warmup=10)
    cosine = TrainConfig(steps=110, lr=1.0, warmup=10, lr_decay="cosine")
    for config in (constant, cosine):
        assert learning_rate(config, 0) == pytest.approx(0.1)
        assert learning_rate(config, 9) == pytest.approx(1.0)
    assert learning_rate(constant, 109) == 1.0
    assert learning_rate(cosine, 10) == pytest.approx(1.0)
    assert learning_rate(cosine, 60) == pytest.approx(0.5)  # halfway down
    assert learning_rate(cosine, 110) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="unknown lr decay 'step'"):
        learning_rate(TrainConfig(steps=5, warmup=1, lr_decay="step"), 3)


def test_the_recipe_records_the_lr_decay(tmp_path):
    task = LineTask()
    train(task, TrainConfig(steps=20, lr=0.01, warmup=2, lr_decay="cosine", log_every=100),
          tmp_path / "line.bin")
    assert task.recipe["lr_decay"] == "cosine"


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path):
    config = dict(lr=0.01, warmup=5, ema_decay=0.9, log_every=100, checkpoint_every=20)
    whole = LineTask()
    train(whole, TrainConfig(steps=40, **config), tmp_path / "whole.bin")
    first = LineTask()
    train(first, TrainConfig(steps=20, **config), tmp_path / "part.bin")
    resumed = LineTask()
    train(resumed, TrainConfig(steps=40, **config), tmp_path / "part2.bin",
          resume=tmp_path / "part.train.pt")
    for key in whole.exported:
        assert torch.equal(whole.exported[key], resumed.exported[key])


def test_a_run_resumed_at_its_last_step_exports_the_loss_it_reached(tmp_path):
    """Resuming a finished run (to export it under a new step count) ran no
    step, and wrote final_loss None into the model file."""
    config = dict(lr=0.01, warmup=5, log_every=100, checkpoint_every=20)
    first = LineTask()
    train(first, TrainConfig(steps=20, **config), tmp_path / "part.bin")
    again = LineTask()
    train(again, TrainConfig(steps=20, **config), tmp_path / "again.bin",
          resume=tmp_path / "part.train.pt")
    assert again.recipe["steps"] == 20
    assert again.recipe["final_loss"] == pytest.approx(first.recipe["final_loss"])


def test_a_diverging_loss_stops_training(tmp_path):
    class Exploding(LineTask):
        def loss(self, generator):
            return self.layer.weight.sum() * float("nan")

    with pytest.raises(FloatingPointError, match="the loss became nan at step 0"):
        train(Exploding(), TrainConfig(steps=5), tmp_path / "x.bin")


def test_the_pool_and_caption_dropout():
    pool = ShapesPool.render(12, seed=3, pixels=32)
    assert pool.images.dtype == torch.uint8 and pool.images.shape == (12, 3, 32, 32)
    batch = pool.image_batch(torch.tensor([0, 5]))
    assert batch.min() >= -1 and batch.max() <= 1 and batch.shape == (2, 3, 32, 32)
    rng = random.Random(0)
    captions = [dropped_caption(pool.scenes[i % 12], rng) for i in range(600)]
    assert 0.05 < captions.count("") / 600 < 0.15
    full = [c for c in captions if c.count(" ") >= 10]
    assert full, "some captions keep every phrase"
    grammar = re.compile(r"^a( (small|large))?( \w+)? (circle|square|triangle)"
                         r"( at the (center|top left|top right|bottom left|bottom right))?"
                         r"( on a (black|white|gray) background)?$")
    assert all(c == "" or grammar.match(c) for c in captions)


def test_an_unknown_lr_decay_is_refused_before_the_pool_renders(tmp_path):
    from core.training.recipes import run_training

    with pytest.raises(ValueError, match="unknown lr decay 'step'"):
        run_training("shapes-flow", 1, 2, tmp_path / "x.safetensors", None, "cpu",
                     pool=10_000_000, lr_decay="step")

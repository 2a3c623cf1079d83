"""Pickled checkpoints: refused with the reason by default; when the user
allows them, read with torch.load(weights_only=True) only — a file that needs
more than tensors (code) is still refused, and the weights equal the
safetensors file's."""
from __future__ import annotations

import pickle

import pytest
import torch

from core.checkpoints import CheckpointError
from core.checkpoints.pickles import allow_pickles
from core.models.families.dispatch import load_any_checkpoint
from tests.layouts.files import tiny_sd1_checkpoint


@pytest.fixture
def sd1_pickle(tmp_path):
    made = tiny_sd1_checkpoint(tmp_path / "sd1.safetensors")
    path = tmp_path / "sd1.ckpt"
    torch.save({"state_dict": dict(made.tensors), "global_step": 10}, path)  # as training scripts save
    yield made, path
    allow_pickles(None)


def test_a_pickle_is_refused_with_the_reason_and_the_way_out(sd1_pickle):
    _, path = sd1_pickle
    allow_pickles(False)
    with pytest.raises(CheckpointError, match="arbitrary code.*--allow-pickle"):
        load_any_checkpoint(path)


def test_an_allowed_pickle_loads_the_same_weights(sd1_pickle):
    made, path = sd1_pickle
    allow_pickles(True)
    loaded = load_any_checkpoint(path)
    unet = loaded.model.denoiser.network.unet
    for key, value in made.models["unet"].state_dict().items():
        assert torch.equal(unet.state_dict()[key], value), key


class _Hostile:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_an_allowed_pickle_that_needs_code_is_still_refused(tmp_path, capsys):
    path = tmp_path / "hostile.pt"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": {"w": _Hostile()}}, handle)
    allow_pickles(True)
    try:
        with pytest.raises(CheckpointError, match="weights_only"):
            load_any_checkpoint(path)
    finally:
        allow_pickles(None)
    assert "this ran while loading" not in capsys.readouterr().out

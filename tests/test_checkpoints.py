"""Model files: safetensors with metadata; pickles and damaged files refused."""
from __future__ import annotations

import pytest
import torch

from core.checkpoints import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_keeps_tensors_and_metadata(tmp_path):
    tensors = {"unet.w": torch.randn(3, 4), "vae.b": torch.arange(5, dtype=torch.float16)}
    meta = {"name": "x", "components": {"unet": {"config": {"a": [1, 2]}}}}
    path = save_checkpoint(tmp_path / "m.safetensors", tensors, meta)
    loaded, metadata = load_checkpoint(path)
    assert metadata == meta
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickles_are_refused_without_being_opened(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="pickled checkpoints can run arbitrary code"):
        load_checkpoint(path)


def test_missing_damaged_and_foreign_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such model file"):
        load_checkpoint(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="without Diffusion Workbench metadata"):
        load_checkpoint(tmp_path / "plain.safetensors")
    good = save_checkpoint(tmp_path / "cut.safetensors", {"w": torch.zeros(1000)}, {"a": 1})
    good.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_checkpoint(good)

"""The training tasks for shapes-ddpm, -classifier, -flow, -controlnet, -clip and -palette, a
few steps each; time budgets, --init, VAE decoder-only fine-tuning and the
pool rendered by several worker processes."""
from __future__ import annotations

import shutil

import pytest
import torch

import core.training.data as data
from core.checkpoints import CheckpointError, load_checkpoint
from core.checkpoints.safetensors_io import component
from core.models.builtin import load_classifier, load_controlnet, load_model, load_noisy_clip
from core.training.data import ShapesPool
from core.training.recipes import MODELS_DIR, run_training


def quick(name, out, **options):
    return run_training(name, steps=2, batch=2, out=out, resume=None, device="cpu", pool=16,
                        models_dir=MODELS_DIR, **options)


@pytest.mark.parametrize("name, kind", [
    ("shapes-ddpm", "pixel"), ("shapes-classifier", "classifier"),
    ("shapes-flow", "flow"), ("shapes-controlnet", "controlnet"), ("shapes-clip", "clip"),
    ("shapes-palette", "palette")])
def test_each_task_trains_and_writes_a_loadable_file(tmp_path, name, kind):
    out = tmp_path / f"{name}.safetensors"
    assert quick(name, out) == out
    tensors, meta = load_checkpoint(out)
    assert meta["kind"] == kind and meta["name"] == name
    assert meta["recipe"]["steps"] == 2 and meta["recipe"]["batch"] == 2 and meta["recipe"]["pool"] == 16
    assert all(v.dtype == torch.float16 for v in tensors.values())
    assert (tmp_path / f"{name}.train.pt").exists() and (tmp_path / f"{name}.loss.png").exists()
    if kind == "pixel":
        loaded = load_model(str(out))
        assert loaded.model.denoiser.learned_variance and loaded.model.latent_channels == 3
    elif kind == "flow":
        shutil.copy(MODELS_DIR / "shapes-vae.safetensors", tmp_path)  # it names its VAE, beside it
        loaded = load_model(str(out))
        assert loaded.model.parameterization == "flow" and loaded.model.latent_channels == 4
    elif kind == "classifier":
        network, labels, _schedule = load_classifier(str(out))
        assert labels == {"shape": ["circle", "square", "triangle"],
                          "color": ["red", "orange", "yellow", "green", "blue", "purple"]}
    elif kind == "clip":
        clip = load_noisy_clip(str(out))
        assert clip.network.config["image"]["pooling"] == "spatial"
        assert clip.tokenizer.vocabulary[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
        assert clip.schedule.name == "cosine"
    elif kind == "palette":
        loaded = load_model(str(out))
        assert loaded.clip is None and meta["condition"]["kind"] == "luminance"
    else:
        assert meta["base"] == "shapes-ldm"
        load_controlnet(str(out))


def test_the_time_budget_stops_early_and_still_writes_the_file(tmp_path, capsys):
    out = tmp_path / "classifier.safetensors"
    run_training("shapes-classifier", steps=1000, batch=2, out=out, resume=None, device="cpu",
                 pool=8, max_seconds=0.3)
    _, meta = load_checkpoint(out)
    assert 1 <= meta["recipe"]["steps"] < 1000
    assert "time budget spent at step" in capsys.readouterr().err
    state = torch.load(out.with_suffix(".train.pt"), weights_only=True)
    assert state["step"] == meta["recipe"]["steps"]  # resumable from where it stopped
    load_classifier(str(out))


def test_a_missing_output_folder_is_made_before_training_not_at_the_first_checkpoint(tmp_path):
    """A run once trained 500 steps, then died saving its checkpoint into a
    folder that did not exist."""
    out = tmp_path / "new" / "folder" / "classifier.safetensors"
    assert quick("shapes-classifier", out) == out and out.exists()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ValueError, match="cannot write the model to"):
        quick("shapes-classifier", tmp_path / "file" / "classifier.safetensors")


def test_a_spent_budget_writes_the_untrained_model(tmp_path):
    out = tmp_path / "none.safetensors"
    run_training("shapes-classifier", steps=10, batch=2, out=out, resume=None, device="cpu",
                 pool=4, max_seconds=0)
    _, meta = load_checkpoint(out)
    assert meta["recipe"]["steps"] == 0 and meta["recipe"]["final_loss"] is None


def test_init_starts_from_the_files_weights(tmp_path):
    out = tmp_path / "tuned.safetensors"
    init = MODELS_DIR / "shapes-classifier.safetensors"
    run_training("shapes-classifier", steps=1, batch=2, out=out, resume=None, device="cpu",
                 pool=4, lr=1e-9, init=init)
    before, after = component(load_checkpoint(init)[0], "classifier"), \
        component(load_checkpoint(out)[0], "classifier")
    assert before.keys() == after.keys()
    close = [torch.allclose(before[k].float(), after[k].float(), atol=1e-3) for k in before]
    assert all(close)


def test_init_with_a_file_without_the_component_fails_naming_it(tmp_path):
    with pytest.raises(CheckpointError, match=r"shapes-vae\.safetensors: has no 'classifier' weights"):
        run_training("shapes-classifier", steps=1, batch=2, out=tmp_path / "x.safetensors",
                     resume=None, device="cpu", pool=4, init=MODELS_DIR / "shapes-vae.safetensors")


def test_init_with_another_models_weights_fails_naming_it(tmp_path):
    # shapes-ldm has a "unet" and a "text_encoder" too, but not shapes-ddpm's
    with pytest.raises(CheckpointError, match=r"shapes-ldm\.safetensors: its 'unet' weights do not "
                                              r"fit shapes-ddpm"):
        run_training("shapes-ddpm", steps=1, batch=2, out=tmp_path / "x.safetensors",
                     resume=None, device="cpu", pool=4, init=MODELS_DIR / "shapes-ldm.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_vae_decoder_only_keeps_the_encoder_and_the_scale(tmp_path):
    init = MODELS_DIR / "shapes-vae.safetensors"
    out = tmp_path / "shapes-vae.safetensors"
    run_training("shapes-vae", steps=2, batch=2, out=out, resume=None, device="cpu", pool=8,
                 init=init, decoder_only=True, lr=1e-2)
    (old, old_meta), (new, new_meta) = load_checkpoint(init), load_checkpoint(out)
    assert old.keys() == new.keys()
    kept = [k for k in old if k.startswith(("vae.encoder.", "vae.quant_conv."))]
    assert kept and all(torch.equal(old[k], new[k]) for k in kept)
    changed = [k for k in old if k.startswith("vae.decoder.") and not torch.equal(old[k], new[k])]
    assert changed, "the decoder learns"
    scale = lambda meta: meta["components"]["vae"]["config"]["scaling_factor"]  # noqa: E731
    assert scale(new_meta) == scale(old_meta)
    assert new_meta["recipe"]["decoder_only"] is True


def test_decoder_only_needs_init(tmp_path):
    with pytest.raises(ValueError, match="--decoder-only fine-tunes a VAE: give the file with --init"):
        run_training("shapes-vae", steps=1, batch=2, out=tmp_path / "v.safetensors", resume=None,
                     device="cpu", pool=2, decoder_only=True)


# -- the pool ---------------------------------------------------------------------------------
def same_pool(a: ShapesPool, b: ShapesPool) -> bool:
    return torch.equal(a.images, b.images) and torch.equal(a.outlines, b.outlines) \
        and a.scenes == b.scenes


def test_the_pool_is_the_same_whatever_the_worker_count(monkeypatch):
    monkeypatch.setattr(data, "CHUNK", 4)
    one = ShapesPool.render(10, seed=5, pixels=16, workers=1)
    two = ShapesPool.render(10, seed=5, pixels=16, workers=2)
    assert len(one) == 10 and one.images.shape == (10, 3, 16, 16) and one.outlines.shape == (10, 1, 16, 16)
    assert same_pool(one, two)
    assert one.scenes[:4] != one.scenes[4:8]  # chunks are not copies of each other
    # chunks are seeded by (seed, index): a smaller pool is a prefix of a bigger one
    prefix = ShapesPool.render(6, seed=5, pixels=16, workers=2)
    assert torch.equal(prefix.images, one.images[:6]) and prefix.scenes == one.scenes[:6]
    other = ShapesPool.render(10, seed=6, pixels=16)
    assert not torch.equal(other.images, one.images)


def test_eval_measures_clip_guidance_and_colourising(tmp_path, capsys):
    """``eval`` on a CLIP file runs CLIP guidance of shapes-ddpm and prints
    the retrieval table; on a Palette file it colourises held-out scenes."""
    from app.cli.main import main

    clip, palette = tmp_path / "clip.safetensors", tmp_path / "palette.safetensors"
    quick("shapes-clip", clip)
    quick("shapes-palette", palette)
    grid = tmp_path / "grid.png"
    assert main(["eval", str(clip), "--samples", "2", "--steps", "2", "--scale", "2",
                 "--grid", str(grid), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "shapes-ddpm + " in out and "(CLIP guidance, scale 2.0)" in out
    assert "| position |" in out and "| background |" in out and grid.exists()
    assert "nearest of the 540 full captions" in out and "| 900 |" in out
    assert main(["eval", str(palette), "--samples", "2", "--steps", "2", "--grid", str(grid),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "(colourising gray scenes)" in out and "mean IoU with the source's shape" in out
    assert "| background |" in out and "| size |" not in out

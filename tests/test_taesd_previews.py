"""Tiny (TAESD-class) preview decoders: both file layouts users hold, the
latent-scale convention, refusals of wrong files, and a run whose step
previews come from the tiny decoder while its image still comes from the VAE.

No real TAESD weights exist on the test machines: files are made from a
seeded, fully randomised diffusers ``AutoencoderTiny`` (the reference the
loaded decoder must reproduce).
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from core.checkpoints import CheckpointError
from core.models.taesd import TinyPreviewDecoder, load_tiny_decoder
from tests.layouts import randomize_


def tiny_autoencoder(channels: int = 4, seed: int = 0, **config):
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    return randomize_(AutoencoderTiny(latent_channels=channels, **config), seed)


def reference_pixels(autoencoder, latents, scale=1.0, shift=0.0):
    """What a diffusers pipeline shows: decode(z / scaling_factor + shift_factor) → [0, 1]."""
    with torch.no_grad():
        return ((autoencoder.decode(latents / scale + shift).sample + 1) / 2).clamp(0, 1)


def original_layout(autoencoder) -> dict[str, torch.Tensor]:
    """The taesd*_decoder file: nn.Sequential(Clamp, conv, ReLU, Block …), so
    diffusers' decoder.layers.N is the original's N + 1."""
    out = {}
    for key, tensor in autoencoder.state_dict().items():
        if key.startswith("decoder.layers."):
            index, rest = key[len("decoder.layers."):].split(".", 1)
            out[f"{int(index) + 1}.{rest}"] = tensor.contiguous()
    return out


def save(tensors, path):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def latents(channels, seed=1):
    return torch.randn(2, channels, 8, 8, generator=torch.Generator().manual_seed(seed)) * 1.5


def test_original_layout_keys_are_the_published_sequential_indices():
    """Pins the mapping to the published decoder: conv(C, 64) at 1 (0 is the
    weightless clamp), the first Block at 3, the last conv(64, 3) at 19."""
    keys = original_layout(tiny_autoencoder())
    assert keys["1.weight"].shape == (64, 4, 3, 3)
    assert "3.conv.0.weight" in keys and "0.weight" not in keys
    assert keys["19.weight"].shape == (3, 64, 3, 3)
    assert max(int(k.split(".")[0]) for k in keys) == 19


@pytest.mark.parametrize("channels", [4, 16])
def test_original_decoder_file_decodes_as_autoencoder_tiny(tmp_path, channels):
    reference = tiny_autoencoder(channels)
    file = save(original_layout(reference), tmp_path / "taesd_decoder.safetensors")
    tiny = load_tiny_decoder(file)
    assert tiny.latent_channels == channels and tiny.approximate
    z = latents(channels)
    pixels = tiny.decode(z)
    assert pixels.shape == (2, 3, 64, 64)
    assert pixels.std() > 0.01  # randomised weights give a non-trivial picture
    torch.testing.assert_close(pixels, reference_pixels(reference, z), atol=1e-6, rtol=0)


def test_diffusers_file_with_encoder_keys_decodes_as_autoencoder_tiny(tmp_path):
    reference = tiny_autoencoder(16, seed=3)
    file = save(reference.state_dict(), tmp_path / "taef1.safetensors")
    tiny = load_tiny_decoder(file)
    z = latents(16)
    assert (tiny.scaling_factor, tiny.shift_factor) == (1.0, 0.0)
    torch.testing.assert_close(tiny.decode(z), reference_pixels(reference, z), atol=1e-6, rtol=0)


def test_diffusers_folder_honours_its_config_scale_and_shift(tmp_path):
    reference = tiny_autoencoder(4, seed=4, scaling_factor=0.5, shift_factor=0.25)
    reference.save_pretrained(tmp_path / "taesd", safe_serialization=True)
    tiny = load_tiny_decoder(tmp_path / "taesd")
    assert (tiny.scaling_factor, tiny.shift_factor) == (0.5, 0.25)
    z = latents(4)
    torch.testing.assert_close(tiny.decode(z), reference_pixels(reference, z, 0.5, 0.25),
                               atol=1e-6, rtol=0)
    assert not torch.allclose(tiny.decode(z), reference_pixels(reference, z), atol=1e-3)


def test_scale_and_shift_arguments_override_the_default(tmp_path):
    reference = tiny_autoencoder(16, seed=5)
    file = save(original_layout(reference), tmp_path / "taesd3_decoder.safetensors")
    tiny = load_tiny_decoder(file, scaling_factor=1.5305, shift_factor=0.0609)
    z = latents(16)
    torch.testing.assert_close(tiny.decode(z), reference_pixels(reference, z, 1.5305, 0.0609),
                               atol=1e-6, rtol=0)


def test_an_sd_vae_file_is_refused_naming_the_file(tmp_path):
    from tests.layouts.files import tiny_vae_file

    vae = tiny_vae_file(tmp_path / "sd-vae.safetensors").path
    with pytest.raises(CheckpointError, match=r"sd-vae\.safetensors: .*full VAE"):
        load_tiny_decoder(vae)


def test_a_garbage_file_is_refused_naming_the_file(tmp_path):
    garbage = tmp_path / "taesd_decoder.safetensors"
    garbage.write_bytes(b"\x00\x01 this is not a safetensors file" * 10)
    with pytest.raises(CheckpointError, match=r"taesd_decoder\.safetensors: not a readable"):
        load_tiny_decoder(garbage)


def test_an_encoder_file_is_refused_with_the_reason(tmp_path):
    encoder = tiny_autoencoder().encoder.state_dict()
    file = save({k[len("layers."):]: v for k, v in encoder.items()},
                tmp_path / "taesd_encoder.safetensors")
    with pytest.raises(CheckpointError, match=r"taesd_encoder\.safetensors: .*encoder"):
        load_tiny_decoder(file)


def test_a_pickle_is_refused_unless_pickles_are_allowed(tmp_path):
    file = tmp_path / "taesd_decoder.pth"
    torch.save(original_layout(tiny_autoencoder()), file)
    with pytest.raises(CheckpointError, match=r"taesd_decoder\.pth"):
        load_tiny_decoder(file)


@pytest.mark.parametrize("damage, message", [
    (lambda t: t.pop("19.bias"), r"lacks 1 tensor\(s\): layers\.18\.bias"),
    (lambda t: t.__setitem__("3.conv.0.weight", torch.zeros(64, 64, 1, 1)),
     r"layers\.2\.conv\.0\.weight has shape"),
    (lambda t: t.__setitem__("20.weight", torch.zeros(3)), r"unexpected tensor"),
])
def test_a_damaged_decoder_file_is_refused_naming_file_and_tensor(tmp_path, damage, message):
    tensors = original_layout(tiny_autoencoder())
    damage(tensors)
    file = save(tensors, tmp_path / "taesd_decoder.safetensors")
    with pytest.raises(CheckpointError, match=r"taesd_decoder\.safetensors: .*" + message):
        load_tiny_decoder(file)


def test_node_refuses_a_decoder_for_other_latents(tmp_path):
    from core.values import DiffusionModel
    from nodes.previews import preview_decoder

    file = save(original_layout(tiny_autoencoder(4)), tmp_path / "taesd_decoder.safetensors")
    flux = DiffusionModel("Flux.1-dev", denoiser=None, parameterization="flow",
                          latent_channels=16)
    ctx = SimpleNamespace(device="cpu", dtype=torch.float32)
    with pytest.raises(CheckpointError, match=r"taesd_decoder\.safetensors: a 4-channel TAESD "
                                              r"cannot preview Flux\.1-dev's 16-channel latents"):
        preview_decoder(ctx, flux, str(file))


def test_node_keeps_the_exact_decoder_behind_the_tiny_one(tmp_path):
    from core.values import DiffusionModel
    from nodes.previews import preview_decoder

    file = save(original_layout(tiny_autoencoder(4)), tmp_path / "taesd_decoder.safetensors")
    vae = SimpleNamespace(decode=lambda z: z)
    model = DiffusionModel("sd", denoiser=None, parameterization="ve", latent_channels=4,
                           decoder=vae)
    ctx = SimpleNamespace(device="cpu", dtype=torch.float32)
    once = preview_decoder(ctx, model, str(file))
    twice = preview_decoder(ctx, once, str(file))
    assert isinstance(twice.decoder, TinyPreviewDecoder)
    assert once.decoder.exact is vae and twice.decoder.exact is vae  # never stacked
    assert model.decoder is vae  # the input model is left alone


# -- a run ------------------------------------------------------------------------------------
def ldm_workflow(tiny_path=None):
    from tests.stubs import chain

    nodes = [("checkpoint", "model.checkpoint", {"name": "shapes-ldm"}),
             ("positive", "conditioning.encode", {"text": "a large red circle"}),
             ("latent", "latent.empty", {"width": 32, "height": 32, "batch_size": 1}),
             ("schedule", "diffusion.schedule", {"spacing": "karras", "steps": 2}),
             ("sampler", "diffusion.sampler", {"sampler": "euler", "seed": 0}),
             ("decode", "vae.decode", {}), ("save", "image.save", {})]
    source = "checkpoint"
    links = []
    if tiny_path is not None:
        nodes.append(("tiny", "model.preview_decoder", {"path": str(tiny_path)}))
        links.append(("checkpoint", "model", "tiny", "model"))
        source = "tiny"
    links += [("checkpoint", "clip", "positive", "clip"),
              ("checkpoint", "model", "latent", "model"), (source, "model", "sampler", "model"),
              ("checkpoint", "vae", "decode", "vae"), ("latent", "latent", "sampler", "latent"),
              ("positive", "conditioning", "sampler", "positive"),
              ("schedule", "schedule", "sampler", "schedule"),
              ("sampler", "latent", "decode", "latent"), ("decode", "image", "save", "images")]
    return chain(*nodes, links=links)


def test_run_previews_steps_with_the_tiny_decoder_and_decodes_with_the_vae(tmp_path):
    from core.events import Step
    from core.executor import Executor
    from core.models.builtin import VAEHandle
    from nodes import default_registry

    file = save(original_layout(tiny_autoencoder(4, seed=7)), tmp_path / "taesd_decoder.safetensors")
    executor = Executor(default_registry(plugins=False)[0])
    events = []
    result = executor.run(ldm_workflow(file), on_event=events.append, device="cpu")
    steps = [e for e in events if isinstance(e, Step)]
    assert len(steps) == 2
    for step in steps:
        assert isinstance(step.extra["preview_decoder"], TinyPreviewDecoder)
        assert step.extra["preview_decoder"].source == file
        assert isinstance(step.extra["decoder"], VAEHandle)  # exact consumers keep the VAE
    image = result.outputs["save"]["images"]
    last = steps[-1].x0.float()  # Euler's last step lands on its x̂_0 (kept in fp16)
    vae, tiny = steps[-1].extra["decoder"], steps[-1].extra["preview_decoder"]
    torch.testing.assert_close(vae.decode(last), image, atol=0.02, rtol=0)
    preview = tiny.decode(last)  # 8× the latent; shapes-ldm's own VAE is 4×
    assert preview.shape == (1, 3, 64, 64) and image.shape == (1, 3, 32, 32)
    pooled = torch.nn.functional.avg_pool2d(preview, 2)
    assert (pooled - image).abs().mean() > 0.05  # the image is not TAESD's
    plain = executor.run(ldm_workflow(), device="cpu").outputs["save"]["images"]
    assert torch.equal(image, plain)  # the preview decoder changes previews only

    gui = pytest.importorskip("app.gui.previews", exc_type=ImportError)
    from core.previews import preview_rgb

    shown = gui.step_preview(steps[-1])  # what the run's worker hands the step view
    x0 = steps[-1].x0
    live = levels(shown.x0_images[0])
    assert abs(live - levels(gui.preview_images(tiny.decode(x0))[0])).max() <= 1  # batching ±1
    linear = levels(gui.preview_images(preview_rgb(x0, shown.latent_rgb))[0])
    assert live.shape != linear.shape  # 8× the latent, not the latent's own size
    assert shown.decoder is steps[-1].extra["decoder"]  # "Decode with VAE" stays the VAE


def levels(image):
    """A QImage's 8-bit pixel values as a flat int array."""
    import numpy as np

    return np.frombuffer(bytes(image.constBits()), np.uint8).astype(int)

"""The built-in image nodes, called directly and through the executor."""
from __future__ import annotations

import os

import pytest
import torch

from core.events import Step
from core.executor import Executor
from core.images import from_pil, save_png, to_pil
from nodes import default_registry
from nodes import images as image_nodes
from tests.stubs import chain


class Ctx:
    """A context that records steps, like the executor's."""

    def __init__(self):
        self.steps = []

    def step(self, index, total, **payload):
        self.steps.append((index, total, payload))


@pytest.mark.parametrize("pattern", image_nodes.PATTERNS)
def test_patterns_have_the_asked_size_and_range(pattern):
    image = image_nodes.make_pattern(None, pattern, 48, 32)
    assert image.shape == (1, 3, 32, 48)
    assert image.min() >= 0 and image.max() <= 1
    assert image.std() > 0.05, "a test pattern is not flat"
    assert torch.equal(image, image_nodes.make_pattern(None, pattern, 48, 32))


def test_checkerboard_cells_are_eight_pixels():
    image = image_nodes.make_pattern(None, "checkerboard", 32, 32)[0, 0]
    assert torch.equal(image[0, :8], torch.zeros(8)) or torch.equal(image[0, :8], torch.ones(8))
    assert image[0, 0] != image[0, 8] and image[0, 0] != image[8, 0]


def test_noise_is_seeded_and_has_the_asked_spread():
    gray = torch.full((1, 3, 64, 64), 0.5)
    a = image_nodes.add_noise(None, gray, 0.5, seed=1)
    assert torch.equal(a, image_nodes.add_noise(None, gray, 0.5, seed=1))
    assert not torch.equal(a, image_nodes.add_noise(None, gray, 0.5, seed=2))
    spread = ((a - 0.5) * 2).std().item()  # back in [-1, 1] units
    assert spread == pytest.approx(0.5, rel=0.05)
    expected = torch.randn((1, 3, 64, 64), generator=torch.Generator().manual_seed(1))
    assert torch.allclose((a * 2 - 1), 0.5 * expected, atol=1e-6), "noise drawn on the CPU from the seed"


def test_heat_diffusion_keeps_the_mean_smooths_and_reports_each_step():
    image = image_nodes.make_pattern(None, "checkerboard", 32, 32)
    ctx = Ctx()
    blurred = image_nodes.heat_diffusion(ctx, image, steps=30, rate=0.25)
    assert blurred.mean().item() == pytest.approx(image.mean().item(), abs=1e-5)
    assert blurred.std() < image.std() / 2
    assert [s[0] for s in ctx.steps] == list(range(30))
    assert torch.equal(ctx.steps[-1][2]["x_t"], blurred)


def test_blend_mixes_and_refuses_different_sizes():
    a, b = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert torch.allclose(image_nodes.blend(None, a, b, 0.25), torch.full_like(a, 0.25))
    with pytest.raises(ValueError, match="differ in shape"):
        image_nodes.blend(None, a, torch.ones(1, 3, 4, 5), 0.5)


def test_load_image_round_trips_and_names_bad_files(tmp_path):
    image = image_nodes.make_pattern(None, "rings", 16, 16)
    save_png(image[0], tmp_path / "rings.png")
    loaded = image_nodes.load_image(None, str(tmp_path / "rings.png"))
    assert loaded.shape == (1, 3, 16, 16)
    assert torch.allclose(loaded, image, atol=1 / 255)
    with pytest.raises(ValueError, match="no file chosen"):
        image_nodes.load_image(None, "")
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        image_nodes.load_image(None, str(tmp_path / "nowhere.png"))
    (tmp_path / "fake.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="not a readable image"):
        image_nodes.load_image(None, str(tmp_path / "fake.png"))


def test_gray_and_alpha_images_convert_both_ways():
    gray = torch.rand(1, 16, 8)
    assert to_pil(gray).mode == "L"
    rgba = torch.rand(4, 8, 8)
    assert to_pil(rgba).mode == "RGBA"
    assert from_pil(to_pil(rgba)).shape == (1, 4, 8, 8)
    assert from_pil(to_pil(gray)).shape == (1, 3, 16, 8)


def test_an_edited_file_is_read_again_but_an_unchanged_one_is_cached(tmp_path):
    registry, _ = default_registry(plugins=False)
    path = tmp_path / "in.png"
    save_png(torch.zeros(3, 8, 8), path)
    workflow = chain(("load", "image.load", {"path": str(path)}), ("save", "image.save", {}),
                     links=[("load", "image", "save", "images")])
    executor = Executor(registry)
    first = executor.run(workflow, device="cpu")
    assert executor.run(workflow, device="cpu").cached == ("save",)
    save_png(torch.ones(3, 8, 8), path)
    os.utime(path, ns=(1, 10**18))  # a clearly different modification time
    second = executor.run(workflow, device="cpu")
    assert "load" in second.executed
    assert first.outputs["save"]["images"].max() == 0
    assert second.outputs["save"]["images"].min() == 1


def test_heat_diffusion_streams_steps_through_the_executor():
    registry, _ = default_registry(plugins=False)
    workflow = chain(
        ("p", "image.pattern", {"width": 16, "height": 16}),
        ("blur", "image.heat_diffusion", {"steps": 4}),
        ("save", "image.save", {}),
        links=[("p", "image", "blur", "image"), ("blur", "image", "save", "images")],
    )
    steps = []
    Executor(registry).run(workflow, device="cpu",
                           on_event=lambda e: steps.append(e) if isinstance(e, Step) else None)
    assert [(s.node_id, s.index, s.total) for s in steps] == [("blur", i, 4) for i in range(4)]
    assert all(s.x_t.shape == (1, 3, 16, 16) for s in steps)


def test_shape_scene_draws_what_it_is_told():
    from core.evaluation.analyser import analyse

    result = image_nodes.shape_scene(None, "triangle", "green", "small", "bottom right", "black", 40.0, 64)
    reading = analyse(result["image"][0])
    assert (reading.shape, reading.color, reading.size, reading.position, reading.background) == (
        "triangle", "green", "small", "bottom right", "black")
    outline = result["outline"][0]
    assert outline.shape == (3, 64, 64) and 0.01 < (outline[0] > 0.5).float().mean() < 0.2


def test_join_row_lays_images_and_batches_side_by_side():
    a = torch.zeros(2, 3, 8, 4)
    b = torch.ones(1, 1, 8, 6)
    row = image_nodes.join_row(None, a, b, None, None)
    assert row.shape == (1, 3, 8, 14)
    assert row[..., :8].max() == 0 and row[..., 8:].min() == 1
    with pytest.raises(ValueError, match="different heights"):
        image_nodes.join_row(None, a, torch.ones(1, 3, 9, 4), None, None)


def test_join_row_writes_labels_under_the_pictures():
    """Issue 11, item 10: a comparison row says which picture is which."""
    a, b = torch.zeros(2, 3, 16, 64), torch.full((1, 3, 16, 64), 0.5)
    row = image_nodes.join_row(None, a, b, None, None, labels="euler, heun")
    assert row.shape == (1, 3, 16 + image_nodes.LABEL_STRIP, 192)
    assert torch.equal(row[0, :, :16, :128], torch.zeros(3, 16, 128))  # pictures untouched
    assert torch.equal(row[0, :, :16, 128:], b[0])
    strip = row[0, :, 16:]  # (3, strip, 192)
    assert strip[:, :, :64].max() > 0.8 and strip[:, :, 64:128].max() > 0.8  # two labels drawn
    assert strip[:, :, :64].ne(strip[:, :, 64:128]).any()  # different words
    assert strip[:, :, 128:].max() == 0  # the third picture has no label
    assert image_nodes.join_row(None, a, b, None, None, labels=" ").shape[-2] == 16


def test_rectangle_mask_covers_the_asked_fraction():
    mask = image_nodes.rectangle_mask(None, 64, 32, 0.25, 0.5, 0.75, 1.0)
    assert mask.shape == (1, 1, 32, 64)
    assert mask.sum() == 32 * 16 and mask[0, 0, 20, 20] == 1 and mask[0, 0, 10, 20] == 0
    with pytest.raises(ValueError, match="the rectangle is empty"):
        image_nodes.rectangle_mask(None, 64, 64, 0.5, 0.5, 0.5, 0.9)


def test_composite_keeps_the_base_outside_the_mask():
    base, overlay = torch.zeros(1, 3, 16, 16), torch.ones(2, 3, 16, 16)
    mask = image_nodes.rectangle_mask(None, 8, 8, 0.5, 0.0, 1.0, 1.0)  # right half, smaller
    out = image_nodes.composite(None, base, overlay, mask)
    assert out.shape == (2, 3, 16, 16)
    assert out[..., :7].max() == 0 and out[..., 9:].min() == 1
    with pytest.raises(ValueError, match="differ in size"):
        image_nodes.composite(None, base, torch.ones(1, 3, 8, 8), mask)

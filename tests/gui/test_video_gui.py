"""video.json in the GUI (issue 14): a video model's steps arrive as
filmstrips (every frame of the clip side by side), and the Images dock
shows each saved clip as one."""
from __future__ import annotations

import shutil

import pytest
import torch

from tests.gui.conftest import REPO
from tests.gui.steer_helpers import run, tiny


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    from core.paths import MODELS_DIR
    from core.training.clips import ClipPool
    from core.training.video_task import VideoTask

    folder = tmp_path_factory.mktemp("video-gui")
    shutil.copy(MODELS_DIR / "shapes-vae.safetensors", folder)
    task = VideoTask(ClipPool.render(2, seed=4), 2, "cpu", folder / "shapes-vae.safetensors")
    task.export(folder / "shapes-video.safetensors", task.modules(), {"steps": 0})
    return folder / "shapes-video.safetensors"


def open_video(window, video_file, frames: int) -> None:
    """video.json on the tiny model: ``frames`` frames, 2 steps, one clip."""
    assert window.open_path(REPO / "workflows" / "video.json")
    window.node("checkpoint").set_property("param_name", "file…")
    window.node("checkpoint").set_property("param_path", str(video_file))
    window.node("latent").set_property("param_frames", frames)
    tiny(window, steps=2, batch=1)


def test_video_steps_and_outputs_show_as_filmstrips(qtbot, window, video_file):
    open_video(window, video_file, frames=4)
    outcome = run(qtbot, window)
    assert outcome.status == "finished", outcome.message
    records = window.steer.history.steps(window.steer.timeline.current_track())
    assert len(records) == 2
    strip = records[1].x_t_images[0]
    assert (strip.width(), strip.height()) == (4 * 16, 16)  # 4 frames of 16×16 latents
    assert records[1].x0_images[0].width() == 64 and records[1].eps_images[0].width() == 64
    shown = window.gallery.entries[-1].image
    assert (shown.width(), shown.height()) == (4 * 64, 64)  # the decoded clip, 4 frames
    assert torch.is_tensor(records[1].tensors[0]) and records[1].tensors[0].ndim == 5


def test_the_frame_slider_picks_one_frame_of_a_video_step(qtbot, window, video_file):
    open_video(window, video_file, frames=4)
    assert run(qtbot, window).status == "finished"
    view = window.steer.step_view
    record = window.steer.history.steps(window.steer.timeline.current_track())[-1]
    view.show_step(record)
    assert not view.frame.isHidden() and view.frame.maximum() == 4
    whole = view.shown_images(0)[0]
    view.frame.setValue(3)
    assert view.frame_label.text() == "Frame: 3/4"
    picked = view.shown_images(0)[0]
    assert picked.width() == picked.height() == 128  # one 16×16 frame, enlarged 8×
    expected = record.x_t_images[0].copy(2 * 16, 0, 16, 16).scaled(128, 128)
    assert picked.convertToFormat(expected.format()) == expected
    view.frame.setValue(0)
    assert view.shown_images(0)[0].size() == whole.size()  # the filmstrip again


def test_the_frame_slider_hides_for_pictures(qtbot, window):
    assert window.open_path(REPO / "workflows" / "txt2img.json")
    tiny(window, steps=2, batch=1)
    assert run(qtbot, window).status == "finished"
    assert window.steer.step_view.frame.isHidden()


def test_the_images_dock_saves_a_clip_as_a_video_that_reopens_as_its_workflow(
        qtbot, window, video_file, tmp_path):
    from PIL import Image

    from core.workflow import load

    open_video(window, video_file, frames=3)
    assert run(qtbot, window).status == "finished"
    shown = window.images.shown
    assert shown.playback.frames == 3 and shown.playback.fps == 8.0
    gif = window.images.save_current(tmp_path / "clip.gif")
    with Image.open(gif) as picture:
        assert picture.n_frames == 3 and picture.size == (64, 64)
        picture.seek(2)
        last = picture.convert("RGB").getpixel((10, 10))
    strip = shown.image.pixelColor(2 * 64 + 10, 10)
    assert max(abs(a - b) for a, b in zip(last, (strip.red(), strip.green(), strip.blue()))) <= 24
    assert load(gif).nodes["latent"].params["frames"] == 3
    png = window.images.save_current(tmp_path / "strip.png")  # the filmstrip as a picture
    with Image.open(png) as picture:
        assert picture.size == (3 * 64, 64)

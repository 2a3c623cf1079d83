"""Video diffusion (issue 14): motion clips, the VIDEO value and its files,
the video nodes, the clip measurements, and a tiny trained video model run
through its workflow."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from core.data.motion import DIRECTIONS, MOTIONS, GROWTH, random_clip
from core.evaluation.video_eval import (
    VideoReport,
    evaluate_reference,
    held_out_clips,
    rendered,
    score_clips,
)
from core.video import Video, as_pictures, check_video, encode_video, save_video

WORKFLOW = Path(__file__).resolve().parents[1] / "workflows" / "video.json"


def test_every_clip_stays_inside_the_picture_and_moves_as_its_caption_says():
    rng = random.Random(0)
    seen = set()
    for _ in range(300):
        clip = random_clip(rng, frames=8)
        seen.add(clip.motion)
        assert clip.motion in clip.caption and clip.caption.startswith("a ")
        centres = clip.centres()
        for scene, (x, y) in zip(clip.scenes(), centres):
            half = scene.extent / 2
            assert half <= x <= 1 - half and half <= y <= 1 - half
        if clip.motion in DIRECTIONS:
            dx, dy = DIRECTIONS[clip.motion]
            moved = (centres[-1][0] - centres[0][0]) * dx + (centres[-1][1] - centres[0][1]) * dy
            assert moved > 0.1 and clip.first.size in clip.caption
        else:
            extents = [scene.extent for scene in clip.scenes()]
            assert (extents[0], extents[-1]) == (GROWTH if clip.motion == "growing" else GROWTH[::-1])
    assert seen == set(MOTIONS)


def test_the_video_vocabulary_keeps_the_still_ids_and_adds_the_motion_words():
    from core.models.text import shapes_vocabulary
    from core.training.video_task import video_vocabulary

    still, video = shapes_vocabulary(), video_vocabulary()
    assert video[:len(still)] == still
    assert {"moving", "up", "down", "growing", "shrinking"} <= set(video[len(still):])
    assert len(set(video)) == len(video)


def test_the_clip_scores_read_ground_truth_right_and_reversed_motion_wrong():
    reference = evaluate_reference(24, 8)
    assert reference.accuracy["color"] == 1 and reference.accuracy["shape"] == 1
    assert all(share == 1 for share, _ in reference.motion.values())
    assert reference.consistent == 1 and reference.centroid_error < 0.03
    clips = held_out_clips(24, 8)
    backwards = rendered(clips).flip(1)  # every clip played in reverse
    reversed_report = score_clips(VideoReport("reversed", 24), backwards, clips)
    assert all(share == 0 for share, _ in reversed_report.motion.values())
    assert reversed_report.accuracy["color"] == 1  # the frames themselves are still right
    assert reversed_report.centroid_error > reference.centroid_error


def test_video_files_carry_their_workflow_and_play_at_their_rate(tmp_path):
    from PIL import Image

    from core.workflow import dumps, load

    workflow = load(WORKFLOW)
    clip = torch.rand(6, 3, 16, 16)
    for suffix in ("gif", "webp"):
        path = save_video(clip, tmp_path / f"clip.{suffix}", 10.0, dumps(workflow))
        with Image.open(path) as picture:
            picture.seek(1)
            picture.load()  # WebP reports a frame's duration once it is decoded
            assert picture.n_frames == 6 and picture.info["duration"] == 100
        assert load(path).nodes.keys() == workflow.nodes.keys()  # opening it restores it
    import av

    path = save_video(clip[:, :, :15], tmp_path / "clip.mp4", 10.0, dumps(workflow))  # odd height
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.frames, stream.height) == (6, 16)
        assert json.loads(container.metadata["comment"])["format"] == "diffusion-workbench.workflow"
    with pytest.raises(ValueError, match="unknown video format 'avi'"):
        encode_video(clip, 8.0, "avi")


def test_a_damaged_animation_is_named_when_opened_as_a_workflow(tmp_path):
    from core.workflow import WorkflowFormatError, load

    (tmp_path / "bad.gif").write_bytes(b"GIF89a" + bytes(30))
    with pytest.raises(WorkflowFormatError, match="animation is damaged"):
        load(tmp_path / "bad.gif")
    save_video(torch.rand(2, 3, 8, 8), tmp_path / "plain.gif", 8.0)  # no workflow in it
    with pytest.raises(WorkflowFormatError, match="carries no Diffusion Workbench workflow"):
        load(tmp_path / "plain.gif")


def test_the_video_value_is_checked():
    check_video(Video(torch.rand(1, 4, 3, 8, 8), 12.0))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        check_video(Video(torch.rand(4, 3, 8, 8)))
    with pytest.raises(ValueError, match="frames a second"):
        check_video(Video(torch.rand(1, 4, 3, 8, 8), 0.0))
    with pytest.raises(ValueError, match="not a video"):
        check_video(torch.rand(1, 4, 3, 8, 8))


def test_views_of_a_video_latent_are_filmstrips():
    latents = torch.arange(2 * 3 * 1 * 2 * 2, dtype=torch.float32).reshape(2, 3, 1, 2, 2)
    strips = as_pictures(latents, lambda x: x.expand(-1, 3, -1, -1))  # (B·T, 1→3, 2, 2)
    assert strips.shape == (2, 3, 2, 6)
    assert torch.equal(strips[1, 0, :, 2:4], latents[1, 1, 0])  # clip 1, frame 1, in the middle
    pictures = torch.rand(2, 4, 8, 8)
    assert as_pictures(pictures, lambda x: x[:, :3]).shape == (2, 3, 8, 8)


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory):
    """shapes-video trained for one step on 4 clips, with shapes-vae beside it."""
    import shutil

    from core.paths import MODELS_DIR
    from core.training.clips import ClipPool
    from core.training.video_task import VideoTask

    folder = tmp_path_factory.mktemp("video")
    shutil.copy(MODELS_DIR / "shapes-vae.safetensors", folder)
    pool = ClipPool.render(4, seed=2)
    assert pool.frames.shape == (4, 8, 3, 64, 64) and pool.frames.dtype == torch.uint8
    task = VideoTask(pool, 2, "cpu", folder / "shapes-vae.safetensors")
    assert torch.isfinite(task.loss(torch.Generator().manual_seed(0)))
    task.export(folder / "shapes-video.safetensors", task.modules(), {"steps": 1})
    return folder / "shapes-video.safetensors"


def test_the_video_model_loads_and_samples_clips(tiny_video):
    from core.evaluation.video_eval import generate_clips
    from core.models.builtin import load_model

    loaded = load_model(str(tiny_video))
    assert loaded.model.frames == 8 and loaded.model.parameterization == "flow"
    clips = generate_clips(loaded, ["a red circle moving left"], 4, 2, 3.0, 0, "cpu")
    assert clips.shape == (1, 4, 3, 64, 64)  # other frame counts work too (3-D sincos positions)


def test_the_video_nodes_refuse_the_wrong_kind_of_latent(tiny_video):
    from core.latent_sizes import LatentSizeError, check_latent
    from core.models.builtin import load_model
    from nodes.latents import empty_latent
    from nodes.video import empty_video_latent

    video = load_model(str(tiny_video)).model
    image = load_model("shapes-ldm").model
    assert empty_video_latent(None, video, 5, 64, 32, 2).samples.shape == (2, 5, 4, 8, 16)
    with pytest.raises(ValueError, match="samples pictures, not videos"):
        empty_video_latent(None, image, 8, 64, 64, 1)
    with pytest.raises(LatentSizeError, match="is a video model"):
        empty_latent(None, video, 64, 64, 1)
    with pytest.raises(LatentSizeError, match="holds 8 frames"):
        check_latent(image, (1, 8, 4, 16, 16), "here")


def test_decode_save_and_filmstrip_nodes():
    from core.models.builtin import load_vae_handle
    from core.paths import MODELS_DIR
    from nodes.video import decode_video, save_video as save_node, video_to_images
    from core.values import Latent

    vae, _ = load_vae_handle(MODELS_DIR / "shapes-vae.safetensors")
    video = decode_video(None, vae, Latent(torch.randn(2, 3, 4, 16, 16)), 6.0)
    assert video.frames.shape == (2, 3, 3, 64, 64) and video.fps == 6.0
    assert save_node(None, video, "webp").container == "webp"
    with pytest.raises(ValueError, match="unknown video format"):
        save_node(None, video, "mov")
    assert video_to_images(None, video, "filmstrip").shape == (2, 3, 64, 192)
    assert video_to_images(None, video, "frames").shape == (6, 3, 64, 64)
    with pytest.raises(ValueError, match="not a video latent"):
        decode_video(None, vae, Latent(torch.randn(2, 4, 16, 16)), 6.0)


def test_the_video_workflow_writes_clips_that_reopen_as_the_workflow(tiny_video, tmp_path, capsys):
    from app.cli.main import main
    from core.workflow import load

    assert main(["run", str(WORKFLOW), "--out", str(tmp_path), "--device", "cpu",
                 "--set", "checkpoint.name=file…", "--set", f"checkpoint.path={tiny_video}",
                 "--set", "schedule.steps=2", "--set", "latent.batch_size=1",
                 "--set", "save.container=webp"]) == 0
    written = [Path(p) for p in capsys.readouterr().out.split()]
    assert [p.name for p in written] == ["save_0.webp"]
    reopened = load(written[0])
    assert reopened.nodes["save"].params["container"] == "webp"
    assert reopened.nodes["latent"].type == "latent.empty_video"

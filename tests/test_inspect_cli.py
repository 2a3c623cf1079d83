"""``diffusion-workbench inspect``: the sentence and table, --json, exit codes, --models-dir."""
from __future__ import annotations

import json

import pytest

from app.cli.main import main
from core.checkpoints import library
from tests.test_detect import FILES, raw_file, sparse_file


@pytest.fixture(autouse=True)
def no_models_dirs(monkeypatch):
    monkeypatch.delenv(library.ENV_VAR, raising=False)
    library.set_models_dirs(None)
    yield
    library.set_models_dirs(None)


def test_a_recognised_file_prints_sentence_and_table(tmp_path, capsys):
    path = sparse_file(tmp_path / "sdxl.safetensors", FILES["sdxl"])
    assert main(["inspect", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0].startswith("An SDXL base checkpoint (original layout) holding the U-Net")
    table = {line.split()[0]: line.split(None, 1)[1].strip() for line in lines[1:]}
    assert table["family"] == "sdxl"
    assert table["components"] == "unet, vae, text_encoder, text_encoder_2"
    assert table["dtype"] == "float16"
    assert table["size"].endswith(f"({path.stat().st_size:,} bytes)")


def test_choices_are_shown(tmp_path, capsys):
    path = sparse_file(tmp_path / "sd2.safetensors", FILES["sd2"])
    assert main(["inspect", str(path)]) == 0
    assert "choose prediction  epsilon | v_prediction" in capsys.readouterr().out


def test_json_output_is_the_detection(tmp_path, capsys):
    a = sparse_file(tmp_path / "a.safetensors", FILES["flux_dev"])
    b = sparse_file(tmp_path / "b.safetensors", FILES["vae_sd"])
    assert main(["inspect", "--json", str(a), str(b)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["family"], d["variant"]) for d in data] == [("flux", "dev"), ("vae", "4-channel")]
    assert data[1]["needs_choice"] == {"vae_kind": ["sd", "sdxl"]}
    assert data[0]["recognised"] is True and data[0]["description"].startswith("A Flux.1")


def test_an_unknown_file_exits_2_with_a_sentence(tmp_path, capsys):
    path = sparse_file(tmp_path / "x.safetensors", {"foo.weight": (3, 3)})
    assert main(["inspect", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "whose keys start with `foo.`" in out
    assert err.startswith(f"error: {path}: not a kind of model")


def test_a_bad_file_exits_2_without_traceback_and_the_rest_still_print(tmp_path, capsys):
    bad = raw_file(tmp_path / "bad.safetensors", b'{"a": 1', 0)
    good = sparse_file(tmp_path / "good.safetensors", FILES["clip_l"])
    assert main(["inspect", str(bad), str(good)]) == 2
    out, err = capsys.readouterr()
    assert f"error: {bad}: the header is not valid JSON" in err
    assert "Traceback" not in err and "CLIP-L text encoder" in out


def test_a_pickle_exits_2_and_says_why(tmp_path, capsys):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"\x80\x04never unpickled")
    assert main(["inspect", str(path)]) == 2
    assert "refused unless allowed" in capsys.readouterr().err


def test_models_dir_option_finds_display_names(tmp_path, capsys):
    (tmp_path / "loras").mkdir()
    sparse_file(tmp_path / "loras" / "style.safetensors", FILES["lora_kohya_sd1"])
    assert main(["--models-dir", str(tmp_path), "inspect", "loras/style.safetensors"]) == 0
    assert "A LoRA for SD 1.x" in capsys.readouterr().out
    assert library.models_dirs() == [tmp_path]
    assert main(["inspect", "loras/missing.safetensors"]) == 2
    assert "not found in the models folders" in capsys.readouterr().err


def test_train_keeps_its_own_models_dir_option():
    from app.cli.main import build_parser

    args = build_parser().parse_args(["--models-dir", "A", "train", "shapes-ldm", "--models-dir", "B"])
    assert (str(args.global_models_dirs[0]), str(args.models_dir)) == ("A", "B")

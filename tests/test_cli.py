"""The command line: --set, exit codes, written images, Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from app.cli.main import main
from app.cli.overrides import OverrideError, apply_overrides, parse_override
from core.workflow import Node, dumps, load, save
from nodes import default_registry
from tests.stubs import chain

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "workflows" / "heat_diffusion.json"


# -- --set parsing ------------------------------------------------------------
@pytest.mark.parametrize(
    "text, node, param, raw",
    [
        ("blur.steps=5", "blur", "steps", "5"),
        ("Add noise.seed=3", "Add noise", "seed", "3"),
        ("v1.2 model.name=a=b", "v1.2 model", "name", "a=b"),
        ("save.prefix=", "save", "prefix", ""),
    ],
)
def test_parse_override_splits_at_the_last_dot_before_equals(text, node, param, raw):
    override = parse_override(text)
    assert (override.node, override.param, override.raw) == (node, param, raw)


@pytest.mark.parametrize("text", ["blur.steps", "steps=5", ".steps=5", "blur.=5"])
def test_parse_override_refuses_malformed_text(text):
    with pytest.raises(OverrideError, match="NODE.PARAM=VALUE"):
        parse_override(text)


@pytest.fixture
def catalogue():
    registry, problems = default_registry(plugins=False)
    assert problems == []
    return registry


def test_set_by_id_and_by_title_converts_types(catalogue):
    workflow = load(DEMO)
    changed = apply_overrides(workflow, catalogue, ["blur.steps=7", "Add noise.std=0.25"])
    assert changed.nodes["blur"].params["steps"] == 7
    assert changed.nodes["noise"].params["std"] == 0.25
    assert workflow.nodes["blur"].params["steps"] == 40, "the original is left alone"


def test_set_by_spec_title_when_the_node_has_no_title(catalogue):
    workflow = chain(("p", "image.pattern", {}), ("s", "image.save", {}),
                     links=[("p", "image", "s", "images")])
    changed = apply_overrides(workflow, catalogue, ["Test pattern.pattern=rings"])
    assert changed.nodes["p"].params["pattern"] == "rings"


@pytest.mark.parametrize(
    "override, message",
    [
        ("nowhere.steps=1", "no node has the id or title 'nowhere'"),
        ("blur.speed=1", "node 'blur' (Heat diffusion), field 'speed': no such parameter"),
        ("blur.steps=many", "'steps' needs an integer"),
        ("blur.steps=1.5", "'steps' needs an integer"),
        ("blur.rate=nan", "'rate' needs a finite number"),
        ("blur.steps=0", "node 'blur' (Heat diffusion), field 'steps': 0 is below the minimum"),
        ("blur.rate=0.5", "field 'rate': 0.5 is above the maximum"),
        ("pattern.pattern=stripes", "field 'pattern': 'stripes' is not one of"),
        ("blur.image=x", "field 'image': no such parameter"),
    ],
)
def test_bad_set_names_node_and_field(catalogue, override, message):
    with pytest.raises(OverrideError) as caught:
        apply_overrides(load(DEMO), catalogue, [override])
    assert message in str(caught.value)


def test_ambiguous_title_asks_for_an_id(catalogue):
    workflow = load(DEMO)
    workflow.nodes["pattern"].title = "Same"
    workflow.nodes["noise"].title = "Same"
    with pytest.raises(OverrideError, match="shared by nodes noise, pattern"):
        apply_overrides(workflow, catalogue, ["Same.seed=1"])


def test_set_on_a_linked_param_is_refused(registry):
    workflow = chain(
        ("a", "test.source", {}), ("b", "test.source", {}), ("o", "test.output", {}),
        links=[("a", "out", "o", "x")],
    )
    workflow.links.append(type(workflow.links[0])("b", "out", "a", "value"))
    with pytest.raises(OverrideError, match="fed by a link"):
        apply_overrides(workflow, registry, ["a.value=3"])


def test_booleans_parse_from_common_words():
    from app.cli.overrides import parse_value
    from core.nodespec import Input
    from core.ports import PortType

    flag = Input("flag", PortType.BOOLEAN, False)
    assert [parse_value(flag, w) for w in ("true", "Yes", "1", "off", "FALSE")] == [
        True, True, True, False, False]
    with pytest.raises(OverrideError, match="true or false"):
        parse_value(flag, "maybe")


# -- running ------------------------------------------------------------------
def test_run_writes_pngs_that_carry_the_workflow(tmp_path, capsys):
    code = main(["run", str(DEMO), "--out", str(tmp_path), "--set", "blur.steps=3",
                 "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "save_0.png")]
    restored = load(tmp_path / "save_0.png")
    expected = load(DEMO)
    expected.nodes["blur"].params["steps"] = 3
    assert dumps(restored) == dumps(expected)
    with Image.open(tmp_path / "save_0.png") as picture:
        assert picture.size == (128, 128) and picture.mode == "RGB"


def test_run_from_a_png_reproduces_the_same_pixels(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["run", str(DEMO), "--out", str(first), "--set", "blur.steps=2"]) == 0
    assert main(["run", str(first / "save_0.png"), "--out", str(second)]) == 0
    a = (first / "save_0.png").read_bytes()
    b = (second / "save_0.png").read_bytes()
    assert a == b


def test_every_image_of_a_batch_is_written(tmp_path, catalogue, monkeypatch):
    from app.cli import main as cli

    class Result:
        outputs = {"save": {"images": torch.rand(3, 3, 8, 8)}}

    workflow = load(DEMO)
    paths = cli.write_images(Result(), catalogue, workflow, tmp_path, dumps(workflow))
    assert [p.name for p in paths] == ["save_0.png", "save_1.png", "save_2.png"]


def test_help_prints_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "usage: diffusion-workbench" in capsys.readouterr().out


def test_no_arguments_opens_the_workbench_on_the_default_workflow(monkeypatch):
    import app.cli.main as cli

    seen = []
    monkeypatch.setattr(cli, "_cmd_gui", lambda args: seen.append(args) or 0)
    assert main([]) == 0
    assert seen[0].command == "gui"
    assert seen[0].file == cli.DEFAULT_WORKFLOW and seen[0].file.exists()


def test_nodes_lists_and_describes_the_catalogue(capsys):
    assert main(["nodes"]) == 0
    assert "image.heat_diffusion" in capsys.readouterr().out
    assert main(["nodes", "image.pattern"]) == 0
    assert "one of gradient, checkerboard" in capsys.readouterr().out
    assert main(["nodes", "image.nothing"]) == 2


# -- exit codes ---------------------------------------------------------------
def test_missing_file_exits_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_invalid_workflow_exits_2_naming_every_problem(tmp_path, capsys):
    workflow = load(DEMO)
    workflow.nodes["blur"].params["steps"] = -1
    workflow.add_node(Node("ghost", "plugin.gone"))
    workflow.connect("ghost", "image", "save", "images")
    save(workflow, tmp_path / "bad.json")
    assert main(["run", str(tmp_path / "bad.json"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "node 'ghost' (plugin.gone): unknown node type 'plugin.gone'" in err
    assert "node 'save' (Save image), field 'images': the link ghost.image -> save.images" not in err


def test_bad_set_exits_2(tmp_path, capsys):
    assert main(["run", str(DEMO), "--out", str(tmp_path), "--set", "blur.steps=0"]) == 2
    assert "field 'steps'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_exits_2(tmp_path, capsys):
    assert main(["run", str(DEMO), "--out", str(tmp_path), "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert main(["run", str(DEMO), "--out", str(tmp_path), "--device", "tpu"]) == 2


def test_failing_node_exits_1_naming_it(tmp_path, capsys):
    workflow = chain(("load", "image.load", {"path": str(tmp_path / "missing.png")}),
                     ("save", "image.save", {}), links=[("load", "image", "save", "images")])
    save(workflow, tmp_path / "wf.json")
    assert main(["run", str(tmp_path / "wf.json"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "node 'load' (Load image) failed: FileNotFoundError" in err
    assert "missing.png" in err


def test_ctrl_c_cancels_cleanly_with_status_130(tmp_path):
    """A long heat diffusion, interrupted once it runs: exit 130, no image written."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "run", str(DEMO), "--out", str(tmp_path),
         "--set", "blur.steps=10000", "--set", "pattern.width=1024",
         "--set", "pattern.height=1024"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell without job control starts background jobs with SIGINT ignored,
        # and children inherit that: give the CLI the default, as in a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = process.stderr.readline()
        assert line.startswith("running"), line
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "cancelled" in err
    assert not list(tmp_path.glob("*.png"))


# -- schedule -----------------------------------------------------------------
def test_schedule_prints_the_whole_table_as_csv(capsys):
    assert main(["schedule", "linear"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "t,beta,alpha_bar,sigma,snr"
    assert len(lines) == 1001
    t, beta, alpha_bar, sigma, snr = lines[1].split(",")
    assert t == "999" and float(beta) == pytest.approx(0.02)
    assert float(alpha_bar) == pytest.approx(4.0358297653756876e-05, rel=1e-12)
    assert float(snr) == pytest.approx(1 / float(sigma) ** 2)


def test_schedule_rows_for_sampling_steps(capsys):
    assert main(["schedule", "scaled_linear", "--steps", "10", "--spacing", "karras"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()[1:]]
    assert [round(float(r[3]), 4) for r in rows] == [
        14.6146, 9.1029, 5.4784, 3.1686, 1.7494, 0.9141, 0.4469, 0.2014, 0.0819, 0.0292]
    assert rows[1][1] == "", "no beta between timesteps"
    assert main(["schedule", "cosine", "--zero-snr", "--steps", "4", "--spacing", "trailing"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()[1:]]
    assert [r[0] for r in rows] == ["999", "749", "499", "249"]
    assert rows[0][2] == "0" and rows[0][3] == "inf"


@pytest.mark.parametrize("argv, message", [
    (["schedule", "wiggly"], "unknown schedule 'wiggly'"),
    (["schedule", "linear", "--steps", "0"], "steps must be between"),
    (["schedule", "linear", "--steps", "5", "--spacing", "odd"], "unknown spacing"),
])
def test_bad_schedule_requests_exit_2(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# -- invalid input never ends in a traceback (issue 12) ----------------------------
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_deeply_nested_workflow_exits_2(tmp_path, capsys):
    (tmp_path / "deep.json").write_text("[" * 1000 + "]" * 1000)
    assert main(["run", str(tmp_path / "deep.json"), "--out", str(tmp_path)]) == 2
    assert "nested deeper than" in _one_line_error(capsys)


def test_a_deep_value_in_a_valid_workflow_exits_2(tmp_path, capsys):
    text = DEMO.read_text().replace('"steps": 40', '"steps": ' + "[" * 500 + "]" * 500)
    (tmp_path / "deep.json").write_text(text)
    assert main(["run", str(tmp_path / "deep.json"), "--out", str(tmp_path)]) == 2
    assert "nested deeper than" in _one_line_error(capsys)


SURROGATES = "\ud800 \udcff"


def test_lone_surrogates_run_and_their_images_are_written(tmp_path):
    """The run worked, then writing the PNG raised UnicodeEncodeError: no images."""
    workflow = load(DEMO)
    workflow.nodes["blur"].title = f"Blur {SURROGATES}"
    save(workflow, tmp_path / "wf.json")
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "wf.json"), "--out", str(out), "--set", "blur.steps=2"]) == 0
    assert load(out / "save_0.png").nodes["blur"].title == f"Blur {SURROGATES}"


def test_a_written_path_that_stdout_cannot_encode_is_printed_escaped(tmp_path, monkeypatch):
    """An undecodable byte in --out arrives as a lone surrogate; a UTF-8
    stdout refused to print the written path after the images were written."""
    import io

    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    out = tmp_path / "out-\udcff"
    assert main(["run", str(DEMO), "--out", str(out), "--set", "blur.steps=1"]) == 0
    stdout.flush()
    assert stdout.buffer.getvalue().decode() == f"{tmp_path}/out-\\udcff/save_0.png\n"
    assert (out / "save_0.png").exists()


@pytest.mark.parametrize("option", ["--out", "--trajectory"])
@pytest.mark.parametrize("where", ["file", "inside a file"])
def test_an_unwritable_output_folder_exits_2_before_running(tmp_path, capsys, option, where):
    """The whole run happened, then a traceback: now nothing runs."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = blocker if where == "file" else blocker / "images"
    argv = ["run", str(DEMO), option, str(target), "--set", "blur.steps=1"]
    if option != "--out":
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert f"{option} {target}" in line and "not a folder" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_folder_without_permission_exits_2_before_running(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["run", str(DEMO), "--out", str(locked / "out")]) == 2
    assert "no permission" in _one_line_error(capsys)


def test_a_folder_the_system_refuses_exits_2_before_running(tmp_path, capsys, monkeypatch):
    """The same check where the tests run as root: the system's answer is what counts."""
    import app.cli.outputs

    monkeypatch.setattr(app.cli.outputs.os, "access", lambda path, mode: False)
    assert main(["run", str(DEMO), "--out", str(tmp_path / "out")]) == 2
    line = _one_line_error(capsys)
    assert f"no permission to write in {tmp_path}" in line
    assert not (tmp_path / "out").exists()


def test_a_write_failure_after_the_run_is_reported_not_raised(tmp_path, capsys, monkeypatch):
    import core.images

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(core.images, "save_png", full_disk)
    assert main(["run", str(DEMO), "--out", str(tmp_path), "--set", "blur.steps=1"]) == 1
    assert "writing its results failed" in _one_line_error(capsys)


def test_a_workflow_from_a_fifo_runs(tmp_path):
    """`run <(cat wf.json)`: the path was opened twice, which hung on a FIFO."""
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    text = DEMO.read_text()
    threading.Thread(target=lambda: fifo.write_text(text), daemon=True).start()
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(main(
        ["run", str(fifo), "--out", str(tmp_path / "out"), "--set", "blur.steps=1"])), daemon=True)
    runner.start()
    runner.join(timeout=30)
    if runner.is_alive():
        with open(fifo, "w"):
            pass
        pytest.fail("run did not return: the FIFO was opened twice")
    assert codes == [0] and (tmp_path / "out" / "save_0.png").exists()

"""Bypass and mute (ComfyUI's node modes): the file field, validation, what
runs, the cache, "run to here" and the command line — on the real catalogue."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.cli.main import main
from core.executor import Executor
from core.validation import ValidationError, errors_only
from core.workflow import Node, Workflow, dumps, load, loads, save
from nodes import default_registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def registry():
    return default_registry()[0]


def chain() -> Workflow:
    """checkerboard, rings -> blend -> heat diffusion -> save."""
    wf = Workflow()
    wf.add_node(Node("board", "image.pattern", params={"pattern": "checkerboard", "width": 16, "height": 16}))
    wf.add_node(Node("rings", "image.pattern", params={"pattern": "rings", "width": 16, "height": 16}))
    wf.add_node(Node("mix", "image.blend", title="Mix", params={"factor": 0.5}))
    wf.add_node(Node("blur", "image.heat_diffusion", title="Blur", params={"steps": 2}))
    wf.add_node(Node("save", "image.save"))
    wf.connect("board", "image", "mix", "a")
    wf.connect("rings", "image", "mix", "b")
    wf.connect("mix", "image", "blur", "image")
    wf.connect("blur", "image", "save", "images")
    return wf


def saved(result):
    return result.outputs["save"]["images"]


# -- the file field -------------------------------------------------------------
def test_mode_is_saved_only_when_not_normal_and_old_files_stay_byte_identical(tmp_path):
    for path in sorted((ROOT / "workflows").glob("*.json")):
        text = dumps(loads(path.read_text(encoding="utf-8")))
        assert dumps(loads(text)) == text, path.name
        assert all("mode" not in node for node in json.loads(text)["nodes"]), path.name
    wf = chain()
    wf.nodes["mix"].mode = "bypass"
    wf.nodes["blur"].mode = "mute"
    save(wf, tmp_path / "w.json")
    text = (tmp_path / "w.json").read_text()
    assert {n["id"]: n.get("mode") for n in json.loads(text)["nodes"]} == {
        "board": None, "rings": None, "mix": "bypass", "blur": "mute", "save": None}
    again = load(tmp_path / "w.json")
    assert {n.id: n.mode for n in again} == {
        "board": "normal", "rings": "normal", "mix": "bypass", "blur": "mute", "save": "normal"}
    assert again.copy().nodes["mix"].mode == "bypass"


def test_an_unknown_mode_loads_and_is_a_problem_naming_the_node(registry):
    wf = chain()
    wf.nodes["mix"].mode = "sleep"
    again = loads(dumps(wf))  # kept as it is: saving never loses it
    problems = errors_only(Executor(registry).validate(again))
    assert [(p.kind, p.node_id, p.node_title, p.field) for p in problems] == [
        ("bad_mode", "mix", "Mix", "mode")]
    assert "'sleep'" in problems[0].message
    with pytest.raises(ValidationError, match="unknown mode 'sleep'"):
        Executor(registry).run(again, device="cpu")


# -- bypass ----------------------------------------------------------------------
def test_a_bypassed_node_passes_its_first_input_of_the_same_type_through(registry):
    executor = Executor(registry)
    wf = chain()
    wf.nodes["blur"].mode = "bypass"
    result = executor.run(wf, device="cpu")
    assert "blur" not in result.executed
    mix = executor.run(wf, device="cpu", outputs=["mix"]).outputs["mix"]["image"]
    assert torch.equal(saved(result), mix)
    wf.nodes["mix"].mode = "bypass"  # a chain of two: save reads "board" (input a, not b)
    board = executor.run(wf, device="cpu", outputs=["board"]).outputs["board"]["image"]
    assert torch.equal(executor.run(wf, device="cpu").outputs["save"]["images"], board)


def test_a_bypass_with_no_matching_input_fails_validation_on_its_consumer(registry):
    wf = Workflow()
    wf.add_node(Node("empty", "latent.empty"))
    wf.add_node(Node("decode", "vae.decode"))
    wf.add_node(Node("save", "image.save"))
    wf.connect("empty", "latent", "decode", "latent")
    wf.connect("decode", "image", "save", "images")
    wf.nodes["decode"].mode = "bypass"
    problems = errors_only(Executor(registry).validate(wf))
    assert [(p.kind, p.node_id, p.field) for p in problems] == [
        ("bypass_unmatched", "save", "images")]
    assert problems[0].message == "bypassed 'VAE decode' has no IMAGE input to pass through"


# -- mute --------------------------------------------------------------------------
def test_a_muted_node_and_what_needs_it_do_not_run_and_outputs_are_skipped(registry):
    wf = chain()
    wf.add_node(Node("save_board", "image.save"))
    wf.connect("board", "image", "save_board", "images")
    wf.nodes["mix"].mode = "mute"
    result = Executor(registry).run(wf, device="cpu")
    assert set(result.executed) == {"board", "save_board"}
    assert set(result.outputs) == {"save_board"}
    assert set(result.skipped) == {"blur", "save"}
    assert result.skipped["save"] == "skipped: it needs the output of muted 'Mix'"
    assert [(w.kind, w.node_id) for w in result.warnings] == [("skipped", "save")]


def test_a_mute_drops_links_into_optional_inputs_only(registry):
    wf = chain()
    wf.add_node(Node("row", "image.join_row"))
    wf.connect("board", "image", "row", "a")
    wf.connect("mix", "image", "row", "b")  # optional
    wf.connect("row", "image", "save", "images")
    wf.nodes["mix"].mode = "mute"
    result = Executor(registry).run(wf, device="cpu")
    assert "row" in result.executed and saved(result).shape[-1] == 16


def test_a_run_whose_every_output_is_muted_says_so(registry):
    wf = chain()
    wf.nodes["blur"].mode = "mute"
    with pytest.raises(ValidationError, match="every output node is muted, bypassed or skipped"):
        Executor(registry).run(wf, device="cpu")
    wf.nodes["blur"].mode, wf.nodes["save"].mode = "normal", "mute"
    problems = errors_only(Executor(registry).validate(wf))
    assert [p.kind for p in problems] == ["no_output"]
    assert problems[0].message == ("every output node is muted, bypassed or skipped "
                                   "('Save image'), so nothing would run")


def test_a_muted_nodes_bad_params_do_not_block_the_run(registry):
    wf = chain()
    wf.add_node(Node("broken", "image.heat_diffusion", params={"steps": -5}, mode="mute"))
    wf.connect("mix", "image", "broken", "image")
    Executor(registry).run(wf, device="cpu")


# -- cache -------------------------------------------------------------------------
def test_changing_a_mode_invalidates_what_depends_on_it(registry):
    executor = Executor(registry)
    wf = chain()
    first = executor.run(wf, device="cpu")
    wf.nodes["blur"].mode = "bypass"
    second = executor.run(wf, device="cpu")
    assert "save" in second.executed and set(second.cached) == {"mix"}
    assert not torch.equal(saved(first), saved(second))
    wf.nodes["blur"].mode = "normal"
    third = executor.run(wf, device="cpu")
    assert third.executed == () and torch.equal(saved(third), saved(first))


# -- run to here ---------------------------------------------------------------------
def test_run_to_here_runs_only_what_the_node_needs_and_returns_its_values(registry):
    executor = Executor(registry)
    wf = chain()
    wf.nodes["save"].params["steps"] = 1  # a bad param downstream does not matter
    result = executor.run(wf, device="cpu", outputs=["mix"])
    assert set(result.executed) == {"board", "rings", "mix"}
    assert set(result.outputs) == {"mix"} and result.outputs["mix"]["image"].shape[-1] == 16
    with pytest.raises(ValueError, match="no node with id 'nope'"):
        executor.run(wf, device="cpu", outputs=["nope"])


# -- command line -----------------------------------------------------------------------
def test_cli_runs_a_workflow_with_a_bypassed_node(tmp_path, capsys):
    wf = chain()
    wf.nodes["blur"].mode = "bypass"
    wf.add_node(Node("save_blur", "image.save"))
    wf.add_node(Node("blur2", "image.heat_diffusion", params={"steps": 1}, mode="mute"))
    wf.connect("mix", "image", "blur2", "image")
    wf.connect("blur2", "image", "save_blur", "images")
    save(wf, tmp_path / "w.json")
    code = main(["run", str(tmp_path / "w.json"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (tmp_path / "out" / "save_0.png").exists()
    assert not (tmp_path / "out" / "save_blur_0.png").exists()
    assert "skipped: it needs the output of muted" in captured.err

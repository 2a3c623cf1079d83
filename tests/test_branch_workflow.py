"""Branching a run from step k as a workflow (core.workflow.branch)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.events import Step
from core.executor import Executor
from core.workflow import WorkflowError, dumps, load, loads
from core.workflow.branch import branch_at
from nodes import default_registry

TXT2IMG = Path(__file__).resolve().parents[1] / "workflows" / "txt2img.json"


@pytest.fixture(scope="module")
def workflow():
    flow = load(TXT2IMG)
    flow.nodes["schedule"].params["steps"] = 8
    flow.nodes["latent"].params["batch_size"] = 1
    return flow


def _run(executor, flow):
    steps: dict[str, list[Step]] = {}
    result = executor.run(flow, device="cpu", on_event=lambda e: isinstance(e, Step)
                          and steps.setdefault(e.node_id, []).append(e))
    return result, steps


def test_a_branch_shares_the_first_steps_bit_for_bit_and_differs_after(workflow):
    executor = Executor(default_registry(plugins=False)[0])
    _, original = _run(executor, workflow)
    branched, branch_id = branch_at(workflow, "sampler", 4, {"sampler": {"guidance": 8.0}})
    result, steps = _run(executor, branched)
    prefix = branched.ui["branches"][0]["prefix"]
    assert [s.index for s in steps[prefix]] == [0, 1, 2, 3]
    assert [s.index for s in steps[branch_id]] == [4, 5, 6, 7]
    for mine, theirs in zip(steps[prefix], original["sampler"]):
        assert torch.equal(mine.extra["state"], theirs.extra["state"])
    assert torch.equal(steps[branch_id][0].extra["state"], original["sampler"][4].extra["state"])
    assert not torch.equal(steps[branch_id][1].extra["state"], original["sampler"][5].extra["state"])
    assert "sampler" not in result.executed and "save" in result.cached  # original not rerun
    assert len([n for n in branched if n.type == "image.save"]) == 2  # A and B side by side


def test_a_changed_prompt_is_a_copy_of_the_prompt_node(workflow):
    branched, branch_id = branch_at(workflow, "sampler", 3,
                                    {"positive": {"text": "a small blue square"}})
    feeds = branched.links_into(branch_id)
    copy = branched.node(feeds["positive"].src_node)
    assert copy.id != "positive" and copy.params["text"] == "a small blue square"
    assert branched.links_into(copy.id)["clip"].src_node == "checkpoint"
    assert workflow.node("positive").params["text"] != "a small blue square"  # untouched
    again = loads(dumps(branched))  # the branch point survives saving
    assert again.ui["branches"][0]["step"] == 3 and again.node(branched.ui["branches"][0]["prefix"]
                                                                ).params["stop_at_step"] == 3


def test_impossible_branches_are_refused(workflow):
    with pytest.raises(WorkflowError, match="not a sampler"):
        branch_at(workflow, "decode", 3, {})
    with pytest.raises(WorkflowError, match="at least one step"):
        branch_at(workflow, "sampler", 0, {})
    with pytest.raises(WorkflowError, match="does not feed the sampler"):
        branch_at(workflow, "sampler", 3, {"save": {}})
    with pytest.raises(WorkflowError, match="cannot change denoise"):
        branch_at(workflow, "sampler", 3, {"sampler": {"denoise": 0.5}})


def test_a_changed_node_feeding_two_inputs_is_copied_once():
    flow = load(Path(__file__).resolve().parents[1] / "workflows" / "controlnet-outline.json")
    branched, branch_id = branch_at(flow, "sampler", 5, {"apply": {"strength": 0.3}})
    copies = [n for n in branched if n.type == "conditioning.controlnet" and n.id != "apply"]
    assert len(copies) == 1 and copies[0].params["strength"] == 0.3
    feeds = branched.links_into(branch_id)
    assert feeds["positive"].src_node == feeds["negative"].src_node == copies[0].id


def test_a_branch_shares_no_param_value_with_the_original(workflow):
    """Params were merged shallowly: a list in the branch's copy was the original's."""
    flow = workflow.copy()
    flow.nodes["sampler"].params["notes"] = ["kept"]  # an unknown param travels along as it is
    branched, branch_id = branch_at(flow, "sampler", 2, {"sampler": {"guidance": 8.0}})
    branched.nodes[branch_id].params["notes"].append("changed in the branch")
    assert branched.nodes["sampler"].params["notes"] == ["kept"]
    assert flow.nodes["sampler"].params["notes"] == ["kept"]

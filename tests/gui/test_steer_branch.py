"""Issue 6: branch from step 10 with another guidance scale; A/B; save the branch.
Issue 11, item 4: one numbering ("step k/N" = k steps done, on the timeline and
in the Branch dock), A/B in view at the default size, no branch after the last step."""
from __future__ import annotations

import torch
from PySide6 import QtCore

from core.workflow import load
from tests.gui.conftest import REPO, SCREENSHOTS
from tests.gui.steer_helpers import STEPS, run, settle, tiny

K = 10


def test_branch_from_step_10_shares_the_first_10_steps_bit_for_bit(qtbot, txt2img, tmp_path):
    window = txt2img
    tiny(window)
    steering = window.steer
    assert run(qtbot, window).status == "finished"
    original = steering.timeline.current_track()
    steering.timeline.scrub_to(K - 1)  # the K-th step: the timeline reads "step K/N"
    assert steering.timeline.info.text().startswith(f"step {K}/{STEPS}")
    panel = steering.branch_panel
    assert panel.point is not None and (panel.point.sampler_id, panel.point.step) == ("sampler", K)
    assert f"after step {K}/{STEPS}" in panel.where.text()
    assert f"steps {K + 1}–{STEPS}" in panel.where.text()
    assert panel.guidance.value() == 3.0
    panel.guidance.setValue(8.0)
    assert panel.changes() == {"sampler": {"guidance": 8.0}}
    outcome = run(qtbot, window, lambda: panel.request_run() or window.runner.running)
    assert outcome.status == "finished", outcome.message
    branch_run = steering.history.runs[-1]
    # the prefix and the branch that continues it are one trajectory: one track, steps 1…N
    chain = (branch_run, f"sampler_to_{K}")
    assert steering.history.samplers(chain) == [f"sampler_to_{K}", f"sampler_branch_{K}"]
    box = steering.timeline.track_box
    labels = {box.itemData(i): box.itemText(i) for i in range(box.count())}
    assert labels[chain] == f"run 2 · sampler_to_{K} → sampler_branch_{K}"
    prefix = [r for r in steering.history.steps(chain) if r.node_id == f"sampler_to_{K}"]
    branch = [r for r in steering.history.steps(chain) if r.node_id == f"sampler_branch_{K}"]
    first = steering.history.steps(original)
    assert [r.index for r in prefix] == list(range(K))
    assert [r.index for r in branch] == list(range(K, STEPS))
    # the shared part, bit for bit: every prefix step, and x at step K where the branch starts
    for a, b in zip(first[:K], prefix):
        assert torch.equal(a.state, b.state) and torch.equal(a.tensors[0], b.tensors[0])
    assert torch.equal(first[K].state, branch[0].state)
    assert torch.equal(first[K].tensors[0], branch[0].tensors[0])
    # and then it differs: another guidance gives another x̂0 at step K and another path after
    assert not torch.equal(first[K].tensors[1], branch[0].tensors[1])
    assert not torch.equal(first[K + 1].state, branch[1].state)
    # A/B side by side: the original's images (served from the cache) and the branch's
    a, b = panel.last.original, panel.last.branch
    assert len(a) == len(b) == 2 and a[0] != b[0]
    assert a == [image for node, image in window.runner.last_outcome.images if node == "save"]
    qtbot.wait(50)  # new labels are shown by a queued call
    panel.grab().save(str(SCREENSHOTS / "steer-branch.png"))
    # the A/B thumbnails are in the visible part of the Branch dock at the default size
    assert (window.width(), window.height()) == (1400, 860)
    assert window.docks["branch"].isVisible() and not window.visibleRegion().isEmpty()
    scroll = window.docks["branch"].widget()
    view = scroll.viewport().rect()
    for label in panel.result_labels + [panel.run_button]:
        shown = QtCore.QRect(label.mapTo(scroll.viewport(), QtCore.QPoint(0, 0)), label.size())
        assert view.contains(shown), (shown, view)
    window.grab().save(str(SCREENSHOTS / "gui-branch-ab.png"))
    # saved as its own workflow, with the branch point in it
    path = panel.save_branch(tmp_path / "branch.json")
    saved = load(path)
    assert saved.ui["branches"] == [{"sampler": "sampler", "step": K, "prefix": f"sampler_to_{K}",
                                     "branch": f"sampler_branch_{K}"}]
    assert saved.nodes[f"sampler_to_{K}"].params["stop_at_step"] == K
    assert saved.nodes[f"sampler_branch_{K}"].params["guidance"] == 8.0
    settle(qtbot, steering)


def test_no_branch_after_the_last_step(qtbot, txt2img):
    """At "step 3/3" nothing is left to rerun: the panel says so (it offered
    "after step 2"); after step 1 of 3 it branches."""
    window = txt2img
    tiny(window, steps=3, batch=1)
    steering = window.steer
    panel = steering.branch_panel
    assert run(qtbot, window).status == "finished"
    steering.timeline.scrub_to(2)
    assert steering.timeline.info.text().startswith("step 3/3")
    assert panel.point is None and not panel.run_button.isEnabled()
    assert "last step" in panel.where.text() and "nothing is left to branch" in panel.where.text()
    steering.timeline.scrub_to(0)
    assert panel.point is not None and panel.point.step == 1 and panel.run_button.isEnabled()
    assert "after step 1/3" in panel.where.text()


def test_branch_editors_follow_what_feeds_the_sampler(qtbot, window):
    from app.gui.branching import BranchPanel, branch_point

    workflow = load(REPO / "workflows" / "controlnet-outline.json")
    panel = BranchPanel()
    qtbot.addWidget(panel)
    panel.set_point(branch_point(workflow, "sampler", 3))
    controlnet = panel.point.controlnet_id
    assert controlnet is not None and panel.strength.isEnabled()
    assert panel.point.prompt_id is None and not panel.prompt.isEnabled()  # the prompt feeds the ControlNet
    panel.strength.setValue(0.25)
    panel.seed.setValue(5)
    assert panel.changes() == {"sampler": {"seed": 5}, controlnet: {"strength": 0.25}}
    branched = panel.build().workflow
    copies = [n for n in branched.nodes.values() if n.type == "conditioning.controlnet" and n.id != controlnet]
    # (branch_at copies a changed feeder once per link into the sampler: here 2, positive and negative)
    assert copies and all(n.params["strength"] == 0.25 for n in copies)
    assert workflow.nodes[controlnet].params.get("strength", 1.0) != 0.25  # the original is untouched
    # a prompt that feeds the sampler directly can be changed
    txt2img = load(REPO / "workflows" / "txt2img.json")
    panel.set_point(branch_point(txt2img, "sampler", 3))
    assert panel.prompt.isEnabled() and not panel.strength.isEnabled()
    panel.prompt.setText("a small blue square")
    assert panel.changes() == {"positive": {"text": "a small blue square"}}

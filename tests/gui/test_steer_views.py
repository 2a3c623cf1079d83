"""Issue 6: the schedule plot, the forward-process explorer, export, bounded history."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from PIL import Image

from app.gui.step_export import parse_steps
from app.gui.step_history import StepHistory
from tests.gui.conftest import REPO, SCREENSHOTS
from tests.gui.steer_helpers import STEPS, run, settle, tiny


def test_schedule_plot_marks_the_visited_timesteps(qtbot, txt2img):
    window = txt2img
    tiny(window)
    steering = window.steer
    assert run(qtbot, window).status == "finished"
    plot = steering.schedule_plot
    assert plot.curve_labels() == []  # hidden: nothing computed yet
    window.docks["schedule"].raise_()
    qtbot.waitUntil(lambda: bool(plot.curve_labels()), timeout=30_000)
    assert plot.curve_labels() == ["scaled_linear, T = 1000", "linear, T = 1000", "cosine, T = 1000"]
    records = steering.history.steps(steering.timeline.current_track())
    visited = plot.visited_timesteps()
    assert visited == pytest.approx([r.timestep for r in records if r.timestep >= 0])
    assert len(visited) == STEPS and visited[0] == pytest.approx(999.0)  # karras starts at σ_max
    steering.timeline.scrub_to(5)
    assert plot.highlighted_timestep() == pytest.approx(records[5].timestep)
    qtbot.wait(50)
    plot.grab().save(str(SCREENSHOTS / "steer-schedule-plot.png"))
    plot.reference.setChecked(False)
    settle(qtbot, steering)
    assert plot.curve_labels() == ["scaled_linear, T = 1000"]


def test_forward_explorer_closed_form_matches_the_chain(qtbot, window):
    explorer = window.steer.forward
    results = {}
    explorer.computed.connect(lambda r: results.__setitem__((r.mode, r.t, r.alpha_bar), r))
    window.docks["forward"].raise_()
    qtbot.waitUntil(lambda: explorer.image is not None, timeout=30_000)
    settle(qtbot, window.steer)
    explorer.schedule.setCurrentText("cosine")
    explorer.slider.setValue(400)
    for mode in ("closed form", "step by step"):
        explorer.mode.setCurrentText(mode)
        settle(qtbot, window.steer)
    closed = explorer_result(results, "closed form", 400)
    chain = explorer_result(results, "step by step", 400)
    from core.diffusion.schedules import make_schedule

    assert closed.alpha_bar == chain.alpha_bar == float(make_schedule("cosine").alphas_cumprod[400])
    theory = 1 - closed.alpha_bar
    for result in (closed, chain):  # x_t − √ᾱ x0 ~ N(0, 1 − ᾱ): 4 × 12,288 values each
        assert abs(result.mean) < 0.02 and result.variance == pytest.approx(theory, rel=0.03)
    assert chain.variance == pytest.approx(closed.variance, rel=0.04)
    assert abs(chain.mean - closed.mean) < 0.03
    assert closed.image != chain.image  # two different roads (different noise), same law
    assert "theory 1 − ᾱ_t" in explorer.numbers.text()
    qtbot.wait(50)
    explorer.grab().save(str(SCREENSHOTS / "steer-forward-explorer.png"))


def explorer_result(results, mode, t):
    return next(r for (m, step, _), r in results.items() if m == mode and step == t)


def test_export_writes_a_filmstrip_and_an_animation(qtbot, txt2img, tmp_path):
    window = txt2img
    tiny(window)
    steering = window.steer
    assert run(qtbot, window).status == "finished"
    written = []
    steering.export_to(tmp_path, "webp", written.extend)
    settle(qtbot, steering)
    strip, movie = written
    assert strip.name == "sampler-filmstrip.png" and movie.name == "sampler-denoising.webp"
    with Image.open(strip) as picture:
        assert picture.height > 2 * 2 * 64  # x_t and x̂0 rows for each of the 2 items
    with Image.open(movie) as picture:
        assert picture.n_frames >= STEPS  # every step (WebP merges the held last frames)
    Image.open(strip).save(SCREENSHOTS / "steer-filmstrip.png")
    chosen = []
    steering.export_to(tmp_path / "chosen", "gif", chosen.extend, steps=[1, 3, 12])
    settle(qtbot, steering)
    with Image.open(chosen[0]) as picture, Image.open(strip) as evenly:
        assert picture.width * 8 == evenly.width * 3  # three chosen columns, not eight


def test_the_steps_a_person_types_are_read_or_refused_with_a_reason():
    assert parse_steps("1, 5, 10-12") == [1, 5, 10, 11, 12]
    assert parse_steps("  ") is None
    with pytest.raises(ValueError, match="'x' is not a step number"):
        parse_steps("1, x")
    with pytest.raises(ValueError, match="steps count from 1"):
        parse_steps("0-3")


@dataclass
class _Record:
    run_id: str
    node_id: str
    index: int
    nbytes: int = 100


def test_history_is_bounded_and_drops_older_runs_first():
    history = StepHistory(budget_bytes=1000)
    for index in range(6):
        history.add(_Record("run1", "sampler", index))
    for index in range(4):
        history.add(_Record("run2", "sampler", index))
    assert history.runs == ["run1", "run2"] and history.nbytes == 1000
    history.add(_Record("run2", "sampler", 4))  # over budget: run 1 goes, whole
    assert history.runs == ["run2"] and len(history.steps(("run2", "sampler"))) == 5
    for index in range(5, 12):  # the newest run alone is too large: its oldest steps go
        history.add(_Record("run2", "sampler", index))
    kept = history.steps(("run2", "sampler"))
    assert [r.index for r in kept] == list(range(2, 12)) and history.nbytes == 1000
    assert history.dropped == 2
    history.set_budget(300)
    assert [r.index for r in history.steps(("run2", "sampler"))] == [9, 10, 11]


def test_step_previews_measure_their_memory(qtbot, txt2img):
    window = txt2img
    tiny(window)
    assert run(qtbot, window).status == "finished"
    history = window.steer.history
    record = history.steps(history.latest_track())[0]
    images = sum(i.sizeInBytes() for i in record.x_t_images + record.x0_images + record.eps_images)
    tensors = sum(t.nelement() * t.element_size() for t in (*record.tensors, record.state))
    assert record.nbytes == images + tensors > 0
    assert history.nbytes == STEPS * record.nbytes


def test_schedule_plot_follows_edits_of_the_graph(qtbot, txt2img):
    window = txt2img
    steering = window.steer
    window.docks["schedule"].raise_()
    steering.schedule_plot.reference.setChecked(False)
    qtbot.waitUntil(lambda: steering.schedule_plot.curve_labels() == ["scaled_linear, T = 1000"],
                    timeout=10_000)
    for name in ("cosine", "linear"):  # two edits in a row: each one is plotted
        window.node("schedule").set_property("param_name", name)
        qtbot.waitUntil(lambda: steering.schedule_plot.curve_labels() == [f"{name}, T = 1000"],
                        timeout=10_000)


def test_a_flow_schedule_is_plotted_by_its_snr():
    from app.gui.schedule_plot import FLOW_SPEC, compute_curves, schedule_specs
    from core.workflow import load

    workflow = load(REPO / "workflows" / "flow-matching.json")
    assert schedule_specs(workflow) == [FLOW_SPEC]
    (curve,) = compute_curves([FLOW_SPEC])
    middle = len(curve.x) // 2  # t = 1/2: signal and noise equal
    assert curve.x[middle] == pytest.approx(500) and curve.snr[middle] == pytest.approx(1)
    assert curve.alphas_cumprod[middle] == pytest.approx(0.5)

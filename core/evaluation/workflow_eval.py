"""Measuring a graph, not a model: how often a workflow draws what it is asked.

Systems made of several models (SDXL's base → refiner, a cascade) exist only
as a graph, so they are measured by running the graph the user runs: each
held-out caption goes into the prompt node, every sampler's seed changes per
caption, the empty latent makes ``per_prompt`` pictures, and the analyser
reads the output node's pictures attribute by attribute (as ``eval`` does
for one model). The executor's cache keeps the models loaded between runs.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from core.evaluation.evaluate import Report, held_out_prompts, save_grid, score

SAMPLER_TYPE = "diffusion.sampler"


def evaluate_workflow(executor, path, prompts: int, per_prompt: int, seed: int = 0,
                      changes: dict[tuple[str, str], Any] | None = None,
                      prompt_node: str = "positive", latent_node: str = "latent",
                      output_node: str = "save", grid: Path | None = None,
                      device: str = "cpu") -> Report:
    """Score ``path`` (a workflow file, or a loaded Workflow: left unchanged)
    on ``prompts`` held-out captions × ``per_prompt`` pictures, run by
    ``executor`` (core.executor.Executor over the node catalogue: the core
    cannot import it); ``changes`` sets (node, param) values first."""
    from core.workflow import load
    from core.workflow.model import Workflow

    workflow = path.copy() if isinstance(path, Workflow) else load(path)
    name = "workflow" if isinstance(path, Workflow) else Path(path).stem
    for (node_id, param), value in (changes or {}).items():
        _node(workflow, node_id).params[param] = value
    samplers = [n for n in workflow.nodes.values() if n.type == SAMPLER_TYPE]
    _node(workflow, latent_node).params["batch_size"] = per_prompt
    scenes = held_out_prompts(prompts, seed)
    images = []
    started = time.perf_counter()
    for index, scene in enumerate(scenes):
        _node(workflow, prompt_node).params["text"] = scene.caption
        for sampler in samplers:
            sampler.params["seed"] = seed * 100_003 + index
        result = executor.run(workflow, device=device, previews=False)
        images.append(result.outputs[output_node]["images"].float().cpu())
    pictures = torch.cat(images)
    first = samplers[0].params if samplers else {}
    report = Report(name, len(pictures), _steps(workflow), float(first.get("guidance", 0.0)),
                    " → ".join(str(s.params.get("sampler", "")) for s in samplers),
                    seconds_per_image=(time.perf_counter() - started) / max(len(pictures), 1))
    score(report, pictures, [s for s in scenes for _ in range(per_prompt)], per_prompt)
    if grid is not None:
        save_grid(pictures[:64], grid)
    return report


def _node(workflow, node_id: str):
    if node_id not in workflow.nodes:
        raise ValueError(f"the workflow has no node {node_id!r}; its nodes: "
                         f"{', '.join(sorted(workflow.nodes))}")
    return workflow.nodes[node_id]


def _steps(workflow) -> int:
    schedules = [n for n in workflow.nodes.values() if n.type == "diffusion.schedule"]
    return int(schedules[0].params.get("steps", 0)) if schedules else 0

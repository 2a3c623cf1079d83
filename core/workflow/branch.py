"""Branch a run at step k: the graph that continues a sampler from its k-th
step with other settings, beside the original.

The original sampler is left as it is (its result stays cached). Added:

- a *prefix* sampler, a copy of the original with ``stop_at_step = k``: it
  repeats steps 1…k with the same seed, so its x_k is the original's x_k bit
  for bit (same device), and hands it on as a noisy latent;
- the *branch* sampler, which continues from that latent with the changed
  settings (guidance, sampler, seed for the remaining noise, …);
- copies of the direct inputs whose params change (a new prompt is a copy
  of the prompt node with other text), and of everything downstream of the
  original sampler up to the output nodes, fed by the branch instead, so
  both results appear side by side.

The branch point is recorded in the graph itself (the prefix's
``stop_at_step``, and ``ui["branches"]``), so the saved workflow reruns it.
"""
from __future__ import annotations

import copy as copy_module
from typing import Any, Mapping

from core.workflow.model import Link, Node, Workflow, WorkflowError

SAMPLER_TYPE = "diffusion.sampler"
FIXED = ("stop_at_step", "denoise")  # what a branch cannot change: where it starts


def branch_at(workflow: Workflow, sampler_id: str, step: int,
              changes: Mapping[str, Mapping[str, Any]]) -> tuple[Workflow, str]:
    """A copy of ``workflow`` with a branch of ``sampler_id`` at ``step``;
    ``changes`` maps node ids (the sampler, or nodes feeding it directly) to
    new param values. Returns the new workflow and the branch sampler's id."""
    original = workflow.node(sampler_id)
    if original.type != SAMPLER_TYPE:
        raise WorkflowError(f"node {sampler_id!r} is not a sampler")
    if step < 1:
        raise WorkflowError("branch after at least one step (step ≥ 1)")
    stop = original.params.get("stop_at_step", 0) or 0
    if not isinstance(stop, int) or isinstance(stop, bool) or stop < 0:
        shown = repr(stop) if isinstance(stop, (str, int, float)) else f"a {type(stop).__name__}"
        raise WorkflowError(f"node {sampler_id!r}: its 'stop_at_step' must be a whole number "
                            f"0 or more to branch it (it is {shown}); fix that field first")
    if stop and step >= stop:
        raise WorkflowError(f"the sampler stops at step {stop}: branch before it")
    feeding = {link.src_node for link in workflow.links_into(sampler_id).values()}
    for node_id, params in changes.items():
        if node_id != sampler_id and node_id not in feeding:
            raise WorkflowError(f"node {node_id!r} does not feed the sampler directly")
        if node_id == sampler_id and set(params) & set(FIXED):
            raise WorkflowError(f"a branch cannot change {', '.join(sorted(set(params) & set(FIXED)))}")
    result = workflow.copy()
    prefix = _clone(result, original, f"{sampler_id}_to_{step}",
                    {"stop_at_step": step}, f"{_title(original)}: steps 1–{step}")
    branch = _clone(result, original, f"{sampler_id}_branch_{step}",
                    dict(changes.get(sampler_id, {})), f"{_title(original)}: branch at step {step}")
    changed: dict[str, str] = {}  # changed input node → its copy (one, however many links)
    for name, link in workflow.links_into(sampler_id).items():
        result.links.append(Link(link.src_node, link.src_output, prefix.id, name))
        source = link.src_node
        if source in changes and source != sampler_id:
            if source not in changed:
                changed[source] = _clone(result, workflow.node(source), f"{source}_branch_{step}",
                                         dict(changes[source]), None).id
                for inner, feed in workflow.links_into(source).items():
                    result.links.append(Link(feed.src_node, feed.src_output, changed[source], inner))
            source = changed[source]
        if name != "latent":
            result.links.append(Link(source, link.src_output, branch.id, name))
    result.links.append(Link(prefix.id, "latent", branch.id, "latent"))
    _copy_downstream(workflow, result, sampler_id, branch.id, step)
    result.ui.setdefault("branches", []).append(
        {"sampler": sampler_id, "step": step, "prefix": prefix.id, "branch": branch.id})
    return result, branch.id


def _title(node: Node) -> str:
    return node.title or "Sampler"


def _clone(workflow: Workflow, node: Node, stem: str, params: dict, title: str | None) -> Node:
    copy = Node(workflow.new_id(stem), node.type, node.version,
                title if title is not None else node.title,
                copy_module.deepcopy({**node.params, **params}))  # no list shared with the original
    return workflow.add_node(copy)


def _copy_downstream(source: Workflow, result: Workflow, start: str, replacement: str,
                     step: int) -> None:
    """Copy every node reachable downstream of ``start``, fed by ``replacement``."""
    copies = {start: replacement}
    pending = [start]
    while pending:
        current = pending.pop()
        for link in source.links_from(current):
            target = link.dst_node
            if target not in copies:
                node = source.node(target)
                copies[target] = _clone(result, node, f"{target}_branch_{step}", {},
                                        f"{node.title or node.type} (branch at step {step})").id
                pending.append(target)
    for link in source.links:
        if link.dst_node in copies and link.dst_node != start:
            src = copies.get(link.src_node, link.src_node)
            result.links.append(Link(src, link.src_output, copies[link.dst_node], link.dst_input))

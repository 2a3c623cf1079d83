"""Samplers that continue one another: SDXL's base → refiner as one run.

In SDXL's two-stage process (Podell et al. 2023, §2.5) the base sampler stops
after part of the steps (``stop_at_step``) and hands its latent, which
carries the step it reached, to a second sampler that finishes the same
schedule. To a person that is one denoising trajectory, so the timeline
shows such a chain as one track: :func:`sampler_chains` says which sampler
each continuing sampler belongs to. Links may pass through reroutes.
"""
from __future__ import annotations

from core.port_flow import origin_of
from core.registry import NodeRegistry
from core.workflow.model import Workflow

SAMPLER_TYPE = "diffusion.sampler"


def sampler_chains(workflow: Workflow, registry: NodeRegistry) -> dict[str, str]:
    """For each sampler that continues an earlier one, the first sampler of its chain."""
    feeds: dict[str, str] = {}
    for node_id, node in workflow.nodes.items():
        earlier = _continued_sampler(workflow, registry, node_id) if node.type == SAMPLER_TYPE else None
        if earlier is not None:
            feeds[node_id] = earlier
    chains = {}
    for node_id in feeds:
        first, seen = node_id, {node_id}
        while first in feeds and feeds[first] not in seen:  # a cycle is refused by validation
            first = feeds[first]
            seen.add(first)
        chains[node_id] = first
    return chains


def _continued_sampler(workflow: Workflow, registry: NodeRegistry, node_id: str) -> str | None:
    """The sampler whose early-stopped latent ``node_id`` takes in, if any."""
    feed = next((ln for ln in workflow.links if ln.dst_node == node_id and ln.dst_input == "latent"),
                None)
    if feed is None:
        return None
    source, output = origin_of(workflow, registry, feed.src_node, feed.src_output)
    node = workflow.nodes.get(source)
    if node is None or node.type != SAMPLER_TYPE or output != "latent":
        return None
    stops = node.params.get("stop_at_step", 0)
    return source if isinstance(stops, int) and not isinstance(stops, bool) and stops > 0 else None

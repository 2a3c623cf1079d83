"""SDXL's base → refiner hand-off as one trajectory: which samplers continue
which (core.workflow.chains), through reroutes, and only when the earlier
sampler stops early."""
from __future__ import annotations

from core.paths import WORKFLOWS_DIR
from core.workflow import load
from core.workflow.chains import sampler_chains
from core.workflow.model import Link, Node
from nodes import default_registry

REFINER = WORKFLOWS_DIR / "sdxl-base-refiner.json"


def _registry():
    return default_registry(plugins=False)[0]


def test_the_sdxl_refiner_continues_the_base_sampler():
    assert sampler_chains(load(REFINER), _registry()) == {"refiner_sampler": "base_sampler"}


def test_a_chain_is_followed_through_reroutes_and_to_its_first_sampler():
    workflow = load(REFINER)
    link = next(ln for ln in workflow.links if ln.dst_node == "refiner_sampler" and ln.dst_input == "latent")
    workflow.links.remove(link)
    workflow.nodes["dot"] = Node("dot", "util.reroute", 1, None, {})
    workflow.links += [Link("base_sampler", "latent", "dot", "value"),
                       Link("dot", "value", "refiner_sampler", "latent")]
    third = Node("third", "diffusion.sampler", 1, None, dict(workflow.nodes["refiner_sampler"].params))
    workflow.nodes["third"] = third
    workflow.nodes["refiner_sampler"].params["stop_at_step"] = 28
    workflow.links.append(Link("refiner_sampler", "latent", "third", "latent"))
    assert sampler_chains(workflow, _registry()) == {"refiner_sampler": "base_sampler",
                                                     "third": "base_sampler"}


def test_a_sampler_that_ran_to_the_end_starts_no_chain():
    workflow = load(REFINER)
    workflow.nodes["base_sampler"].params["stop_at_step"] = 0  # img2img from a finished latent
    assert sampler_chains(workflow, _registry()) == {}

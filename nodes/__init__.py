"""The node catalogue: one module per family, each a tuple of ``NodeSpec``.

Nothing here runs at import time beyond building those tuples.
``default_registry()`` is what the command line and the GUI use.
"""
from __future__ import annotations

from core.plugins import PluginProblem, load_plugins
from core.nodespec import NodeSpec
from core.registry import NodeRegistry


def builtin_specs() -> tuple[NodeSpec, ...]:
    """Every node type that ships with Diffusion Workbench."""
    from nodes import (conditioning, diffusion, flux, images, latents, loaders, lora, models,
                       previews, reroute, sdxl, unclip, vae, video)

    return (*images.NODES, *latents.NODES, *vae.NODES, *conditioning.NODES, *sdxl.NODES,
            *loaders.with_library_choices(loaders.NODES), *models.NODES, *lora.NODES,
            *flux.NODES, *previews.NODES, *diffusion.NODES, *unclip.NODES, *video.NODES,
            *reroute.NODES)


def default_registry(plugins: bool = True) -> tuple[NodeRegistry, list[PluginProblem]]:
    """The built-in catalogue plus installed plugins, and the plugins that failed."""
    registry = NodeRegistry(builtin_specs())
    problems = load_plugins(registry) if plugins else []
    return registry, problems

"""Third-party node packages, found through a Python entry-point group.

A plugin distribution declares, in its pyproject.toml::

    [project.entry-points."diffusion_workbench.nodes"]
    my_nodes = "my_package.nodes:NODES"

The entry point may name a NodeSpec, an iterable of NodeSpecs, or a callable
that takes the registry and registers its nodes. A plugin that fails to
import or to register is reported and skipped; it never stops the program.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Iterable

from core.nodespec import NodeSpec
from core.registry import NodeRegistry

ENTRY_POINT_GROUP = "diffusion_workbench.nodes"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not be loaded, and why."""

    plugin: str
    target: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} ({self.target}) was skipped: {self.message}"


def load_plugins(
    registry: NodeRegistry, entry_points: Iterable[Any] | None = None
) -> list[PluginProblem]:
    """Register every plugin's nodes into ``registry``; return what failed."""
    if entry_points is None:
        entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
    problems = []
    for entry_point in sorted(entry_points, key=lambda ep: ep.name):
        problem = _load_one(registry, entry_point)
        if problem:
            log.warning("%s", problem)
            problems.append(problem)
    return problems


def _load_one(registry: NodeRegistry, entry_point: Any) -> PluginProblem | None:
    source = f"plugin {entry_point.name!r}"
    try:
        target = entry_point.load()
        if isinstance(target, NodeSpec):
            specs = [target]
        elif callable(target):
            collector = _Collector()
            target(collector)
            specs = collector.specs
        else:
            specs = list(target)
        _register_all(registry, specs, source)
    except Exception as error:  # a broken plugin must never be fatal
        return PluginProblem(entry_point.name, entry_point.value, f"{type(error).__name__}: {error}")
    return None


def _register_all(registry: NodeRegistry, specs: list[Any], source: str) -> None:
    """Register all specs or none, so a half-registered plugin never appears."""
    for spec in specs:
        if not isinstance(spec, NodeSpec):
            raise TypeError(f"expected NodeSpec objects, got {type(spec).__name__}")
    staged = NodeRegistry(list(registry))
    for spec in specs:
        staged.register(spec, source)
    for spec in specs:
        registry.register(spec, source)


class _Collector:
    """What a plugin's ``register(registry)`` callable sees: specs are
    collected and registered together afterwards, all or none."""

    def __init__(self) -> None:
        self.specs: list[NodeSpec] = []

    def register(self, spec: NodeSpec, source: str | None = None) -> None:
        self.specs.append(spec)

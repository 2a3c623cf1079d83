"""The node registry: type id -> spec, passed explicitly to whoever needs it.

There is no global registry. ``nodes.default_registry()`` builds the usual
one (built-in catalogue plus plugins); tests build their own from stub specs.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from core.nodespec import NodeSpec


class DuplicateNodeType(ValueError):
    """Two specs claim the same type id or alias."""


class NodeRegistry:
    """Node specs by permanent type id, with aliases for renamed types."""

    def __init__(self, specs: Iterable[NodeSpec] = ()) -> None:
        self._specs: dict[str, NodeSpec] = {}
        self._by_any_id: dict[str, NodeSpec] = {}
        self._sources: dict[str, str] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: NodeSpec, source: str = "builtin") -> None:
        """Add ``spec``; refuse a type id or alias that is already taken."""
        for type_id in (spec.type_id, *spec.aliases):
            if type_id in self._by_any_id:
                owner = self._by_any_id[type_id].type_id
                raise DuplicateNodeType(
                    f"node type {type_id!r} from {source} is already registered "
                    f"by {owner!r} ({self._sources[owner]})"
                )
        self._specs[spec.type_id] = spec
        self._sources[spec.type_id] = source
        for type_id in (spec.type_id, *spec.aliases):
            self._by_any_id[type_id] = spec

    def get(self, type_id: str) -> NodeSpec | None:
        """The spec for a type id or one of its aliases, or None."""
        return self._by_any_id.get(type_id)

    def source(self, type_id: str) -> str | None:
        spec = self.get(type_id)
        return self._sources[spec.type_id] if spec else None

    def __contains__(self, type_id: object) -> bool:
        return type_id in self._by_any_id

    def __iter__(self) -> Iterator[NodeSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.type_id))

    def __len__(self) -> int:
        return len(self._specs)

    def by_category(self) -> dict[str, list[NodeSpec]]:
        """Specs grouped by category, both sorted, for palettes and help."""
        groups: dict[str, list[NodeSpec]] = {}
        for spec in self:
            groups.setdefault(spec.category, []).append(spec)
        return dict(sorted(groups.items()))

"""Declarative node specifications: a node is data plus one pure function.

A :class:`NodeSpec` holds no weights and runs nothing when it is created (the
habit of ComfyUI's V3 schemas and diffusers' modular blocks). The executor
calls ``spec.fn(ctx, **inputs)`` with the node's resolved inputs and a
:class:`~core.executor.context.NodeContext`.

Inputs of a primitive type (INT, FLOAT, STRING, BOOLEAN) are *parameters*:
they carry a default, are edited as widgets and are stored in the workflow.
Inputs of any other type are *sockets* that a link must feed unless they are
optional.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from core.ports import PortType

TYPE_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+\Z")
NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*\Z")

#: Widget hints the GUI understands; anything else is refused at definition time.
#: The largest seed a "seed" widget offers (torch generators take 64-bit seeds).
MAX_SEED = 2**63 - 1
WIDGETS = frozenset({"multiline", "seed", "file", "slider"})


class _Required:
    """Marks a socket input that has no default value."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class SpecError(ValueError):
    """A node specification is malformed (a bug in the node's declaration)."""


@dataclass(frozen=True)
class Input:
    """One input of a node: a parameter (primitive type) or a socket."""

    name: str
    type: PortType
    default: Any = REQUIRED
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | None = None
    tooltip: str = ""
    optional: bool = False
    widget: str | None = None
    #: (param, values): this parameter only matters while ``param`` is one of
    #: ``values`` (η for the samplers that take it); editors hide it otherwise.
    #: It is still stored, validated and passed on.
    shown_when: tuple[str, tuple[Any, ...]] | None = None

    @property
    def is_param(self) -> bool:
        return self.type.is_primitive

    def shown_for(self, params: Mapping[str, Any]) -> bool:
        """Whether an editor should show this parameter given the node's ``params``."""
        if self.shown_when is None:
            return True
        param, values = self.shown_when
        return params.get(param) in values

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is not acceptable for this input, or None."""
        kind = _type_problem(self.type, value)
        if kind:
            return kind
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not one of {', '.join(map(repr, self.choices))}"
        if self.min is not None and value < self.min:
            return f"{value!r} is below the minimum {self.min!r}"
        if self.max is not None and value > self.max:
            return f"{value!r} is above the maximum {self.max!r}"
        return None

    def coerce(self, value: Any) -> Any:
        """The value as the node function receives it (an INT-valued float stays a float)."""
        if self.type is PortType.FLOAT and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value


def _type_problem(port: PortType, value: Any) -> str | None:
    if port is PortType.INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"expected an integer, got {value!r}"
    if port is PortType.FLOAT:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        return None if ok else f"expected a number, got {value!r}"
    if port is PortType.STRING:
        return None if isinstance(value, str) else f"expected text, got {value!r}"
    if port is PortType.BOOLEAN:
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    return None


@dataclass(frozen=True)
class Output:
    """One output of a node."""

    name: str
    type: PortType
    tooltip: str = ""


NodeFunction = Callable[..., Any]
Migration = Callable[[Mapping[str, Any], int], dict]


@dataclass(frozen=True)
class NodeSpec:
    """Everything the engine and the GUI need to know about a node type.

    ``type_id`` is permanent once released: rename by adding the old id to
    ``aliases``. Bump ``version`` when params change meaning, and give a
    ``migrate(params, from_version) -> params`` that upgrades old files.
    ``is_output`` marks the nodes the executor pulls from. ``fingerprint``
    (optional) returns a string that changes when something outside the
    params changes the result, such as the modification time of a file.
    """

    type_id: str
    title: str
    category: str
    fn: NodeFunction
    inputs: tuple[Input, ...] = ()
    outputs: tuple[Output, ...] = ()
    version: int = 1
    description: str = ""
    is_output: bool = False
    aliases: tuple[str, ...] = ()
    migrate: Migration | None = None
    fingerprint: Callable[[Mapping[str, Any]], str] | None = None
    _inputs_by_name: dict[str, Input] = field(init=False, repr=False, compare=False)
    _outputs_by_name: dict[str, Output] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inputs_by_name", {i.name: i for i in self.inputs})
        object.__setattr__(self, "_outputs_by_name", {o.name: o for o in self.outputs})
        _check_spec(self)

    def input(self, name: str) -> Input | None:
        return self._inputs_by_name.get(name)

    def output(self, name: str) -> Output | None:
        return self._outputs_by_name.get(name)

    @property
    def params(self) -> tuple[Input, ...]:
        return tuple(i for i in self.inputs if i.is_param)

    @property
    def sockets(self) -> tuple[Input, ...]:
        return tuple(i for i in self.inputs if not i.is_param)

    def default_params(self) -> dict[str, Any]:
        return {i.name: i.default for i in self.params}


def _check_spec(spec: NodeSpec) -> None:
    where = f"node spec {spec.type_id!r}"
    for type_id in (spec.type_id, *spec.aliases):
        if not TYPE_ID_PATTERN.match(type_id):
            raise SpecError(f"{where}: type id {type_id!r} must look like 'family.name'")
    if spec.version < 1:
        raise SpecError(f"{where}: version must be 1 or more")
    if not callable(spec.fn):
        raise SpecError(f"{where}: fn is not callable")
    names = [i.name for i in spec.inputs] + [o.name for o in spec.outputs]
    for name in names:
        if not NAME_PATTERN.match(name):
            raise SpecError(f"{where}: port name {name!r} must be a lower-case identifier")
    if len(set(i.name for i in spec.inputs)) != len(spec.inputs):
        raise SpecError(f"{where}: two inputs share a name")
    if len(set(o.name for o in spec.outputs)) != len(spec.outputs):
        raise SpecError(f"{where}: two outputs share a name")
    for item in spec.inputs:
        _check_input(where, item)


def _check_input(where: str, item: Input) -> None:
    if not isinstance(item.type, PortType):
        raise SpecError(f"{where}: input {item.name!r} has unknown type {item.type!r}")
    if item.widget is not None and item.widget not in WIDGETS:
        raise SpecError(f"{where}: input {item.name!r} has unknown widget {item.widget!r}")
    if item.is_param:
        if item.default is REQUIRED:
            raise SpecError(f"{where}: parameter {item.name!r} needs a default")
        problem = item.check(item.default)
        if problem:
            raise SpecError(f"{where}: default of {item.name!r}: {problem}")
    elif item.default is not REQUIRED:
        raise SpecError(f"{where}: socket {item.name!r} cannot have a default")

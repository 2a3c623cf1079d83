"""Checking a workflow against the node registry before anything runs.

Every problem is reported at once, each naming the node (id and title) and
the field. Problems in nodes that feed no output node are warnings: those
nodes will not run, so a half-built branch on the canvas never blocks a run
(as in ComfyUI). Cycles and a graph with no output node are always errors.

Bypassed and muted nodes (:mod:`core.workflow.modes`) are resolved first and
the checks run on what will really execute: a muted node's bad params do not
block a run, an output skipped because of a mute is a warning, and a link
that a bypass cannot pass through is an error on the node that reads it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from core import graph, port_flow
from core.nodespec import NodeSpec
from core.ports import compatible
from core.registry import NodeRegistry
from core.workflow import jsondata, modes
from core.workflow.model import MODES, Node, Workflow

Severity = Literal["error", "warning"]

#: The closed set of problem kinds (the GUI keys its markers on them).
KINDS = frozenset({
    "unknown_type", "newer_version", "bad_link", "duplicate_link", "missing_input",
    "type_mismatch", "bad_value", "unknown_param", "cycle", "no_output",
    "bad_mode", "bypass_unmatched", "skipped",
})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow, and where."""

    kind: str
    message: str
    node_id: str | None = None
    node_title: str | None = None
    field: str | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = []
        if self.node_id is not None:
            where.append(f"node {self.node_id!r} ({self.node_title})")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class ValidationError(ValueError):
    """The workflow cannot run; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"the workflow is not valid:\n{lines}")


def display_title(node: Node, spec: NodeSpec | None) -> str:
    """What a person sees as the node's name."""
    if node.title:
        return node.title
    return spec.title if spec else node.type


def resolve_params(node: Node, spec: NodeSpec) -> dict[str, Any]:
    """The node's params brought to the spec's version, with defaults filled in."""
    params = dict(node.params)
    if node.version < spec.version and spec.migrate is not None:
        params = dict(spec.migrate(params, node.version))
    return {**spec.default_params(), **params}


def output_nodes(workflow: Workflow, registry: NodeRegistry) -> list[str]:
    """Ids of the nodes the executor pulls from (known output types)."""
    return sorted(
        n.id for n in workflow if (spec := registry.get(n.type)) is not None and spec.is_output
    )


def run_roots(workflow: Workflow, registry: NodeRegistry,
              outputs: list[str] | None = None) -> list[str]:
    """The nodes a run pulls from: ``outputs`` when given ("run to here"),
    else the output nodes; ``workflow`` is the mode-resolved document."""
    if outputs is None:
        return output_nodes(workflow, registry)
    return sorted(node_id for node_id in outputs if node_id in workflow.nodes)


def validate(workflow: Workflow, registry: NodeRegistry,
             outputs: list[str] | None = None) -> list[Problem]:
    """Every problem in ``workflow``; an empty list means it can run.
    ``outputs`` names the nodes to run to (default: the output nodes)."""
    problems = [_bad_mode(workflow, registry, node) for node in sorted(workflow, key=lambda n: n.id)
                if node.mode not in MODES]
    resolved = modes.resolve(workflow, registry)
    problems += _mode_problems(workflow, registry, resolved, outputs)
    original, workflow = workflow, resolved.workflow
    upstream = graph.upstream_edges(workflow.nodes, workflow.links)
    roots = run_roots(workflow, registry, outputs)
    needed = graph.pulled_from(roots, upstream)
    if not roots:
        problems.append(Problem("no_output", _no_output_message(original, registry, outputs)))
    for item in resolved.unmatched:
        node = workflow.nodes[item.node_id]
        severity = "error" if item.node_id in needed else "warning"
        problems.append(Problem("bypass_unmatched", item.message, node.id,
                                display_title(node, registry.get(node.type)), item.input, severity))
    unmatched = {(item.node_id, item.input) for item in resolved.unmatched}
    for group in graph.cycles(upstream):
        names = ", ".join(f"{i!r} ({_title(workflow, registry, i)})" for i in group)
        problems.append(Problem("cycle", f"these nodes feed each other in a loop: {names}"))
    for link in workflow.links:
        for problem in _check_link_ends(workflow, registry, link):
            if problem.node_id is not None and problem.node_id not in needed:
                problem = _with_severity(problem, "warning")
            problems.append(problem)
    links_into: dict[str, list] = {}
    for link in workflow.links:
        links_into.setdefault(link.dst_node, []).append(link)
    for node in sorted(workflow, key=lambda n: n.id):
        for problem in _check_node(workflow, registry, node, links_into.get(node.id, [])):
            if problem.kind == "missing_input" and (node.id, problem.field) in unmatched:
                continue  # already said: the bypass has nothing to pass through
            if node.id not in needed:
                problem = _with_severity(problem, "warning")
            problems.append(problem)
    return problems


def _bad_mode(workflow: Workflow, registry: NodeRegistry, node: Node) -> Problem:
    return Problem("bad_mode", f"unknown mode {node.mode!r} (the modes are {', '.join(MODES)})",
                   node.id, display_title(node, registry.get(node.type)), "mode")


def _mode_problems(workflow, registry, resolved, outputs) -> list[Problem]:
    """Skipped outputs (or skipped "run to here" targets), as warnings."""
    targets = set(outputs) if outputs is not None else set(output_nodes(workflow, registry))
    return [Problem("skipped", reason, node_id, modes.title_of(workflow, registry, node_id),
                    severity="warning")
            for node_id, reason in sorted(resolved.skipped.items()) if node_id in targets]


def _no_output_message(original: Workflow, registry, outputs) -> str:
    """Say why nothing would run: no output at all, or every one is muted or bypassed."""
    wanted = run_roots(original, registry, outputs)
    if wanted:
        names = ", ".join(repr(modes.title_of(original, registry, i)) for i in wanted)
        return f"every output node is muted, bypassed or skipped ({names}), so nothing would run"
    return "the workflow has no output node, so nothing would run"


def errors_only(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def _title(workflow: Workflow, registry: NodeRegistry, node_id: str) -> str:
    node = workflow.nodes[node_id]
    return display_title(node, registry.get(node.type))


def _with_severity(problem: Problem, severity: Severity) -> Problem:
    if problem.severity == severity:
        return problem
    return Problem(
        problem.kind, problem.message, problem.node_id, problem.node_title, problem.field, severity
    )


def _check_link_ends(workflow: Workflow, registry: NodeRegistry, link) -> list[Problem]:
    """A link to or from a node that does not exist, reported on the node at its
    other end (with that end's port as the field) where that node exists."""
    problems = []
    ends = (
        (link.src_node, link.dst_node, link.dst_input, "comes from"),
        (link.dst_node, link.src_node, link.src_output, "goes to"),
    )
    for missing, other_id, field, verb in ends:
        if missing in workflow.nodes:
            continue
        other = workflow.nodes.get(other_id)
        if other is None:
            problems.append(Problem("bad_link", f"the link {link} names a node that does not exist"))
        else:
            problems.append(Problem(
                "bad_link", f"the link {link} {verb} a node {missing!r} that does not exist",
                other.id, display_title(other, registry.get(other.type)), field,
            ))
    return problems


def _check_node(
    workflow: Workflow, registry: NodeRegistry, node: Node, links: list
) -> list[Problem]:
    spec = registry.get(node.type)
    title = display_title(node, spec)

    def problem(kind: str, message: str, field: str | None = None) -> Problem:
        return Problem(kind, message, node.id, title, field)

    if spec is None:
        return [problem("unknown_type", f"unknown node type {node.type!r} (is a plugin missing?)")]
    if node.version > spec.version:
        return [problem(
            "newer_version",
            f"saved by a newer version ({node.version}) of {spec.type_id!r} than installed "
            f"({spec.version}); update Diffusion Workbench or the plugin",
        )]
    found = _check_links_into(workflow, registry, links, spec, problem)
    linked = {ln.dst_input for ln in links}
    found += _check_params(node, spec, linked, problem)
    for socket in spec.sockets:
        if socket.name not in linked and not socket.optional:
            found.append(problem(
                "missing_input", f"needs a link into its {socket.type.value} input", socket.name
            ))
    return found


def _check_links_into(workflow, registry, links, spec, problem) -> list[Problem]:
    found = []
    seen: set[str] = set()
    for link in links:
        field = link.dst_input
        target = spec.input(field)
        if target is None:
            found.append(problem("bad_link", f"the link {link} goes into no such input", field))
            continue
        if field in seen:
            found.append(problem("duplicate_link", "more than one link goes into this input", field))
        seen.add(field)
        source_node = workflow.nodes.get(link.src_node)
        source_spec = registry.get(source_node.type) if source_node else None
        if source_spec is None:
            continue  # a missing node or an unknown type is reported on its own
        source = source_spec.output(link.src_output)
        if source is None:
            found.append(problem(
                "bad_link",
                f"the link {link} comes from an output that {link.src_node!r} does not have",
                field,
            ))
        elif mismatch := _mismatch(workflow, registry, link, target.type):
            found.append(problem("type_mismatch", mismatch, field))
    return found


def _mismatch(workflow, registry, link, target_type) -> str | None:
    """Why ``link`` cannot feed an input of ``target_type``, with the type it
    carries traced back through reroutes (:mod:`core.port_flow`)."""
    carried, via = port_flow.traced_source(workflow, registry, link.src_node, link.src_output)
    if carried is None or compatible(carried, target_type):
        return None
    through = f" (through {', '.join(repr(i) for i in via)})" if via else ""
    return f"the link {link} carries {carried.value}{through} but this input takes {target_type.value}"


def _check_params(node, spec, linked, problem) -> list[Problem]:
    deep = [name for name, value in node.params.items() if jsondata.param_too_deep(value)]
    if deep:  # checked first: the checks below (repr, the spec's migrate) recurse
        return [problem("bad_value", jsondata.TOO_DEEP, name)
                for name in sorted(deep)]
    found = []
    try:
        params = resolve_params(node, spec)
    except Exception as error:  # a spec's migrate() choking on an odd old file
        return [problem("bad_value", f"cannot upgrade its params from version {node.version}: {error}")]
    for item in spec.params:
        if item.name in linked:
            continue
        reason = item.check(params[item.name])
        if reason:
            found.append(problem("bad_value", reason, item.name))
    for name in sorted(set(params) - {i.name for i in spec.inputs}):
        found.append(_with_severity(
            problem("unknown_param", "no such parameter; it is kept but not used", name),
            "warning",
        ))
    return found

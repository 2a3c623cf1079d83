"""Fuzz targets: workflow documents, as text, as files and as objects.

A case is handled when loading refuses it with a ``WorkflowFormatError``, or
when the document it gives goes through everything a loaded workflow meets
before a run (validation, bypass/mute resolution, planning, copying, a
branch of each sampler, saving) raising nothing but the documented
``WorkflowError`` / ``ValidationError`` — and saves and reloads unchanged.
"""
from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from core.executor.plan import make_plan
from core.validation import ValidationError, validate
from core.workflow import (
    Link,
    Node,
    Workflow,
    WorkflowError,
    WorkflowFormatError,
    dumps,
    load,
    loads,
    save,
)
from core.workflow.branch import branch_at
from core.workflow.io import from_data
from tests.fuzz import FuzzTarget
from tests.fuzz.documents import (
    DEEP,
    JSON_VALUES,
    JUNK_TEXT,
    MUTATIONS,
    TEXT,
    VALUES,
    mutated_documents,
    to_text,
    weighted,
)


#: The node type that can be branched at a step (``core.workflow.branch``).
SAMPLER_TYPE = "diffusion.sampler"


@lru_cache(maxsize=None)
def registry():
    from nodes import default_registry

    return default_registry(plugins=False)[0]


@lru_cache(maxsize=None)
def _scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="fuzz-workflow-")


def scratch() -> Path:
    """One folder for this process's files (removed at exit)."""
    return Path(_scratch_dir().name)


#: Sizes, counts and step counts kept small wherever cases may run (a few
#: milliseconds each); values above them are still tried where they are refused.
CAPS = {"width": 16, "height": 16, "size": 16, "count": 16, "batch_size": 1, "steps": 2,
        "t": 20, "timesteps": 1000, "stop_at_step": 2}


# -- plausible values: what a person would type, at and beyond the limits ---------------
def plausible_values(item) -> st.SearchStrategy:
    """Values for the parameter ``item`` (a spec ``Input``): mostly valid, some just
    outside its range or of another type. Sizes stay under CAPS."""
    from core.ports import PortType

    if item.choices:
        return weighted((3, st.sampled_from(item.choices)), (1, TEXT))
    if item.type is PortType.BOOLEAN:
        return st.booleans() | st.sampled_from([0, 1, "yes", None])
    if item.type is PortType.STRING:
        return TEXT
    low = item.min if item.min is not None else -1e6
    high = min(item.max if item.max is not None else 1e6, CAPS.get(item.name, 1e6))
    edges = [low, high] + ([item.min - 1] if item.min is not None else []) \
        + ([item.max + 1] if item.max is not None else [])
    if item.type is PortType.INT:
        inside = st.integers(int(low), int(max(low, high)))
        return weighted((3, inside), (1, st.sampled_from([int(e) for e in edges])),
                        (1, st.sampled_from([1.5, "3", None, [1], True])), (1, TEXT))
    inside = st.floats(low, max(low, high), allow_nan=False)
    return weighted((3, inside), (1, st.sampled_from(edges)),
                    (1, st.sampled_from([float("nan"), "0.5", True, None, [0.5]])), (1, TEXT))


def spec_params(node: Any) -> list:
    """The parameter inputs of ``node``'s spec, if its type is a known one."""
    node_type = node.get("type") if isinstance(node, dict) else None
    spec = registry().get(node_type) if isinstance(node_type, str) else None
    return list(spec.params) if spec else []


def set_plausible_param(draw, doc: dict, values) -> None:
    """A known parameter of a node gets a plausible value (see :func:`plausible_values`)."""
    nodes = doc.get("nodes") if isinstance(doc.get("nodes"), list) else []
    nodes = [n for n in nodes if spec_params(n) and isinstance(n.get("params"), dict)]
    if nodes:
        node = draw(st.sampled_from(nodes))
        item = draw(st.sampled_from(spec_params(node)))
        node["params"][item.name] = draw(plausible_values(item))


#: Mutations for documents meant to get far: plausible values half the time.
ENGINE_MUTATIONS = (set_plausible_param,) * len(MUTATIONS) + MUTATIONS
DOCUMENTS = mutated_documents(mutations=ENGINE_MUTATIONS)
TEXTS = weighted((3, DOCUMENTS.map(to_text)), (1, JUNK_TEXT))


def load_and_run(data: bytes, name: str) -> None:
    """Write ``data`` as a file, open it as the CLI and the GUI do (a refusal
    is handled) and take what opens through the engine."""
    path = scratch() / name
    path.write_bytes(data)
    try:
        workflow = load(path)
    except WorkflowFormatError:
        return
    through_the_engine(workflow)


def through_the_engine(workflow: Workflow) -> None:
    """What a loaded document meets before it runs; raises only the documented errors."""
    validate(workflow, registry())
    try:
        make_plan(workflow.copy(with_ui=False), registry())
    except ValidationError:
        pass
    assert_saves_unchanged(workflow)
    for node in list(workflow):
        if node.type == SAMPLER_TYPE:
            try:
                branched, _ = branch_at(workflow, node.id, 2, {node.id: {"seed": 5}})
            except WorkflowError:
                continue
            validate(branched, registry())
            assert_saves_unchanged(branched)


def assert_saves_unchanged(workflow: Workflow) -> None:
    """Save (atomically, to a file) and reload: the same document comes back."""
    text = dumps(workflow)
    path = scratch() / "saved.json"
    save(workflow, path)
    again = load(path)
    assert dumps(again) == text, "a saved workflow reloads differently"
    assert loads(text).nodes.keys() == workflow.nodes.keys()


def run_text(text: str) -> None:
    try:
        workflow = loads(text, source="fuzz.json")
    except WorkflowFormatError:
        return
    through_the_engine(workflow)


#: How the text of a file may be encoded: UTF-8 (lone surrogates escaped, or
#: written raw, which is invalid UTF-8), with a byte-order mark, or not UTF-8.
ENCODINGS = ("utf-8-escaped", "utf-8-surrogatepass", "utf-8-sig", "utf-16", "latin-1")


def run_file(case: tuple[str, str]) -> None:
    text, encoding = case
    if encoding == "utf-8-escaped":
        data = text.encode("utf-8", "backslashreplace")
    elif encoding == "utf-8-surrogatepass":
        data = text.encode("utf-8", "surrogatepass")
    else:
        data = text.encode(encoding, "surrogatepass" if encoding == "utf-8-sig" else "replace")
    load_and_run(data, "case.json")


def run_data(data: object) -> None:
    """Data that did not come through the JSON parser (as from the GUI's clipboard)."""
    try:
        workflow = from_data(data)
    except ValueError:  # from_data's documented refusal (loads() adds the source)
        return
    through_the_engine(workflow)


@st.composite
def built_workflows(draw) -> Workflow:
    """A document made with the editing API: any params, titles and ui values."""
    workflow = Workflow(ui=draw(st.dictionaries(TEXT, VALUES, max_size=3)))
    for index in range(draw(st.integers(0, 4))):
        node_id = draw(st.sampled_from(["a", "b", "sampler", f"n{index}"]))
        if node_id in workflow.nodes:
            continue
        node_type = draw(st.sampled_from(["image.pattern", SAMPLER_TYPE, "image.save"]) | TEXT)
        title = draw(st.none() | TEXT)
        params = draw(st.dictionaries(TEXT, VALUES, max_size=4))
        workflow.add_node(Node(node_id, node_type or "x.y", title=title, params=params,
                               mode=draw(st.sampled_from(["normal", "bypass", "mute"]) | TEXT)))
    ids = sorted(workflow.nodes) or ["a"]
    for _ in range(draw(st.integers(0, 4))):
        ends = [draw(st.sampled_from(ids)), draw(TEXT), draw(st.sampled_from(ids)), draw(TEXT)]
        workflow.links.append(Link(*ends))
    return workflow


def run_built(workflow: Workflow) -> None:
    """A document built in memory: copying and validating never fail; saving
    refuses what could not be read back (NaN, an empty mode, deep nesting ...)."""
    clone = workflow.copy()
    validate(clone, registry())
    try:
        dumps(clone)
    except WorkflowError as error:
        assert str(error).startswith("cannot save the workflow: "), error
        return
    through_the_engine(clone)


TARGETS = [
    FuzzTarget("workflow.text", TEXTS, run_text),
    FuzzTarget("workflow.file", st.tuples(TEXTS, st.sampled_from(ENCODINGS)), run_file),
    FuzzTarget("workflow.data", weighted((6, DOCUMENTS), (1, JSON_VALUES), (1, DEEP)), run_data),
    FuzzTarget("workflow.built", built_workflows(), run_built),
]

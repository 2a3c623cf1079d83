"""Strategies for workflow documents: the shipped examples, mutated with
knowledge of their structure, and raw junk.

Shared by the workflow, PNG and command-line targets. Mutations aim at what
a hand-edited, truncated or hostile file holds: wrong types, missing and
extra keys, huge, negative and non-finite numbers, any Unicode (lone
surrogates included), deep nesting, unknown node types, links to nowhere,
duplicate ids and cycles.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from core.workflow.jsondata import copy_value

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"

def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """One of ``choices``, each drawn ``weight`` times as often as weight 1.
    (``st.one_of(a, a, b)`` does not weight: equal strategies are drawn as one.)"""
    strategies = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(strategies) - 1).flatmap(strategies.__getitem__)


#: Any code point, lone surrogates included (hypothesis leaves them out by default).
ANY_CHAR = st.characters(codec=None, exclude_categories=())
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=12),
    st.text(st.one_of(ANY_CHAR, SURROGATE), min_size=1, max_size=6),
    st.sampled_from(["", " ", "\x00", "\ud800", "\udcff", "a\nb", "../../etc", "é", "🐈",
                     "x" * 300, "1e400", "NaN", "-0", "true", "null"]),
)

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63), 10**400, 8193, 4097]),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)


def nested(depth: int, dicts: bool = False) -> Any:
    """``depth`` levels of lists (or alternating list/object), built without recursion."""
    value: Any = []
    for level in range(depth - 1):
        value = {"k": value} if dicts and level % 2 else [value]
    return value


DEEP = st.builds(nested, st.integers(min_value=90, max_value=3000), st.booleans())
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
#: Mostly scalars, some containers, now and then a deep one.
VALUES = weighted((6, SCALARS), (3, JSON_VALUES), (1, DEEP))


@lru_cache(maxsize=None)
def example_documents() -> dict[str, dict]:
    """Every shipped example workflow, parsed (copy before changing one)."""
    return {path.name: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(WORKFLOWS.glob("*.json"))}


# -- mutations: each changes ``doc`` in place, drawing what it needs ----------------
def _node(draw, doc: dict) -> dict | None:
    nodes = doc.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return None
    node = draw(st.sampled_from(nodes))
    return node if isinstance(node, dict) else None


def _node_ids(doc: dict) -> list[str]:
    nodes = doc.get("nodes") if isinstance(doc.get("nodes"), list) else []
    return [n["id"] for n in nodes if isinstance(n, dict) and isinstance(n.get("id"), str)] or ["a"]


#: Parameter names the catalogue uses, for mutations that reach code reading them.
PARAM_NAMES = ("", "new_param", "stop_at_step", "steps", "seed", "width", "height", "denoise",
               "text", "path", "folder", "name", "sampler", "spacing", "timesteps", "strength")


def set_param(draw, doc: dict, values: st.SearchStrategy) -> None:
    node = _node(draw, doc)
    if node is None or not isinstance(node.get("params"), dict):
        return
    names = sorted(set(node["params"]) | set(PARAM_NAMES))
    name = draw(st.one_of(st.sampled_from(names), TEXT))
    node["params"][name] = draw(values)


def replace_field(draw, doc: dict, values: st.SearchStrategy) -> None:
    """A structural field (top level, node or link) gets a value of any type."""
    where = draw(st.sampled_from(["top", "node", "link"]))
    if where == "top":
        target: Any = doc
        keys = ["format", "version", "nodes", "links", "ui"]
    elif where == "node":
        target = _node(draw, doc)
        keys = ["id", "type", "version", "title", "params", "mode"]
    else:
        links = doc.get("links")
        target = draw(st.sampled_from(links)) if isinstance(links, list) and links else None
        keys = ["from", "to"]
    if isinstance(target, dict):
        target[draw(st.sampled_from(keys))] = draw(values)


def drop_key(draw, doc: dict, values: st.SearchStrategy) -> None:
    target = draw(st.sampled_from(["top", "node"]))
    item = doc if target == "top" else _node(draw, doc)
    if isinstance(item, dict) and item:
        del item[draw(st.sampled_from(sorted(item, key=str)))]


def add_key(draw, doc: dict, values: st.SearchStrategy) -> None:
    item = doc if draw(st.booleans()) else _node(draw, doc)
    if isinstance(item, dict):
        item[draw(TEXT)] = draw(values)


def retype_node(draw, doc: dict, values: st.SearchStrategy, types: tuple[str, ...] = ()) -> None:
    node = _node(draw, doc)
    if node is not None:
        junk = st.sampled_from(["plugin.missing", "image.", "Image.Save", "a" * 100]) | TEXT
        node["type"] = draw(st.sampled_from(types) | junk if types else junk)


def bad_link(draw, doc: dict, values: st.SearchStrategy) -> None:
    """A link to a missing node or port, a duplicate, a cycle, or a malformed one."""
    links = doc.get("links")
    if not isinstance(links, list):
        return
    ids = st.sampled_from(_node_ids(doc)) | TEXT
    ports = st.sampled_from(["image", "latent", "model", "images", "schedule", "x"]) | TEXT
    kind = draw(st.sampled_from(["random", "reverse", "duplicate", "malformed"]))
    if kind == "reverse" and links and isinstance(links[0], dict):
        link = draw(st.sampled_from(links))
        ends = [link.get(end) if isinstance(link, dict) else None for end in ("from", "to")]
        if all(isinstance(end, list) and end for end in ends):  # from what it feeds, to its source
            links.append({"from": [ends[1][0], draw(ports)], "to": [ends[0][0], draw(ports)]})
    elif kind == "duplicate" and links:
        links.append(copy_value(draw(st.sampled_from(links))))
    elif kind == "malformed":
        links.append(draw(values))
    else:
        links.append({"from": [draw(ids), draw(ports)], "to": [draw(ids), draw(ports)]})


def node_shuffle(draw, doc: dict, values: st.SearchStrategy) -> None:
    """Remove a node, or add a copy under its own (duplicate) or another id."""
    nodes = doc.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return
    index = draw(st.integers(0, len(nodes) - 1))
    if draw(st.booleans()):
        del nodes[index]
    else:
        twin = copy_value(nodes[index])
        if isinstance(twin, dict) and draw(st.booleans()):
            twin["id"] = draw(st.sampled_from(["twin", "a-b_c", "x" * 64, "-bad", "é"]) | TEXT)
        nodes.append(twin)


def set_mode(draw, doc: dict, values: st.SearchStrategy) -> None:
    node = _node(draw, doc)
    if node is not None:
        node["mode"] = draw(st.sampled_from(["bypass", "mute", "normal", "Bypass"]) | TEXT)


MUTATIONS = (set_param, set_param, replace_field, drop_key, add_key, retype_node, bad_link,
             node_shuffle, set_mode)


@st.composite
def mutated_documents(draw, names: tuple[str, ...] | None = None, values=VALUES,
                      types: tuple[str, ...] = (), mutations=MUTATIONS, most: int = 4) -> dict:
    """A shipped example (of ``names``, default all) with one to ``most`` of
    ``mutations``; a retyped node gets one of ``types`` or a junk type."""
    documents = example_documents()
    name = draw(st.sampled_from(names or tuple(documents)))
    doc = copy_value(documents[name])
    for _ in range(draw(st.integers(min_value=1, max_value=most))):
        mutation = draw(st.sampled_from(mutations))
        if mutation is retype_node:
            retype_node(draw, doc, values, types)
        else:
            mutation(draw, doc, values)
    return doc


def to_text(value: Any, ensure_ascii: bool = False) -> str:
    """JSON text of any generated data, at any depth (``json.dumps`` recurses).

    NaN and the infinities become JSON's ``NaN``/``Infinity`` tokens, which a
    strict reader must refuse.
    """
    out: list[str] = []
    pending: list[tuple[bool, Any]] = [(False, value)]  # (is raw text, item)
    while pending:
        raw, item = pending.pop()
        if raw:
            out.append(item)
        elif isinstance(item, dict):
            entries = list(item.items())
            pending.append((True, "}"))
            for index in range(len(entries) - 1, -1, -1):
                key, child = entries[index]
                pending.append((False, child))
                comma = "," if index else ""
                key_text = json.dumps(str(key), ensure_ascii=ensure_ascii)
                pending.append((True, f"{comma}{key_text}:"))
            pending.append((True, "{"))
        elif isinstance(item, (list, tuple)):
            pending.append((True, "]"))
            for index in range(len(item) - 1, -1, -1):
                pending.append((False, item[index]))
                if index:
                    pending.append((True, ","))
            pending.append((True, "["))
        else:
            out.append(json.dumps(item, ensure_ascii=ensure_ascii))
    return "".join(out)


#: Raw junk: not JSON, almost JSON, deep brackets, a JSON scalar or list.
JUNK_TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=200),
    st.builds(lambda n, c: c * n, st.integers(1, 5000),
              st.sampled_from(["[", "{", '{"a":', "[1,"])),
    st.builds(lambda n: "[" * n + "]" * n, st.integers(50, 5000)),
    st.builds(lambda n: '{"a":' * n + "1" + "}" * n, st.integers(50, 3000)),
    JSON_VALUES.map(to_text),
    st.sampled_from(['{"format": "diffusion-workbench.workflow", "version": 1}', "", "\ufeff{}",
                     '{"a": 1, "a": 2}', "[NaN]", '{"x": 1e400}', '"\\ud800"',
                     "\x89PNG\r\n\x1a\n"]),
)

#: Workflow text: mostly a mutated example, or junk.
WORKFLOW_TEXT = weighted((3, mutated_documents().map(to_text)), (1, JUNK_TEXT))

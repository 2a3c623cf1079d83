"""Reading and writing workflow files.

The file is JSON::

    {
      "format": "diffusion-workbench.workflow",
      "version": 1,
      "nodes": [{"id": "noise", "type": "image.noise", "version": 1,
                 "title": "Noise", "params": {"seed": 0}, "mode": "bypass"}],
      "links": [{"from": ["pattern", "image"], "to": ["noise", "image"]}],
      "ui": {}
    }

Writing is canonical (keys sorted, nodes by id, links sorted, two-space
indent, final newline), so load → save is byte-for-byte stable and diffs stay
small. A node's ``mode`` is written only when it is not ``normal``, so files
without bypassed or muted nodes look as they always did. Saving is atomic: a crash mid-save leaves the old file intact.
Reading is strict and every problem names where it is.

A lone surrogate, which any Python string may hold but UTF-8 cannot
(``"\\ud800"``, or the ``"\\udcff"`` that an undecodable byte in a command-line
argument becomes), is written as its JSON escape and reads back as the same
string: a save never fails after a run, and nothing typed is lost. Saving
checks the document as reading does (nesting deeper than
:data:`~core.workflow.jsondata.MAX_DEPTH` levels, NaN, a value JSON cannot
hold, an empty type ...) and refuses with a ``WorkflowError`` naming node and
field, so what is saved always opens again.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from core.workflow.jsondata import (
    MAX_DEPTH,
    PARAM_LEVELS,
    depth_exceeds,
    param_problem,
    text_too_deep,
    too_deep_message,
    ui_problem,
)
from core.workflow.migrations import CURRENT_VERSION, MigrationError, migrate
from core.workflow.model import NODE_ID_PATTERN, NORMAL, Link, Node, Workflow, WorkflowError
from core.workflow.png import PNG_MAGIC, workflow_text_from_png

FORMAT_ID = "diffusion-workbench.workflow"
MAX_FILE_BYTES = 64 * 1024 * 1024

_TOP_KEYS = {"format", "version", "nodes", "links", "ui"}
_NODE_KEYS = {"id", "type", "version", "title", "params", "mode"}
_LINK_KEYS = {"from", "to"}
_SURROGATE = re.compile("[\ud800-\udfff]")


class WorkflowFormatError(ValueError):
    """A file that is not a valid workflow; the message says where and why."""


# -- to and from plain data ---------------------------------------------------
def to_data(workflow: Workflow) -> dict[str, Any]:
    """The document as JSON-ready data, in canonical order."""
    nodes = []
    for node in sorted(workflow.nodes.values(), key=lambda n: n.id):
        item: dict[str, Any] = {"id": node.id, "type": node.type, "version": node.version}
        if node.title is not None:
            item["title"] = node.title
        item["params"] = node.params
        if node.mode != NORMAL:
            item["mode"] = node.mode
        nodes.append(item)
    links = [
        {"from": [ln.src_node, ln.src_output], "to": [ln.dst_node, ln.dst_input]}
        for ln in sorted(workflow.links)
    ]
    return {
        "format": FORMAT_ID,
        "version": CURRENT_VERSION,
        "nodes": nodes,
        "links": links,
        "ui": workflow.ui,
    }


def dumps(workflow: Workflow) -> str:
    """Canonical JSON text of the document, always encodable as UTF-8.

    Raises WorkflowError, naming node and field, for a document that
    :func:`loads` would refuse to read back (one built in memory).
    """
    data = to_data(workflow)
    try:
        from_data(data)  # the reader's own checks: one definition of a valid file
    except (ValueError, MigrationError) as error:
        raise WorkflowError(f"cannot save the workflow: {error}") from None
    # allow_nan=False: never write NaN/Infinity, which loads() refuses.
    text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    # Outside strings the JSON is ASCII, so every surrogate is inside one,
    # where its escape means the same (RFC 8259, section 7).
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def loads(text: str, source: str = "<string>") -> Workflow:
    """Parse, migrate and check a workflow document."""
    deep_line = text_too_deep(text)
    if deep_line is not None:  # the JSON parser would recurse that deep
        raise WorkflowFormatError(too_deep_message(f"{source}: line {deep_line}"))
    try:
        data = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_nan,
            parse_float=_finite_float,
        )
    except json.JSONDecodeError as error:
        raise WorkflowFormatError(
            f"{source}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    except ValueError as error:
        raise WorkflowFormatError(f"{source}: {error}") from None
    try:
        return from_data(data)
    except (ValueError, MigrationError) as error:
        raise WorkflowFormatError(f"{source}: {error}") from None


def from_data(data: Any) -> Workflow:
    """Build a document from parsed JSON, migrating older format versions."""
    _expect(isinstance(data, dict), "the top level must be a JSON object")
    _expect(all(isinstance(key, str) for key in data), "the document's keys must be text")
    deep = _too_deep_where(data)  # data may come from elsewhere than loads()
    if deep is not None:
        raise ValueError(too_deep_message(deep))
    if data.get("format") != FORMAT_ID:
        raise ValueError(
            f"not a Diffusion Workbench workflow (format is {data.get('format')!r}, "
            f"expected {FORMAT_ID!r})"
        )
    version = data.get("version")
    _expect(_is_int(version) and version >= 1, "'version' must be a positive integer")
    data = migrate(data)
    _no_unknown_keys(data, _TOP_KEYS, "the document")
    workflow = Workflow(ui=data.get("ui", {}))
    _expect(isinstance(workflow.ui, dict), "'ui' must be an object")
    problem = ui_problem(workflow.ui)
    _expect(problem is None, f"'ui' {problem}")
    nodes = data.get("nodes", [])
    _expect(isinstance(nodes, list), "'nodes' must be a list")
    for index, item in enumerate(nodes):
        node = _node_from_data(item, f"nodes[{index}]")
        _expect(node.id not in workflow.nodes, f"two nodes have the id {node.id!r}")
        workflow.nodes[node.id] = node
    links = data.get("links", [])
    _expect(isinstance(links, list), "'links' must be a list")
    for index, item in enumerate(links):
        workflow.links.append(_link_from_data(item, f"links[{index}]"))
    return workflow


def _too_deep_where(data: dict) -> str | None:
    """Where ``data`` nests past MAX_DEPTH: a node's field where it is one, else
    the top-level key (checked before anything could ``repr`` the value)."""
    for key, value in data.items():
        if not depth_exceeds(value, MAX_DEPTH - 1):
            continue
        for index, node in enumerate(value if key == "nodes" and isinstance(value, list) else []):
            if not isinstance(node, dict):
                continue
            node_id = node.get("id")
            label = f"node {node_id!r}" if isinstance(node_id, str) else f"nodes[{index}]"
            params = node.get("params")
            for name, param in (params.items() if isinstance(params, dict) else ()):
                if depth_exceeds(param, MAX_DEPTH - PARAM_LEVELS):
                    return f"{label}, field {name!r}"
            if depth_exceeds(node, MAX_DEPTH - 2):
                return label
        return repr(key)
    return None


def _node_from_data(item: Any, where: str) -> Node:
    _expect(isinstance(item, dict), f"{where} must be an object")
    node_id = item.get("id")
    _expect(
        isinstance(node_id, str) and NODE_ID_PATTERN.match(node_id) is not None,
        f"{where}: 'id' must be 1-64 letters, digits, '_' or '-' (got {node_id!r})",
    )
    where = f"node {node_id!r}"
    _no_unknown_keys(item, _NODE_KEYS, where)
    type_id = item.get("type")
    _expect(isinstance(type_id, str) and type_id != "", f"{where}: 'type' must be text")
    version = item.get("version", 1)
    _expect(_is_int(version) and version >= 1, f"{where}: 'version' must be a positive integer")
    title = item.get("title")
    _expect(title is None or isinstance(title, str), f"{where}: 'title' must be text")
    params = item.get("params", {})
    _expect(isinstance(params, dict), f"{where}: 'params' must be an object")
    for name, value in params.items():
        _expect(isinstance(name, str), f"{where}: parameter names must be text")
        problem = param_problem(value)
        _expect(problem is None, f"{where}, field {name!r}: {problem}")
    mode = item.get("mode", NORMAL)  # an unknown mode is validation's to report
    _expect(isinstance(mode, str) and mode != "", f"{where}: 'mode' must be text")
    return Node(id=node_id, type=type_id, version=version, title=title, params=params, mode=mode)


def _link_from_data(item: Any, where: str) -> Link:
    _expect(isinstance(item, dict), f"{where} must be an object")
    _no_unknown_keys(item, _LINK_KEYS, where)
    ends = [item.get("from"), item.get("to")]
    for end, name in zip(ends, ("from", "to")):
        _expect(
            isinstance(end, list) and len(end) == 2 and all(isinstance(p, str) for p in end),
            f"{where}: '{name}' must be [node id, port name]",
        )
    return Link(ends[0][0], ends[0][1], ends[1][0], ends[1][1])


# -- files --------------------------------------------------------------------
def load(path: str | os.PathLike) -> Workflow:
    """Load a workflow from a ``.json`` file, a workbench PNG or a workbench
    GIF/WebP video.

    The file is opened and read once, so a pipe or FIFO works too
    (``diffusion-workbench run <(cat wf.json)``).
    """
    path = Path(path)
    try:
        data = _read_at_most(path, MAX_FILE_BYTES)
        from core.video import is_animation, workflow_text_from_animation

        if data.startswith(PNG_MAGIC):
            text = workflow_text_from_png(data)
        elif is_animation(data):  # a video the workbench saved as GIF or WebP
            text = workflow_text_from_animation(data)
        else:
            text = data.decode("utf-8-sig")  # a byte-order mark (some Windows editors) is dropped
    except FileNotFoundError:
        raise WorkflowFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise WorkflowFormatError(f"{path}: a folder, not a workflow file") from None
    except UnicodeDecodeError as error:
        raise WorkflowFormatError(
            f"{path}: not UTF-8 text (byte {error.start}); save the workflow as UTF-8") from None
    except UnicodeEncodeError:  # a lone surrogate that is no undecodable byte
        raise WorkflowFormatError(f"{str(path)!r}: not a name a file can have") from None
    except OSError as error:
        raise WorkflowFormatError(f"{path}: {error.strerror or error}") from None
    except ValueError as error:  # a file over the size limit, a NUL in the name
        if "\0" in str(path):
            raise WorkflowFormatError(f"{str(path)!r}: not a name a file can have") from None
        raise WorkflowFormatError(f"{path}: {error}") from None
    return loads(text, source=str(path))


def _read_at_most(path: Path, limit: int) -> bytes:
    """The whole file, from one open (a pipe cannot be read twice), or ValueError past ``limit``."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size  # 0 for a pipe: then read and see
        _expect(size <= limit, f"the file is larger than {limit} bytes")
        data = handle.read(limit + 1)
    _expect(len(data) <= limit, f"the file is larger than {limit} bytes")
    return data


def save(workflow: Workflow, path: str | os.PathLike) -> None:
    """Write the workflow atomically: a temp file in the same folder, then rename."""
    write_text_atomic(Path(path), dumps(workflow))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.chmod(temp_name, _mode_for(path))
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets rw-r--r--.

    (Reading the umask means setting it, which is not thread-safe.)
    """
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o644


# -- helpers ------------------------------------------------------------------
def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_unknown_keys(item: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(item) - allowed)
    _expect(not unknown, f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


def _no_nan(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    """A JSON number as a float; one too large (1e400) would become inf."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large")
    return value

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
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from core.workflow.migrations import CURRENT_VERSION, MigrationError, migrate
from core.workflow.model import NODE_ID_PATTERN, NORMAL, Link, Node, Workflow
from core.workflow.png import PNG_MAGIC, workflow_text_from_png

FORMAT_ID = "diffusion-workbench.workflow"
MAX_FILE_BYTES = 64 * 1024 * 1024

_TOP_KEYS = {"format", "version", "nodes", "links", "ui"}
_NODE_KEYS = {"id", "type", "version", "title", "params", "mode"}
_LINK_KEYS = {"from", "to"}


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
    """Canonical JSON text of the document."""
    # allow_nan=False: never write NaN/Infinity, which loads() refuses.
    text = json.dumps(
        to_data(workflow), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False
    )
    return text + "\n"


def loads(text: str, source: str = "<string>") -> Workflow:
    """Parse, migrate and check a workflow document."""
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
    """Load a workflow from a ``.json`` file or from a workbench PNG."""
    path = Path(path)
    try:
        size = path.stat().st_size
        _expect(size <= MAX_FILE_BYTES, f"the file is larger than {MAX_FILE_BYTES} bytes")
        with path.open("rb") as handle:
            head = handle.read(len(PNG_MAGIC))
        if head == PNG_MAGIC:
            text = workflow_text_from_png(path)
        else:
            text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise WorkflowFormatError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise WorkflowFormatError(f"{path}: {error}") from None
    return loads(text, source=str(path))


def save(workflow: Workflow, path: str | os.PathLike) -> None:
    """Write the workflow atomically: a temp file in the same folder, then rename."""
    write_text_atomic(Path(path), dumps(workflow))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half."""
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as temp:
            temp.write(text)
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

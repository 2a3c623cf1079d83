"""Which files a workflow names that are not on this machine, before it runs.

A workflow shared between people (or a template) names model files by path
or by models-folder name; on another machine they may be elsewhere. Every
file parameter (an input with the ``file`` widget) that is set and does not
resolve is listed, so the GUI can ask for each instead of failing mid-run.
A loader whose ``name`` dropdown picks a built-in or a models-folder entry
ignores its ``path``, so that path is not asked for.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.checkpoints.safetensors_io import CheckpointError
from core.registry import NodeRegistry
from core.validation import resolve_params
from core.workflow import Workflow

FILE_CHOICE = "file…"  # the loaders' "read the path below" entry (nodes.loaders)


@dataclass(frozen=True)
class MissingFile:
    """A file parameter whose file is not found."""

    node_id: str
    title: str
    param: str
    value: str

    def __str__(self) -> str:
        return f"{self.title} · {self.param}: {self.value} is not found"


def missing_files(workflow: Workflow, registry: NodeRegistry) -> list[MissingFile]:
    """The file parameters of ``workflow`` whose files are not found, in node order."""
    found = []
    for node_id, node in workflow.nodes.items():
        spec = registry.get(node.type)
        if spec is None:
            continue
        try:
            params = resolve_params(node, spec)
        except Exception:  # validation reports a node whose params cannot be read
            continue
        for item in spec.params:
            value = str(params.get(item.name, "")).strip()
            if item.widget != "file" or not value or _unused_path(item.name, params):
                continue
            if not _exists(value):
                found.append(MissingFile(node_id, node.title or spec.title, item.name, value))
    return found


def _unused_path(name: str, params) -> bool:
    """A path the node will not read: a loader set to a named model, or the
    ideal denoiser's folder while it draws the built-in shapes."""
    if name == "path" and "name" in params:
        return params["name"] != FILE_CHOICE
    return name == "folder" and params.get("source", "folder") != "folder"


def _exists(value: str) -> bool:
    from core.checkpoints.library import resolve

    try:
        resolve(value)
    except CheckpointError:
        return Path(value).expanduser().exists()
    return True

"""The workflow document and its file format (see ``io`` for the JSON layout)."""
from core.workflow.io import (
    FORMAT_ID,
    WorkflowFormatError,
    dumps,
    load,
    loads,
    save,
)
from core.workflow.model import Link, Node, Workflow, WorkflowError

__all__ = [
    "FORMAT_ID",
    "Link",
    "Node",
    "Workflow",
    "WorkflowError",
    "WorkflowFormatError",
    "dumps",
    "load",
    "loads",
    "save",
]

"""The values a workflow holds are JSON data; checked and copied without recursion.

Python's JSON parser, ``copy.deepcopy``, ``repr`` and ``json.dumps`` all
recurse once per level of nested lists and objects, and fail with
``RecursionError`` somewhere near a thousand levels, earlier when called from
deep in a stack. A workflow never needs more than a handful of levels, so the
document gets an explicit limit, :data:`MAX_DEPTH`, far below the point where
those functions break: files deeper than it are refused when they are read
(before the parser sees them), documents deeper than it are refused when they
are written (so whatever is saved opens again), and the functions here walk
values with an explicit stack, so checking and copying never recurse.

Depth counts the JSON containers on the way down: the document object is
level 1, ``nodes`` level 2, a node level 3, its ``params`` level 4, so a
parameter's value may nest :data:`MAX_DEPTH` − 4 levels of its own.
"""
from __future__ import annotations

import copy
import math
import re
from itertools import accumulate
from typing import Any

#: The deepest nesting of JSON arrays and objects a workflow file may have.
MAX_DEPTH = 100
#: Containers above a parameter's value: document, ``nodes``, node, ``params``.
PARAM_LEVELS = 4
#: Containers above the ``ui`` object: the document.
UI_LEVELS = 1

#: The one wording of the refusal, with what to change.
TOO_DEEP = (f"nested deeper than {MAX_DEPTH} levels of lists and objects "
            "(the limit of a workflow file); flatten it")

# A JSON string, or an unterminated one running to the end (which the parser reports).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_BLOCK = 1 << 16  # brackets checked at a time
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)|[\[\]{}]', re.DOTALL)


def too_deep_message(where: str) -> str:
    return f"{where}: {TOO_DEEP}"


def text_too_deep(text: str, limit: int = MAX_DEPTH) -> int | None:
    """The 1-based line where JSON ``text`` first nests deeper than ``limit``, or None.

    Brackets inside strings do not count. Linear in the text, without a
    Python loop per character (regular expressions and ``accumulate`` over
    blocks of brackets), and it stops at the first block that goes too deep.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if len(brackets) <= limit:
        return None
    level = 0
    for start in range(0, len(brackets), _BLOCK):
        levels = list(accumulate(map(_STEP.__getitem__, brackets[start:start + _BLOCK]),
                                 initial=level))
        if max(levels) > limit:
            return _line_of_depth(text, limit + 1)
        level = levels[-1]
    return None


def _line_of_depth(text: str, depth: int) -> int:
    """The line where nesting first reaches ``depth`` (only called when it does)."""
    level = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] != '"':
            level += _STEP[token]
            if level >= depth:
                return text.count("\n", 0, match.start()) + 1
    return text.count("\n") + 1


def json_problem(value: Any, limit: int) -> str | None:
    """Why ``value`` cannot be written as JSON and read back the same, or None.

    JSON data is text, whole and finite numbers, true/false, null, and lists
    (tuples are written as lists) and objects with text keys, nested at most
    ``limit`` levels (a scalar is level 0, ``[]`` level 1).
    """
    pending = [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, (dict, list, tuple)):
            if level >= limit:
                return TOO_DEEP
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        return f"has a key of type {type(key).__name__} (keys must be text)"
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)
        elif isinstance(item, float) and not math.isfinite(item):
            return f"holds {item!r}, which is not a finite number"
        elif not (item is None or isinstance(item, (str, int, float))):
            return (f"holds a {type(item).__name__}, which a workflow file cannot store "
                    "(text, numbers, true/false, null, lists and objects)")
    return None


def param_problem(value: Any) -> str | None:
    """Why a node parameter's value cannot be saved in a workflow file, or None."""
    return json_problem(value, MAX_DEPTH - PARAM_LEVELS)


def ui_problem(ui: Any) -> str | None:
    """Why the ``ui`` block cannot be saved in a workflow file, or None."""
    return json_problem(ui, MAX_DEPTH - UI_LEVELS)


def param_too_deep(value: Any) -> bool:
    """Whether a parameter's value nests past the file limit (which ``repr`` and
    ``json.dumps`` may not survive)."""
    return depth_exceeds(value, MAX_DEPTH - PARAM_LEVELS)


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether lists, tuples and dicts in ``value`` nest more than ``limit`` levels."""
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, (dict, list, tuple)):
            if level > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)
    return False


def copy_value(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars) of any depth.

    Copies with an explicit stack instead of ``copy.deepcopy``'s recursion;
    like it, a container reached twice (or through a cycle) is copied once.
    Anything else (a tuple or an object the GUI keeps in ``ui``, never read
    from a file) goes to ``copy.deepcopy``.
    """
    root: list[Any] = [None]
    copies: dict[int, Any] = {}  # id of a source container -> its copy
    # (source value, target container, key in the target), depth first
    pending: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while pending:
        source, parent, key = pending.pop()
        if not isinstance(source, (dict, list)):
            parent[key] = _copy_leaf(source)
        elif id(source) in copies:
            parent[key] = copies[id(source)]
        else:
            if isinstance(source, dict):
                target: Any = dict.fromkeys(source)  # the keys in their order
                items: Any = source.items()
            else:
                target, items = [None] * len(source), enumerate(source)
            copies[id(source)] = parent[key] = target
            pending.extend((child, target, child_key) for child_key, child in items)
    return root[0]


def _copy_leaf(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return copy.deepcopy(value)

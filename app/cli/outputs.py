"""Where ``run`` writes: folders checked before the run, paths printed safely.

A run can take minutes; finding only afterwards that ``--out`` names a file,
or a folder nobody may write to, throws the work away. So the folders are
checked first, without creating anything (a run that turns out invalid
leaves no empty folder behind).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO


#: The longest file or folder name (in bytes) of the usual Linux, macOS and
#: Windows file systems.
NAME_MAX = 255


class OutputPathError(ValueError):
    """An output folder that cannot be created or written to."""


def check_writable_folder(path: Path, option: str) -> None:
    """Raise OutputPathError unless ``path`` is, or can be made, a writable folder.

    The name must be one the file system can store; every part of ``path``
    that exists must be a folder, and the deepest one must let us create
    entries in it. (``os.access`` answers for the real user: root passes
    permission bits, as its writes would; a read-only file system fails
    everyone.)
    """
    if not _storable(path):
        raise OutputPathError(
            f"{option} {str(path)!r}: not a name a file system can store (a NUL, an "
            f"undecodable character or a part over {NAME_MAX} bytes); choose another folder")
    existing = _deepest_existing(path)
    if not existing.is_dir():
        what = "exists and is not a folder" if existing == path else \
            f"cannot be made: {existing} is not a folder"
        raise OutputPathError(f"{option} {path}: {what}; choose a folder or a new name")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"{option} {path}: no permission to write in {existing}; "
            "choose a folder you can write to")


def _storable(path: Path) -> bool:
    try:
        parts = [os.fsencode(part) for part in path.parts]
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte ("\ud800")
        return False
    return all(b"\0" not in part and len(part) <= NAME_MAX for part in parts)


def _deepest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the current folder at worst)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(".")


def print_path(path: Path, stream: TextIO | None = None) -> None:
    """Print a written file's path; a name a terminal cannot show is escaped, never fatal.

    (A path from the command line may hold undecodable bytes, which Python
    keeps as lone surrogates; a UTF-8 stdout refuses to print those.)
    """
    stream = stream if stream is not None else sys.stdout
    text = str(path)
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    print(text, file=stream)

"""``diffusion-workbench inspect FILE [FILE...] [--json]``: what model files are.

Reads only each file's safetensors header (or a diffusers folder's JSON), so
it answers at once even for multi-GB checkpoints. Prints the detector's
sentence and a compact table per file, or with ``--json`` one JSON list.
Exit status: 0 when every file was recognised, 2 when one could not be read
or is of a kind the workbench cannot load (the reason on stderr).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence, TextIO

EXIT_OK, EXIT_INVALID = 0, 2


def run_inspect(paths: Sequence[str], as_json: bool = False,
                out: TextIO | None = None, err: TextIO | None = None) -> int:
    from core.checkpoints import CheckpointError
    from core.checkpoints.boundary import file_faults
    from core.checkpoints.detect import detect
    from core.checkpoints.library import resolve

    out = out or sys.stdout
    err = err or sys.stderr
    status = EXIT_OK
    found = []
    for index, name in enumerate(paths):
        try:
            with file_faults(name, "model file"):  # a name the system refuses, "~nobody/…"
                detection = detect(_locate(name, resolve))
        except CheckpointError as error:
            print(_printable(f"error: {error}"), file=err)
            status = EXIT_INVALID
            continue
        if not detection.recognised:
            reasons = "; ".join(detection.problems) or "not a kind of model this workbench loads"
            print(_printable(f"error: {detection.path}: {reasons}"), file=err)
            status = EXIT_INVALID
        found.append(detection)
        if not as_json:
            if index:
                print(file=out)
            print(_printable(format_detection(detection)), file=out)
    if as_json:
        print(json.dumps([d.to_dict() for d in found], indent=2), file=out)
    return status


def _printable(text: str) -> str:
    """``text`` with lone surrogates (a file name that is not UTF-8, kept by
    Python as ``\\udcff``) written as escapes, so printing it cannot fail."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _locate(name: str, resolve) -> Path:
    """A path as given when it exists, else a display name in the models folders."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    return resolve(name)


def format_detection(detection) -> str:
    """The detector's sentence, then one aligned ``field  value`` row per fact."""
    from core.checkpoints.detect_text import human_size, short_count

    rows = [("file", detection.path), ("family", detection.family)]
    optional = (("variant", detection.variant), ("base", detection.base),
                ("layout", detection.layout),
                ("components", ", ".join(detection.components)),
                ("text encoders", ", ".join(detection.text_encoders)),
                ("dtype", " ".join(x for x in (detection.dtype, detection.dtype_note and
                                               f"({detection.dtype_note})") if x)),
                ("weight variants", ", ".join(detection.file_variants)),
                ("key prefix", detection.prefix))
    rows += [(label, value) for label, value in optional if value]
    rows.append(("size", f"{human_size(detection.size_bytes)} ({detection.size_bytes:,} bytes)"))
    if detection.tensor_count:
        rows.append(("parameters", f"{short_count(detection.parameters)} "
                                   f"({detection.parameters:,} in {detection.tensor_count:,} tensors)"))
    for name, options in detection.needs_choice.items():
        rows.append((f"choose {name}", " | ".join(options)))
    for problem in detection.problems:
        rows.append(("problem", problem))
    width = max(len(label) for label, _ in rows)
    table = "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)
    return f"{detection.describe()}\n{table}"

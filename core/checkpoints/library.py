"""The models folders: where the user's checkpoints are, what each one is, by display name.

The folders come, in order, from ``set_models_dirs`` (the CLI's
``--models-dir``, the GUI's settings) and the ``DIFFUSION_WORKBENCH_MODELS``
environment variable (``os.pathsep``-separated). ``scan`` walks them for
``.safetensors`` files and diffusers folders and detects each one from its
header; the detections are cached by (path, mtime, size), so rescanning an
unchanged folder costs one ``stat`` per file. Loader nodes list
``choices(...)`` (names relative to their folder) and turn the chosen name
back into a path with ``resolve``.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from core.checkpoints.boundary import checkpoint_boundary
from core.checkpoints.detect import Detection, detect
from core.checkpoints.safetensors_io import CheckpointError

log = logging.getLogger(__name__)

ENV_VAR = "DIFFUSION_WORKBENCH_MODELS"
MAX_DEPTH = 6
#: Loader categories -> the families they list (a diffusers folder counts as what it holds).
CATEGORIES = {
    "checkpoint": ("sd1", "sd2", "sdxl", "sdxl_refiner", "sd3", "flux"),
    "vae": ("vae",), "controlnet": ("controlnet",), "lora": ("lora",),
    "text_encoder": ("text_encoder",), "workbench": ("workbench",),
}

_configured: tuple[Path, ...] | None = None
_cache: dict[Path, tuple[tuple, Detection | None, str | None]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class LibraryEntry:
    """One model in a models folder: its display name, path and what it is."""

    name: str  # relative to its folder, with "/" separators: "sdxl/juggernaut.safetensors"
    path: Path
    root: Path
    detection: Detection | None  # None when the file could not be read
    error: str | None = None

    @property
    def family(self) -> str | None:
        """The family a loader cares about (a diffusers folder: the one it holds)."""
        if self.detection is None:
            return None
        if self.detection.family == "diffusers_folder":
            return self.detection.base
        return self.detection.family


def set_models_dirs(dirs: Iterable[str | os.PathLike] | None) -> None:
    """Set (or with None, forget) the folders of this process, ahead of the env var."""
    global _configured
    _configured = None if dirs is None else tuple(Path(d).expanduser() for d in dirs)


def configured_dirs() -> list[Path]:
    """The folders set for this process (not the environment variable's)."""
    return list(_configured or ())


def models_dirs() -> list[Path]:
    """The models folders in order: the ones set for this process, then the env var's."""
    dirs = list(_configured or ())
    dirs += [Path(p).expanduser() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    return list(dict.fromkeys(dirs))


def scan(dirs: Sequence[str | os.PathLike] | None = None) -> list[LibraryEntry]:
    """Every model in the folders (first folder first, then by name); unchanged files cost a stat."""
    entries: list[LibraryEntry] = []
    seen_names: set[str] = set()
    for root in (models_dirs() if dirs is None else [Path(d).expanduser() for d in dirs]):
        if not root.is_dir():
            log.warning("models folder %s does not exist", root)
            continue
        for path in sorted(_walk(root)):
            name = path.relative_to(root).as_posix()
            if name in seen_names:
                log.info("%s is hidden by a model of the same name in an earlier folder", path)
                continue
            seen_names.add(name)
            detection, error = _cached_detect(path)
            entries.append(LibraryEntry(name, path, root, detection, error))
    return entries


def choices(family_filter: str | Iterable[str] | None = None,
            dirs: Sequence[str | os.PathLike] | None = None) -> list[str]:
    """Display names for a loader's dropdown: a category (``checkpoint``, ``vae``,
    ``controlnet``, ``lora``, ``text_encoder``), a family, several, or all (None)."""
    wanted = _families(family_filter)
    return [e.name for e in scan(dirs)
            if e.detection is not None and (wanted is None or e.family in wanted)]


@checkpoint_boundary("model name", "name")
def resolve(name: str | os.PathLike, dirs: Sequence[str | os.PathLike] | None = None) -> Path:
    """The path of a display name (the first folder holding it), or of an existing path."""
    text = os.fspath(name)
    candidate = Path(text).expanduser()
    if candidate.is_absolute():
        if candidate.exists():
            return candidate
        raise CheckpointError(f"{candidate}: no such model file or folder")
    roots = models_dirs() if dirs is None else [Path(d).expanduser() for d in dirs]
    for root in roots:
        path = root / candidate
        if _inside(path, root) and path.exists():
            return path
    if candidate.exists():  # relative to the working folder
        return candidate
    where = ", ".join(str(r) for r in roots) or f"none set (use --models-dir or {ENV_VAR})"
    raise CheckpointError(f"{text}: not found in the models folders ({where})")


def clear_cache() -> None:
    with _lock:
        _cache.clear()


# -- walking and caching ------------------------------------------------------------------
def _walk(root: Path) -> Iterable[Path]:
    """.safetensors files and diffusers folders under root: depth-limited, no hidden
    folders, each real folder once (symlink loops end)."""
    from core.checkpoints.detect_folder import is_diffusers_folder

    visited: set[tuple[int, int]] = set()
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in visited:
                continue
            visited.add((info.st_dev, info.st_ino))
            children = list(os.scandir(folder))
        except OSError as error:
            log.warning("cannot read models folder %s: %s", folder, error)
            continue
        for child in children:
            if child.name.startswith("."):
                continue
            path = Path(child.path)
            if _is_dir(child):
                if is_diffusers_folder(path):
                    yield path
                elif depth < MAX_DEPTH:
                    stack.append((path, depth + 1))
            elif child.name.lower().endswith(".safetensors"):
                yield path


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _cached_detect(path: Path) -> tuple[Detection | None, str | None]:
    signature = _signature(path)
    with _lock:
        hit = _cache.get(path)
    if hit is not None and hit[0] == signature:
        return hit[1], hit[2]
    try:
        detection, error = detect(path), None
    except CheckpointError as failure:
        detection, error = None, str(failure)
        log.warning("%s", failure)
    with _lock:
        _cache[path] = (signature, detection, error)
    return detection, error


def _signature(path: Path) -> tuple:
    """(mtime_ns, size) of a file; of a folder, of its JSON configs and weights files too."""
    from core.checkpoints.detect_folder import WEIGHT_FILE

    def stat(p: Path) -> tuple:
        try:
            info = p.stat()
            return (p.name, info.st_mtime_ns, info.st_size)
        except OSError:
            return (p.name, None, None)

    if not path.is_dir():
        return stat(path)
    parts = [stat(path / "model_index.json"), stat(path / "config.json")]
    for sub in sorted(path.iterdir()):
        if sub.is_dir() and not sub.name.startswith("."):
            parts.append(stat(sub / "config.json"))
            parts.extend(stat(f) for f in sorted(sub.iterdir()) if WEIGHT_FILE.fullmatch(f.name))
        elif WEIGHT_FILE.fullmatch(sub.name):
            parts.append(stat(sub))
    return tuple(parts)


def _families(family_filter: str | Iterable[str] | None) -> set[str] | None:
    if family_filter is None:
        return None
    names = [family_filter] if isinstance(family_filter, str) else list(family_filter)
    wanted: set[str] = set()
    for name in names:
        wanted.update(CATEGORIES.get(name, (name,)))
    return wanted


def _inside(path: Path, root: Path) -> bool:
    """Whether a display name stays in its folder (no climbing out with ``..``).

    Symlinks inside the folder may point anywhere: users link their models in."""
    return ".." not in path.relative_to(root).parts

"""Where the files the workbench ships are: the built-in models and
tokenizers (``resources/``) and the example workflows (``workflows/``).

In the repository both are top-level folders; ``setup.py`` installs them as
the packages ``workbench_resources`` and ``workbench_workflows`` (setuptools
``package_dir``), so a wheel carries them like any package data and an
editable install maps them back to the folders. They are found through
:mod:`importlib.resources`, never relative to this file: an installed
``core`` has no repository around it.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

RESOURCES_PACKAGE = "workbench_resources"
WORKFLOWS_PACKAGE = "workbench_workflows"


def package_folder(package: str) -> Path:
    """The folder of an installed data package (wheels and editable installs
    are unpacked on disk, so it is a real directory)."""
    try:
        folder = files(package)
    except ModuleNotFoundError:  # an editable install made before the mapping existed
        raise ModuleNotFoundError(
            f"the package {package!r} (the workbench's shipped files) is not installed: "
            "reinstall the workbench (in a checkout: pip install -e .)") from None
    if not isinstance(folder, Path):  # a zipped install: model files must be real files
        raise ModuleNotFoundError(f"{package!r} is not installed as a folder ({folder}): "
                                  "reinstall the workbench with pip")
    return folder


RESOURCES_DIR = package_folder(RESOURCES_PACKAGE)
#: The built-in shapes models (``shapes-ldm.safetensors`` …).
MODELS_DIR = RESOURCES_DIR / "models"
#: Tokenizer files the real-checkpoint loaders need offline (CLIP BPE, T5).
TOKENIZERS_DIR = RESOURCES_DIR / "tokenizers"
#: The example workflows (File → Examples).
WORKFLOWS_DIR = package_folder(WORKFLOWS_PACKAGE)
#: What ``diffusion-workbench`` with no arguments opens.
DEFAULT_WORKFLOW = WORKFLOWS_DIR / "txt2img.json"

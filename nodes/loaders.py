"""Loader nodes for checkpoints, ControlNets and VAEs: the built-in shapes
models by name, the user's models folders (listed by what each file is) and
any file by path — SD 1.x/2.x, SDXL, SD3/3.5, Flux.1, in the original or the
diffusers layout.

The dropdowns list the models folders as they are when the catalogue is
built (:func:`with_library_choices`); a name from a folder is resolved to
its file when the node runs.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType

FILE_CHOICE = "file…"
MODELS_ENV_VAR = "DIFFUSION_WORKBENCH_MODELS"  # core.checkpoints.library.ENV_VAR
CHECKPOINT_BUILTINS = ("shapes-ldm", "shapes-ddpm", "shapes-flow", "shapes-palette",
                       "shapes-unclip", "shapes-refiner", "shapes-cascade-base",
                       "shapes-cascade-base-clip", "shapes-sr", "shapes-sana", "shapes-video")
VAE_BUILTINS = ("shapes-vae", "shapes-dcae")
PART_TIP = "Only for a file that lacks it (a model-only file); empty = the checkpoint's own"
#: type_id -> the library category its dropdown lists.
LIBRARY_CATEGORIES = {"model.checkpoint": "checkpoint", "model.controlnet": "controlnet",
                      "model.vae": "vae"}


def model_source(name: str, path: str) -> Path:
    """The file a loader reads: a built-in name, a models-folder name, or the path."""
    from core.checkpoints.library import resolve
    from core.models.builtin import BUILTIN_NAMES, model_file

    source = path.strip() if name == FILE_CHOICE else name
    if not source:
        raise ValueError(f"choose a model, or '{FILE_CHOICE}' and a path")
    if source in BUILTIN_NAMES:
        return model_file(source)
    return resolve(source)


def _optional_file(text: str) -> Path | None:
    from core.checkpoints.library import resolve

    return resolve(text.strip()) if text.strip() else None


def load_checkpoint_node(ctx, name, path, prediction="auto", vae_file="", clip_l="", clip_g="",
                         t5xxl=""):
    """A checkpoint's backbone, text encoder and VAE (as ComfyUI's loader): any
    family the detector knows; a pixel-space model's "VAE" maps pixels to its
    data space and back."""
    from core.models.families.dispatch import load_any_checkpoint

    loaded = load_any_checkpoint(
        model_source(name, path), prediction=prediction, vae=_optional_file(vae_file),
        clip_l=_optional_file(clip_l), clip_g=_optional_file(clip_g),
        t5xxl=_optional_file(t5xxl), device=ctx.device, dtype=ctx.dtype)
    return {"model": loaded.model, "clip": loaded.clip, "vae": loaded.vae}


def load_controlnet_node(ctx, name, path):
    """A ControlNet: the workbench's own, or an original-layout (``control_model.…``)
    or diffusers-layout file or folder, for SD 1.x or SDXL."""
    from core.checkpoints.detect import detect
    from core.models.builtin import load_controlnet
    from core.models.families.controlnet import load_controlnet_file

    file = model_source(name, path)
    if file.is_file() and detect(file).family == "workbench":
        return load_controlnet(str(file), ctx.device, ctx.dtype)
    return load_controlnet_file(file, ctx.device, ctx.dtype)


def load_vae_node(ctx, name, path, kind):
    """A VAE file on its own (to replace a checkpoint's, or for a model-only file)."""
    from core.checkpoints.detect import detect
    from core.models.families.dispatch import load_any_vae
    from core.models.builtin import load_vae_handle

    file = model_source(name, path)
    if file.is_file() and detect(file).family == "workbench":
        return load_vae_handle(file, ctx.device, ctx.dtype)[0]
    return load_any_vae(file, kind, ctx.device, ctx.dtype)


def describe_choice(params) -> str:
    """What the file a loader's parameters point at is, in a sentence, from its
    header alone (for the loader's panel; nothing is loaded): '' when none is chosen."""
    from core.checkpoints import CheckpointError
    from core.checkpoints.detect import detect

    name, path = str(params.get("name", FILE_CHOICE)), str(params.get("path", ""))
    if name == FILE_CHOICE and not path.strip():
        return ""
    try:
        return detect(model_source(name, path)).describe()
    except (CheckpointError, OSError, ValueError) as error:
        return str(error)


def files_fingerprint(params) -> str:
    """Changes when any file the node reads changes on disk (cached outputs must not go stale)."""
    parts = []
    for key in ("path", "name", "vae_file", "clip_l", "clip_g", "t5xxl"):
        text = str(params.get(key, "")).strip()
        parts.append(f"{key}:{_stat(text)}" if text and text != FILE_CHOICE else f"{key}:")
    return "|".join(parts)


def _stat(text: str) -> str:
    from core.checkpoints import CheckpointError
    from core.checkpoints.library import resolve
    from core.models.builtin import BUILTIN_NAMES, model_file

    try:
        file = model_file(text) if text in BUILTIN_NAMES else resolve(text)
        stat = file.stat()
    except (CheckpointError, OSError):
        return "missing"
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def _name_and_path(builtins: tuple[str, ...], what: str) -> tuple[Input, Input]:
    return (Input("name", PortType.STRING, builtins[0], choices=(*builtins, FILE_CHOICE),
                  tooltip=f"A built-in {what}, one from your models folders, or "
                          f"'{FILE_CHOICE}' to load the path below"),
            Input("path", PortType.STRING, "", widget="file",
                  tooltip="A .safetensors file or a diffusers folder"))


def with_library_choices(specs: tuple[NodeSpec, ...]) -> tuple[NodeSpec, ...]:
    """The loader specs with the models folders' files added to their dropdowns.

    Without models folders nothing is imported: building the catalogue stays
    free of torch and of file-system scans (plugins and the CLI rely on it)."""
    if not _models_dirs_set():
        return specs
    from core.checkpoints.library import choices
    return tuple(_listing(spec, choices(LIBRARY_CATEGORIES[spec.type_id]))
                 if spec.type_id in LIBRARY_CATEGORIES else spec for spec in specs)


def _models_dirs_set() -> bool:
    """Whether any models folder is set, without importing the library (and torch)
    when none is: folders are set through that module or its environment variable."""
    library = sys.modules.get("core.checkpoints.library")
    if library is not None:
        return bool(library.models_dirs())
    return bool(os.environ.get(MODELS_ENV_VAR, "").strip())


def _listing(spec: NodeSpec, names: list[str]) -> NodeSpec:
    if not names:
        return spec
    inputs = tuple(dataclasses.replace(i, choices=(*i.choices[:-1], *names, FILE_CHOICE))
                   if i.name == "name" else i for i in spec.inputs)
    return dataclasses.replace(spec, inputs=inputs)


NODES = (
    NodeSpec(
        type_id="model.checkpoint", title="Checkpoint loader", category="model",
        description="Load a model file — the built-in models, SD 1.x/2.x, SDXL, SD3/3.5 or "
                    "Flux.1, one file or a diffusers folder: its backbone (MODEL), text "
                    "encoder (CLIP) and VAE.",
        fn=load_checkpoint_node,
        inputs=(
            *_name_and_path(CHECKPOINT_BUILTINS, "model"),
            Input("prediction", PortType.STRING, "auto", choices=("auto", "epsilon", "v_prediction"),
                  tooltip="What the network predicts, where its weights cannot tell (SD 2.x: "
                          "768 models predict v, 512-base ones ε); auto = the file's own claim"),
            Input("vae_file", PortType.STRING, "", widget="file",
                  tooltip="A VAE file to use instead of the checkpoint's (or for a file without one)"),
            Input("clip_l", PortType.STRING, "", widget="file", tooltip=f"CLIP-L file. {PART_TIP}"),
            Input("clip_g", PortType.STRING, "", widget="file",
                  tooltip=f"OpenCLIP bigG file (SDXL, SD3). {PART_TIP}"),
            Input("t5xxl", PortType.STRING, "", widget="file",
                  tooltip=f"T5-XXL file (SD3: optional; Flux: needed). {PART_TIP}"),
        ),
        outputs=(Output("model", PortType.MODEL), Output("clip", PortType.CLIP),
                 Output("vae", PortType.VAE)),
        fingerprint=files_fingerprint,
    ),
    NodeSpec(
        type_id="model.controlnet", title="ControlNet loader", category="model",
        description="Load a ControlNet (built-in, original control_model.… layout or "
                    "diffusers); apply it to a prompt with an image hint.",
        fn=load_controlnet_node,
        inputs=_name_and_path(("shapes-controlnet",), "ControlNet"),
        outputs=(Output("controlnet", PortType.CONTROLNET),),
        fingerprint=files_fingerprint,
    ),
    NodeSpec(
        type_id="model.vae", title="VAE loader", category="model",
        description="Load a VAE file on its own: SD 1.x/2.x, SDXL (4 latent channels), SD3 or "
                    "Flux (16), or a built-in autoencoder (shapes-vae; shapes-dcae, Sana's "
                    "deep-compression autoencoder).",
        fn=load_vae_node,
        inputs=(
            *_name_and_path(VAE_BUILTINS, "VAE"),
            Input("kind", PortType.STRING, "auto", choices=("auto", "sd", "sdxl", "sd3", "flux"),
                  tooltip="Whose latent scale (and shift) it uses; the weights cannot tell. "
                          "auto: the file's family, else its name"),
        ),
        outputs=(Output("vae", PortType.VAE),),
        fingerprint=files_fingerprint,
    ),
)

"""Components of a diffusers-format folder (``model_index.json``), offline.

Each component is loaded by the class its ``model_index.json`` names, from
its own subfolder's config and safetensors weights (sharded and ``fp16``
variant files included), in the requested dtype, memory-mapped by diffusers /
transformers themselves. Pickled ``.bin`` weights are refused.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from core.checkpoints.boundary import CheckpointError, checkpoint_boundary
from core.models.families.weights import finish, loading_errors, offline

log = logging.getLogger(__name__)
INDEX = "model_index.json"


def is_diffusers_folder(path) -> bool:
    return Path(path).expanduser().is_dir() and (Path(path).expanduser() / INDEX).is_file()


def _classes(folder: Path) -> dict[str, tuple[str | None, str | None]]:
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{folder / INDEX}: unreadable ({error})") from None
    return {k: tuple(v) for k, v in index.items() if isinstance(v, list) and len(v) == 2}


@checkpoint_boundary("diffusers folder", "folder")
def load_folder_component(folder, name: str, device: Any = "cpu", dtype: torch.dtype = torch.float32,
                          required: bool = True):
    """The ``name`` component (``transformer``, ``vae``, ``text_encoder_2`` …) or
    None when the folder has none and it is not ``required``."""
    folder = Path(folder).expanduser()
    library, class_name = _classes(folder).get(name, (None, None))
    where = folder / name
    if library is None or not where.is_dir():
        if required:
            raise CheckpointError(f"{folder}: the diffusers folder has no {name}")
        return None
    files = sorted(p.name for p in where.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{where}: no .safetensors weights (pickled weights are refused)")
    variant = "fp16" if all(".fp16." in f for f in files) else None
    offline()
    with loading_errors(where, name):
        module = getattr(__import__(library), class_name)
        dtype_option = {"torch_dtype": dtype} if library == "diffusers" else {"dtype": dtype}
        model = module.from_pretrained(str(where), local_files_only=True, use_safetensors=True,
                                       variant=variant, **dtype_option)
    refuse_integer_weights(where, model, name)
    return finish(model, where, name, device)


#: safetensors dtypes of floating-point values.
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})


def refuse_integer_weights(where: Path, model: torch.nn.Module, name: str) -> None:
    """``from_pretrained`` casts integer or bool tensors into float parameters
    without a word; the files' headers (no data read) say what they held."""
    from core.checkpoints.header import read_header

    floats = {key for key, value in model.state_dict().items() if value.is_floating_point()}
    for file in sorted(where.glob("*.safetensors")):
        for key, info in read_header(file).tensors.items():
            if key in floats and info.dtype not in FLOAT_DTYPES:
                raise CheckpointError(f"{file}: {name} tensor {key} holds {info.dtype} values where "
                                      "the network has a float parameter: not a weight of this model")


def folder_tokenizer(folder, name: str,
                     max_length: int) -> Callable[[Sequence[str]], torch.Tensor] | None:
    """The folder's own tokenizer ``name`` as texts → (B, max_length) ids, or None."""
    folder = Path(folder).expanduser()
    library, class_name = _classes(folder).get(name, (None, None))
    if library != "transformers" or not (folder / name).is_dir():
        return None
    offline()
    import transformers

    try:
        tokenizer = getattr(transformers, class_name).from_pretrained(str(folder / name),
                                                                      local_files_only=True)
    except (OSError, ValueError, AttributeError) as error:
        log.warning("%s: its %s cannot be read (%s); using the built-in one", folder, name, error)
        return None

    def tokenize(texts: Sequence[str]) -> torch.Tensor:
        return tokenizer(list(texts), padding="max_length", max_length=max_length, truncation=True,
                         add_special_tokens=True, return_tensors="pt").input_ids  # (B, L)

    return tokenize

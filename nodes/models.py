"""Model nodes: backbones to sample from."""
from __future__ import annotations

from pathlib import Path

from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
MAX_IDEAL_IMAGES = 4096


def ideal_denoiser(ctx, source, folder, count, size, seed, parameterization):
    """The closed-form optimal denoiser of a set of images: no training, and
    it can only ever reproduce the set (what memorisation looks like)."""
    from core.diffusion.ideal import IdealDenoiser
    from core.values import DiffusionModel

    if source == "built-in shapes":
        from core.data.shapes import shapes_dataset

        images, _outlines, captions = shapes_dataset(count, seed=seed, pixels=size)
    else:
        images, captions = _folder_images(folder, count, size)
    p = "flow" if parameterization == "flow matching" else "ve"
    return DiffusionModel(
        name=f"ideal denoiser ({len(images)} images)",
        denoiser=IdealDenoiser(images, captions, parameterization=p),
        parameterization=p,
        latent_channels=3,
        description="E[x_0 | x_t] over a finite set of images",
    )


def _folder_images(folder: str, count: int, size: int):
    import torch
    from PIL import Image

    from core.images import from_pil

    if not folder:
        raise ValueError("choose a folder of images (or the built-in shapes)")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"no folder at {str(root)!r}")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    if not files:
        raise ValueError(f"no PNG, JPEG, WebP or BMP images in {str(root)!r}")
    images = []
    for file in files:
        with Image.open(file) as picture:
            square = picture.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
            images.append(from_pil(square)[0] * 2 - 1)
    captions = [f.stem.replace("_", " ").replace("-", " ") for f in files]
    return torch.stack(images), captions


def folder_fingerprint(params) -> str:
    """Changes when the folder's listing or files change."""
    if params["source"] != "folder" or not params["folder"]:
        return ""
    root = Path(params["folder"]).expanduser()
    entries = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in root.iterdir())
    return repr(entries)


def load_checkpoint_node(ctx, name, path):
    """A checkpoint's backbone, text encoder and VAE (as ComfyUI's loader)."""
    from core.models.builtin import load_ldm

    source = path.strip() if name == "file…" else name
    if not source:
        raise ValueError("choose a built-in model, or 'file…' and a path")
    loaded = load_ldm(source, ctx.device)
    return {"model": loaded.model, "clip": loaded.clip, "vae": loaded.vae}


def checkpoint_fingerprint(params) -> str:
    from core.models.builtin import model_file

    source = params["path"] if params["name"] == "file…" else params["name"]
    file = model_file(source) if source else None
    if file is None or not file.is_file():
        return "missing"
    stat = file.stat()
    return f"{stat.st_mtime_ns}:{stat.st_size}"


NODES = (
    NodeSpec(
        type_id="model.ideal_denoiser",
        title="Ideal denoiser",
        category="model",
        description="The optimal denoiser of a set of images, in closed form: no training needed.",
        fn=ideal_denoiser,
        inputs=(
            Input("source", PortType.STRING, "built-in shapes", choices=("built-in shapes", "folder")),
            Input("folder", PortType.STRING, "", widget="file",
                  tooltip="A folder of images; file names serve as captions"),
            Input("count", PortType.INT, 64, min=1, max=MAX_IDEAL_IMAGES),
            Input("size", PortType.INT, 32, min=8, max=512, step=8),
            Input("seed", PortType.INT, 0, min=0, max=2**63 - 1,
                  tooltip="Which built-in shapes are drawn"),
            Input("parameterization", PortType.STRING, "diffusion",
                  choices=("diffusion", "flow matching")),
        ),
        outputs=(Output("model", PortType.MODEL),),
        fingerprint=folder_fingerprint,
    ),
    NodeSpec(
        type_id="model.checkpoint",
        title="Checkpoint loader",
        category="model",
        description="Load a model file: its backbone (MODEL), text encoder (CLIP) and VAE.",
        fn=load_checkpoint_node,
        inputs=(
            Input("name", PortType.STRING, "shapes-ldm", choices=("shapes-ldm", "file…"),
                  tooltip="A built-in model, or 'file…' to load the path below"),
            Input("path", PortType.STRING, "", widget="file", tooltip="A .safetensors model file"),
        ),
        outputs=(Output("model", PortType.MODEL), Output("clip", PortType.CLIP),
                 Output("vae", PortType.VAE)),
        fingerprint=checkpoint_fingerprint,
    ),
)

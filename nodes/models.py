"""Model nodes: backbones to sample from."""
from __future__ import annotations

from pathlib import Path

from core.data.shapes import COLORS, SHAPES
from core.nodespec import Input, NodeSpec, Output
from core.ports import PortType

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
MAX_IDEAL_IMAGES = 4096


def ideal_denoiser(ctx, source, folder, count, size, seed, parameterization):
    """The closed-form optimal denoiser of a set of images: no training, and
    it can only ever reproduce the set (what memorisation looks like)."""
    from core.diffusion.ideal import IdealDenoiser
    from core.latent_sizes import LatentSizes
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
        latent_sizes=LatentSizes(exactly=(size, size)),  # it compares x with its images
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


def load_classifier_node(ctx, name, path):
    """A noise-aware classifier p(y | x_t, t) for classifier guidance."""
    from core.models.builtin import load_classifier

    return load_classifier(_source(name, path), ctx.device)


def classifier_guidance(ctx, model, classifier, shape, color, scale):
    """The model steered by a classifier's gradient (Dhariwal & Nichol 2021,
    Algorithm 2): sample it with guidance 1 and no prompt to see the classifier
    alone decide what is drawn."""
    import dataclasses

    from core.diffusion.guidance import ClassifierGuidedDenoiser
    from core.models.classifier import ClassTarget

    if model.parameterization != "ve":
        raise ValueError("classifier guidance needs a diffusion model, not a flow-matching one")
    network, labels, schedule = classifier
    if model.latent_channels != network.config["in_channels"]:
        raise ValueError(f"the classifier reads {network.config['in_channels']}-channel images "
                         f"but {model.name!r} samples {model.latent_channels} channels")
    target = ClassTarget(network, labels, schedule, {
        "shape": None if shape == "any" else shape, "color": None if color == "any" else color})
    guided = ClassifierGuidedDenoiser(model.denoiser, target, scale)
    wanted = " ".join(v for v in (color, shape) if v != "any")
    return dataclasses.replace(model, denoiser=guided,
                               description=f"{model.description}, guided toward {wanted} (s = {scale})")


def load_noisy_clip_node(ctx, name, path):
    """A noise-aware CLIP (image and text in one embedding) for CLIP guidance."""
    from core.models.builtin import load_noisy_clip

    return load_noisy_clip(_source(name, path), ctx.device)


def load_prior_node(ctx, name, path):
    """An unCLIP diffusion prior: caption → CLIP image embedding (DALL·E 2 §2.2)."""
    from core.models.builtin import load_prior

    return load_prior(_source(name, path), ctx.device)


def clip_guidance(ctx, model, clip, prompt, scale):
    """The model steered by the gradient of a noise-aware CLIP's image–text
    similarity (GLIDE, Nichol et al. 2021, §2.4): sample it with guidance 1
    and no prompt to see CLIP alone decide what is drawn."""
    import dataclasses

    from core.diffusion.guidance import ClassifierGuidedDenoiser
    from core.models.noisy_clip import ClipTarget

    if model.parameterization != "ve":
        raise ValueError("CLIP guidance needs a diffusion model, not a flow-matching one")
    channels = clip.network.config["image"]["in_channels"]
    if model.latent_channels != channels:
        raise ValueError(f"the CLIP model reads {channels}-channel images "
                         f"but {model.name!r} samples {model.latent_channels} channels")
    target = ClipTarget(clip.network, clip.tokenizer, clip.schedule, prompt.strip())
    guided = ClassifierGuidedDenoiser(model.denoiser, target, scale)
    return dataclasses.replace(model, denoiser=guided, description=(
        f"{model.description}, CLIP-guided toward {prompt.strip()!r} (s = {scale})"))


def _source(name: str, path: str) -> str:
    source = path.strip() if name == "file…" else name
    if not source:
        raise ValueError("choose a built-in model, or 'file…' and a path")
    return source


def checkpoint_fingerprint(params) -> str:
    from core.models.builtin import model_file

    source = params["path"] if params["name"] == "file…" else params["name"]
    file = model_file(source) if source else None
    if file is None or not file.is_file():
        return "missing"
    stat = file.stat()
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def _loader(type_id: str, title: str, description: str, fn, builtins: tuple[str, ...],
            what: str, outputs: tuple[Output, ...]) -> NodeSpec:
    """A node that loads a built-in model by name, or any model file by path."""
    return NodeSpec(
        type_id=type_id, title=title, category="model", description=description, fn=fn,
        inputs=(
            Input("name", PortType.STRING, builtins[0], choices=(*builtins, "file…"),
                  tooltip=f"A built-in {what}, or 'file…' to load the path below"),
            Input("path", PortType.STRING, "", widget="file", tooltip="A .safetensors model file"),
        ),
        outputs=outputs, fingerprint=checkpoint_fingerprint,
    )


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
    _loader("model.classifier", "Classifier loader",
            "Load a noise-aware classifier p(y | x_t, t) for classifier guidance.",
            load_classifier_node, ("shapes-classifier",), "classifier",
            (Output("classifier", PortType.CLASSIFIER),)),
    NodeSpec(
        type_id="model.classifier_guidance",
        title="Classifier guidance",
        category="model",
        description="Steer a diffusion model with a classifier's gradient toward a class.",
        fn=classifier_guidance,
        inputs=(
            Input("model", PortType.MODEL),
            Input("classifier", PortType.CLASSIFIER),
            Input("shape", PortType.STRING, "circle", choices=("any", *SHAPES)),
            Input("color", PortType.STRING, "red", choices=("any", *COLORS)),
            Input("scale", PortType.FLOAT, 3.0, min=0.0, max=100.0, step=0.5,
                  tooltip="s in ε̂ − s·√(1−ᾱ)·∇ log p(y|x_t); 0 = no guidance"),
        ),
        outputs=(Output("model", PortType.MODEL),),
    ),
    _loader("model.noisy_clip", "Noise-aware CLIP loader",
            "Load a CLIP whose image side reads noisy images x_t, for CLIP guidance.",
            load_noisy_clip_node, ("shapes-clip",), "noise-aware CLIP",
            (Output("clip", PortType.NOISY_CLIP),)),
    NodeSpec(
        type_id="model.clip_guidance",
        title="CLIP guidance",
        category="model",
        description="Steer a diffusion model with the gradient of a noise-aware CLIP's "
                    "image–text similarity toward a prompt (GLIDE).",
        fn=clip_guidance,
        inputs=(
            Input("model", PortType.MODEL),
            Input("clip", PortType.NOISY_CLIP),
            Input("prompt", PortType.STRING, "a large red circle", widget="multiline",
                  tooltip="What CLIP should find in the picture; every word must be one it knows"),
            Input("scale", PortType.FLOAT, 3.0, min=0.0, max=100.0, step=0.5,
                  tooltip="s in ε̂ − s·√(1−ᾱ)·∇ (τ f(x_t)·g(c)); 0 = no guidance"),
        ),
        outputs=(Output("model", PortType.MODEL),),
    ),
    _loader("model.prior", "Prior loader",
            "Load an unCLIP prior: caption → CLIP image embedding.",
            load_prior_node, ("shapes-prior",), "unCLIP prior",
            (Output("prior", PortType.PRIOR),)),
)

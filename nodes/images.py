"""Image nodes: make, load, combine, blur and save pictures (IMAGE convention
in ``core.images``: float32 CPU tensors (B, C, H, W) in [0, 1]).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from core.images import check_image, from_pil
from core.nodespec import MAX_SEED, Input, NodeSpec, Output
from core.ports import PortType

PATTERNS = ("gradient", "checkerboard", "rings", "color bars")


def make_pattern(ctx, pattern: str, width: int, height: int):
    """A procedural test picture, the same on every machine."""
    import torch

    ys = torch.linspace(0, 1, height).view(height, 1).expand(height, width)  # (H, W)
    xs = torch.linspace(0, 1, width).view(1, width).expand(height, width)  # (H, W)
    if pattern == "gradient":
        channels = [xs, ys, 1 - xs * ys]
    elif pattern == "checkerboard":
        columns = torch.arange(width).view(1, width) // 8  # (1, W)
        rows = torch.arange(height).view(height, 1) // 8  # (H, 1)
        cells = ((rows + columns) % 2).float()  # (H, W)
        channels = [cells, cells, cells]
    elif pattern == "rings":
        radius = torch.sqrt((xs - 0.5) ** 2 + (ys - 0.5) ** 2)
        channels = [0.5 + 0.5 * torch.cos(radius * 2 * math.pi * k) for k in (6, 9, 12)]
    else:  # color bars: white, yellow, cyan, green, magenta, red, blue
        bars = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 1, 1], [0, 1, 0], [1, 0, 1], [1, 0, 0], [0, 0, 1]])
        index = (xs * 7).clamp(max=6.999).long()  # (H, W)
        channels = [bars[:, c].float()[index] * 0.75 for c in range(3)]
    return torch.stack(channels).unsqueeze(0).contiguous()  # (1, 3, H, W)


def load_image(ctx, path: str):
    """Read a PNG, JPEG, WebP … file as an RGB (or RGBA) IMAGE."""
    from PIL import Image, UnidentifiedImageError

    if not path:
        raise ValueError("no file chosen: set the 'path' parameter")
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"no image file at {str(file)!r}")
    try:
        with Image.open(file) as picture:
            return from_pil(picture)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{str(file)!r} is not a readable image: {error}") from None


def file_fingerprint(params) -> str:
    """Changes when the file changes, so an edited image is read again."""
    stat = os.stat(Path(params["path"]).expanduser())
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def add_noise(ctx, image, std: float, seed: int):
    """x + std·ε in the [-1, 1] range models work in, with ε ~ N(0, I) drawn on
    the CPU from ``seed`` so the result is the same on every device."""
    import torch

    check_image(image)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(image.shape, generator=generator, dtype=torch.float32)
    noisy = (image * 2 - 1) + std * noise
    return (noisy + 1) / 2


def blend(ctx, a, b, factor: float):
    """(1 − factor)·a + factor·b."""
    check_image(a, "image a")
    check_image(b, "image b")
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    return a * (1 - factor) + b * factor


def heat_diffusion(ctx, image, steps: int, rate: float):
    """Blur by running the heat equation ∂x/∂τ = Δx for ``steps`` explicit
    Euler steps (stable for rate ≤ 0.25): the physical process diffusion
    models are named after. Each step is reported, so it can be watched,
    paused and cancelled like a sampler."""
    import torch.nn.functional as F

    check_image(image)
    x = image
    for index in range(steps):
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate")  # (B, C, H+2, W+2)
        laplacian = (
            padded[:, :, :-2, 1:-1] + padded[:, :, 2:, 1:-1]
            + padded[:, :, 1:-1, :-2] + padded[:, :, 1:-1, 2:] - 4 * x
        )  # (B, C, H, W)
        x = x + rate * laplacian
        ctx.step(index, steps, t=float(index + 1), x_t=x)
    return x


def save_image(ctx, images):
    """An output: the command line writes these as PNGs, the GUI shows them."""
    check_image(images, "images")
    return images


def _image_in(name: str = "image", tooltip: str = "") -> Input:
    return Input(name, PortType.IMAGE, tooltip=tooltip)


def _image_out(name: str = "image") -> Output:
    return Output(name, PortType.IMAGE)


def shape_scene(ctx, shape, color, size, position, background, rotation, pixels):
    """One shapes-world picture, drawn exactly as the training data is, with
    its outline hint: a test input for img2img, inpainting and ControlNet."""
    from core.data.shapes import SIZES, ShapeScene, render
    from core.images import from_pil

    low, high = SIZES[size]
    scene = ShapeScene(shape, color, size, position, background, (low + high) / 2,
                       float(rotation), (0.0, 0.0))
    image, outline = render(scene, pixels)
    return {"image": from_pil(image), "outline": from_pil(outline)}


def join_row(ctx, a, b, c, d, labels=""):
    """Images side by side (same height); the batches are laid out in one row.

    ``labels`` (comma-separated, one per picture in row order) are written in a
    strip under the pictures, so a comparison says which picture is which;
    the pictures' own pixels are never drawn over. No labels, no strip."""
    import torch

    parts = [image for image in (a, b, c, d) if image is not None]
    for image in parts:
        check_image(image)
    heights = {int(image.shape[-2]) for image in parts}
    if len(heights) != 1:
        raise ValueError(f"images of different heights cannot share a row: {sorted(heights)}")
    tiles = [image[:, :3] if image.shape[1] >= 3 else image.expand(-1, 3, -1, -1) for image in parts]
    pictures = [tile[i] for tile in tiles for i in range(len(tile))]  # each (3, H, W)
    names = [name.strip() for name in labels.split(",")] if labels.strip() else []
    if names:
        pictures = [torch.cat([pic, label_strip(names[i] if i < len(names) else "", pic.shape[-1])],
                              dim=-2) for i, pic in enumerate(pictures)]  # (3, H + strip, W)
    columns = torch.cat(pictures, dim=-1)  # (3, H (+ LABEL_STRIP), ΣW)
    return columns.unsqueeze(0)  # (1, 3, H (+ LABEL_STRIP), ΣW)


#: Height in pixels of the strip that carries a picture's label.
LABEL_STRIP = 14


def label_strip(text: str, width: int):
    """``text`` in white on black, centred in a (3, LABEL_STRIP, width) strip
    (PIL's built-in font: no font file is needed); cut to fit the width."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    while text and font.getbbox(text)[2] > width - 2:
        text = text[:-1]
    strip = Image.new("RGB", (width, LABEL_STRIP))
    if text:
        left, top, right, bottom = font.getbbox(text)
        ImageDraw.Draw(strip).text(((width - right) // 2, (LABEL_STRIP - bottom - top) // 2), text,
                                   fill=(255, 255, 255), font=font)
    return from_pil(strip)[0]  # (3, LABEL_STRIP, width)


def rectangle_mask(ctx, width, height, left, top, right, bottom):
    """1 inside the rectangle (fractions of the size), 0 outside: where to repaint."""
    import torch

    if not (left < right and top < bottom):
        raise ValueError("the rectangle is empty: left < right and top < bottom are needed")
    mask = torch.zeros(1, 1, height, width)
    mask[..., round(top * height):round(bottom * height), round(left * width):round(right * width)] = 1
    return mask


def composite(ctx, base, overlay, mask):
    """overlay where the mask is 1, base where it is 0: after inpainting, puts
    the untouched pixels back exactly (a VAE decoder's attention otherwise
    shifts colours across the whole picture)."""
    import torch.nn.functional as F

    check_image(base, "base")
    check_image(overlay, "overlay")
    if base.shape[-2:] != overlay.shape[-2:]:
        raise ValueError(f"base and overlay differ in size: {tuple(base.shape[-2:])} and "
                         f"{tuple(overlay.shape[-2:])}")
    mask = mask.float().reshape(-1, 1, *mask.shape[-2:])  # (B|1, 1, h, w)
    if mask.shape[-2:] != base.shape[-2:]:
        mask = F.interpolate(mask, size=base.shape[-2:], mode="bilinear", align_corners=False)
    channels = min(base.shape[1], overlay.shape[1])
    return base[:, :channels] * (1 - mask) + overlay[:, :channels] * mask


def grayscale(ctx, image):
    """The luminance of an image (ITU-R BT.601 weights) as three equal channels."""
    from core.models.concat import luminance

    check_image(image)
    if image.shape[1] == 1:
        return image.expand(-1, 3, -1, -1).contiguous()
    return luminance(image).expand(-1, 3, -1, -1).contiguous()  # (B, 3, H, W)


RESIZE_METHODS = ("bicubic", "bilinear", "area", "nearest")


def resize(ctx, image, width: int, height: int, method: str):
    """The image at width × height: bicubic (SR3's and the cascade's upsampling,
    the baseline a super-resolution model must beat), bilinear, area (a box
    filter, for downsampling) or nearest; antialiased when it shrinks."""
    import torch.nn.functional as F

    check_image(image)
    if method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {method!r}; choose one of "
                         f"{', '.join(RESIZE_METHODS)}")
    if width < 1 or height < 1:
        raise ValueError(f"an image needs a positive size, not {width}×{height}")
    size = (int(height), int(width))
    if tuple(image.shape[-2:]) == size:
        return image
    shrinks = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    options = {"align_corners": False, "antialias": shrinks} \
        if method in ("bicubic", "bilinear") else {}
    return F.interpolate(image.float(), size=size, mode=method, **options).clamp(0, 1)


def _scene_inputs():
    from core.data.shapes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES

    return (
        Input("shape", PortType.STRING, "circle", choices=SHAPES),
        Input("color", PortType.STRING, "red", choices=tuple(COLORS)),
        Input("size", PortType.STRING, "large", choices=tuple(SIZES)),
        Input("position", PortType.STRING, "center", choices=POSITIONS),
        Input("background", PortType.STRING, "white", choices=tuple(BACKGROUNDS)),
        Input("rotation", PortType.FLOAT, 0.0, min=0.0, max=360.0, step=5.0),
        Input("pixels", PortType.INT, 64, min=16, max=1024, step=16),
    )


def _fraction(name: str, default: float) -> Input:
    return Input(name, PortType.FLOAT, default, min=0.0, max=1.0, step=0.05)


NODES = (
    NodeSpec(
        type_id="image.pattern",
        title="Test pattern",
        category="image",
        description="A procedural test picture: gradient, checkerboard, rings or colour bars.",
        fn=make_pattern,
        inputs=(
            Input("pattern", PortType.STRING, "gradient", choices=PATTERNS),
            Input("width", PortType.INT, 64, min=8, max=4096, step=8),
            Input("height", PortType.INT, 64, min=8, max=4096, step=8),
        ),
        outputs=(_image_out(),),
    ),
    NodeSpec(
        type_id="image.load",
        title="Load image",
        category="image",
        description="Read an image file (PNG, JPEG, WebP …) from disk.",
        fn=load_image,
        inputs=(Input("path", PortType.STRING, "", widget="file", tooltip="The image file"),),
        outputs=(_image_out(),),
        fingerprint=file_fingerprint,
    ),
    NodeSpec(
        type_id="image.add_noise",
        title="Add noise",
        category="image",
        description="Add seeded Gaussian noise of a given standard deviation (in [-1, 1] units).",
        fn=add_noise,
        inputs=(
            _image_in(),
            Input("std", PortType.FLOAT, 0.5, min=0.0, max=100.0, step=0.05,
                  tooltip="Standard deviation of the noise in the [-1, 1] pixel range"),
            Input("seed", PortType.INT, 0, min=0, max=MAX_SEED, widget="seed"),
        ),
        outputs=(_image_out(),),
    ),
    NodeSpec(
        type_id="image.blend",
        title="Blend",
        category="image",
        description="Mix two images of the same size: (1 − factor)·a + factor·b.",
        fn=blend,
        inputs=(
            _image_in("a"),
            _image_in("b"),
            Input("factor", PortType.FLOAT, 0.5, min=0.0, max=1.0, step=0.05, widget="slider"),
        ),
        outputs=(_image_out(),),
    ),
    NodeSpec(
        type_id="image.heat_diffusion",
        title="Heat diffusion",
        category="image",
        description="Blur by stepping the heat equation; every step can be watched and paused.",
        fn=heat_diffusion,
        inputs=(
            _image_in(),
            Input("steps", PortType.INT, 20, min=1, max=10000),
            Input("rate", PortType.FLOAT, 0.2, min=0.0, max=0.25, step=0.01,
                  tooltip="Diffusion per step; above 0.25 the explicit scheme is unstable"),
        ),
        outputs=(_image_out(),),
    ),
    NodeSpec(
        type_id="image.save",
        title="Save image",
        category="image",
        description="An output: each image is written as <node-id>_<index>.png with its workflow.",
        fn=save_image,
        inputs=(_image_in("images"),),
        outputs=(_image_out("images"),),
        is_output=True,
    ),
    NodeSpec(
        type_id="image.shape_scene",
        title="Shapes scene",
        category="image",
        description="Draw one shapes-world scene and its outline hint.",
        fn=shape_scene,
        inputs=_scene_inputs(),
        outputs=(_image_out(), Output("outline", PortType.IMAGE)),
    ),
    NodeSpec(
        type_id="image.grayscale",
        title="Grayscale",
        category="image",
        description="The image's luminance (ITU-R BT.601), e.g. a source for a colouriser.",
        fn=grayscale,
        inputs=(_image_in(),),
        outputs=(_image_out(),),
    ),
    NodeSpec(
        type_id="image.resize",
        title="Resize image",
        category="image",
        description="Scale an image to a size: bicubic, bilinear, area (box filter) or "
                    "nearest; e.g. the bicubic baseline beside a super-resolution model.",
        fn=resize,
        inputs=(
            _image_in(),
            Input("width", PortType.INT, 64, min=1, max=8192, step=8),
            Input("height", PortType.INT, 64, min=1, max=8192, step=8),
            Input("method", PortType.STRING, "bicubic", choices=RESIZE_METHODS),
        ),
        outputs=(_image_out(),),
    ),
    NodeSpec(
        type_id="image.join_row",
        title="Join images in a row",
        category="image",
        description="Lay up to four images side by side, to compare them, "
                    "with a label under each if given.",
        fn=join_row,
        inputs=(_image_in("a"), Input("b", PortType.IMAGE, optional=True),
                Input("c", PortType.IMAGE, optional=True), Input("d", PortType.IMAGE, optional=True),
                Input("labels", PortType.STRING, default="",
                      tooltip="Comma-separated names written under the pictures, in row order "
                              "(a's batch first); empty: no labels")),
        outputs=(_image_out(),),
    ),
    NodeSpec(
        type_id="image.composite",
        title="Composite with mask",
        category="image",
        description="Overlay where the mask is 1, base elsewhere (keeps an inpainted picture's "
                    "untouched pixels exact).",
        fn=composite,
        inputs=(_image_in("base"), _image_in("overlay"), Input("mask", PortType.MASK)),
        outputs=(_image_out(),),
    ),
    NodeSpec(
        type_id="mask.rectangle",
        title="Rectangle mask",
        category="image",
        description="A mask that is 1 inside a rectangle: the region to repaint.",
        fn=rectangle_mask,
        inputs=(
            Input("width", PortType.INT, 64, min=8, max=8192, step=8),
            Input("height", PortType.INT, 64, min=8, max=8192, step=8),
            _fraction("left", 0.25), _fraction("top", 0.25),
            _fraction("right", 0.75), _fraction("bottom", 0.75),
        ),
        outputs=(Output("mask", PortType.MASK),),
    ),
)

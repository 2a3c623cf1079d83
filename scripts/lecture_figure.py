"""docs/images/lecture-systems.png: what the lecture-system workflows make, one row each.

Runs issue 13's ``clip-guidance``, ``palette-colorize``, ``unclip-text``,
``unclip-variations``, ``unclip-blend``, ``refiner`` and ``cascade`` and
issue 14's ``sana`` and ``video`` at their own settings on the CPU, and
stacks their saved pictures (enlarged with nearest neighbours, 3× the
32-pixel samples and 2× the 64-pixel ones, so they stay sharp; a saved
video as the filmstrip of its frames) with each workflow's name above. Run:
``python scripts/lecture_figure.py [OUT.png]``; about a minute on a laptop CPU.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = ("clip-guidance", "palette-colorize", "unclip-text", "unclip-variations",
             "unclip-blend", "refiner", "cascade", "sana", "video")
MARGIN, LABEL = 8, 18


def pictures(name: str, folder: Path) -> Image.Image:
    """The workflow's saved pictures side by side."""
    out = folder / name
    subprocess.run([sys.executable, "-m", "app.cli.main", "run", str(REPO / "workflows" /
                    f"{name}.json"), "--out", str(out)], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    images = [_strip(p) for p in sorted([*out.glob("*.png"), *out.glob("*.gif")])]
    row = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)))
    x = 0
    for image in images:
        row.paste(image, (x, 0))
        x += image.width
    scale = 3 if row.height < 48 else 2
    return row.resize((row.width * scale, row.height * scale), Image.Resampling.NEAREST)


def _strip(path: Path) -> Image.Image:
    """A picture as it is; a video's frames side by side."""
    from PIL import ImageSequence

    with Image.open(path) as picture:
        frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(picture)]
    strip = Image.new("RGB", (sum(f.width for f in frames), frames[0].height))
    for index, frame in enumerate(frames):
        strip.paste(frame, (index * frame.width, 0))
    return strip


def main(target: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        rows = [(name, pictures(name, Path(folder))) for name in WORKFLOWS]
    width = max(row.width for _, row in rows) + 2 * MARGIN
    height = sum(row.height + LABEL + MARGIN for _, row in rows) + MARGIN
    sheet = Image.new("RGB", (width, height), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    y = MARGIN
    for name, row in rows:
        draw.text((MARGIN, y), f"workflows/{name}.json", fill=(230, 230, 230))
        sheet.paste(row, (MARGIN, y + LABEL))
        y += row.height + LABEL + MARGIN
    sheet.save(target)
    print(target)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "images" / "lecture-systems.png")

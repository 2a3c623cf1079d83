"""Fuzz targets: PNG files, as workflows (their text chunk) and as images.

``png.workflow`` opens damaged and crafted PNGs as workflows: handled is a
``WorkflowFormatError``, or a workflow that then goes through validation,
planning and saving (``targets_workflow.through_the_engine``).
``png.round_trip`` saves generated workflows (any Unicode, lone surrogates
included) into an output PNG and reopens them: the same document must come
back. ``png.image`` feeds damaged PNGs to the ``image.load`` node through
``run`` on the command line: handled is what ``targets_cli.run_cli`` says.
"""
from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from pathlib import Path

import torch
from hypothesis import strategies as st

from core.images import save_png
from core.workflow import WorkflowError, WorkflowFormatError, dumps, load, loads
from core.workflow.png import PNG_KEY, PNG_MAGIC
from tests.fuzz import FuzzTarget
from tests.fuzz.documents import TEXT, WORKFLOW_TEXT, example_documents, mutated_documents, to_text
from tests.fuzz.targets_cli import run_cli
from tests.fuzz.targets_workflow import load_and_run, scratch


# -- building PNGs chunk by chunk ---------------------------------------------------------
def chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    """One PNG chunk: length, type, body, CRC-32 (the right one unless given)."""
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc & 0xFFFFFFFF)


def split_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of each chunk of a well-formed PNG."""
    chunks, offset = [], len(PNG_MAGIC)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        chunks.append((data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]))
        offset += 12 + length
    return chunks


def itxt(text: bytes, compressed: int = 1, method: int = 0, keyword: bytes = PNG_KEY.encode(),
         language: bytes = b"", translated: bytes = b"") -> bytes:
    """The body of an iTXt chunk (PNG spec, 11.3.4.5), compressing ``text`` if asked."""
    if compressed == 1 and method == 0:
        text = zlib.compress(text)
    return keyword + b"\0" + bytes([compressed & 255, method & 255]) + language + b"\0" \
        + translated + b"\0" + text


@lru_cache(maxsize=None)
def example_pngs() -> tuple[bytes, ...]:
    """A tiny output PNG per example workflow, carrying that workflow."""
    from core.workflow.io import from_data

    pngs = []
    for index, doc in enumerate(example_documents().values()):
        path = scratch() / f"example-{index}.png"
        save_png(torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(index)), path,
                 dumps(from_data(doc)))
        pngs.append(path.read_bytes())
    return tuple(pngs)


# -- mutations ----------------------------------------------------------------------------
@st.composite
def workflow_pngs(draw) -> bytes:
    """A real output PNG with its workflow chunk replaced, reordered, duplicated,
    corrupted, truncated or bit-flipped."""
    chunks = split_chunks(draw(st.sampled_from(example_pngs())))
    kind = draw(st.sampled_from(["text", "header", "order", "crc", "length", "bytes", "truncate",
                                 "bomb"]))
    if kind in ("text", "header", "bomb"):
        text = draw(WORKFLOW_TEXT)
        raw = text.encode("utf-8", draw(st.sampled_from(["surrogatepass", "backslashreplace"])))
        if kind == "bomb":  # compresses well, inflates to megabytes
            raw = draw(st.sampled_from([b"[", b" ", b'{"a":'])) \
                * draw(st.sampled_from([2**16, 2**21]))
        body = itxt(raw)
        if kind == "header":
            body = itxt(raw, draw(st.integers(0, 3)), draw(st.integers(0, 2)),
                        draw(st.sampled_from([PNG_KEY.encode(), b"", b"parameters", b"x" * 80])),
                        draw(st.binary(max_size=8)), draw(st.binary(max_size=8)))
            if draw(st.booleans()):  # a field separator missing or extra
                body = body.replace(b"\0", draw(st.sampled_from([b"", b"\0\0"])), 1)
        chunks = [(k, body if k == b"iTXt" else b) for k, b in chunks]
        data = PNG_MAGIC + b"".join(chunk(k, b) for k, b in chunks)
    elif kind == "order":
        moved = draw(st.permutations(chunks))
        if draw(st.booleans()):
            moved = moved + [c for c in chunks if c[0] == b"iTXt"]
        data = PNG_MAGIC + b"".join(chunk(k, b) for k, b in moved)
    else:
        data = PNG_MAGIC + b"".join(chunk(k, b) for k, b in chunks)
        position = draw(st.integers(len(PNG_MAGIC), len(data) - 1))
        if kind == "crc":
            data = data[:position] + bytes([data[position] ^ (1 << draw(st.integers(0, 7)))]) \
                + data[position + 1:]
        elif kind == "length":  # a chunk claims more bytes than there are
            start = len(PNG_MAGIC) + 12 + len(chunks[0][1])  # the second chunk's length field
            claimed = draw(st.sampled_from([2**31 - 1, 2**32 - 1, 10**6]))
            data = data[:start] + struct.pack(">I", claimed) + data[start + 4:]
        elif kind == "bytes":
            removed = draw(st.integers(0, 32))
            data = data[:position] + draw(st.binary(max_size=32)) + data[position + removed:]
        else:
            data = data[:position]
    return data


JUNK_FILES = st.one_of(
    st.binary(max_size=256).map(lambda tail: PNG_MAGIC + tail),
    st.binary(max_size=64),
    st.just(PNG_MAGIC + chunk(b"IEND", b"")),
    WORKFLOW_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")).map(
        lambda raw: PNG_MAGIC + chunk(b"iTXt", itxt(raw, 0)) + chunk(b"IEND", b"")),
)


def run_workflow_png(data: bytes) -> None:
    load_and_run(data, "case.png")


# -- saving into a PNG and back -------------------------------------------------------
@st.composite
def savable_texts(draw) -> str:
    """The text of a loadable workflow with titles and strings from all of Unicode."""
    doc = draw(mutated_documents())
    for node in doc.get("nodes", []) if isinstance(doc.get("nodes"), list) else []:
        if isinstance(node, dict) and draw(st.booleans()):
            node["title"] = draw(TEXT)
    return to_text(doc)


def run_round_trip(text: str) -> None:
    try:
        workflow = loads(text)
    except WorkflowFormatError:
        return
    try:
        saved = dumps(workflow)
    except WorkflowError as error:  # a document that loaded must save
        raise AssertionError(f"a loaded workflow does not save: {error}") from error
    path = save_png(torch.zeros(3, 2, 2), scratch() / "round.png", saved)
    assert dumps(load(path)) == saved, "the workflow in the PNG differs from the one saved"


# -- PNG images for the image.load node ----------------------------------------------------
@lru_cache(maxsize=None)
def load_and_save_workflow() -> Path:
    path = scratch() / "load-image.json"
    path.write_text(to_text({
        "format": "diffusion-workbench.workflow", "version": 1, "ui": {},
        "nodes": [{"id": "load", "type": "image.load", "version": 1,
                   "params": {"path": "case-image.png"}},
                  {"id": "save", "type": "image.save", "version": 1, "params": {}}],
        "links": [{"from": ["load", "image"], "to": ["save", "images"]}],
    }))
    return path


@st.composite
def image_pngs(draw) -> bytes:
    """A damaged PNG image: a workflow PNG mutated, or a crafted header (sizes
    up to 2³¹, any bit depth and colour type) over little or no pixel data."""
    if draw(st.booleans()):
        return draw(workflow_pngs())
    width = draw(st.sampled_from([1, 16, 2**16, 2**31 - 1]))
    height = draw(st.sampled_from([1, 16, 2**15]))
    header = struct.pack(">IIBBBBB", width, height, draw(st.sampled_from([1, 2, 4, 8, 16, 3])),
                         draw(st.sampled_from([0, 2, 3, 4, 6, 5])), 0, 0, draw(st.integers(0, 1)))
    pixels = zlib.compress(draw(st.binary(max_size=64)))
    return PNG_MAGIC + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def run_image_png(data: bytes) -> None:
    (scratch() / "case-image.png").write_bytes(data)
    run_cli(["run", str(load_and_save_workflow()), "--out", "out"])


TARGETS = [
    FuzzTarget("png.workflow", st.one_of(workflow_pngs(), JUNK_FILES), run_workflow_png),
    FuzzTarget("png.round_trip", savable_texts(), run_round_trip),
    FuzzTarget("png.image", image_pngs(), run_image_png),
]

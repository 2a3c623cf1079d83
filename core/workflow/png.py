"""The workflow that made an image, carried in the PNG itself.

Every PNG the workbench writes holds the workflow JSON in a compressed UTF-8
text chunk (iTXt) under :data:`PNG_KEY`; opening that PNG restores the
workflow. Reading walks the PNG's chunks directly: no pixels are decoded, and
Pillow's 1 MiB cap on text chunks does not apply (our own cap does).
"""
from __future__ import annotations

import struct
import zlib
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_KEY = "diffusion-workbench.workflow"
MAX_WORKFLOW_BYTES = 64 * 1024 * 1024


def png_info_with_workflow(workflow_json: str) -> Any:
    """A ``PngInfo`` to pass to ``Image.save(..., pnginfo=...)``."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt(PNG_KEY, workflow_json, zip=True)
    return info


def workflow_text_from_png(data: bytes) -> str:
    """The embedded workflow JSON of a PNG file's bytes, or ValueError naming the problem.

    Takes the bytes, not a path, so the caller reads the file once (a pipe
    cannot be read twice)."""
    if not data.startswith(PNG_MAGIC):
        raise ValueError("not a PNG file")
    for kind, body in _chunks(data):
        if kind == b"iTXt" and body.startswith(PNG_KEY.encode("latin-1") + b"\0"):
            return _itxt_text(body)
        if kind == b"IEND":
            break
    raise ValueError("this PNG carries no Diffusion Workbench workflow")


def _chunks(data: bytes):
    """(type, body) of each chunk, checking lengths and CRCs."""
    offset = len(PNG_MAGIC)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        end = offset + 8 + length + 4
        if end > len(data):
            raise ValueError("the PNG is truncated")
        body = data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"the PNG is corrupt (bad checksum in a {kind!r} chunk)")
        yield kind, body
        offset = end
    if offset != len(data):
        raise ValueError("the PNG is truncated")


def _itxt_text(body: bytes) -> str:
    """Decode an iTXt chunk: keyword, NUL, flag, method, language, NUL, key, NUL, text."""
    try:
        _keyword, rest = body.split(b"\0", 1)
        compressed, _method = rest[0], rest[1]
        _language, _translated, text = rest[2:].split(b"\0", 2)
        if compressed:
            inflater = zlib.decompressobj()
            text = inflater.decompress(text, MAX_WORKFLOW_BYTES)
            if inflater.unconsumed_tail:
                raise ValueError(f"the embedded workflow is over {MAX_WORKFLOW_BYTES} bytes")
        return text.decode("utf-8")
    except (IndexError, zlib.error, UnicodeDecodeError) as error:
        raise ValueError(f"the embedded workflow chunk is damaged: {error}") from None

"""Key names, shapes and dtypes of a torch zip checkpoint, read without unpickling it.

A ``.ckpt``/``.pt`` written by ``torch.save`` (1.6+) is a zip whose
``data.pkl`` describes every tensor as a call to ``_rebuild_tensor_v2`` with a
persistent storage id (its storage class: the dtype), an offset, the size
tuple and the stride. ``pickletools.genops`` walks the opcodes of that pickle
*without executing any of them*, so the detector can say what a pickle holds
and still refuse to load it. Anything unexpected gives None: the file is then
described by its suffix alone.
"""
from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

from core.checkpoints.header import TensorInfo

MAX_PICKLE_BYTES = 64 * 1024 * 1024
STORAGE_DTYPES = {"HalfStorage": "F16", "FloatStorage": "F32", "BFloat16Storage": "BF16",
                  "DoubleStorage": "F64", "LongStorage": "I64", "IntStorage": "I32",
                  "ShortStorage": "I16", "CharStorage": "I8", "ByteStorage": "U8",
                  "BoolStorage": "BOOL"}
_STRINGS = {"BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8"}
_INTS = {"BININT", "BININT1", "BININT2", "LONG1", "INT"}
_TUPLES = {"TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_TUPLE"}
_PUTS = {"BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"}
_GETS = {"BINGET", "LONG_BINGET", "GET"}


def pickled_tensors(path: Path) -> dict[str, TensorInfo] | None:
    """{key: TensorInfo} of a torch zip checkpoint, or None when it cannot be read so."""
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((i for i in archive.infolist() if i.filename.endswith("/data.pkl")
                           or i.filename == "data.pkl"), None)
            if member is None or member.file_size > MAX_PICKLE_BYTES:
                return None
            data = archive.read(member)
        return _walk(data) or None
    except (OSError, zipfile.BadZipFile, ValueError, KeyError, EOFError, IndexError):
        return None


def _walk(data: bytes) -> dict[str, TensorInfo]:
    """Follow the opcodes: the last dotted string names the next tensor; after its
    storage id come the offset, then the ints of its size tuple."""
    tensors: dict[str, TensorInfo] = {}
    memo: dict[int, object] = {}
    last: object = None
    key = dtype = None
    state, shape = None, []
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name in _PUTS:
            memo[arg if name != "MEMOIZE" else len(memo)] = last
            continue
        if name in _GETS:
            last = memo.get(arg)
        elif name == "GLOBAL":
            last = arg
        elif name in _STRINGS:
            last = arg
            if "." in arg and " " not in arg:
                key = arg
        if isinstance(last, str) and last.startswith("torch ") and last.endswith("Storage"):
            dtype = STORAGE_DTYPES.get(last.split(" ", 1)[1], dtype)
        if name == "BINPERSID":
            state, shape = "offset", []
        elif state == "offset" and name in _INTS:
            state = "shape"
        elif state == "shape" and name in _INTS:
            shape.append(int(arg))
        elif state == "shape" and name in _TUPLES:
            if key is not None and dtype is not None:
                tensors[key] = TensorInfo(dtype, tuple(shape))
            state, key = None, None
    return tensors

"""The output cache: results of nodes by input signature, bounded.

An entry maps a node's signature (see ``signature.py``) to its outputs. The
cache holds at most ``max_entries`` entries and ``max_bytes`` of tensors and
model weights, evicting the least recently used first. :meth:`free` empties
it, for instance to give memory back after switching models.
"""
from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import Any, Mapping

DEFAULT_MAX_ENTRIES = 256
DEFAULT_MAX_BYTES = 8 * 1024**3


def estimate_bytes(value: Any, _seen: set[int] | None = None) -> int:
    """Memory held by ``value``: tensors and module weights exactly, the rest roughly."""
    seen = _seen if _seen is not None else set()
    if id(value) in seen:
        return 0
    seen.add(id(value))
    size = _tensor_like_bytes(value)
    if size is not None:
        return size
    if isinstance(value, Mapping):
        return sum(estimate_bytes(k, seen) + estimate_bytes(v, seen) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(estimate_bytes(v, seen) for v in value)
    nested = getattr(value, "__dict__", None)
    if isinstance(nested, dict) and not isinstance(value, type):
        return sys.getsizeof(value) + estimate_bytes(nested, seen)
    return sys.getsizeof(value)


def _tensor_like_bytes(value: Any) -> int | None:
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(value, torch.Tensor):
            return value.element_size() * value.nelement()
        if isinstance(value, torch.nn.Module):
            tensors = list(value.parameters()) + list(value.buffers())
            return sum(t.element_size() * t.nelement() for t in tensors)
    nbytes = getattr(value, "nbytes", None)  # numpy arrays
    return nbytes if isinstance(nbytes, int) else None


class NodeCache:
    """A thread-safe LRU map from signature to node outputs."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_entries < 0 or max_bytes < 0:
            raise ValueError("cache limits must not be negative")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[dict[str, Any], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, signature: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(signature)
            if entry is None:
                return None
            self._entries.move_to_end(signature)
            return entry[0]

    def put(self, signature: str, outputs: dict[str, Any]) -> bool:
        """Store outputs; return False when they alone exceed the byte limit."""
        size = estimate_bytes(outputs)
        with self._lock:
            self._discard(signature)
            if size > self.max_bytes or self.max_entries == 0:
                return False
            self._entries[signature] = (outputs, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._discard(next(iter(self._entries)))
            return True

    def free(self) -> None:
        """Drop every entry (and so the memory they hold)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __contains__(self, signature: object) -> bool:
        with self._lock:
            return signature in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def _discard(self, signature: str) -> None:
        entry = self._entries.pop(signature, None)
        if entry is not None:
            self._bytes -= entry[1]

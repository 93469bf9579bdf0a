"""One bounded LRU cache of decoded chunks, shared by every layer of every dataset."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Hashable

import numpy as np

__all__ = ["ChunkCache", "CHUNK_CACHE", "set_cache_size"]

DEFAULT_CACHE_BYTES = int(float(os.environ.get("NAPARI_KNOSSOS_CACHE_MB", "1024")) * 2**20)


class ChunkCache:
    """Thread-safe LRU keyed by any hashable, bounded by the total ``nbytes`` of its arrays.

    ``None`` (a missing chunk) is cached too, at no cost, so absent files are probed once.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, np.ndarray | None] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    _MISSING = object()

    def get(self, key: Hashable, default=_MISSING):
        with self._lock:
            try:
                value = self._items[key]
            except KeyError:
                self.misses += 1
                return default
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: np.ndarray | None) -> None:
        size = 0 if value is None else value.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                if evicted is not None:
                    self._bytes -= evicted.nbytes

    def discard_prefix(self, prefix: tuple) -> None:
        """Drop every entry whose key starts with ``prefix`` (after a write)."""
        n = len(prefix)
        with self._lock:
            for key in [k for k in self._items if isinstance(k, tuple) and k[:n] == prefix]:
                value = self._items.pop(key)
                if value is not None:
                    self._bytes -= value.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


CHUNK_CACHE = ChunkCache()


def set_cache_size(max_bytes: int) -> None:
    """Resize the shared cache (evicts down to the new bound at the next insert)."""
    CHUNK_CACHE.max_bytes = int(max_bytes)
    CHUNK_CACHE.put(("__resize__",), None)

"""A lazy, chunk-aware array-like over a regular chunk grid.

Every format (KNOSSOS cubes, WKW blocks, zarr chunks) describes its grid and a function
that decodes one chunk; :class:`ChunkedArray` turns a numpy-style slice into the set of
chunks it touches, reads them in parallel through the shared cache and assembles the
result. It has ``shape``, ``dtype``, ``ndim`` and ``__getitem__``, so
``dask.array.from_array(arr, chunks=arr.shape)`` gives a dask array whose graph is one
task however many chunks the volume has; only the chunks a slice needs are ever read.
"""

from __future__ import annotations

import itertools
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np

from .cache import CHUNK_CACHE, ChunkCache

__all__ = ["ArrayLikeMixin", "ChunkedArray", "CorruptChunkError", "chunk_pool", "warn_corrupt"]

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def chunk_pool() -> ThreadPoolExecutor:
    """The thread pool that decodes chunks (decoders release the GIL)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            n = int(os.environ.get("NAPARI_KNOSSOS_THREADS", "0")) or min(32, 4 * (os.cpu_count() or 2))
            _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="napari-knossos-io")
        return _POOL


class CorruptChunkError(ValueError):
    """A chunk file exists but cannot be decoded; ``source`` names it."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


def warn_corrupt(err: CorruptChunkError) -> None:
    """Warn once per source file that a corrupt chunk reads as zeros."""
    with _WARNED_LOCK:
        if err.source in _WARNED:
            return
        _WARNED.add(err.source)
    warnings.warn(f"corrupt chunk read as zeros: {err}", RuntimeWarning, stacklevel=3)


class ArrayLikeMixin:
    """``ndim``, ``size``, ``nbytes`` and ``len`` from ``shape`` and ``dtype``."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]


def _axis_chunks(n: int, chunk: int, origin: int) -> tuple[int, ...]:
    if n <= 0:
        return (0,)
    first = min(n, chunk - origin % chunk)
    full, rest = divmod(n - first, chunk)
    return (first,) + (chunk,) * full + ((rest,) if rest else ())


ChunkReader = Callable[[tuple[int, int, int]], "np.ndarray | None"]


class ChunkedArray(ArrayLikeMixin):
    """Lazy ``(c, z, y, x)`` volume on a chunk grid, presented in ``layout`` axis order.

    Parameters
    ----------
    shape_zyx : extent of the presented region in voxels (z, y, x).
    chunk_zyx : chunk shape (z, y, x).
    dtype, channels : voxel type and channel count.
    read_chunk : ``(cz, cy, cx) -> array (channels, *chunk_zyx) | None``; None means missing
        (filled with ``fill_value``); raise :class:`CorruptChunkError` for undecodable data.
    key : hashable identifying the source (cache key prefix), e.g. ``("wkw", path)``.
    origin_zyx : voxel of the underlying grid that is index 0 of this array (a bounding
        box that does not start at the grid origin).
    layout : ``"zyx"`` (single channel), ``"czyx"`` or ``"zyxc"`` (RGB).
    """

    def __init__(
        self,
        shape_zyx: Sequence[int],
        chunk_zyx: Sequence[int],
        dtype,
        read_chunk: ChunkReader,
        key: tuple,
        channels: int = 1,
        origin_zyx: Sequence[int] = (0, 0, 0),
        layout: str | None = None,
        fill_value=0,
        cache: ChunkCache | None = None,
    ):
        self.shape_zyx = tuple(int(s) for s in shape_zyx)
        self.chunk_zyx = tuple(int(c) for c in chunk_zyx)
        self.dtype = np.dtype(dtype)
        self.channels = int(channels)
        self.read_chunk = read_chunk
        self.key = tuple(key)
        self.origin_zyx = tuple(int(o) for o in origin_zyx)
        self.layout = layout or ("zyx" if self.channels == 1 else "czyx")
        if self.layout == "zyx" and self.channels != 1:
            raise ValueError("layout 'zyx' needs a single channel")
        self.fill_value = fill_value
        self.cache = CHUNK_CACHE if cache is None else cache

    # -- array protocol -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        z, y, x = self.shape_zyx
        return {"zyx": (z, y, x), "czyx": (self.channels, z, y, x), "zyxc": (z, y, x, self.channels)}[
            self.layout
        ]

    @property
    def chunk_sizes(self) -> tuple[tuple[int, ...], ...]:
        """Per-axis chunk sizes in dask form (the grid seen from this array's origin)."""
        if not hasattr(self, "_chunk_sizes"):
            zyx = [_axis_chunks(n, c, o) for n, c, o in zip(self.shape_zyx, self.chunk_zyx, self.origin_zyx)]
            ch = ((self.channels,),)
            self._chunk_sizes = {"zyx": tuple(zyx), "czyx": ch + tuple(zyx), "zyxc": tuple(zyx) + ch}[self.layout]
        return self._chunk_sizes

    def __repr__(self) -> str:
        return f"ChunkedArray(shape={self.shape}, chunks={self.chunk_zyx}, dtype={self.dtype}, source={self.key})"

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        basic, post = self._split_key(key)
        c_sl, z_sl, y_sl, x_sl = basic
        block = self.read_region(
            (z_sl.start, y_sl.start, x_sl.start), (z_sl.stop, y_sl.stop, x_sl.stop), (c_sl.start, c_sl.stop)
        )  # (c, z, y, x)
        steps = (c_sl.step, z_sl.step, y_sl.step, x_sl.step)
        if any(s != 1 for s in steps):
            block = block[tuple(slice(None, None, s) for s in steps)]
        if self.layout == "zyx":
            block = block[0]
        elif self.layout == "zyxc":
            block = np.moveaxis(block, 0, -1)
        return block[post] if post is not None else block

    # -- indexing ---------------------------------------------------------------------------
    def _split_key(self, key):
        """Bounding slices (c, z, y, x) with positive steps, plus an index applied afterwards."""
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = self.ndim - (len(key) - 1 - sum(k is None for k in key))
            key = key[:i] + (slice(None),) * fill + key[i + 1 :]
        key = key + (slice(None),) * (self.ndim - len([k for k in key if k is not None]))
        simple = all(isinstance(k, (slice, int, np.integer)) for k in key) and all(
            not isinstance(k, slice) or k.step is None or k.step > 0 for k in key
        )
        axes = {"zyx": "zyx", "czyx": "czyx", "zyxc": "zyxc"}[self.layout]
        if not simple:  # fancy or negative-step indexing: read the whole bounding box, index after
            full = {a: slice(0, n, 1) for a, n in zip(axes, self.shape)}
            full.setdefault("c", slice(0, self.channels, 1))
            return (full["c"], full["z"], full["y"], full["x"]), key
        bounds, post, drop = {}, [], False
        for a, k, n in zip(axes, key, self.shape):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                stop = max(start, stop)
                bounds[a] = slice(start, stop, step)
                post.append(slice(None))
            else:
                i = int(k)
                if i < 0:
                    i += n
                if not 0 <= i < n:
                    raise IndexError(f"index {int(k)} out of range for axis {a} of size {n}")
                bounds[a] = slice(i, i + 1, 1)
                post.append(0)
                drop = True
        bounds.setdefault("c", slice(0, self.channels, 1))
        return (bounds["c"], bounds["z"], bounds["y"], bounds["x"]), (tuple(post) if drop else None)

    # -- reading ----------------------------------------------------------------------------
    def chunk(self, idx: tuple[int, int, int]) -> np.ndarray | None:
        """Decoded chunk ``idx`` (grid indices of the underlying store), cached."""
        ck = self.key + tuple(idx)
        hit = self.cache.get(ck, ChunkCache._MISSING)
        if hit is not ChunkCache._MISSING:
            return hit
        try:
            data = self.read_chunk(idx)
        except CorruptChunkError as err:
            warn_corrupt(err)
            data = None
        if data is not None:
            want = (self.channels, *self.chunk_zyx)
            if data.shape != want:
                data = data.reshape(want)
            if data.dtype != self.dtype:
                data = data.astype(self.dtype)
        self.cache.put(ck, data)
        return data

    def read_region(self, start_zyx, stop_zyx, c_range=(None, None)) -> np.ndarray:
        """``(c, z, y, x)`` array of the region ``[start, stop)`` in array coordinates."""
        c0 = c_range[0] or 0
        c1 = self.channels if c_range[1] is None else c_range[1]
        shape = tuple(int(b - a) for a, b in zip(start_zyx, stop_zyx))
        out = np.full((c1 - c0, *shape), self.fill_value, dtype=self.dtype)
        if 0 in shape or c1 <= c0:
            return out
        g0 = [a + o for a, o in zip(start_zyx, self.origin_zyx)]  # grid coordinates
        g1 = [b + o for b, o in zip(stop_zyx, self.origin_zyx)]
        ranges = [range(a // c, (b - 1) // c + 1) for a, b, c in zip(g0, g1, self.chunk_zyx)]
        indices = list(itertools.product(*ranges))

        def place(idx):
            data = self.chunk(idx)
            if data is None:
                return
            src, dst = [], []
            for ax in range(3):
                lo = idx[ax] * self.chunk_zyx[ax]
                a = max(g0[ax], lo)
                b = min(g1[ax], lo + self.chunk_zyx[ax])
                src.append(slice(a - lo, b - lo))
                dst.append(slice(a - g0[ax], b - g0[ax]))
            out[(slice(None), *dst)] = data[(slice(c0, c1), *src)]

        if len(indices) == 1:
            place(indices[0])
        else:
            for f in [chunk_pool().submit(place, i) for i in indices]:
                f.result()
        return out

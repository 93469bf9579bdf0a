"""Picklable handles on dataset mags for dask tasks, and file-aligned block plans.

A task on a dask.distributed worker cannot be handed an opened :class:`~..formats.Dataset`
(locks, caches, open stores). It gets a :class:`MagSource` or :class:`MagTarget` that names the
dataset and mag and opens it once per process (cached under the run's ``token``). Sources read
``(c, z, y, x)`` regions; targets write whole chunks with the in-place chunk writers of
:mod:`..formats.inplace` (each file atomically). Blocks are aligned to the target's files
(shards, WKW files, KNOSSOS cubes), so no two tasks ever write the same file.

Coordinates: a mag's *grid* is its voxel lattice with voxel 0 at the file origin; a layer's
array presents the bounding box, starting at grid voxel ``origin_zyx``.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..formats.cache import ChunkCache
from ..formats.chunked import ChunkedArray

__all__ = [
    "MagSource",
    "MagTarget",
    "aligned_chunks",
    "block_bounds",
    "block_shape",
    "block_tasks",
    "mag_source",
    "open_for_processing",
    "run_cache",
    "store_blocks",
]

RUN_CACHE_BYTES = 64 * 2**20  # decoded chunks kept per run and process (not in the viewer's cache)
MAX_OPENED = 64
MAX_RUN_CACHES = 2
_LOCK = threading.Lock()
_OPENED: OrderedDict[tuple, object] = OrderedDict()
_RUN_CACHES: OrderedDict[str, ChunkCache] = OrderedDict()


def _cached(key: tuple, factory):
    """One object per process and key (datasets, chunk writers), the oldest dropped beyond MAX_OPENED."""
    with _LOCK:
        if key in _OPENED:
            _OPENED.move_to_end(key)
            return _OPENED[key]
    value = factory()
    with _LOCK:
        value = _OPENED.setdefault(key, value)
        while len(_OPENED) > MAX_OPENED:
            _OPENED.popitem(last=False)
    return value


def run_cache(token: str) -> ChunkCache:
    """The chunk cache of one run in this process: a dataset rewritten at the same path by a later
    run is never read from an earlier run's cache. Only the last few runs keep theirs."""
    with _LOCK:
        cache = _RUN_CACHES.get(token)
        if cache is None:
            cache = _RUN_CACHES[token] = ChunkCache(RUN_CACHE_BYTES)
            while len(_RUN_CACHES) > MAX_RUN_CACHES:
                _RUN_CACHES.popitem(last=False)
        return cache


def _no_cache_put(idx, data) -> None:
    """Stands in for ChunkWriter._cache_put on targets."""


def open_for_processing(source: str, token: str = ""):
    """``open_dataset(source)`` with every chunked mag reading through the run's :func:`run_cache`."""
    from ..formats import open_dataset

    dataset = open_dataset(source)
    cache = run_cache(token)
    for layer in dataset.layers:
        for mag in layer.mags:
            if isinstance(mag.array, ChunkedArray):
                mag.array.cache = cache
    return dataset


def _czyx_shape(array) -> tuple[int, int, int, int]:
    if isinstance(array, ChunkedArray):
        return (array.channels, *array.shape_zyx)
    shape = tuple(array.shape)
    if len(shape) == 3:
        return (1, *shape)
    raise ValueError(f"{array!r}: cannot tell the channel axis of a {len(shape)}-d array")


def _read_czyx(array, start_zyx, stop_zyx) -> np.ndarray:
    if hasattr(array, "read_region"):
        return array.read_region(tuple(start_zyx), tuple(stop_zyx))
    region = np.asarray(array[tuple(slice(a, b) for a, b in zip(start_zyx, stop_zyx))])
    return region[None]


# ----------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class MagSource:
    """One mag of a layer of the dataset at ``source``, read as ``(c, z, y, x)`` regions of its array."""

    source: str
    layer: str
    mag: str
    shape: tuple[int, int, int, int]
    dtype: np.dtype
    token: str

    @property
    def ndim(self) -> int:
        return 4

    def array(self):
        dataset = _cached(("dataset", self.source, self.token), lambda: open_for_processing(self.source, self.token))
        return dataset.layer(self.layer).mag(self.mag).array

    def __getitem__(self, key) -> np.ndarray:
        c, z, y, x = (k if isinstance(k, slice) else slice(int(k), int(k) + 1) for k in key)
        bounds = [s.indices(n)[:2] for s, n in zip((z, y, x), self.shape[1:])]
        region = _read_czyx(self.array(), [b[0] for b in bounds], [b[1] for b in bounds])
        return region[c]


def mag_source(source: str, layer, mag, token: str) -> MagSource:
    """A :class:`MagSource` for ``mag`` (a :class:`~..formats.Mag`) of ``layer`` opened from ``source``."""
    return MagSource(source, layer.name, mag.name, _czyx_shape(mag.array), np.dtype(layer.dtype), token)


# ----------------------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class MagTarget:
    """A freshly created mag array to fill: ``kind`` "zarr" (v2/v3, sharded or not), "wkw" or "knossos".

    ``root`` is a local folder, ``key`` the array folder below it (zarr, WKW) or the mag folder
    name (``mag4``, KNOSSOS). ``unit_zyx`` is the file unit blocks must be aligned to (shard, WKW
    file, cube); ``grid_shape_zyx`` the extent written, from the grid origin.
    """

    kind: str
    root: str
    key: str
    dtype: np.dtype
    channels: int
    grid_shape_zyx: tuple[int, int, int]
    unit_zyx: tuple[int, int, int]
    dims: tuple = ()  # zarr: ((axis, array dimension), ...) for "c", "z", "y", "x"
    experiment: str = ""  # KNOSSOS cube names
    ext: str = ""  # KNOSSOS cube type
    token: str = field(default="", compare=False)

    def writer(self):
        """The process-wide chunk writer of this target."""
        return _cached(("writer", self, self.token), self._make_writer)

    def _make_writer(self):
        from ..formats.inplace import chunk_writer
        from ..formats.model import Layer, Mag
        from ..formats.store import LocalStore

        store = LocalStore(self.root)
        factor = (1.0, 1.0, 1.0)
        extra: dict = {}
        if self.kind == "zarr":
            from ..formats.zarr_io import ZarrArray, zarr_chunked

            array = zarr_chunked(ZarrArray(store, self.key), dict(self.dims))
        elif self.kind == "wkw":
            from ..formats.wkw import WkwMag

            array = WkwMag(store, self.key).chunked(size_xyz=self.grid_shape_zyx[::-1])
        elif self.kind == "knossos":
            array = ChunkedArray(
                self.grid_shape_zyx, self.unit_zyx, self.dtype, lambda idx: None,
                ("knossos-target", self.root, self.key, self.ext), channels=self.channels,
            )  # fmt: skip
            extra = {"file_extension": self.ext, "experiment_name": self.experiment, "mag_folders": [self.key]}
        else:
            raise ValueError(f"unknown target kind {self.kind!r}")
        mag = Mag(factor=factor, array=array, path=store.location(self.key))
        layer = Layer(name=self.key, category="color", dtype=self.dtype, voxel_size=factor, mags=[mag],
                      num_channels=self.channels, format=self.kind, source=self.root, extra=extra)
        writer = chunk_writer(layer, factor)
        writer.durable = False  # bulk writing: no fsync per chunk file
        # no write-through copies: nothing reads this new array in this process (the chunk buffers
        # passed to write_chunks are reused)
        writer._cache_put = _no_cache_put
        return writer

    def write(self, data_czyx: np.ndarray, grid_start_zyx) -> None:
        """Write ``data_czyx`` placed at grid voxel ``grid_start_zyx``: every chunk it touches, whole.

        Chunks equal to zero everywhere are skipped (the target is new: a missing chunk reads as
        zero); chunk voxels outside ``data_czyx`` are zero.
        """
        writer = self.writer()
        chunk = writer.chunk_zyx
        g0 = [int(v) for v in grid_start_zyx]
        g1 = [a + n for a, n in zip(g0, data_czyx.shape[1:])]
        if 0 in data_czyx.shape:
            return
        ranges = [range(a // c, (b - 1) // c + 1) for a, b, c in zip(g0, g1, chunk)]
        n = math.prod(len(r) for r in ranges)
        # whole chunks go to the encoders contiguous, from a per-thread buffer reused by every task
        # (dask.distributed workers return freed memory to the OS at once: fresh buffers would cost
        # page faults for every chunk)
        buffers = _scratch((n, data_czyx.shape[0], *chunk), data_czyx.dtype)
        chunks = {}
        for idx in itertools.product(*ranges):
            lo = [i * c for i, c in zip(idx, chunk)]
            a = [max(p, q) for p, q in zip(g0, lo)]
            b = [min(p, q + c) for p, q, c in zip(g1, lo, chunk)]
            part = data_czyx[(slice(None), *(slice(p - s, q - s) for p, q, s in zip(a, b, g0)))]
            if not part.any():
                continue
            whole = buffers[len(chunks)]
            if any(p != q or r != q + c for p, q, r, c in zip(a, lo, b, chunk)):
                whole[...] = 0
            whole[(slice(None), *(slice(p - q, r - q) for p, q, r in zip(a, lo, b)))] = part
            chunks[idx] = whole
        if chunks:
            writer.write_chunks(chunks)


_LOCAL = threading.local()


def _scratch(shape, dtype) -> np.ndarray:
    """A per-thread array of ``shape`` and ``dtype`` (contents undefined), reusing its memory."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    buf = getattr(_LOCAL, "buffer", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _LOCAL.buffer = np.empty(nbytes, np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


# ----------------------------------------------------------------------------------------- blocks
def aligned_chunks(n: int, step: int, origin: int) -> tuple[int, ...]:
    """Dask chunk sizes of an axis of ``n`` voxels starting at grid voxel ``origin``, cut at the
    multiples of ``step`` (the first and last chunk may be partial)."""
    if n <= 0:
        return (0,)
    first = min(n, step - origin % step)
    full, rest = divmod(n - first, step)
    return (first,) + (step,) * full + ((rest,) if rest else ())


def block_shape(unit_zyx, extent_zyx, voxel_bytes: int, max_bytes: int) -> tuple[int, int, int]:
    """A block of whole units (doubling x, then y, then z) of at most ``max_bytes``, no larger than
    needed to cover ``extent_zyx``."""
    block = [int(u) for u in unit_zyx]
    cap = [max(u, math.ceil(e / u) * u) for u, e in zip(block, extent_zyx)]
    grown = True
    while grown:
        grown = False
        for axis in (2, 1, 0):
            if block[axis] * 2 <= cap[axis] and math.prod(block) * 2 * voxel_bytes <= max_bytes:
                block[axis] *= 2
                grown = True
    return tuple(block)


def block_bounds(chunks_zyx) -> list[list[int]]:
    """Per axis the block boundaries ``[0, c0, c0 + c1, ...]`` of a chunking."""
    return [[0, *itertools.accumulate(int(c) for c in axis)] for axis in chunks_zyx]


def block_tasks(func, chunks_zyx, dtype=np.uint8, **kwargs):
    """A dask array with one ``(1, 1, 1, 1)`` block per block of ``chunks_zyx``, computed by
    ``func(index_zyx, **kwargs)``: one task per block that reads, transforms and writes it, so no
    block data ever travels between tasks or workers."""
    import dask.array as da

    out_chunks = ((1,), *(tuple(1 for _ in axis) for axis in chunks_zyx))
    return da.map_blocks(
        _run_block, block_func=func, block_kwargs=kwargs, chunks=out_chunks, dtype=dtype, meta=np.empty((0, 0, 0, 0), dtype),
    )  # fmt: skip


def _run_block(block_func, block_kwargs, block_info=None):
    if not _MALLOC_TUNED:
        _tune_malloc()
    index = tuple(int(i) for i in block_info[None]["chunk-location"][1:])
    return block_func(index, **block_kwargs)


_MALLOC_TUNED = False
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def _tune_malloc() -> None:
    """Undo the page-fault cost of ``MALLOC_TRIM_THRESHOLD_`` in this process (once, Linux/glibc only).

    dask.distributed starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins glibc's
    mmap threshold at 128 KiB: every chunk-sized buffer (file reads, decoded chunks, compressed
    output) is then mapped and page-faulted anew. Measured converting 1 GiB on one worker: 860,000
    page faults and twice the time. This sets what glibc's adaptive defaults settle at: buffers up
    to 32 MiB from the heap, at most 64 MiB kept free. ``NAPARI_KNOSSOS_MALLOC_TUNING=0`` turns it off.
    """
    global _MALLOC_TUNED
    _MALLOC_TUNED = True
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or os.environ.get("NAPARI_KNOSSOS_MALLOC_TUNING") == "0":
        return
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)
        libc.mallopt(M_TRIM_THRESHOLD, 64 * 2**20)
    except (OSError, AttributeError):  # not glibc
        pass


def _copy_aligned_chunks(source: MagSource, target: MagTarget, lo, hi, place_zyx, segmentation: bool):
    """Copy the block ``[lo, hi)`` chunk by chunk when source and target chunks coincide (same
    shape, dtype and channels, grids aligned, the block made of whole chunks): each decoded source
    chunk goes to the encoder as it is, with no block assembled and no copy. The largest value (0
    for images), or None when the chunks do not coincide."""
    array = source.array()
    if not isinstance(array, ChunkedArray) or (array.dtype, array.channels) != (target.dtype, target.channels):
        return None
    if array.fill_value != 0:  # a missing source chunk is not zero: the general path fills it
        return None
    writer = target.writer()
    chunk = tuple(writer.chunk_zyx)
    if tuple(array.chunk_zyx) != chunk or any(getattr(writer.array, "origin_zyx", (0, 0, 0))):
        return None
    shift = [int(o) - int(p) for o, p in zip(array.origin_zyx, place_zyx)]  # source grid - target voxel
    start = [a + int(p) for a, p in zip(lo, place_zyx)]  # the block in target voxels
    stop = [b + int(p) for b, p in zip(hi, place_zyx)]
    if any(s % c for s, c in zip(shift, chunk)) or any(a % c or b % c for a, b, c in zip(start, stop, chunk)):
        return None  # chunks cut at the bounding box or misaligned: the general path zero-fills
    targets = list(itertools.product(*(range(a // c, b // c) for a, b, c in zip(start, stop, chunk))))
    sources = [tuple(t + s // c for t, s, c in zip(idx, shift, chunk)) for idx in targets]
    if len(sources) > 1:
        from ..formats.chunked import chunk_pool

        decoded = list(chunk_pool().map(array.chunk, sources))
    else:
        decoded = [array.chunk(i) for i in sources]
    chunks = {idx: data for idx, data in zip(targets, decoded) if data is not None and data.any()}
    if chunks:
        writer.write_chunks(chunks)
    return max((int(d.max()) for d in chunks.values()), default=0) if segmentation else 0


def _copy_block(index, source: MagSource, bounds, target: MagTarget, place_zyx, segmentation: bool):
    lo = [bounds[a][i] for a, i in enumerate(index)]
    hi = [bounds[a][i + 1] for a, i in enumerate(index)]
    value = _copy_aligned_chunks(source, target, lo, hi, place_zyx, segmentation)
    if value is not None:
        return np.full((1, 1, 1, 1), value, dtype=source.dtype if segmentation else np.uint8)
    block = source[(slice(None), *(slice(p, q) for p, q in zip(lo, hi)))]
    target.write(block, [p + int(o) for p, o in zip(lo, place_zyx)])
    value = block.max() if segmentation and block.size else 0
    return np.full((1, 1, 1, 1), value, dtype=block.dtype if segmentation else np.uint8)


def store_blocks(source: MagSource, chunks_zyx, target: MagTarget, place_zyx, segmentation: bool = False):
    """Copy ``source`` into ``target`` (source voxel 0 at target voxel ``place_zyx``) in the blocks of
    ``chunks_zyx``, which must be aligned to ``target.unit_zyx`` in target coordinates; a dask scalar:
    the largest value for a segmentation, else 0."""
    dtype = source.dtype if segmentation else np.uint8
    tasks = block_tasks(_copy_block, chunks_zyx, dtype, source=source, bounds=block_bounds(chunks_zyx),
                        target=target, place_zyx=tuple(place_zyx), segmentation=segmentation)
    return tasks.max()

"""webKnossos agglomerate (ID-mapping) files: segment id → agglomerate id, read lazily (pure Python).

Two containers hold the same arrays (scalableminds/webknossos-libs
``docs/src/webknossos-py/spec/agglomerate_attachment.md``, schema 4; webKnossos datastore
``Hdf5AgglomerateService``):

* a Zarr v3 group (``zarr.json`` with ``attributes.voxelytics.artifact_class ==
  "AgglomerateViewArtifact"``), arrays usually sharded with zstd inner chunks; read with
  :class:`~.zarr_io.ZarrArray`, so local paths and http(s) URLs both work;
* an HDF5 file ``<layer>/agglomerates/<name>.hdf5``, read with h5py (optional: ``pip install h5py``).

Arrays: ``segment_to_agglomerate`` (n_seg+1, u64; 0 → 0), ``agglomerate_to_segments_offsets``
(n_agg+2, u64, CSR), ``agglomerate_to_segments`` (n_seg, ascending within an agglomerate),
``agglomerate_to_positions`` (n_seg, 3 int32 x,y,z), ``agglomerate_to_edges_offsets``,
``agglomerate_to_edges`` (local index pairs) and ``agglomerate_to_affinities``.

:meth:`AgglomerateMapping.map` reads only the chunks of ``segment_to_agglomerate`` that hold the
requested ids (kept in a small LRU cache), so mapping a view of a terabyte segmentation costs a
few chunk reads.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Self

import numpy as np

from .store import LocalStore, Store, is_url, open_store
from .zarr_io import ZarrArray

__all__ = ["AgglomerateMapping", "agglomerate_files"]

ARTIFACT_CLASS = "AgglomerateViewArtifact"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_REQUIRED = ("segment_to_agglomerate", "agglomerate_to_segments_offsets", "agglomerate_to_segments")
_HDF5_CHUNK = 1 << 16  # rows per HDF5 read
_ARRAYS = (*_REQUIRED, "agglomerate_to_positions", "agglomerate_to_edges_offsets", "agglomerate_to_edges",
           "agglomerate_to_affinities")  # the optional ones after the required


class _ZarrColumn:
    """One array of the group read along its first axis, chunk by chunk."""

    def __init__(self, array: ZarrArray):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.length = array.shape[0] if array.shape else 0
        self.chunk_len = array.chunk_shape[0] if array.shape else 1
        self.where = array.location

    def read_chunks(self, indices: list[int]) -> dict[int, np.ndarray]:
        """Rows ``[i*chunk_len, (i+1)*chunk_len)`` (trimmed to the array) of each chunk ``i``."""
        other = [range(g) for g in self.array.grid_shape[1:]]
        wanted = [(i, *rest) for i in indices for rest in itertools.product(*other)]
        got = self.array.read_chunks_view(wanted)
        out = {}
        for i in indices:
            rows = min(self.chunk_len, self.length - i * self.chunk_len)
            block = np.empty((rows, *self.shape[1:]), self.dtype)
            for rest in itertools.product(*other):
                data = got[(i, *rest)]
                if isinstance(data, Exception):
                    raise data
                sel = tuple(
                    slice(r * c, min((r + 1) * c, s))
                    for r, c, s in zip(rest, self.array.chunk_shape[1:], self.shape[1:])
                )
                if data is None:
                    block[(slice(None), *sel)] = self.array.fill_value
                else:
                    block[(slice(None), *sel)] = data[(slice(0, rows), *(slice(0, s.stop - s.start) for s in sel))]
            out[i] = block
        return out

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.empty((0, *self.shape[1:]), self.dtype)
        first, last = start // self.chunk_len, -(-stop // self.chunk_len)
        parts = self.read_chunks(list(range(first, last)))
        data = np.concatenate([parts[i] for i in range(first, last)])
        return data[start - first * self.chunk_len : stop - first * self.chunk_len]


class _H5Column:
    def __init__(self, dataset, where: str):
        self.dataset = dataset
        self.shape = tuple(dataset.shape)
        self.dtype = np.dtype(dataset.dtype)
        self.length = self.shape[0] if self.shape else 0
        stored = dataset.chunks[0] if dataset.chunks else 1  # read whole HDF5 chunks, about _HDF5_CHUNK rows
        self.chunk_len = stored * max(1, _HDF5_CHUNK // stored)
        self.where = where

    def read_chunks(self, indices: list[int]) -> dict[int, np.ndarray]:
        return {i: self.read_rows(i * self.chunk_len, min((i + 1) * self.chunk_len, self.length)) for i in indices}

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.dataset[start:stop])


def _import_h5py(where: str):
    try:
        import h5py
    except ImportError:
        raise ImportError(f"{where}: reading an HDF5 agglomerate file needs h5py: pip install h5py") from None
    return h5py


class AgglomerateMapping:
    """An opened agglomerate file (zarr3 group directory or URL, or HDF5 file).

    ``n_segments``: highest segment id covered; ``largest_agglomerate``: highest agglomerate id
    (``len(offsets) - 2``); ``segment_dtype``: dtype of ``agglomerate_to_segments``;
    ``chunks_read``: chunks of ``segment_to_agglomerate`` decoded so far. ``cache_bytes`` bounds the
    chunk cache of :meth:`map`. Thread-safe; close HDF5 files with :meth:`close` (or ``with``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        cache_bytes: int = 64 << 20,
        username: str | None = None,
        password: str | None = None,
    ):
        self.path = os.fspath(path)
        self.cache_bytes = cache_bytes
        self.chunks_read = 0
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self._file = None
        self.schema_version: int | None = None
        if not is_url(self.path) and Path(self.path).is_file():
            self._open_hdf5()
        else:
            self._open_zarr(open_store(self.path, username, password))
        base = self.path.rstrip("/").rsplit("/", 1)[-1] if is_url(self.path) else Path(self.path).name
        self.name = Path(base).stem if self.format == "hdf5" else base
        try:
            self._check()
        except Exception:
            self.close()
            raise

    # -- opening --------------------------------------------------------------------------------------
    def _open_zarr(self, store: Store) -> None:
        self.format = "zarr3"
        self.location = store.location()
        raw = store.read("zarr.json")
        if raw is None:
            kind = "folder" if isinstance(store, LocalStore) and Path(store.root).is_dir() else "path"
            raise ValueError(
                f"{self.location}: not an agglomerate file (no zarr.json in this {kind}, and not an HDF5 file)"
            )
        try:
            meta = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{store.location('zarr.json')}: invalid JSON: {e}") from None
        if not isinstance(meta, dict) or meta.get("zarr_format") != 3 or meta.get("node_type") != "group":
            raise ValueError(f"{store.location('zarr.json')}: an agglomerate file must be a zarr v3 group")
        voxelytics = (meta.get("attributes") or {}).get("voxelytics") or {}
        artifact = voxelytics.get("artifact_class")
        if artifact is not None and artifact != ARTIFACT_CLASS:
            raise ValueError(f"{store.location('zarr.json')}: artifact_class is {artifact!r}, not {ARTIFACT_CLASS!r}")
        self.schema_version = voxelytics.get("artifact_schema_version")
        self._columns = {}
        for name in _ARRAYS:
            if store.read(f"{name}/zarr.json") is None:
                if name in _REQUIRED:
                    raise ValueError(f"{self.location}: agglomerate file has no array {name!r}")
                continue
            self._columns[name] = _ZarrColumn(ZarrArray(store, name))

    def _open_hdf5(self) -> None:
        self.format = "hdf5"
        self.location = self.path
        with open(self.path, "rb") as f:
            head = f.read(8)
        if head != _HDF5_SIGNATURE:
            raise ValueError(f"{self.path}: not an agglomerate file (neither an HDF5 file nor a zarr v3 group)")
        h5py = _import_h5py(self.path)
        self._file = h5py.File(self.path, "r")
        self._columns = {}
        for name in _ARRAYS:
            if name not in self._file:
                if name in _REQUIRED:
                    self.close()
                    raise ValueError(f"{self.path}: agglomerate file has no dataset {name!r}")
                continue
            self._columns[name] = _H5Column(self._file[name], f"{self.path}:{name}")

    def _check(self) -> None:
        mapping = self._columns["segment_to_agglomerate"]
        offsets = self._columns["agglomerate_to_segments_offsets"]
        segments = self._columns["agglomerate_to_segments"]
        for col in (mapping, offsets, segments):
            if len(col.shape) != 1 or col.dtype.kind not in "ui":
                raise ValueError(f"{col.where}: expected a 1-D integer array, got shape {col.shape} {col.dtype}")
        if mapping.length < 1 or offsets.length < 2:
            raise ValueError(f"{self.location}: segment_to_agglomerate or agglomerate_to_segments_offsets is empty")
        self.n_segments = mapping.length - 1
        self.largest_agglomerate = offsets.length - 2
        self.segment_dtype = segments.dtype

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"AgglomerateMapping({self.location!r}, {self.format}, {self.n_segments} segments, "
            f"{self.largest_agglomerate} agglomerates)"
        )

    # -- mapping ---------------------------------------------------------------------------------------
    def map(self, ids, *, out_of_range: int = 0) -> np.ndarray:
        """Agglomerate id of every segment id in ``ids`` (any shape), uint64; ids the file does not
        cover (above ``n_segments``, or negative) become ``out_of_range``. Reads only the chunks of
        ``segment_to_agglomerate`` that hold the ids."""
        ids = np.asarray(ids)
        if ids.dtype.kind not in "ui":
            raise TypeError(f"segment ids must be integers, not {ids.dtype}")
        flat = ids.reshape(-1)
        valid = flat <= self.n_segments
        if ids.dtype.kind == "i":
            valid &= flat >= 0
        index = np.where(valid, flat, 0).astype(np.int64)
        column = self._columns["segment_to_agglomerate"]
        size = column.chunk_len
        chunk_of = index // size
        needed = np.zeros(-(-column.length // size), bool)
        needed[chunk_of[valid]] = True
        wanted = np.flatnonzero(needed)
        out = np.full(flat.shape, out_of_range, np.uint64)
        if wanted.size:
            slot = np.zeros(needed.size, np.int64)
            slot[wanted] = np.arange(wanted.size)
            table = np.zeros(wanted.size * size, np.uint64)
            for i, data in self._chunks(wanted.tolist()).items():
                table[slot[i] * size : slot[i] * size + data.size] = data
            out[valid] = table[slot[chunk_of[valid]] * size + index[valid] % size]
        return out.reshape(ids.shape)

    def _chunks(self, indices: list[int]) -> dict[int, np.ndarray]:
        column = self._columns["segment_to_agglomerate"]
        with self._lock:
            out = {}
            missing = []
            for i in indices:
                hit = self._cache.get(i)
                if hit is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end(i)
                    out[i] = hit
        if missing:
            read = column.read_chunks(missing)
            with self._lock:
                self.chunks_read += len(read)
                for i, data in read.items():
                    data = np.ascontiguousarray(data, dtype=np.uint64)
                    data.flags.writeable = False
                    out[i] = data
                    if i not in self._cache:
                        self._cache[i] = data
                        self._cached_bytes += data.nbytes
                while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
                    _, old = self._cache.popitem(last=False)
                    self._cached_bytes -= old.nbytes
        return out

    # -- agglomerates -------------------------------------------------------------------------------------
    def _range(self, agglomerate_id: int, offsets_name: str) -> tuple[int, int]:
        agg = int(agglomerate_id)
        if not 0 <= agg <= self.largest_agglomerate:
            raise KeyError(f"{self.location}: no agglomerate {agg} (ids go up to {self.largest_agglomerate})")
        start, stop = (int(v) for v in self._columns[offsets_name].read_rows(agg, agg + 2))
        if not 0 <= start <= stop:
            raise ValueError(f"{self.location}: {offsets_name}[{agg}:{agg + 2}] = [{start}, {stop}] is not a range")
        return start, stop

    def segments_of(self, agglomerate_id: int) -> np.ndarray:
        """Segment ids of an agglomerate, ascending (agglomerate 0 is empty)."""
        start, stop = self._range(agglomerate_id, "agglomerate_to_segments_offsets")
        return self._columns["agglomerate_to_segments"].read_rows(start, stop)

    def positions_of(self, agglomerate_id: int) -> np.ndarray | None:
        """(x, y, z) voxel position of each segment of :meth:`segments_of`, or None if the file has none."""
        column = self._columns.get("agglomerate_to_positions")
        if column is None:
            return None
        start, stop = self._range(agglomerate_id, "agglomerate_to_segments_offsets")
        return column.read_rows(start, stop)

    def edges_of(self, agglomerate_id: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(edges as segment id pairs (n, 2) uint64, affinities (n,) float32) of an agglomerate, or
        None if the file has no edges."""
        if "agglomerate_to_edges" not in self._columns or "agglomerate_to_edges_offsets" not in self._columns:
            return None
        start, stop = self._range(agglomerate_id, "agglomerate_to_edges_offsets")
        local = self._columns["agglomerate_to_edges"].read_rows(start, stop).astype(np.int64)
        segments = self.segments_of(agglomerate_id).astype(np.uint64)
        if local.size and (local.min() < 0 or local.max() >= segments.size):
            raise ValueError(
                f"{self.location}: edges of agglomerate {agglomerate_id} index beyond its {segments.size} segments"
            )
        affinities = self._columns.get("agglomerate_to_affinities")
        aff = (
            affinities.read_rows(start, stop).astype(np.float32)
            if affinities is not None
            else np.zeros(stop - start, np.float32)
        )
        return segments[local].reshape(-1, 2), aff


def agglomerate_files(layer) -> dict[str, tuple[str, str]]:
    """Agglomerate files of a segmentation :class:`~.model.Layer`: ``name → (path, format)``.

    From the layer's ``attachments.agglomerates`` in ``datasource-properties.json`` (paths relative
    to the dataset folder) and, for local layers, ``<layer>/agglomerates/*.hdf5`` and zarr groups
    there (the datastore's folder convention).
    """
    found: dict[str, tuple[str, str]] = {}
    source = str(layer.source or "")
    if not source:
        return found
    root = source.rstrip("/").rsplit("/", 1)[0] if is_url(source) else str(Path(source).parent)
    attachments = (getattr(layer, "extra", {}) or {}).get("attachments") or {}
    for entry in attachments.get("agglomerates") or []:
        if not isinstance(entry, dict) or not entry.get("path"):
            continue
        path = str(entry["path"])
        if path.startswith("file://"):
            path = path[7:]
        elif not is_url(path) and not os.path.isabs(path):
            path = f"{root}/{path}" if is_url(root) else str(Path(root) / path)
        fmt = str(entry.get("dataFormat") or ("hdf5" if path.endswith((".hdf5", ".h5")) else "zarr3"))
        found[str(entry.get("name") or Path(path.rstrip("/")).stem)] = (path, fmt)
    folder = Path(source) / "agglomerates"
    if not is_url(source) and folder.is_dir():
        for child in sorted(folder.iterdir()):
            if child.is_file() and child.suffix in (".hdf5", ".h5"):
                found.setdefault(child.stem, (str(child), "hdf5"))
            elif child.is_dir() and (child / "zarr.json").is_file():
                found.setdefault(child.name, (str(child), "zarr3"))
    return found

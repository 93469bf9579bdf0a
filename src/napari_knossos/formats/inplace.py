"""Write edited chunks back into a dataset in place: WKW, Zarr v3 (sharded or not), Zarr v2 / OME-Zarr
and KNOSSOS cubes.

:func:`chunk_writer` gives the :class:`ChunkWriter` of one mag of a layer opened by our readers.
``write_chunks({(cz, cy, cx): chunk})`` takes whole chunks of that mag's chunk grid and rewrites only
the files holding them, each **atomically**: the new file is written beside the old one and renamed
over it (``os.replace``), so a failure (disk full, an exception) leaves the old file as it was, and
:class:`InPlaceWriteError` says which chunks were saved and which were not. Untouched chunks inside a
rewritten file are copied as their stored bytes (whole runs, kernel-side), never re-encoded:

* WKW (RAW, LZ4, LZ4HC): one data file ``z/y/x.wkw`` of F³ blocks; touched blocks are encoded in the
  file's own block type, the jump table is rebuilt. A missing file is created whole (zero blocks).
* Zarr v3 sharded: one shard file with its index (``bytes`` + ``crc32c``, at the end or start);
  dead space in the old shard is dropped. Unsharded v3, v2 and OME-Zarr: one file per chunk. A chunk
  equal to the fill value is removed, as zarr-python does (a shard left empty is deleted).
* KNOSSOS: one cube per file, ``.raw``, ``.seg``, ``.seg.sz.zip`` (a zip holding the raw Snappy
  stream, member ``<cube name>.seg.sz``) and 8-bit ``.png``. Lossy cubes (``.jpg``, JPEG 2000) refuse.

After each file the new chunks go into the layer's chunk cache (write-through), and cached WKW jump
tables and zarr shard indexes are replaced, so views re-read the new data. Remote (HTTP) layers,
read-only folders and formats or codecs we cannot encode raise :class:`ReadOnlyDatasetError` naming
the layer and suggesting to save into an annotation instead. Saves are durable (each file fsync'ed
before its rename; each touched folder, and the parent of each folder created, after the last one;
see :mod:`.atomic`); bulk writers set ``writer.durable = False`` to skip that.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from .atomic import AtomicFile, fsync_dir, remove_if_exists
from .chunked import ChunkedArray
from .model import Layer, Mag
from .store import LocalStore, is_url

__all__ = ["ChunkWriter", "InPlaceWriteError", "ReadOnlyDatasetError", "chunk_writer"]

ANNOTATION_HINT = "save the edits into an annotation instead (.k.zip segmentation cubes or a webKnossos volume zip)"
_EMPTY = 2**64 - 1  # shard index entry of an absent chunk
_KNOSSOS_WRITABLE = (".raw", ".seg", ".seg.sz.zip", ".png")


class ReadOnlyDatasetError(PermissionError):
    """The layer cannot be changed in place (remote, read-only folder, or a format we do not write)."""


class InPlaceWriteError(OSError):
    """Writing one file failed; that file is unchanged.

    ``path`` is the file, ``written`` the chunk indices saved before the failure (their files are
    complete), ``unwritten`` the ones not saved (keep them and retry, or save into an annotation).
    """

    def __init__(self, message: str, path: str, written, unwritten):
        super().__init__(message)
        self.path = path
        self.written = list(written)
        self.unwritten = list(unwritten)


def _parallel_map(func: Callable, items: list) -> list:
    """``[func(i) for i in items]``, on the chunk thread pool for more than a few items (the LZ4 and
    blosc encoders release the GIL)."""
    from .chunked import chunk_pool

    if len(items) < 4 or threading.current_thread().name.startswith("napari-knossos-io"):
        return [func(i) for i in items]
    return list(chunk_pool().map(func, items))


def _open_existing(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------------------------
# the writer
# --------------------------------------------------------------------------------------------
class ChunkWriter:
    """Writes whole chunks of one mag of a layer back into its files.

    ``chunk_zyx`` is the write unit (WKW block, zarr (inner) chunk, KNOSSOS cube). Chunk keys are
    indices ``(cz, cy, cx)`` of the **underlying file grid**, the indices of
    ``layer.mags[i].array.chunk(idx)``: array index + ``origin_zyx``, divided by ``chunk_zyx``.
    Values are whole chunks ``(z, y, x)`` (or ``(c, z, y, x)``) of the layer's dtype, including the
    voxels outside the layer's bounding box (read the chunk first and modify it to keep them).
    """

    format = ""

    def __init__(self, layer: Layer, mag: Mag):
        self.layer = layer
        self.mag = mag
        self.array: ChunkedArray = mag.array
        self.chunk_zyx: tuple[int, int, int] = tuple(self.array.chunk_zyx)
        self.dtype = np.dtype(self.array.dtype)
        self.channels = int(self.array.channels)
        self.location = mag.path or layer.source
        #: fsync each file and its folder (annotation edits); False for bulk writing (convert, downsample)
        self.durable = True
        self._pending = threading.local()  # .folders: to sync after the current write_chunks (per thread)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r}, chunk={self.chunk_zyx}, {self.channels}x{self.dtype.name})"

    # -- public ----------------------------------------------------------------------------------
    def write_chunks(self, chunks: Mapping[tuple[int, int, int], np.ndarray]) -> None:
        """Write ``{(cz, cy, cx): chunk}``, rewriting each file that holds one of them atomically.

        ValueError (nothing written) for a wrong index, shape or value range; InPlaceWriteError when
        a file cannot be written (that file unchanged; ``written``/``unwritten`` say what was saved).
        """
        prepared = {}
        for idx, value in chunks.items():
            key = self._index(idx)
            prepared[key] = self._as_chunk(key, value)
        if not prepared:
            return
        plan = self._plan(prepared)  # [(path, chunk indices, write function)]
        pending = {idx: 0 for idx in prepared}
        for _, members, _ in plan:
            for idx in members:
                pending[idx] += 1
        written: list = []
        folders: set[str] = set()
        self._pending.folders = folders
        try:
            self._write_plan(plan, prepared, pending, written, folders)
        finally:
            if self.durable:
                for folder in sorted(folders, key=len, reverse=True):  # innermost first
                    fsync_dir(folder)
            self._pending.folders = None

    def _write_plan(self, plan, prepared: dict, pending: dict, written: list, folders: set) -> None:
        for n, (path, members, write) in enumerate(plan):
            folders.add(os.fspath(Path(path).parent))  # also for files removed, not replaced
            try:
                write()
            except Exception as err:
                unwritten = [idx for idx in prepared if idx not in set(written)]
                raise InPlaceWriteError(
                    f"{path}: saving {len(members)} chunk(s) failed ({type(err).__name__}: {err}); this file is "
                    f"unchanged (the new one was written beside it and never replaced it). Saved before the "
                    f"failure: {len(written)} of {len(prepared)} chunks in {n} file(s); not saved: "
                    f"{len(unwritten)} chunk(s): retry, or {ANNOTATION_HINT}",
                    str(path),
                    written,
                    unwritten,
                ) from err
            for idx in members:
                pending[idx] -= 1
                if pending[idx] == 0:
                    written.append(idx)
                    self._cache_put(idx, prepared[idx])
            self._after_file(path)

    def _atomic_file(self, path) -> AtomicFile:
        """The replacement of ``path``; its folder and the parents of folders it created are synced
        once per :meth:`write_chunks`."""
        out = AtomicFile(path, durable=self.durable, sync_dir=False)
        folders = getattr(self._pending, "folders", None)
        if folders is not None:
            folders.update(os.fspath(f) for f in out.folders_to_sync())
        return out

    def _write_bytes(self, path, data) -> None:
        with self._atomic_file(path) as out:
            out.write(data)
            out.commit()

    def current_chunk(self, idx) -> np.ndarray:
        """The stored chunk ``idx`` as a writable copy, ``(z, y, x)`` (``(c, z, y, x)`` for several
        channels); a missing chunk is the fill value. Modify it and pass it to :meth:`write_chunks`."""
        key = self._index(idx)
        data = self.array.chunk(key)
        if data is None:
            data = np.full((self.channels, *self.chunk_zyx), self.array.fill_value, self.dtype)
        data = np.array(data, dtype=self.dtype, copy=True)
        return data[0] if self.channels == 1 else data

    # -- helpers for subclasses ----------------------------------------------------------------
    def _index(self, idx) -> tuple[int, int, int]:
        try:
            key = tuple(int(i) for i in idx)
        except (TypeError, ValueError):
            raise ValueError(f"{self.location}: chunk index {idx!r} is not three integers (cz, cy, cx)") from None
        if len(key) != 3 or min(key) < 0:
            raise ValueError(f"{self.location}: chunk index {idx!r} must be three non-negative integers (cz, cy, cx)")
        return key

    def _as_chunk(self, idx, value) -> np.ndarray:
        """The chunk as a (channels, z, y, x) array of the layer's dtype."""
        v = np.asarray(value)
        want = (self.channels, *self.chunk_zyx)
        if self.channels == 1 and v.shape == self.chunk_zyx:
            v = v[None]
        if v.shape != want:
            shapes = f"{self.chunk_zyx} (z, y, x)" + (f" or {want} (c, z, y, x)" if self.channels > 1 else "")
            raise ValueError(f"{self.location}: chunk {idx}: shape {v.shape}, expected {shapes}")
        if v.dtype != self.dtype:
            if v.dtype.kind in "uib" and self.dtype.kind in "ui":
                info = np.iinfo(self.dtype)
                if v.size and (v.min() < info.min or v.max() > info.max):
                    raise ValueError(
                        f"{self.location}: chunk {idx}: values {v.min()}..{v.max()} do not fit {self.dtype.name}"
                    )
            elif not np.can_cast(v.dtype, self.dtype, "same_kind"):
                raise ValueError(f"{self.location}: chunk {idx}: cannot store {v.dtype} values as {self.dtype.name}")
            v = v.astype(self.dtype)
        return v

    def _cache_put(self, idx, data: np.ndarray) -> None:
        arr = self.array
        arr.cache.put(arr.key + tuple(idx), np.array(data, dtype=arr.dtype, copy=True))

    def _after_file(self, path) -> None:
        """Hook after each file is replaced (forget per-file state)."""

    def _plan(self, prepared: dict) -> list[tuple[str, list, Callable[[], None]]]:
        raise NotImplementedError


def _refuse(layer: Layer, why: str) -> ReadOnlyDatasetError:
    return ReadOnlyDatasetError(
        f"layer {layer.name!r} ({layer.source}) cannot be changed in place: {why}; {ANNOTATION_HINT}"
    )


def _check_local(layer: Layer, store, folder: str) -> None:
    if not isinstance(store, LocalStore):
        raise _refuse(layer, "it is served over HTTP (remote datasets are read-only)")
    probe = Path(folder)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise _refuse(layer, f"{probe} is not writable (read-only file system or no permission)")


def chunk_writer(layer: Layer, mag_factor) -> ChunkWriter:
    """The :class:`ChunkWriter` of mag ``mag_factor`` ((x, y, z) factors or a mag name) of ``layer``.

    Raises ReadOnlyDatasetError for remote layers, read-only folders and formats we cannot write.
    """
    from .wkw import WkwArray
    from .zarr_io import ZarrChunkedArray

    mag = layer.mag(mag_factor)
    if is_url(layer.source or "") or is_url(mag.path or ""):
        raise _refuse(layer, "it is served over HTTP (remote datasets are read-only)")
    arr = mag.array
    if isinstance(arr, WkwArray):
        store = arr.mag.store
        _check_local(layer, store, store.path(arr.mag.key) if isinstance(store, LocalStore) else "")
        return _WkwWriter(layer, mag)
    if isinstance(arr, ZarrChunkedArray):
        za = arr.zarr_array
        _check_local(layer, za.store, za.store.path(za.key) if isinstance(za.store, LocalStore) else "")
        return _ZarrWriter(layer, mag)
    if layer.format == "knossos" and isinstance(arr, ChunkedArray):
        _check_local(layer, LocalStore(layer.source), layer.source)
        return _KnossosWriter(layer, mag)
    raise _refuse(layer, f"writing {layer.format or type(arr).__name__!r} data is not supported")


# --------------------------------------------------------------------------------------------
# WKW
# --------------------------------------------------------------------------------------------
class _WkwWriter(ChunkWriter):
    format = "wkw"

    def __init__(self, layer: Layer, mag: Mag):
        super().__init__(layer, mag)
        self.wkw = self.array.mag
        self.header = self.wkw.header

    def _plan(self, prepared):
        fl2 = self.header.file_len_log2
        files: dict[tuple, list] = {}
        for idx in sorted(prepared):
            files.setdefault(tuple(i >> fl2 for i in idx), []).append(idx)
        plan = []
        for fidx, members in files.items():
            path = self.wkw.store.path(self.wkw.file_key(*fidx))
            blocks = {idx: prepared[idx] for idx in members}
            plan.append((path, members, lambda p=path, b=blocks: self._write_file(p, b)))
        return plan

    def _after_file(self, path) -> None:
        self.wkw.invalidate()

    def _encode(self, block_type: int, data_czyx: np.ndarray) -> bytes:
        import cramjam

        from .wkw import BLOCK_LZ4, BLOCK_LZ4HC

        raw = np.ascontiguousarray(np.moveaxis(data_czyx, 0, -1), dtype=self.header.dtype)
        if block_type == BLOCK_LZ4:
            return bytes(cramjam.lz4.compress_block(raw, store_size=False))
        if block_type == BLOCK_LZ4HC:
            return bytes(cramjam.lz4.compress_block(raw, mode="high_compression", compression=9, store_size=False))
        return raw.tobytes()

    def _header_bytes(self, block_type: int, data_offset: int) -> bytes:
        h = self.header
        per_dim = (h.file_len_log2 << 4) | h.block_len_log2
        return struct.pack("<3sBBBBBQ", b"WKW", 1, per_dim, block_type, h.voxel_type, h.voxel_size, data_offset)

    def _write_file(self, path: str, blocks: dict) -> None:
        from .wkw import HEADER_SIZE, morton_index, parse_header

        mask = self.header.file_len - 1
        by_morton = {morton_index(bx & mask, by & mask, bz & mask): d for (bz, by, bx), d in blocks.items()}
        fd = _open_existing(path)
        if fd is None:
            self._write_new(path, by_morton)
            return
        try:
            head = os.pread(fd, HEADER_SIZE, 0)
            fh = parse_header(head, path)
            if not fh.same_geometry(self.header):
                raise ValueError(f"{path}: file header disagrees with header.wkw (block/file size or voxel type)")
            with self._atomic_file(path) as out:
                if fh.compressed:
                    self._patch_compressed(fd, fh, head, by_morton, out, path)
                else:
                    self._patch_raw(fd, fh, by_morton, out)
                out.commit()
        finally:
            os.close(fd)

    def _patch_compressed(self, fd: int, fh, head: bytes, by_morton: dict, out: AtomicFile, path: str) -> None:
        from .wkw import HEADER_SIZE

        n = fh.blocks_per_file
        table = os.pread(fd, 8 * n, HEADER_SIZE)
        if len(table) != 8 * n:
            raise ValueError(f"{path}: truncated jump table ({len(table)} of {8 * n} bytes); cannot patch the file")
        ends = np.frombuffer(table, "<u8").astype(np.int64)
        starts = np.empty_like(ends)
        starts[0] = fh.data_offset
        starts[1:] = ends[:-1]
        size = os.fstat(fd).st_size
        if fh.data_offset < fh.table_bytes or (ends < starts).any() or ends[-1] > size:
            raise ValueError(f"{path}: corrupt jump table or truncated file; cannot patch it (nothing written)")
        order = sorted(by_morton)
        encoded = _parallel_map(lambda m: self._encode(fh.block_type, by_morton[m]), order)
        delta = np.zeros(n, np.int64)
        delta[order] = np.array([len(e) for e in encoded], np.int64) - (ends[order] - starts[order])
        new_ends = ends + np.cumsum(delta)
        out.write(head)
        out.write(new_ends.astype("<u8").tobytes())
        if fh.data_offset > fh.table_bytes:  # bytes between the table and block 0: keep them
            out.copy_from(fd, fh.table_bytes, fh.data_offset - fh.table_bytes)
        pos = int(fh.data_offset)
        for m, data in zip(order, encoded):
            out.copy_from(fd, pos, int(starts[m]) - pos)
            out.write(data)
            pos = int(ends[m])
        out.copy_from(fd, pos, int(ends[-1]) - pos)

    def _patch_raw(self, fd: int, fh, by_morton: dict, out: AtomicFile) -> None:
        bb = fh.block_bytes
        need = fh.data_offset + fh.blocks_per_file * bb
        size = os.fstat(fd).st_size
        out.copy_from(fd, 0, min(size, need))
        if size < need:
            out.truncate(need)
        for m, data in by_morton.items():
            out.pwrite(self._encode(fh.block_type, data), fh.data_offset + m * bb)

    def _write_new(self, path: str, by_morton: dict) -> None:
        """A file that did not exist: every block not given is zero."""
        from .wkw import BLOCK_RAW, HEADER_SIZE

        h = self.header
        n, bt = h.blocks_per_file, h.block_type
        with self._atomic_file(path) as out:
            if bt == BLOCK_RAW:
                out.write(self._header_bytes(bt, HEADER_SIZE))
                out.truncate(HEADER_SIZE + n * h.block_bytes)  # sparse zeros
                for m, data in by_morton.items():
                    out.pwrite(self._encode(bt, data), HEADER_SIZE + m * h.block_bytes)
            else:
                zero = self._encode(bt, np.zeros((h.channels, h.block_len, h.block_len, h.block_len), h.dtype))
                pieces = [zero] * n
                order = list(by_morton)
                for m, data in zip(order, _parallel_map(lambda m: self._encode(bt, by_morton[m]), order)):
                    pieces[m] = data
                table_bytes = HEADER_SIZE + 8 * n
                ends = table_bytes + np.cumsum(np.fromiter(map(len, pieces), np.int64, n))
                out.write(self._header_bytes(bt, table_bytes) + ends.astype("<u8").tobytes())
                out.write(b"".join(pieces))
            out.commit()


# --------------------------------------------------------------------------------------------
# Zarr
# --------------------------------------------------------------------------------------------
class _Unsupported(Exception):
    """A codec we cannot encode (name in args[0])."""


def _crc32c_append(buf) -> bytes:
    from numcodecs.checksum32 import crc32c_checksum

    body = bytes(buf)
    return body + int(crc32c_checksum(body)).to_bytes(4, "little")


_BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


def _byte_encoder(codec: dict, itemsize: int) -> Callable:
    import numcodecs

    name, cfg = codec.get("name"), codec.get("configuration") or {}
    if name == "crc32c":
        return _crc32c_append
    if name == "zstd":
        return numcodecs.Zstd(level=int(cfg.get("level", 0)), checksum=bool(cfg.get("checksum", False))).encode
    if name == "gzip":
        return numcodecs.GZip(level=int(cfg.get("level", 5))).encode
    if name == "blosc":
        shuffle = cfg.get("shuffle", "noshuffle")
        shuffle = _BLOSC_SHUFFLE.get(shuffle, shuffle) if isinstance(shuffle, str) else int(shuffle)
        if shuffle not in (0, 1, 2):
            raise _Unsupported(f"blosc shuffle {cfg.get('shuffle')!r}")
        blosc = numcodecs.Blosc(
            cname=str(cfg.get("cname", "zstd")), clevel=int(cfg.get("clevel", 5)), shuffle=shuffle,
            blocksize=int(cfg.get("blocksize", 0)),
        )  # fmt: skip
        typesize = int(cfg.get("typesize") or itemsize)
        view = np.dtype(f"u{typesize}") if typesize in (1, 2, 4, 8) else np.dtype("u1")

        def encode_blosc(buf):
            data = np.frombuffer(bytes(buf) if not isinstance(buf, (bytes, np.ndarray)) else buf, np.uint8)
            if data.size % view.itemsize == 0:
                data = data.view(view)
            return blosc.encode(data)

        return encode_blosc
    if isinstance(name, str) and name.startswith("numcodecs."):
        try:
            return numcodecs.get_codec({"id": name[10:], **cfg}).encode
        except (ValueError, TypeError, KeyError) as err:
            raise _Unsupported(f"{name} ({err})") from None
    raise _Unsupported(str(name))


def _v3_encoder(codecs: list, dtype: np.dtype, ndim: int) -> Callable[[np.ndarray], bytes]:
    """chunk array (array axis order) → stored bytes, for a v3 codec list without sharding."""
    codecs = [{"name": c} if isinstance(c, str) else c for c in codecs]
    names = [c.get("name") for c in codecs]
    perm, i = list(range(ndim)), 0
    while i < len(codecs) and names[i] == "transpose":
        order = (codecs[i].get("configuration") or {}).get("order")
        order = list(range(ndim))[::-1] if order == "F" else list(range(ndim)) if order == "C" else list(order)
        perm = [perm[o] for o in order]
        i += 1
    if i >= len(codecs) or names[i] != "bytes":
        raise _Unsupported(str(names[i]) if i < len(codecs) else "no bytes codec")
    endian = (codecs[i].get("configuration") or {}).get("endian", "little")
    stored = dtype.newbyteorder("<" if endian == "little" else ">") if dtype.itemsize > 1 else dtype
    byte_encoders = [_byte_encoder(c, dtype.itemsize) for c in codecs[i + 1 :]]
    identity = perm == list(range(ndim))

    def encode(arr: np.ndarray) -> bytes:
        a = np.ascontiguousarray(arr if identity else arr.transpose(perm), dtype=stored)
        buf = a.reshape(-1).view(np.uint8)
        for enc in byte_encoders:
            buf = enc(buf)
        return bytes(buf) if not isinstance(buf, bytes) else buf

    return encode


def _v2_encoder(meta: dict) -> Callable[[np.ndarray], bytes]:
    import numcodecs

    stored = np.dtype(meta["dtype"])
    try:
        filters = [numcodecs.get_codec(dict(f)) for f in meta.get("filters") or []]
        compressor = numcodecs.get_codec(dict(meta["compressor"])) if meta.get("compressor") else None
    except (ValueError, TypeError, KeyError) as err:
        raise _Unsupported(str(err)) from None
    order = "F" if meta.get("order", "C") == "F" else "C"

    def encode(arr: np.ndarray) -> bytes:
        buf = np.asarray(arr, dtype=stored).ravel(order=order)
        for f in filters:
            buf = f.encode(buf)
        if compressor is not None:
            buf = compressor.encode(buf)
        return bytes(buf) if not isinstance(buf, bytes) else buf

    return encode


def _is_fill(arr: np.ndarray, fill) -> bool:
    if isinstance(fill, (float, np.floating)) and np.isnan(fill):
        return bool(np.isnan(arr).all())
    if fill == 0 and arr.dtype.kind in "biuf":  # one read pass, no temporary (NaN counts as non-zero)
        return not arr.any()
    return bool((arr == fill).all())


class _ZarrWriter(ChunkWriter):
    format = "zarr"

    def __init__(self, layer: Layer, mag: Mag):
        super().__init__(layer, mag)
        za = self.za = self.array.zarr_array
        if za.is_fallback:
            raise _refuse(layer, f"{za.location}: codec {getattr(za, 'fallback_codec', '?')!r} cannot be written")
        meta = za.metadata
        try:
            if za.zarr_format == 3:
                codecs = meta["codecs"]
                if za.chunks_per_shard is not None:
                    cfg = codecs[0].get("configuration") or {}
                    self._encode = _v3_encoder(cfg["codecs"], za.dtype, za.ndim)
                    index_codecs = cfg.get("index_codecs") or [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "crc32c"},
                    ]
                    self._encode_index = _v3_encoder(index_codecs, np.dtype("u8"), za.ndim + 1)
                    self._index_nbytes = 16 * math.prod(za.chunks_per_shard) + 4 * sum(
                        1 for c in index_codecs if (c if isinstance(c, str) else c.get("name")) == "crc32c"
                    )
                    self._index_at_end = cfg.get("index_location", "end") != "start"
                    probe = self._encode_index(np.ones((1,) * (za.ndim + 1), np.uint64))
                    self._index_dtype = np.dtype("<u8" if probe[:8] == (1).to_bytes(8, "little") else ">u8")
                else:
                    self._encode = _v3_encoder(codecs, za.dtype, za.ndim)
            else:
                self._encode = _v2_encoder(meta)
        except _Unsupported as err:
            raise _refuse(layer, f"{za.location}: codec {err.args[0]!r} cannot be written") from None
        # a v2 array without fill_value: absent chunks are undefined for other readers, so keep every chunk
        self._may_delete = not (za.zarr_format == 2 and meta.get("fill_value") is None)
        self.dims = self.array.zarr_dims
        self.fixed = self.array.zarr_fixed
        self.store: LocalStore = za.store

    # -- ChunkedArray chunk → zarr chunks ----------------------------------------------------------
    def _zarr_chunks(self, idx, data: np.ndarray) -> dict[tuple, np.ndarray]:
        """Full zarr chunks (array axis order) holding ChunkedArray chunk ``idx`` ((c, z, y, x) ``data``)."""
        za, dims, fixed = self.za, self.dims, self.fixed
        nd, cs = za.ndim, za.chunk_shape
        c_dim, z_dim, y_dim, x_dim = (dims.get(a) for a in "czyx")
        zidx = [fixed[d] // cs[d] if d in fixed else 0 for d in range(nd)]
        if z_dim is not None:
            zidx[z_dim] = idx[0]
        elif idx[0] != 0:
            raise ValueError(f"{za.location}: chunk {idx}: a 2-D array has only z index 0")
        zidx[y_dim], zidx[x_dim] = idx[1], idx[2]
        spatial = [d for d in (z_dim, y_dim, x_dim) if d is not None]
        if any(zidx[d] >= za.grid_shape[d] for d in spatial):
            raise ValueError(f"{za.location}: chunk {idx} lies outside the array (chunk grid {za.grid_shape})")
        select = tuple(fixed[d] % cs[d] if d in fixed else slice(None) for d in range(nd))
        remaining = [d for d in range(nd) if d not in fixed]
        perm = tuple(remaining.index(d) for d in (c_dim, z_dim, y_dim, x_dim) if d is not None)
        values = data if c_dim is not None else data[0]
        if z_dim is None:
            values = values[:, 0] if c_dim is not None else values[0]
        pinned_whole = all(cs[d] == 1 for d in fixed)
        n_c = za.shape[c_dim] if c_dim is not None else 1
        if not fixed and (c_dim is None or cs[c_dim] == n_c == values.shape[0]):
            # the chunk is exactly this data: a transposed view, encoded without an intermediate copy
            return {tuple(zidx): values.transpose(tuple(int(i) for i in np.argsort(perm)))}
        out = {}
        for k in range(-(-n_c // cs[c_dim]) if c_dim is not None else 1):
            zi = list(zidx)
            lo = hi = 0
            if c_dim is not None:
                zi[c_dim] = k
                lo, hi = k * cs[c_dim], min((k + 1) * cs[c_dim], n_c)
            zi = tuple(zi)
            chunk = None
            if not pinned_whole:  # the chunk holds more than this view: keep the rest
                chunk = za.read_chunk(zi)
                chunk = None if chunk is None else np.array(chunk, dtype=za.dtype)
            if chunk is None:
                chunk = np.full(cs, za.fill_value, dtype=za.dtype)
            view = chunk[select].transpose(perm)
            if c_dim is not None:
                view[: hi - lo] = values[lo:hi]
            else:
                view[...] = values
            out[zi] = chunk
        return out

    def _plan(self, prepared):
        za = self.za
        per = za.chunks_per_shard
        files: dict[tuple, dict] = {}
        owners: dict[tuple, set] = {}
        for idx in sorted(prepared):
            for zi, chunk in self._zarr_chunks(idx, prepared[idx]).items():
                fkey = tuple(i // p for i, p in zip(zi, per)) if per is not None else zi
                files.setdefault(fkey, {})[zi] = chunk
                owners.setdefault(fkey, set()).add(idx)
        plan = []
        for fkey, chunks in files.items():
            path = self.store.path(za.storage_key(fkey))
            if per is not None:
                write = lambda p=path, f=fkey, c=chunks: self._write_shard(p, f, c)
            else:
                write = lambda p=path, c=chunks: self._write_chunk(p, next(iter(c.values())))
            plan.append((path, sorted(owners[fkey]), write))
        return plan

    def _write_chunk(self, path: str, chunk: np.ndarray) -> None:
        if self._may_delete and _is_fill(chunk, self.za.fill_value):
            remove_if_exists(path)
        else:
            self._write_bytes(path, self._encode(chunk))

    # -- shards ---------------------------------------------------------------------------------
    def _read_index(self, fd: int, path: str) -> tuple[np.ndarray, int, int]:
        """(entries (n, 2) uint64, data start, data end) of an existing shard."""
        n = math.prod(self.za.chunks_per_shard)
        size = os.fstat(fd).st_size
        nb = self._index_nbytes
        if size < nb:
            raise ValueError(f"{path}: shard is {size} bytes, shorter than its {nb}-byte index; cannot patch it")
        raw = os.pread(fd, nb, size - nb if self._index_at_end else 0)
        body = raw[: 16 * n]
        if nb > 16 * n:  # crc32c
            from numcodecs.checksum32 import crc32c_checksum

            if int(crc32c_checksum(body)) != int.from_bytes(raw[16 * n : 16 * n + 4], "little"):
                raise ValueError(f"{path}: shard index checksum mismatch; cannot patch it (nothing written)")
        entries = np.frombuffer(body, self._index_dtype).astype(np.uint64).reshape(n, 2)
        start, end = (0, size - nb) if self._index_at_end else (nb, size)
        return entries, start, end

    def _write_shard(self, path: str, shard_idx: tuple, chunks: dict) -> None:
        za = self.za
        per = za.chunks_per_shard
        n = math.prod(per)
        fill = za.fill_value
        items = list(chunks.items())
        encoded = _parallel_map(lambda item: None if _is_fill(item[1], fill) else self._encode(item[1]), items)
        new: dict[int, bytes | None] = {}
        for (zi, _), data in zip(items, encoded):
            new[int(np.ravel_multi_index(tuple(i % p for i, p in zip(zi, per)), per))] = data
        fd = _open_existing(path)
        try:
            if fd is None:
                entries, data_start, data_end = np.full((n, 2), _EMPTY, np.uint64), 0, 0
            else:
                entries, data_start, data_end = self._read_index(fd, path)
            present = ~((entries[:, 0] == _EMPTY) & (entries[:, 1] == _EMPTY))
            offs = np.where(present, entries[:, 0], 0).astype(np.int64)
            lens = np.where(present, entries[:, 1], 0).astype(np.int64)
            if present.any() and (
                (offs[present] < data_start).any() or (offs[present] + lens[present] > data_end).any()
            ):
                raise ValueError(f"{path}: shard index points outside the shard's data; cannot patch it")
            base = self._index_nbytes if not self._index_at_end else 0
            new_entries = entries.copy()
            segments: list = []  # ("copy", src offset, length) or ("data", bytes)
            pos = base
            run = None  # [src start, src end, new start] of the current copy run
            for lin in np.flatnonzero(present)[np.argsort(offs[present], kind="stable")].tolist():
                off, nb = int(offs[lin]), int(lens[lin])
                if lin in new:
                    continue  # replaced: its old bytes are not copied (unless another chunk shares them)
                if run is not None and run[0] <= off <= run[1]:
                    run[1] = max(run[1], off + nb)
                else:
                    if run is not None:
                        segments.append(("copy", run[0], run[1] - run[0]))
                        pos += run[1] - run[0]
                    run = [off, off + nb, pos]
                new_entries[lin] = (run[2] + off - run[0], nb)
            if run is not None:
                segments.append(("copy", run[0], run[1] - run[0]))
                pos += run[1] - run[0]
            for lin in sorted(new):
                data = new[lin]
                if data is None:
                    new_entries[lin] = (_EMPTY, _EMPTY)
                    continue
                segments.append(("data", data))
                new_entries[lin] = (pos, len(data))
                pos += len(data)
            cache_key = za.shard_index_cache_key(shard_idx)
            if not segments:
                remove_if_exists(path)  # nothing left in the shard
                _put_shared(cache_key, None)
                return
            index_bytes = self._encode_index(new_entries.reshape(*per, 2))
            with self._atomic_file(path) as out:
                if not self._index_at_end:
                    out.write(index_bytes)
                for seg in segments:
                    if seg[0] == "copy":
                        out.copy_from(fd, seg[1], seg[2])
                    else:
                        out.write(seg[1])
                if self._index_at_end:
                    out.write(index_bytes)
                out.commit()
            _put_shared(cache_key, np.ascontiguousarray(new_entries.reshape(*per, 2), dtype=np.uint64))
        finally:
            if fd is not None:
                os.close(fd)


def _put_shared(key: tuple, value) -> None:
    """Replace an entry of the shared chunk cache (zarr shard indexes live there)."""
    from .cache import CHUNK_CACHE

    CHUNK_CACHE.put(key, value)


# --------------------------------------------------------------------------------------------
# KNOSSOS cubes
# --------------------------------------------------------------------------------------------
class _KnossosWriter(ChunkWriter):
    format = "knossos"

    def __init__(self, layer: Layer, mag: Mag):
        super().__init__(layer, mag)
        extra = layer.extra
        self.ext = extra.get("file_extension", "")
        self.experiment = extra.get("experiment_name", "")
        if self.ext not in _KNOSSOS_WRITABLE:
            kind = "lossy " if self.ext in (".jpg", ".jpeg", ".j2k", ".6.jp2") else ""
            raise _refuse(layer, f"{kind}{self.ext} cubes cannot be rewritten without loss")
        if self.ext == ".png" and (self.dtype != np.uint8 or self.channels != 1):
            raise _refuse(layer, f"{self.channels} x {self.dtype.name} .png cubes cannot be written")
        folders = extra.get("mag_folders") or []
        i = next(k for k, m in enumerate(layer.mags) if m is mag)
        if i >= len(folders):
            raise _refuse(layer, f"the mag folder of mag {mag.name} is unknown")
        self.folder = int(folders[i].removeprefix("mag"))
        self.store = LocalStore(layer.source)

    def _plan(self, prepared):
        from .knossos import cube_key

        plan = []
        for idx in sorted(prepared):
            z, y, x = idx
            path = self.store.path(cube_key(self.experiment, self.folder, (x, y, z), self.ext))
            plan.append((path, [idx], lambda p=path, d=prepared[idx]: self._write_cube(p, d)))
        return plan

    def _write_cube(self, path: str, data: np.ndarray) -> None:
        from .knossos_writer import encode_cube

        if self.ext in (".seg.sz.zip", ".png"):
            payload = encode_cube(data[0], self.ext, file_name=os.path.basename(path))
        else:
            dtype = np.dtype("<u8") if self.ext == ".seg" else self.dtype.newbyteorder("<")
            payload = np.ascontiguousarray(np.moveaxis(data, 0, -1), dtype=dtype).tobytes()
        self._write_bytes(path, payload)

"""WKW (webKnossos wrap) volumes: header parsing and lazy block reads.

A WKW mag folder holds ``header.wkw`` (geometry and voxel type) and data files
``z{fz}/y{fy}/x{fx}.wkw``, each a cube of F³ blocks of B³ voxels stored in Morton order,
RAW or LZ4-compressed (jump table of block end offsets after the 16-byte header).
Inside a block voxels are Fortran-ordered (x fastest) with channels interleaved, which
is exactly C order for a ``(z, y, x, c)`` array, so a decoded block needs no copy.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass

import cramjam
import numpy as np

from .cache import ChunkCache
from .chunked import ChunkedArray, CorruptChunkError, warn_corrupt, chunk_pool
from .model import mag_extent
from .store import LocalStore, RemoteAccessError, Store

__all__ = ["WkwHeader", "WkwMag", "WkwArray", "MissingHeaderError", "parse_header", "morton_index", "HEADER_FILE"]

HEADER_FILE = "header.wkw"
HEADER_SIZE = 16
MAGIC = b"WKW"
BLOCK_RAW, BLOCK_LZ4, BLOCK_LZ4HC = 1, 2, 3
BLOCK_TYPE_NAMES = {BLOCK_RAW: "RAW", BLOCK_LZ4: "LZ4", BLOCK_LZ4HC: "LZ4HC"}
VOXEL_TYPES = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    3: np.dtype("<u4"),
    4: np.dtype("<u8"),
    5: np.dtype("<f4"),
    6: np.dtype("<f8"),
    7: np.dtype("<i1"),
    8: np.dtype("<i2"),
    9: np.dtype("<i4"),
    10: np.dtype("<i8"),
}
MAX_BLOCK_LEN_LOG2 = 10  # 1024³-voxel blocks; real data uses 32³ (log2 5)
MAX_FILE_LEN_LOG2 = 7  # 128³ blocks per file (16 MiB jump table); real data uses at most 32³ (log2 5)
JUMP_TABLE_CACHE_BYTES = 16 * 2**20  # per mag: headers + jump tables of recently used files
RUN_GAP_BYTES = 64 * 2**10  # local files: block ranges closer than this are fetched with one read
RUN_MAX_BYTES = 4 * 2**20
REMOTE_RUN_GAP_BYTES = 2**20  # HTTP: a request costs more than a MiB of unneeded bytes
REMOTE_RUN_MAX_BYTES = 16 * 2**20
SLAB_MAX_BYTES = 64 * 2**20  # decoded blocks of one region read share buffers of at most this size
SMALL_READ_BLOCKS = 4  # up to this many uncached blocks are read one by one
# volumetric reads: boxes of blocks decoded per worker task, about VOLUME_JOBS_PER_WORKER per
# worker (load balance) but at least VOLUME_JOB_MIN_BYTES (handing a task to the pool costs
# ~0.1-0.3 ms) and at most VOLUME_JOB_BYTES (the scratch buffer of a worker) decoded bytes
VOLUME_JOB_BYTES = 2 * 2**20
VOLUME_JOB_MIN_BYTES = 2**20
VOLUME_JOBS_PER_WORKER = 4
MAX_TASKS = max(2, min(8, os.cpu_count() or 2))  # decoding tasks per region read (local files)
REMOTE_TASKS = 8  # concurrent ranged requests per region read (HTTP)


class MissingHeaderError(ValueError):
    """A WKW mag folder without its ``header.wkw``."""


@dataclass(frozen=True)
class WkwHeader:
    """The 16-byte header of a WKW file (``header.wkw`` or a data file)."""

    version: int
    block_len_log2: int
    file_len_log2: int
    block_type: int
    voxel_type: int
    voxel_size: int  # bytes per voxel over all channels
    data_offset: int

    @property
    def block_len(self) -> int:
        """Block edge B in voxels."""
        return 1 << self.block_len_log2

    @property
    def file_len(self) -> int:
        """File edge F in blocks."""
        return 1 << self.file_len_log2

    @property
    def file_edge(self) -> int:
        """File edge in voxels (B·F)."""
        return self.block_len * self.file_len

    @property
    def blocks_per_file(self) -> int:
        return 1 << (3 * self.file_len_log2)

    @property
    def dtype(self) -> np.dtype:
        return VOXEL_TYPES[self.voxel_type]

    @property
    def channels(self) -> int:
        return self.voxel_size // self.dtype.itemsize

    @property
    def block_bytes(self) -> int:
        return (1 << (3 * self.block_len_log2)) * self.voxel_size

    @property
    def compressed(self) -> bool:
        return self.block_type in (BLOCK_LZ4, BLOCK_LZ4HC)

    @property
    def table_bytes(self) -> int:
        """Bytes from the file start through the jump table (header only for RAW)."""
        return HEADER_SIZE + (8 * self.blocks_per_file if self.compressed else 0)

    def same_geometry(self, other: WkwHeader) -> bool:
        return (self.block_len_log2, self.file_len_log2, self.voxel_type, self.voxel_size) == (
            other.block_len_log2,
            other.file_len_log2,
            other.voxel_type,
            other.voxel_size,
        )


def parse_header(data: bytes, source: str) -> WkwHeader:
    """Parse and validate a 16-byte WKW header; ValueError names ``source`` and the byte."""
    if data is None or len(data) < HEADER_SIZE:
        n = 0 if data is None else len(data)
        raise ValueError(f"{source}: file is {n} bytes, a WKW header needs {HEADER_SIZE} (truncated at byte {n})")
    magic, version, per_dim, block_type, voxel_type, voxel_size, data_offset = struct.unpack_from("<3sBBBBBQ", data)
    if magic != MAGIC:
        raise ValueError(f"{source}: byte 0 (magic): expected b'WKW', found {magic!r}; not a WKW file")
    if version != 1:
        raise ValueError(f"{source}: byte 3 (version): unsupported WKW version {version}, only 1 exists")
    block_len_log2, file_len_log2 = per_dim & 0x0F, per_dim >> 4
    if block_len_log2 > MAX_BLOCK_LEN_LOG2 or file_len_log2 > MAX_FILE_LEN_LOG2:
        raise ValueError(
            f"{source}: byte 4 (perDimLog2 = 0x{per_dim:02x}): blocks of 2^{block_len_log2} voxels and files of "
            f"2^{file_len_log2} blocks per edge are implausible"
        )
    if block_type not in BLOCK_TYPE_NAMES:
        raise ValueError(f"{source}: byte 5 (blockType): {block_type} is not 1 (RAW), 2 (LZ4) or 3 (LZ4HC)")
    if voxel_type not in VOXEL_TYPES:
        raise ValueError(f"{source}: byte 6 (voxelType): {voxel_type} is not a voxel type (1-10)")
    itemsize = VOXEL_TYPES[voxel_type].itemsize
    if voxel_size == 0 or voxel_size % itemsize:
        raise ValueError(
            f"{source}: byte 7 (voxelSize): {voxel_size} bytes per voxel is not a multiple of the "
            f"{VOXEL_TYPES[voxel_type].name} item size {itemsize}"
        )
    return WkwHeader(1, block_len_log2, file_len_log2, block_type, voxel_type, voxel_size, data_offset)


def _in_pool() -> bool:
    """True on a thread of the shared chunk pool (which must not wait on itself)."""
    return threading.current_thread().name.startswith("napari-knossos-io")


@functools.lru_cache(maxsize=None)
def _morton_tables(n_bits: int) -> tuple[tuple[np.ndarray, ...], tuple[list, ...]]:
    """Morton contribution of every in-file block coordinate 0..2^n_bits-1 on x, y and z
    (as arrays and as lists)."""
    values = np.arange(1 << n_bits, dtype=np.int64)
    tables = []
    for shift in range(3):
        out = np.zeros_like(values)
        for k in range(n_bits):
            out |= ((values >> k) & 1) << (3 * k + shift)
        out.flags.writeable = False
        tables.append(out)
    return tuple(tables), tuple(t.tolist() for t in tables)


def morton_index(bx: int, by: int, bz: int) -> int:
    """Morton (Z-order) index of in-file block coordinates: bit k of x/y/z → bit 3k/3k+1/3k+2."""
    out, k = 0, 0
    while bx or by or bz:
        out |= ((bx & 1) << (3 * k)) | ((by & 1) << (3 * k + 1)) | ((bz & 1) << (3 * k + 2))
        bx, by, bz, k = bx >> 1, by >> 1, bz >> 1, k + 1
    return out


class _FileInfo:
    """Per-data-file state: missing, unreadable (the error), or header + jump table."""

    __slots__ = ("header", "ends", "error", "missing", "nbytes")

    def __init__(self, header=None, ends=None, error=None, missing=False):
        self.header: WkwHeader | None = header
        self.ends: np.ndarray | None = ends  # absolute end offset of each compressed block
        self.error: CorruptChunkError | None = error
        self.missing = missing
        self.nbytes = 64 + (0 if ends is None else ends.nbytes)


@dataclass
class _Run:
    """Blocks of one file fetched with a single ranged read ``[start, stop)``.

    Per block (lists, sorted by offset): grid index (bz, by, bx), Morton index in the
    file, offset relative to ``start`` and stored length.
    """

    file_key: str
    header: WkwHeader
    start: int
    stop: int
    idx: list
    morton: list
    rel: list
    length: list

    def __len__(self) -> int:
        return len(self.idx)


class WkwMag:
    """One WKW mag folder below ``store`` at ``key``; geometry from its ``header.wkw``.

    Reading a block touches only its data file: the file's header and jump table
    (one ranged read, cached per file) and the block's byte range. Many blocks of one
    file are fetched with few ranged reads (neighbouring ranges merged) and decoded in
    parallel straight into one buffer.
    """

    def __init__(self, store: Store, key: str = ""):
        self.store = store
        self.key = key.strip("/")
        header_key = self._join(HEADER_FILE)
        source = store.location(header_key)
        data = store.read_range(header_key, 0, HEADER_SIZE)
        if data is None:
            raise MissingHeaderError(f"{source}: missing; every WKW mag folder needs a header.wkw")
        self.header = parse_header(data, source)
        self.location = store.location(self.key)
        fl2 = self.header.file_len_log2
        local = isinstance(store, LocalStore)
        self._run_gap = RUN_GAP_BYTES if local else REMOTE_RUN_GAP_BYTES
        self._run_max = RUN_MAX_BYTES if local else REMOTE_RUN_MAX_BYTES
        self.parallel_reads = MAX_TASKS if local else REMOTE_TASKS  # tasks per region read
        self._morton_np, self._morton = _morton_tables(fl2)  # per axis x, y, z
        self._files: OrderedDict[str, _FileInfo] = OrderedDict()
        self._files_bytes = 0
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    # -- geometry ---------------------------------------------------------------------------
    @property
    def block_len(self) -> int:
        return self.header.block_len

    @property
    def file_len(self) -> int:
        return self.header.file_len

    @property
    def file_edge(self) -> int:
        return self.header.file_edge

    @property
    def dtype(self) -> np.dtype:
        return self.header.dtype

    @property
    def channels(self) -> int:
        return self.header.channels

    def _join(self, name: str) -> str:
        return f"{self.key}/{name}" if self.key else name

    def file_key(self, fz: int, fy: int, fx: int) -> str:
        """Store key of the data file with file-grid coordinates (fz, fy, fx)."""
        return self._join(f"z{fz}/y{fy}/x{fx}.wkw")

    def _block_file(self, bz: int, by: int, bx: int) -> tuple[str, int]:
        """(file key, Morton index inside the file) of block (bz, by, bx)."""
        fl2 = self.header.file_len_log2
        mask = self.header.file_len - 1
        mx, my, mz = self._morton
        return self.file_key(bz >> fl2, by >> fl2, bx >> fl2), mx[bx & mask] | my[by & mask] | mz[bz & mask]

    def __repr__(self) -> str:
        h = self.header
        return (
            f"WkwMag({self.location!r}, block={h.block_len}, file={h.file_len} blocks, "
            f"{BLOCK_TYPE_NAMES[h.block_type]}, {h.channels}x{h.dtype.name})"
        )

    # -- per-file header + jump table -------------------------------------------------------
    def invalidate(self) -> None:
        """Forget cached file headers and jump tables (after files were written)."""
        with self._lock:
            self._files.clear()
            self._files_bytes = 0

    def _file_info(self, fk: str) -> _FileInfo:
        with self._lock:
            info = self._files.get(fk)
            if info is not None:
                self._files.move_to_end(fk)
                return info
            lock = self._loading.setdefault(fk, threading.Lock())
        with lock:  # one thread loads a file's table; the others wait for it
            with self._lock:
                info = self._files.get(fk)
            if info is None:
                info = self._load_file_info(fk)
                with self._lock:
                    self._files[fk] = info
                    self._files_bytes += info.nbytes
                    while self._files_bytes > JUMP_TABLE_CACHE_BYTES and len(self._files) > 1:
                        _, old = self._files.popitem(last=False)
                        self._files_bytes -= old.nbytes
                    self._loading.pop(fk, None)
        return info

    def _load_file_info(self, fk: str) -> _FileInfo:
        """Header and jump table of one data file from a single ranged read (bytes 0..16+8N)."""
        source = self.store.location(fk)
        data = self.store.read_range(fk, 0, self.header.table_bytes)
        if data is None:
            return _FileInfo(missing=True)
        try:
            header = parse_header(data, source)
        except ValueError as err:
            return _FileInfo(error=CorruptChunkError(source, f"bad file header: {str(err)[len(source) + 2:]}"))
        if not header.same_geometry(self.header):
            return _FileInfo(
                error=CorruptChunkError(
                    source,
                    f"file header (bytes 4-7: block 2^{header.block_len_log2}, file 2^{header.file_len_log2}, "
                    f"voxelType {header.voxel_type}, voxelSize {header.voxel_size}) disagrees with header.wkw "
                    f"(block 2^{self.header.block_len_log2}, file 2^{self.header.file_len_log2}, "
                    f"voxelType {self.header.voxel_type}, voxelSize {self.header.voxel_size})",
                )
            )
        if header.table_bytes > len(data) and len(data) == self.header.table_bytes:
            data = self.store.read_range(fk, 0, header.table_bytes) or b""  # header.wkw said RAW
        if header.data_offset < header.table_bytes:
            return _FileInfo(
                error=CorruptChunkError(
                    source,
                    f"byte 8 (dataOffset): {header.data_offset} overlaps the header"
                    + (" and jump table" if header.compressed else "")
                    + f" (must be >= {header.table_bytes})",
                )
            )
        if not header.compressed:
            return _FileInfo(header=header)
        if len(data) < header.table_bytes:
            return _FileInfo(
                error=CorruptChunkError(
                    source,
                    f"truncated at byte {len(data)}: the jump table of {header.blocks_per_file} blocks "
                    f"ends at byte {header.table_bytes}",
                )
            )
        # u64 offsets read as i64 (no copy): a corrupt value >= 2^63 turns negative and fails the range checks
        ends = np.frombuffer(data, "<i8", header.blocks_per_file, HEADER_SIZE)
        return _FileInfo(header=header, ends=ends)

    def _block_range(self, fk: str, info: _FileInfo, i: int) -> tuple[int, int]:
        """(start, stop) byte range of block ``i`` in a data file; CorruptChunkError if impossible."""
        fh = info.header
        if not fh.compressed:
            start = fh.data_offset + i * fh.block_bytes
            return start, start + fh.block_bytes
        start = fh.data_offset if i == 0 else int(info.ends[i - 1])
        stop = int(info.ends[i])
        if start < fh.table_bytes or stop < start:
            raise CorruptChunkError(
                self.store.location(fk),
                f"bad jump table: block {i} would span bytes {start}-{stop} "
                f"(entries at bytes {HEADER_SIZE + 8 * max(i - 1, 0)} and {HEADER_SIZE + 8 * i})",
            )
        return start, stop

    def _decode(self, fk: str, fh: WkwHeader, i: int, start: int, raw, dest: np.ndarray, length: int = -1) -> None:
        """Decode block ``i`` (stored bytes ``raw`` from byte ``start``; ``length`` expected) into ``dest``."""
        size = fh.block_bytes
        if 0 <= len(raw) < length:
            raise CorruptChunkError(
                self.store.location(fk),
                f"truncated at byte {start + len(raw)}: block {i} spans bytes {start}-{start + length}",
            )
        if not fh.compressed:
            if len(raw) < size:
                raise CorruptChunkError(
                    self.store.location(fk),
                    f"truncated at byte {start + len(raw)}: block {i} spans bytes {start}-{start + size}",
                )
            dest[:] = np.frombuffer(raw, np.uint8, size)
            return
        try:
            n = cramjam.lz4.decompress_block_into(raw, dest, output_len=size)
        except cramjam.DecompressionError as err:
            raise CorruptChunkError(
                self.store.location(fk), f"LZ4 block {i} at bytes {start}-{start + len(raw)} does not decode: {err}"
            ) from None
        if n != size:
            raise CorruptChunkError(
                self.store.location(fk),
                f"LZ4 block {i} at bytes {start}-{start + len(raw)} inflates to {n} bytes, expected {size}",
            )

    # -- blocks -----------------------------------------------------------------------------
    def read_block(self, bz: int, by: int, bx: int) -> np.ndarray | None:
        """Block (bz, by, bx) of the mag's block grid as ``(channels, B, B, B)`` (c, z, y, x).

        None if its data file does not exist; CorruptChunkError if it cannot be decoded.
        """
        dest = np.empty((1, self.header.block_bytes), np.uint8)
        if not self._read_block_into(bz, by, bx, dest[0]):
            return None
        return self._as_blocks(dest)[0]

    def _read_block_into(self, bz: int, by: int, bx: int, dest: np.ndarray) -> bool:
        """Decode block (bz, by, bx) into ``dest`` (uint8, ``block_bytes``); False if its file
        does not exist, CorruptChunkError if it cannot be decoded."""
        fk, i = self._block_file(bz, by, bx)
        info = self._file_info(fk)
        if info.missing:
            return False
        if info.error is not None:
            raise info.error
        start, stop = self._block_range(fk, info, i)
        raw = self._read_range(fk, start, stop - start)
        if raw is None:  # removed since its table was read
            return False
        self._decode(fk, info.header, i, start, raw, dest, stop - start)
        return True

    def read_chunk(self, idx: tuple[int, int, int]) -> np.ndarray | None:
        """:class:`ChunkedArray` reader: ``idx`` = (bz, by, bx)."""
        return self.read_block(*idx)

    def _byte_ranges(self, fk: str, info: _FileInfo, m: np.ndarray):
        """Byte ranges [start, stop) of blocks ``m`` (Morton indices) of one file.

        Returns (start, stop, bad, errors): ``bad`` masks blocks whose jump-table entry is
        invalid (None when all are valid), ``errors`` lists (position in ``m``, CorruptChunkError).
        """
        fh = info.header
        if not fh.compressed:
            start = fh.data_offset + m * fh.block_bytes
            return start, start + fh.block_bytes, None, []
        stop = info.ends[m]
        start = np.where(m == 0, fh.data_offset, info.ends[m - 1])
        bad = (start < fh.table_bytes) | (stop < start)
        if not bad.any():
            return start, stop, None, []
        errors = []
        for k in np.flatnonzero(bad).tolist():
            try:
                self._block_range(fk, info, int(m[k]))
            except CorruptChunkError as err:
                errors.append((k, err))
        return start, stop, bad, errors

    def plan_reads(self, blocks) -> tuple[list, list, list[_Run]]:
        """Group blocks (bz, by, bx) into ranged reads.

        Returns (missing blocks, [(block, CorruptChunkError)], runs); a run holds blocks of
        one file whose byte ranges lie close to each other (``RUN_GAP_BYTES`` locally,
        ``REMOTE_RUN_GAP_BYTES`` over HTTP).
        """
        h = self.header
        idx = np.asarray(blocks, dtype=np.int64).reshape(-1, 3)
        mask = h.file_len - 1
        mx, my, mz = self._morton_np
        morton = mx[idx[:, 2] & mask] | my[idx[:, 1] & mask] | mz[idx[:, 0] & mask]
        fidx = idx >> h.file_len_log2
        if (fidx == fidx[0]).all():  # the usual case: one file
            files, inverse = fidx[:1], np.zeros(len(idx), np.int64)
        else:
            span = fidx.max(axis=0) - fidx.min(axis=0) + 1
            flat = np.ravel_multi_index((fidx - fidx.min(axis=0)).T, span)
            _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
            files = fidx[first]
        keys = [self.file_key(*f) for f in files.tolist()]
        with self._lock:
            unknown = [k for k in keys if k not in self._files]
        if len(unknown) > 1 and not _in_pool():  # fetch the files' jump tables concurrently
            list(chunk_pool().map(self._file_info, unknown))
        missing, errors, runs = [], [], []
        for u, fk in enumerate(keys):
            sel = np.flatnonzero(inverse == u) if len(files) > 1 else np.arange(len(idx))
            info = self._file_info(fk)
            if info.missing or info.error is not None:
                for block in map(tuple, idx[sel].tolist()):
                    (missing.append(block) if info.missing else errors.append((block, info.error)))
                continue
            fh, m = info.header, morton[sel]
            start, stop, bad, errs = self._byte_ranges(fk, info, m)
            errors.extend((tuple(idx[sel[k]].tolist()), err) for k, err in errs)
            if bad is not None:
                sel, m, start, stop = sel[~bad], m[~bad], start[~bad], stop[~bad]
            if len(start) > 1 and (start[1:] < start[:-1]).any():
                order = np.argsort(start, kind="stable")
                sel, m, start, stop = sel[order], m[order], start[order], stop[order]
            reach = np.maximum.accumulate(stop) if len(stop) else stop
            blocks = list(map(tuple, idx[sel].tolist()))
            morton_l, start_l, stop_l, reach_l = m.tolist(), start.tolist(), stop.tolist(), reach.tolist()
            for a, e in self._split_runs(start, reach, start_l, reach_l):
                s0 = start_l[a]
                runs.append(
                    _Run(
                        fk,
                        fh,
                        s0,
                        reach_l[e - 1],
                        blocks[a:e],
                        morton_l[a:e],
                        [v - s0 for v in start_l[a:e]],
                        [q - p for p, q in zip(start_l[a:e], stop_l[a:e])],
                    )
                )
        return missing, errors, runs

    def _split_runs(self, start: np.ndarray, reach: np.ndarray, start_l: list, reach_l: list) -> list:
        """[(a, e)]: blocks ``a..e-1`` (sorted by ``start``; ``reach`` = running max of their ends)
        fetched with one read: gaps of at most the run gap, at most the run maximum long."""
        cuts = [0, *(np.flatnonzero(start[1:] - reach[:-1] > self._run_gap) + 1).tolist(), len(start_l)]
        out = []
        for a, b in itertools.pairwise(cuts):
            while a < b:  # split runs longer than the maximum read
                e = b
                if reach_l[b - 1] - start_l[a] > self._run_max:
                    e = a + max(1, int(np.searchsorted(reach[a:b], start_l[a] + self._run_max, side="right")))
                out.append((a, e))
                a = e
        return out

    def _read_box(self, lo, hi, rows: np.ndarray) -> tuple[bool, list, list]:
        """Decode the blocks ``lo <= (bz, by, bx) < hi`` of one data file into ``rows``.

        ``rows`` is uint8, one row of ``block_bytes`` per block in C order over the box; the
        box's byte ranges are fetched with few reads (merged like :meth:`plan_reads`). Returns
        ``(found, empty_rows, errors)``: ``found`` is False if the file is missing or unreadable
        as a whole (its error then in ``errors``); ``empty_rows`` are rows left without data
        (corrupt blocks, reported in ``errors``, or a file removed since its table was read).
        """
        if hi[0] - lo[0] == hi[1] - lo[1] == hi[2] - lo[2] == 1:  # one block: skip the planning
            try:
                return self._read_block_into(*lo, rows[0]), [], []
            except CorruptChunkError as err:
                return True, [0], [err]
        fl2, mask = self.header.file_len_log2, self.header.file_len - 1
        fk = self.file_key(lo[0] >> fl2, lo[1] >> fl2, lo[2] >> fl2)
        info = self._file_info(fk)
        if info.missing or info.error is not None:
            return False, [], ([] if info.missing else [info.error])
        fh = info.header
        mx, my, mz = self._morton_np
        m = (
            mz[lo[0] & mask : ((hi[0] - 1) & mask) + 1, None, None]
            | my[None, lo[1] & mask : ((hi[1] - 1) & mask) + 1, None]
            | mx[lo[2] & mask : ((hi[2] - 1) & mask) + 1]
        ).ravel()
        row = np.arange(len(m))
        start, stop, bad, errs = self._byte_ranges(fk, info, m)
        errors = [err for _, err in errs]
        empty = [] if bad is None else np.flatnonzero(bad).tolist()
        if bad is not None:
            m, row, start, stop = m[~bad], row[~bad], start[~bad], stop[~bad]
        if len(start) > 1 and (start[1:] < start[:-1]).any():
            order = np.argsort(start, kind="stable")
            m, row, start, stop = m[order], row[order], start[order], stop[order]
        reach = np.maximum.accumulate(stop) if len(stop) else stop
        start_l, stop_l, reach_l, row_l = start.tolist(), stop.tolist(), reach.tolist(), row.tolist()
        size, compressed, decode = fh.block_bytes, fh.compressed, cramjam.lz4.decompress_block_into
        fd = None  # local files: one open for all runs
        if isinstance(self.store, LocalStore):
            try:
                fd = os.open(self.store.path(fk), os.O_RDONLY)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                fd = -1  # removed since its table was read
        try:
            for a, e in self._split_runs(start, reach, start_l, reach_l):
                s0 = start_l[a]
                if fd is None:
                    try:
                        data = self._read_range(fk, s0, reach_l[e - 1] - s0)
                    except CorruptChunkError as err:
                        errors.append(err)
                        data = None
                else:
                    data = os.pread(fd, reach_l[e - 1] - s0, s0) if fd >= 0 else None
                if data is None:  # removed since its table was read, or past the end of a remote file
                    empty += row_l[a:e]
                    continue
                mv, n_data = memoryview(data), len(data)
                for k in range(a, e):
                    r, rel, length = row_l[k], start_l[k] - s0, stop_l[k] - start_l[k]
                    if compressed and rel + length <= n_data:  # the common case, inlined
                        try:
                            if decode(mv[rel : rel + length], rows[r], output_len=size) == size:
                                continue
                        except cramjam.DecompressionError:
                            pass
                    try:  # raw data, a truncated file, or a block that does not decode: the checks
                        self._decode(fk, fh, int(m[k]), start_l[k], mv[rel : rel + length], rows[r], length)
                    except CorruptChunkError as err:
                        errors.append(err)
                        empty.append(r)
        finally:
            if fd is not None and fd >= 0:
                os.close(fd)
        return True, empty, errors

    def _read_range(self, fk: str, start: int, length: int) -> bytes | None:
        """Bytes of a data file; a range past the end of a remote file (HTTP 416) is corruption."""
        try:
            return self.store.read_range(fk, start, length)
        except RemoteAccessError as err:
            if "HTTP 416" not in str(err):
                raise
            raise CorruptChunkError(self.store.location(fk), f"truncated before byte {start}") from None

    def read_run(self, run: _Run, slab: np.ndarray, first: int) -> list:
        """Read one run and decode its blocks into rows ``first...`` of ``slab`` (uint8, one row per block).

        Returns [(block index, (c, z, y, x) view into the slab | None, CorruptChunkError | None)].
        """
        blocks = run.idx
        try:
            data = self._read_range(run.file_key, run.start, run.stop - run.start)
        except CorruptChunkError as err:
            return [(b, None, err) for b in blocks]
        if data is None:  # removed since its table was read
            return [(b, None, None) for b in blocks]
        h = run.header
        size, n_data, mv = h.block_bytes, len(data), memoryview(data)
        views = self._as_blocks(slab)
        decode = cramjam.lz4.decompress_block_into
        result = []
        for k, (block, i, rel, length) in enumerate(zip(blocks, run.morton, run.rel, run.length)):
            row = first + k
            if rel + length > n_data or not h.compressed:
                try:
                    self._decode(run.file_key, h, i, run.start + rel, mv[rel : rel + length], slab[row], length)
                except CorruptChunkError as err:
                    result.append((block, None, err))
                    continue
            else:  # the common case, inlined
                try:
                    n = decode(mv[rel : rel + length], slab[row], output_len=size)
                except cramjam.DecompressionError:
                    n = -1
                if n != size:
                    try:
                        self._decode(run.file_key, h, i, run.start + rel, mv[rel : rel + length], slab[row], length)
                    except CorruptChunkError as err:
                        result.append((block, None, err))
                        continue
            result.append((block, views[row], None))
        return result

    def _as_blocks(self, slab: np.ndarray) -> np.ndarray:
        """(n, c, z, y, x) view of a slab of decoded blocks (uint8 rows of block_bytes)."""
        b = self.header.block_len
        return slab.view(self.header.dtype).reshape(-1, b, b, b, self.header.channels).transpose(0, 4, 1, 2, 3)

    def chunked(
        self,
        size_xyz=None,
        offset_xyz=(0, 0, 0),
        factor_xyz=(1, 1, 1),
        rgb: bool = False,
        key: tuple | None = None,
    ) -> WkwArray:
        """Lazy array of a mag-1 bounding box (``size_xyz`` at ``offset_xyz``) seen at ``factor_xyz``.

        The grid (voxel 0 of the files) is mag-local; the window is ``mag_extent`` of the box.
        Without ``size_xyz`` the window is the extent of the data files found by
        :meth:`file_extent_xyz` (local folders only).
        """
        if size_xyz is None:
            extent = self.file_extent_xyz()
            size_xyz = tuple(e * f for e, f in zip(extent, factor_xyz))
        origin, shape = mag_extent(size_xyz, offset_xyz, factor_xyz)
        layout = "zyxc" if rgb else ("zyx" if self.channels == 1 else "czyx")
        return WkwArray(self, shape, origin, layout, key or ("wkw", self.location))

    def file_extent_xyz(self) -> tuple[int, int, int]:
        """Voxel extent (x, y, z) covered by the data files, from folder and file names only.

        Needs a listable (local) store: ValueError for URLs.
        """
        names_z = self.store.list_dir(self.key)
        if names_z is None:
            raise ValueError(
                f"{self.location}: the extent of a bare WKW mag folder needs a directory listing, "
                "which is not possible over HTTP; open the dataset's datasource-properties.json instead"
            )
        hi = [0, 0, 0]
        for zname in names_z:
            if not (mz := re.fullmatch(r"z(\d+)", zname)):
                continue
            for yname in self.store.list_dir(self._join(zname)) or []:
                if not (my := re.fullmatch(r"y(\d+)", yname)):
                    continue
                for xname in self.store.list_dir(self._join(f"{zname}/{yname}")) or []:
                    if mx := re.fullmatch(r"x(\d+)\.wkw", xname):
                        for ax, m in enumerate((mx, my, mz)):
                            hi[ax] = max(hi[ax], int(m.group(1)) + 1)
        return tuple(h * self.file_edge for h in hi)


class WkwArray(ChunkedArray):
    """:class:`ChunkedArray` over a :class:`WkwMag` whose region reads batch the blocks.

    Cache policy, by the shape of the region read:

    * Volumetric reads of local files (the region at least one block thick along every axis:
      cutouts, 32³ buckets, whole volumes) bypass the block cache, in and out: they read each
      block once, and caching would cost a copy per block and evict the blocks of plane
      browsing. A few workers (the caller and pool tasks) take boxes of blocks of one file
      (at most ``VOLUME_JOB_BYTES`` decoded) in turn; each reads its box with few ranged reads,
      decodes it into a scratch buffer and copies that into the output with a few strided
      assignments. A region of exactly one block is decoded straight into the output.
    * Thin reads (planes and tiles while browsing: the next planes need the same blocks) and
      reads over HTTP (a request costs more than decoding) go through the cache: uncached
      blocks of one file are fetched with few ranged reads and decoded by a few pool tasks
      into one buffer; the cache keeps per-block views of it (the buffer is freed when its
      last block leaves the cache).
    """

    def __init__(self, mag: WkwMag, shape_zyx, origin_zyx, layout: str, key: tuple):
        b = mag.block_len
        super().__init__(
            shape_zyx,
            (b, b, b),
            mag.dtype,
            mag.read_chunk,
            key,
            channels=mag.channels,
            origin_zyx=origin_zyx,
            layout=layout,
        )
        self.mag = mag
        self._local = isinstance(mag.store, LocalStore)

    def read_region(self, start_zyx, stop_zyx, c_range=(None, None)) -> np.ndarray:
        c0 = c_range[0] or 0
        c1 = self.channels if c_range[1] is None else c_range[1]
        shape = tuple(int(b - a) for a, b in zip(start_zyx, stop_zyx))
        # every voxel of ``out`` is written below: by a block's data or, for a block
        # without data, by the fill value (np.empty reuses freed memory, np.zeros faults it in)
        out = np.empty((max(c1 - c0, 0), *shape), dtype=self.dtype)
        if 0 in shape or c1 <= c0:
            return out
        g0 = [a + o for a, o in zip(start_zyx, self.origin_zyx)]
        g1 = [b + o for b, o in zip(stop_zyx, self.origin_zyx)]
        cz, cy, cx = self.chunk_zyx
        if self._local and shape[0] >= cz and shape[1] >= cy and shape[2] >= cx:
            self._read_volume(out, g0, g1, c0, c1)
            return out
        ranges = [range(a // c, (b - 1) // c + 1) for a, b, c in zip(g0, g1, self.chunk_zyx)]
        row_bytes = cx * self.dtype.itemsize * (c1 - c0)
        rows = np.dtype(f"V{row_bytes}") if c1 - c0 == self.channels == 1 else None

        def place(idx, data):
            z0, y0, x0 = idx[0] * cz, idx[1] * cy, idx[2] * cx
            za, zb = max(g0[0], z0), min(g1[0], z0 + cz)
            ya, yb = max(g0[1], y0), min(g1[1], y0 + cy)
            xa, xb = max(g0[2], x0), min(g1[2], x0 + cx)
            dst = out[:, za - g0[0] : zb - g0[0], ya - g0[1] : yb - g0[1], xa - g0[2] : xb - g0[2]]
            if data is None:
                dst[...] = self.fill_value
                return
            src = data[c0:c1, za - z0 : zb - z0, ya - y0 : yb - y0, xa - x0 : xb - x0]
            if rows is not None and xb - xa == cx:  # whole x rows: copy them as single items
                dst, src = dst.view(rows), src.view(rows)
            dst[...] = src

        cache, key, absent = self.cache, self.key, ChunkCache._MISSING
        misses = []
        for idx in itertools.product(*ranges):
            hit = cache.get(key + idx, absent)
            if hit is absent:
                misses.append(idx)
            else:
                place(idx, hit)
        if not misses:
            return out
        if len(misses) <= SMALL_READ_BLOCKS:  # a few blocks: skip the batch planning
            for idx in misses:
                try:
                    data = self.mag.read_block(*idx)
                except CorruptChunkError as err:
                    warn_corrupt(err)
                    data = None
                place(idx, data)
                cache.put(key + idx, data)
            return out
        missing, errors, runs = self.mag.plan_reads(misses)
        for idx in missing:
            place(idx, None)
            cache.put(key + idx, None)
        for idx, err in errors:
            warn_corrupt(err)
            place(idx, None)
            cache.put(key + idx, None)
        if not runs:
            return out

        block_bytes = self.mag.header.block_bytes
        per_slab = max(1, SLAB_MAX_BYTES // block_bytes)
        left = sum(len(r) for r in runs)
        jobs, slab, used = [], None, 0
        for r in runs:  # one buffer for all blocks (a few if huge); a run never straddles two
            if slab is None or used + len(r) > len(slab):
                slab = np.empty((max(min(left, per_slab), len(r)), block_bytes), np.uint8)
                used = 0
            jobs.append((r, slab, used))
            used += len(r)
            left -= len(r)

        def work(part):
            for r, sl, first in part:
                for idx, data, err in self.mag.read_run(r, sl, first):
                    if err is not None:
                        warn_corrupt(err)
                    place(idx, data)
                    cache.put(key + idx, data)

        n_tasks = min(len(jobs), self.mag.parallel_reads)
        if _in_pool():
            n_tasks = 1  # never wait on the pool from inside it
        if n_tasks <= 1:
            work(jobs)
        else:
            parts = [jobs[t::n_tasks] for t in range(n_tasks)]
            futures = [chunk_pool().submit(work, p) for p in parts[1:]]
            work(parts[0])
            for f in futures:
                f.result()
        return out

    def _read_volume(self, out: np.ndarray, g0, g1, c0: int, c1: int) -> None:
        """Fill ``out`` (c, z, y, x) with grid region ``[g0, g1)`` (channels ``c0..c1-1``), bypassing
        the block cache (see the class docstring)."""
        mag, h = self.mag, self.mag.header
        b, f = h.block_len, h.file_len
        if c1 - c0 == self.channels == 1 and all(a % b == 0 and z - a == b for a, z in zip(g0, g1)):
            try:  # exactly one block (a bucket): its layout is the output's, decode in place
                found = mag._read_block_into(g0[0] // b, g0[1] // b, g0[2] // b, out.reshape(-1).view(np.uint8))
            except CorruptChunkError as err:
                warn_corrupt(err)
                found = False
            if not found:
                out[...] = self.fill_value
            return
        spans, total = [], 1  # per axis: block ranges [k, e) inside one file
        for a, z in zip(g0, g1):
            k, last, axis = a // b, (z - 1) // b + 1, []
            total *= last - k
            while k < last:
                e = min(last, (k // f + 1) * f)
                axis.append((k, e))
                k = e
            spans.append(axis)
        n_workers = 1 if _in_pool() else mag.parallel_reads
        # a few boxes per worker (load balance), each big enough to be worth a task
        per_job = -(-total // (VOLUME_JOBS_PER_WORKER * n_workers))
        per_job = max(1, min(max(per_job, VOLUME_JOB_MIN_BYTES // h.block_bytes), VOLUME_JOB_BYTES // h.block_bytes))
        jobs = []
        for (za, zb), (ya, yb), (xa, xb) in itertools.product(*spans):
            ny, nx = yb - ya, xb - xa
            if ny * nx <= per_job:
                sz, sy, sx = max(1, per_job // (ny * nx)), ny, nx
            elif nx <= per_job:
                sz, sy, sx = 1, per_job // nx, nx
            else:
                sz, sy, sx = 1, 1, per_job
            for z in range(za, zb, sz):
                for y in range(ya, yb, sy):
                    for x in range(xa, xb, sx):
                        jobs.append(((z, y, x), (min(z + sz, zb), min(y + sy, yb), min(x + sx, xb))))
        max_rows = max((e[0] - a[0]) * (e[1] - a[1]) * (e[2] - a[2]) for a, e in jobs)

        dtype, channels, fill = self.dtype, self.channels, self.fill_value
        single = c1 - c0 == channels == 1
        todo = iter(jobs)  # shared by the workers; next() on it is atomic

        def place(lo, hi, rows):
            n = [e - a for a, e in zip(lo, hi)]
            segs = [_segments(lo[ax], hi[ax], g0[ax], g1[ax], b) for ax in range(3)]
            blocks = rows.view(dtype).reshape(*n, b, b, b, channels)
            for (za, zb, zs, ze, zo), (ya, yb, ys, ye, yo), (xa, xb, xs, xe, xo) in itertools.product(*segs):
                nz, ny, nx, lz, ly, lx = zb - za, yb - ya, xb - xa, ze - zs, ye - ys, xe - xs
                dst = out[:, zo : zo + nz * lz, yo : yo + ny * ly, xo : xo + nx * lx]
                dst = dst.reshape(c1 - c0, nz, lz, ny, ly, nx, lx)
                src = blocks[za:zb, ya:yb, xa:xb, zs:ze, ys:ye, xs:xe, c0:c1]
                if single:  # each block row's part as one item: numpy's loop over single bytes is slow
                    row = np.dtype(f"V{lx * dtype.itemsize}")
                    dst, src = dst[0].view(row), src[..., 0].view(row)
                    dst[...] = src.transpose(0, 3, 1, 4, 2, 5)
                else:
                    dst[...] = src.transpose(6, 0, 3, 1, 4, 2, 5)

        def work():
            scratch = None  # one buffer per worker, reused for its boxes
            for lo, hi in todo:
                n = (hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2])
                if scratch is None:
                    scratch = np.empty((max_rows, h.block_bytes), np.uint8)
                rows = scratch[:n]
                found, empty, errors = mag._read_box(lo, hi, rows)
                for err in errors:
                    warn_corrupt(err)
                if not found:  # no file: fill the box's part of the region
                    box = [slice(max(a * b, p) - p, min(e * b, q) - p) for a, e, p, q in zip(lo, hi, g0, g1)]
                    out[(slice(None), *box)] = fill
                    continue
                for r in empty:
                    rows[r].view(dtype)[:] = fill
                place(lo, hi, rows)

        n_workers = min(len(jobs), n_workers)
        futures = [chunk_pool().submit(work) for _ in range(n_workers - 1)]
        try:
            work()
        finally:
            for fut in futures:
                fut.result()


def _segments(k0: int, k1: int, a: int, z: int, b: int) -> list:
    """Blocks ``k0..k1-1`` (edge ``b``) cut by the region ``[a, z)`` of one axis into pieces of
    equal extent per block: ``[(first, stop, lo, hi, out)]`` = blocks ``first..stop-1`` relative to
    ``k0``, voxels ``lo..hi-1`` of each, starting at ``out`` in the output."""
    segs, i, j, tail = [], k0, k1, None
    lo = max(a - k0 * b, 0)
    if lo or k0 * b + b > z:  # the first block is partial
        segs.append((0, 1, lo, min(b, z - k0 * b), k0 * b + lo - a))
        i = k0 + 1
    if i < k1 and k1 * b > z:  # the last block is partial
        j = k1 - 1
        tail = (j - k0, j - k0 + 1, 0, z - j * b, j * b - a)
    if i < j:
        segs.append((i - k0, j - k0, 0, b, i * b - a))
    if tail:
        segs.append(tail)
    return segs

"""Native Zarr v2/v3 (with ``sharding_indexed``) and OME-Zarr 0.4/0.5 reader.

Chunk files are read through the project's :class:`~.store.Store` (local or HTTP) and
decoded with numcodecs, so every format shares one cache, one thread pool and one
corrupt-chunk path. Supported natively:

* v3: ``bytes`` (endian), ``transpose`` (list order, or the ``"C"``/``"F"`` string the
  webKnossos server writes), ``zstd``, ``blosc``, ``gzip``, ``crc32c``, ``numcodecs.*``
  byte codecs, and ``sharding_indexed`` as the only codec (index at start or end, index
  codecs ``bytes`` + ``crc32c``, checked); chunk key encodings ``default`` and ``v2``.
* v2: any numcodecs compressor and filters, ``order`` C/F, ``dimension_separator``.

Other v3 codec chains (nested sharding, codecs after ``sharding_indexed``, array codecs
other than ``transpose``) are read through zarr-python for local arrays; for remote arrays
opening raises ValueError naming the codec.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .cache import CHUNK_CACHE
from .chunked import ChunkedArray, CorruptChunkError, warn_corrupt, chunk_pool
from .model import Dataset, Layer, Mag
from .store import LocalStore, Store, is_url, open_store

__all__ = ["ZarrArray", "ZarrChunkedArray", "zarr_chunked", "sniff", "open_zarr"]

_EMPTY = 2**64 - 1  # sharding index entry of an absent inner chunk
_MISSING = CHUNK_CACHE._MISSING
COALESCE_GAP = 1 << 18  # read neighbouring inner chunks of a shard at once if less than this apart
COALESCE_MAX = 1 << 26  # but never more than this in one read

_V3_DTYPES = {  # v3 data_type → numpy (native order; the bytes codec gives the stored order)
    "bool": "bool", "int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8", "uint8": "u1", "uint16": "u2",
    "uint32": "u4", "uint64": "u8", "float16": "f2", "float32": "f4", "float64": "f8", "complex64": "c8",
    "complex128": "c16",
}  # fmt: skip

# unit name → nanometres (OME-NGFF uses UDUNITS-2 names)
UNIT_TO_NM = {
    "yoctometer": 1e-15, "zeptometer": 1e-12, "attometer": 1e-9, "femtometer": 1e-6, "picometer": 1e-3,
    "angstrom": 0.1, "nanometer": 1.0, "micrometer": 1e3, "millimeter": 1e6, "centimeter": 1e7, "decimeter": 1e8,
    "meter": 1e9, "hectometer": 1e11, "kilometer": 1e12, "megameter": 1e15, "gigameter": 1e18, "terameter": 1e21,
    "petameter": 1e24, "exameter": 1e27, "zettameter": 1e30, "yottameter": 1e33, "inch": 2.54e7, "foot": 3.048e8,
    "yard": 9.144e8, "mile": 1.609344e12, "parsec": 3.0856775814913673e25,
    "nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "mm": 1e6,
}  # fmt: skip


# -- small helpers -----------------------------------------------------------------------------
def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _load_json(store: Store, key: str) -> dict | None:
    """Parsed JSON object at ``key``, None if absent; ValueError naming file and position."""
    raw = store.read(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{store.location(key)}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{store.location(key)}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{store.location(key)}: expected a JSON object, got {type(value).__name__}")
    return value


@contextmanager
def _named(where: str, root: str):
    """Make any metadata error a ValueError that starts with the file it is about."""
    try:
        yield
    except ValueError as e:
        if str(e).startswith(root):
            raise
        raise ValueError(f"{where}: {e}") from None
    except (TypeError, KeyError, AttributeError, IndexError) as e:
        raise ValueError(f"{where}: invalid metadata ({type(e).__name__}: {e})") from None


def _need(meta: dict, key: str, where: str):
    if key not in meta:
        raise ValueError(f"{where}: missing key {key!r}")
    return meta[key]


try:  # numcodecs picks google_crc32c (a zarr dependency) or crc32c
    from numcodecs.checksum32 import crc32c_checksum as _crc32c
except ImportError:  # pragma: no cover - very old numcodecs
    _crc32c = None


def _strip_crc32c(buf) -> bytes:
    buf = bytes(buf) if not isinstance(buf, bytes) else buf
    if len(buf) < 4:
        raise ValueError("shorter than its crc32c checksum")
    body, stored = buf[:-4], int.from_bytes(buf[-4:], "little")
    if _crc32c is not None and _crc32c(body) != stored:
        raise ValueError("crc32c checksum mismatch")
    return body


def _numcodecs_decoder(config: dict) -> Callable:
    import numcodecs

    codec = numcodecs.get_codec(dict(config))
    return codec.decode


def _as_u8(buf) -> np.ndarray:
    if isinstance(buf, np.ndarray):
        return buf.reshape(-1).view(np.uint8)
    return np.frombuffer(buf, dtype=np.uint8)


class _Decoder:
    """bytes → chunk array: byte codecs (in decode order), then dtype/shape, then axis order."""

    def __init__(self, byte_decoders: list[Callable], stored_dtype: np.dtype, chunk_shape, perm: Sequence[int] | None):
        self.byte_decoders = byte_decoders
        self.stored_dtype = np.dtype(stored_dtype)
        self.native_dtype = self.stored_dtype.newbyteorder("=")
        self.chunk_shape = tuple(chunk_shape)
        perm = tuple(perm) if perm is not None else tuple(range(len(chunk_shape)))
        self.encoded_shape = tuple(self.chunk_shape[p] for p in perm)
        self.inverse = None if perm == tuple(range(len(perm))) else tuple(int(i) for i in np.argsort(perm))
        self.nbytes = math.prod(self.chunk_shape) * self.stored_dtype.itemsize

    def decode(self, buf) -> np.ndarray:
        if not self.byte_decoders and isinstance(buf, memoryview):
            buf = bytes(buf)  # a slice of a larger read: do not let the chunk pin it
        for dec in self.byte_decoders:
            buf = dec(buf)
        raw = _as_u8(buf)
        if raw.size != self.nbytes:
            raise ValueError(f"decoded to {raw.size} bytes, expected {self.nbytes}")
        arr = raw.view(self.stored_dtype).reshape(self.encoded_shape)
        if self.inverse is not None:
            arr = arr.transpose(self.inverse)
        if self.stored_dtype != self.native_dtype:
            arr = arr.astype(self.native_dtype)
        return arr


class _Unsupported(Exception):
    """A codec chain this module does not decode natively (name in args[0])."""


def _v3_dtype(value, where: str) -> np.dtype:
    if isinstance(value, str) and value in _V3_DTYPES:
        return np.dtype(_V3_DTYPES[value])
    raise ValueError(f"{where}: unsupported data_type {value!r}")


def _v3_fill(value, dtype: np.dtype):
    if value is None:
        return dtype.type(0)
    if dtype.kind == "b":
        return bool(value)
    if dtype.kind == "c" and isinstance(value, (list, tuple)):
        return complex(_v3_fill(value[0], np.dtype("f8")), _v3_fill(value[1], np.dtype("f8")))
    if isinstance(value, str):
        if value == "NaN":
            return dtype.type(np.nan)
        if value == "Infinity":
            return dtype.type(np.inf)
        if value == "-Infinity":
            return dtype.type(-np.inf)
        if value.startswith("0x"):  # float bit pattern
            bits = int(value, 16)
            return np.array([bits], dtype=f"u{dtype.itemsize}").view(dtype)[0]
        raise ValueError(f"fill_value {value!r}")
    return dtype.type(value)


def _transpose_order(config: dict, ndim: int, where: str) -> list[int]:
    order = _need(config, "order", where + " transpose configuration")
    if order == "F":
        return list(range(ndim - 1, -1, -1))
    if order == "C":
        return list(range(ndim))
    order = [int(o) for o in order]
    if sorted(order) != list(range(ndim)):
        raise ValueError(f"{where}: transpose order {order} is not a permutation of {ndim} axes")
    return order


def _byte_codec(codec: dict, where: str) -> Callable:
    name = codec.get("name")
    config = codec.get("configuration") or {}
    if name == "crc32c":
        return _strip_crc32c
    if name == "zstd":
        return _numcodecs_decoder({"id": "zstd"})
    if name == "blosc":
        return _numcodecs_decoder({"id": "blosc"})
    if name == "gzip":
        return _numcodecs_decoder({"id": "gzip"})
    if isinstance(name, str) and name.startswith("numcodecs.") and name[10:] in (
        "zstd", "blosc", "gzip", "zlib", "lz4", "bz2", "lzma", "shuffle"
    ):
        return _numcodecs_decoder({"id": name[10:], **config})
    raise _Unsupported(name)


def _v3_pipeline(codecs: list, dtype: np.dtype, chunk_shape, where: str) -> tuple[str, Any]:
    """("plain", _Decoder) or ("sharded", dict) for a v3 codec list; _Unsupported otherwise."""
    if not isinstance(codecs, list) or not codecs:
        raise ValueError(f"{where}: 'codecs' must be a non-empty list")
    codecs = [{"name": c} if isinstance(c, str) else c for c in codecs]
    names = [c.get("name") for c in codecs]
    if names[0] == "sharding_indexed":
        if len(codecs) != 1:
            raise _Unsupported("sharding_indexed followed by " + ", ".join(map(str, names[1:])))
        return "sharded", codecs[0].get("configuration") or {}
    perm = list(range(len(chunk_shape)))
    i = 0
    while i < len(codecs) and names[i] == "transpose":
        order = _transpose_order(codecs[i].get("configuration") or {}, len(chunk_shape), where)
        perm = [perm[o] for o in order]
        i += 1
    if i >= len(codecs) or names[i] != "bytes":
        raise _Unsupported(names[i] if i < len(codecs) else "no bytes codec")
    endian = (codecs[i].get("configuration") or {}).get("endian", "little")
    stored = dtype.newbyteorder("<" if endian == "little" else ">") if dtype.itemsize > 1 else dtype
    byte_decoders = [_byte_codec(c, where) for c in codecs[i + 1 :]][::-1]
    return "plain", _Decoder(byte_decoders, stored, chunk_shape, perm)


def _v2_key(idx, separator: str) -> str:
    return separator.join(str(i) for i in idx) if idx else "0"


# -- the array ----------------------------------------------------------------------------------
class ZarrArray:
    """One Zarr v2 or v3 array below ``store``/``key``, read chunk by chunk.

    ``chunk_shape`` is the read granularity (the inner chunk for sharded arrays);
    :meth:`read_chunk` returns one decoded chunk in the array's own axis order.
    """

    def __init__(self, store: Store, key: str = ""):
        self.store = store
        self.key = key.strip("/")
        self.location = store.location(self.key)
        self.shard_shape: tuple[int, ...] | None = None
        self._fallback = None
        self._index_locks = [threading.Lock() for _ in range(32)]
        meta_key = _join(self.key, "zarr.json")
        meta = _load_json(store, meta_key)
        if meta is not None:
            with _named(store.location(meta_key), store.location()):
                self._init_v3(meta, store.location(meta_key))
        else:
            meta_key = _join(self.key, ".zarray")
            meta = _load_json(store, meta_key)
            if meta is None:
                raise ValueError(f"{self.location}: no zarr array here (neither zarr.json nor .zarray)")
            attrs = _load_json(store, _join(self.key, ".zattrs")) or {}
            with _named(store.location(meta_key), store.location()):
                self._init_v2(meta, attrs, store.location(meta_key))
        self.metadata: dict = meta  # the parsed zarr.json (v3) or .zarray (v2), e.g. for writers
        self.grid_shape = tuple(-(-s // c) if c else 0 for s, c in zip(self.shape, self.chunk_shape))

    # -- metadata --------------------------------------------------------------------------------
    def _init_v3(self, meta: dict, where: str) -> None:
        self.zarr_format = 3
        if meta.get("zarr_format") != 3:
            raise ValueError(f"{where}: zarr_format is {meta.get('zarr_format')!r}, expected 3")
        if meta.get("node_type") != "array":
            raise ValueError(f"{where}: node_type is {meta.get('node_type')!r}, not an array")
        self.shape = tuple(int(s) for s in _need(meta, "shape", where))
        self.dtype = _v3_dtype(_need(meta, "data_type", where), where)
        grid = _need(meta, "chunk_grid", where)
        if not isinstance(grid, dict) or grid.get("name") != "regular":
            raise ValueError(f"{where}: only the 'regular' chunk_grid is supported, got {grid!r}")
        outer = tuple(int(c) for c in _need(grid.get("configuration") or {}, "chunk_shape", where + " chunk_grid"))
        if len(outer) != len(self.shape):
            raise ValueError(f"{where}: chunk_shape {list(outer)} does not match shape {list(self.shape)}")
        try:
            self.fill_value = _v3_fill(meta.get("fill_value"), self.dtype)
        except (ValueError, TypeError, OverflowError) as e:
            raise ValueError(f"{where}: bad fill_value: {e}") from None
        self.attributes = meta.get("attributes") or {}
        names = meta.get("dimension_names")
        self.dimension_names = list(names) if names is not None else None
        enc = meta.get("chunk_key_encoding") or {"name": "default"}
        sep = (enc.get("configuration") or {}).get("separator")
        if enc.get("name") == "v2":
            sep = sep or "."
            self._storage_key = lambda idx: _join(self.key, _v2_key(idx, sep))
        elif enc.get("name") == "default":
            sep = sep or "/"
            self._storage_key = lambda idx: _join(self.key, sep.join(("c", *map(str, idx))))
        else:
            raise ValueError(f"{where}: unknown chunk_key_encoding {enc.get('name')!r}")
        if meta.get("storage_transformers"):
            raise ValueError(f"{where}: storage_transformers are not supported")
        try:
            kind, spec = _v3_pipeline(_need(meta, "codecs", where), self.dtype, outer, where)
            if kind == "plain":
                self.chunk_shape = outer
                self._decoder = spec
            else:
                self._init_sharding(spec, outer, where)
        except _Unsupported as e:
            self._init_fallback(str(e.args[0]), outer, where)

    def _init_sharding(self, config: dict, shard: tuple[int, ...], where: str) -> None:
        inner = tuple(int(c) for c in _need(config, "chunk_shape", where + " sharding_indexed"))
        if len(inner) != len(shard) or any(c == 0 or s % c for s, c in zip(shard, inner)):
            raise ValueError(f"{where}: inner chunk_shape {list(inner)} does not divide shard {list(shard)}")
        kind, decoder = _v3_pipeline(_need(config, "codecs", where + " sharding_indexed"), self.dtype, inner, where)
        if kind != "plain":
            raise _Unsupported("nested sharding_indexed")
        self.shard_shape = shard
        self.chunk_shape = inner
        self._decoder = decoder
        self._per_shard = tuple(s // c for s, c in zip(shard, inner))
        self._shard_keys: dict[tuple[int, ...], str] = {}
        self._max_inner_nbytes = 2 * decoder.nbytes + (1 << 16)  # no codec grows data more than this
        index_codecs = config.get("index_codecs") or [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "crc32c"},
        ]
        kind, index_decoder = _v3_pipeline(index_codecs, np.dtype("u8"), (*self._per_shard, 2), where + " index_codecs")
        if any(d not in (_strip_crc32c,) for d in index_decoder.byte_decoders):
            raise ValueError(f"{where}: index_codecs may only be bytes and crc32c, got {index_codecs}")
        self._index_decoder = index_decoder
        self._index_nbytes = index_decoder.nbytes + 4 * len(index_decoder.byte_decoders)
        self._index_at_end = config.get("index_location", "end") != "start"

    def _init_v2(self, meta: dict, attrs: dict, where: str) -> None:
        self.zarr_format = 2
        if meta.get("zarr_format", 2) != 2:
            raise ValueError(f"{where}: zarr_format is {meta.get('zarr_format')!r}, expected 2")
        self.shape = tuple(int(s) for s in _need(meta, "shape", where))
        self.chunk_shape = tuple(int(c) for c in _need(meta, "chunks", where))
        if len(self.chunk_shape) != len(self.shape):
            raise ValueError(f"{where}: chunks {list(self.chunk_shape)} do not match shape {list(self.shape)}")
        dt = _need(meta, "dtype", where)
        try:
            stored = np.dtype(dt) if isinstance(dt, str) else None
        except TypeError:
            stored = None
        if stored is None or stored.kind not in "biufc":
            raise ValueError(f"{where}: unsupported dtype {dt!r}")
        self.dtype = stored.newbyteorder("=")
        fill = meta.get("fill_value")
        try:
            self.fill_value = _v3_fill(fill, self.dtype)
        except (ValueError, TypeError, OverflowError) as e:
            raise ValueError(f"{where}: bad fill_value: {e}") from None
        self.attributes = attrs
        names = attrs.get("_ARRAY_DIMENSIONS")
        self.dimension_names = list(names) if isinstance(names, list) else None
        sep = meta.get("dimension_separator") or "."
        self._storage_key = lambda idx: _join(self.key, _v2_key(idx, sep))
        order = meta.get("order", "C")
        if order not in ("C", "F"):
            raise ValueError(f"{where}: order must be 'C' or 'F', got {order!r}")
        decoders = []
        try:
            for f in reversed(meta.get("filters") or []):
                decoders.append(_numcodecs_decoder(f))
            if meta.get("compressor"):
                decoders.insert(0, _numcodecs_decoder(meta["compressor"]))
        except Exception as e:  # unknown numcodecs id
            raise ValueError(f"{where}: unsupported codec: {e}") from None
        perm = list(range(len(self.shape)))[::-1] if order == "F" else None
        self._decoder = _Decoder(decoders, stored, self.chunk_shape, perm)

    def _init_fallback(self, codec: str, outer: tuple[int, ...], where: str) -> None:
        if not isinstance(self.store, LocalStore):
            raise ValueError(f"{where}: codec {codec!r} is not supported for remote arrays")
        import zarr

        try:
            self._fallback = zarr.open_array(self.location, mode="r")
        except Exception as e:
            raise ValueError(f"{where}: codec {codec!r} is not supported ({e})") from None
        self.chunk_shape = tuple(int(c) for c in self._fallback.chunks)
        self.fallback_codec = codec

    # -- properties ------------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return (
            f"ZarrArray({self.location!r}, v{self.zarr_format}, shape={self.shape}, chunks={self.chunk_shape}, "
            f"shards={self.shard_shape}, dtype={self.dtype})"
        )

    @property
    def chunks_per_shard(self) -> tuple[int, ...] | None:
        """Inner chunks per shard along each dimension; None for unsharded arrays."""
        return self._per_shard if self.shard_shape is not None and self._fallback is None else None

    @property
    def is_fallback(self) -> bool:
        """True when chunks are read through zarr-python (a codec chain not decoded natively)."""
        return self._fallback is not None

    def storage_key(self, idx: Sequence[int]) -> str:
        """Store key of chunk ``idx`` (of shard ``idx`` for sharded arrays)."""
        return self._storage_key(tuple(int(i) for i in idx))

    def decode_chunk(self, buf) -> np.ndarray:
        """Decode the stored bytes of one (inner) chunk into an array in the array's axis order."""
        return self._decoder.decode(buf)

    def shard_index_cache_key(self, shard_idx: Sequence[int]) -> tuple:
        """Key of a shard's decoded index in the shared chunk cache."""
        return ("zarr", self.location, "shard-index", tuple(int(i) for i in shard_idx))

    def invalidate(self) -> None:
        """Forget cached shard indexes and chunks of this array (after its files changed).

        Every cache entry of the array starts with ``("zarr", location)``, the default key
        prefix of :func:`zarr_chunked`.
        """
        CHUNK_CACHE.discard_prefix(("zarr", self.location))

    # -- reading ---------------------------------------------------------------------------------
    def read_chunk(self, idx: tuple[int, ...]) -> np.ndarray | None:
        """Decoded chunk ``idx`` (C-order, array axis order), or None when it is not stored."""
        data = self.read_chunk_view(idx)
        return None if data is None else np.ascontiguousarray(data)

    def read_chunk_view(self, idx: tuple[int, ...]) -> np.ndarray | None:
        """Like :meth:`read_chunk` but possibly a strided, read-only view (no copy)."""
        idx = tuple(int(i) for i in idx)
        if len(idx) != len(self.shape):
            raise IndexError(f"chunk index {idx} has {len(idx)} dimensions, array has {len(self.shape)}")
        if any(i < 0 or i >= g for i, g in zip(idx, self.grid_shape)):
            return None
        if self._fallback is not None:
            return self._read_fallback(idx)
        if self.shard_shape is not None:
            return self._read_inner(idx)
        key = self._storage_key(idx)
        buf = self.store.read(key)
        if buf is None:
            return None
        try:
            return self._decoder.decode(buf)
        except Exception as e:
            raise CorruptChunkError(self.store.location(key), f"cannot decode chunk {idx}: {e}") from None

    def read_chunks_view(self, indices: Sequence[tuple[int, ...]]) -> dict:
        """Decode several chunks: ``{idx: array | None | CorruptChunkError}``.

        Inner chunks of one shard are fetched with as few ranged reads as possible (runs of
        stored chunks separated by less than ``COALESCE_GAP`` bytes are read at once).
        """
        out: dict = {}
        if self.shard_shape is None or self._fallback is not None:
            for idx in indices:
                try:
                    out[idx] = self.read_chunk_view(idx)
                except CorruptChunkError as e:
                    out[idx] = e
            return out
        per = self._per_shard
        by_shard: dict[tuple[int, ...], list] = {}
        for idx in indices:
            if any(i < 0 or i >= g for i, g in zip(idx, self.grid_shape)):
                out[idx] = None
                continue
            shard_idx = tuple(i // p for i, p in zip(idx, per))
            by_shard.setdefault(shard_idx, []).append(idx)
        for shard_idx, members in by_shard.items():
            self._read_shard_group(shard_idx, members, out)
        return out

    def _shard_key(self, shard_idx: tuple[int, ...]) -> str:
        key = self._shard_keys.get(shard_idx)
        if key is None:
            if len(self._shard_keys) > 65536:
                self._shard_keys.clear()
            key = self._shard_keys[shard_idx] = self._storage_key(shard_idx)
        return key

    def _read_shard_group(self, shard_idx: tuple[int, ...], members: list, out: dict) -> None:
        key = self._shard_key(shard_idx)
        try:
            index = self._shard_index(shard_idx, key)
        except CorruptChunkError as e:
            out.update((idx, e) for idx in members)
            return
        if index is None:
            out.update((idx, None) for idx in members)
            return
        per = self._per_shard
        entries = []
        for idx in members:
            inner = tuple(i % p for i, p in zip(idx, per))
            offset, nbytes = index[inner].tolist()
            if offset == _EMPTY and nbytes == _EMPTY:
                out[idx] = None
            elif nbytes > self._max_inner_nbytes:
                out[idx] = CorruptChunkError(self.store.location(key), f"index entry of {inner}: {nbytes} bytes")
            else:
                entries.append((offset, nbytes, idx, inner))
        entries.sort()
        i = 0
        while i < len(entries):
            start, end, j = entries[i][0], entries[i][0] + entries[i][1], i + 1
            while j < len(entries):
                off, nb = entries[j][0], entries[j][1]
                if off - end > COALESCE_GAP or max(end, off + nb) - start > COALESCE_MAX:
                    break
                end = max(end, off + nb)
                j += 1
            buf = self.store.read_range(key, start, end - start)
            view = memoryview(buf) if buf is not None else None
            for offset, nbytes, idx, inner in entries[i:j]:
                if view is None:
                    out[idx] = None
                    continue
                piece = view[offset - start : offset - start + nbytes]
                try:
                    if len(piece) != nbytes:
                        raise ValueError(f"truncated: {len(piece)} of {nbytes} bytes at offset {offset}")
                    out[idx] = self._decoder.decode(piece)
                except Exception as e:
                    out[idx] = CorruptChunkError(self.store.location(key), f"cannot decode inner chunk {inner}: {e}")
            i = j

    def _read_inner(self, idx: tuple[int, ...]) -> np.ndarray | None:
        per = self._per_shard
        shard_idx = tuple(i // p for i, p in zip(idx, per))
        key = self._shard_key(shard_idx)
        index = self._shard_index(shard_idx, key)
        if index is None:
            return None
        inner = tuple(i % p for i, p in zip(idx, per))
        offset, nbytes = index[inner].tolist()
        if offset == _EMPTY and nbytes == _EMPTY:
            return None
        if nbytes > self._max_inner_nbytes:
            raise CorruptChunkError(self.store.location(key), f"index entry of {inner}: {nbytes} bytes")
        buf = self.store.read_range(key, offset, nbytes)
        if buf is None:
            return None
        try:
            if len(buf) != nbytes:
                raise ValueError(f"truncated: {len(buf)} of {nbytes} bytes at offset {offset}")
            return self._decoder.decode(buf)
        except Exception as e:
            raise CorruptChunkError(self.store.location(key), f"cannot decode inner chunk {inner}: {e}") from None

    def _shard_index(self, shard_idx: tuple[int, ...], key: str) -> np.ndarray | None:
        """The (offset, nbytes) table of one shard, read with one ranged read and cached."""
        cache_key = self.shard_index_cache_key(shard_idx)
        hit = CHUNK_CACHE.get(cache_key, _MISSING)
        if hit is not _MISSING:
            return hit
        with self._index_locks[hash(shard_idx) % len(self._index_locks)]:
            hit = CHUNK_CACHE.get(cache_key, _MISSING)
            if hit is not _MISSING:
                return hit
            n = self._index_nbytes
            if self._index_at_end:
                buf = self.store.read_suffix(key, n)
            else:
                buf = self.store.read_range(key, 0, n)
            if buf is None:
                index = None
            else:
                try:
                    if len(buf) != n:
                        raise ValueError(f"shard is {len(buf)} bytes, shorter than its {n}-byte index")
                    index = np.ascontiguousarray(self._index_decoder.decode(buf))
                except Exception as e:
                    raise CorruptChunkError(self.store.location(key), f"bad shard index: {e}") from None
            CHUNK_CACHE.put(cache_key, index)
            return index

    def _read_fallback(self, idx: tuple[int, ...]) -> np.ndarray:
        region = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, self.chunk_shape, self.shape))
        try:
            data = np.asarray(self._fallback[region])
        except Exception as e:
            raise CorruptChunkError(self.location, f"zarr-python cannot read chunk {idx}: {e}") from None
        if data.shape != self.chunk_shape:
            full = np.full(self.chunk_shape, self.fill_value, dtype=self.dtype)
            full[tuple(slice(0, n) for n in data.shape)] = data
            data = full
        return data


# -- ChunkedArray over a ZarrArray ----------------------------------------------------------------
def zarr_chunked(
    zarr_array: ZarrArray,
    dims: dict[str, int],
    *,
    fixed: dict[int, int] | None = None,
    offset_zyx: Sequence[int] = (0, 0, 0),
    shape_zyx: Sequence[int] | None = None,
    channels_dim: int | None = None,
    rgb: bool = False,
    key: tuple | None = None,
) -> ChunkedArray:
    """A :class:`ChunkedArray` presenting ``zarr_array`` as (c,) z, y, x.

    ``dims`` maps "z", "y", "x" (and optionally "c") to array dimensions; a missing "z"
    presents a 2-D array as one plane. ``channels_dim`` is an alternative to ``dims["c"]``.
    ``fixed`` pins other dimensions to an index; dimensions named nowhere are pinned to 0.
    ``offset_zyx``/``shape_zyx`` choose the presented region (default: the whole array).
    """
    za = zarr_array
    nd = za.ndim
    fixed = {int(d): int(v) for d, v in (fixed or {}).items()}
    c_dim = dims.get("c", channels_dim)
    spatial = [dims.get(a) for a in "zyx"]
    if spatial[1] is None or spatial[2] is None:
        raise ValueError(f"{za.location}: dims must name 'y' and 'x', got {dims}")
    named = [d for d in (c_dim, *spatial) if d is not None]
    if len(set(named)) != len(named) or any(not 0 <= d < nd for d in named) or set(named) & set(fixed):
        raise ValueError(f"{za.location}: invalid dims {dims} / fixed {fixed} for a {nd}-d array")
    for d in range(nd):
        if d not in named:
            fixed.setdefault(d, 0)
    for d, v in fixed.items():
        if not 0 <= d < nd or not 0 <= v < za.shape[d]:
            raise ValueError(f"{za.location}: fixed index {v} out of range for dimension {d} (shape {za.shape})")
    cs = za.chunk_shape
    chunk_zyx = tuple(cs[d] if d is not None else 1 for d in spatial)
    full_zyx = [za.shape[d] if d is not None else 1 for d in spatial]
    offset_zyx = tuple(int(o) for o in offset_zyx)
    if shape_zyx is None:
        shape_zyx = tuple(max(f - o, 0) for f, o in zip(full_zyx, offset_zyx))
    channels = za.shape[c_dim] if c_dim is not None else 1
    c_chunks = -(-channels // cs[c_dim]) if c_dim is not None else 1

    # index into a decoded chunk for the pinned dims, then permute the rest to (c, z, y, x)
    select = tuple(fixed[d] % cs[d] if d in fixed else slice(None) for d in range(nd))
    needs_select = bool(fixed)
    remaining = [d for d in range(nd) if d not in fixed]
    target = [d for d in (c_dim, *spatial) if d is not None]
    perm = tuple(remaining.index(d) for d in target)
    identity = perm == tuple(range(len(perm)))
    expand = tuple(i for i, d in enumerate((c_dim, *spatial)) if d is None)
    expander = tuple(None if i in expand else slice(None) for i in range(4))
    base = [fixed[d] // cs[d] if d in fixed else 0 for d in range(nd)]
    z_dim, y_dim, x_dim = spatial
    read_view = za.read_chunk_view
    fill = za.fill_value

    def to_czyx(data: np.ndarray) -> np.ndarray:
        if needs_select:
            picked = data[select]
            # copy a small part of a larger chunk so the cache does not pin the whole chunk
            data = picked.copy() if picked.size < data.size else picked
        if not identity:
            data = data.transpose(perm)
        if expand:
            data = data[expander]
        return data

    def zarr_indices(cidx) -> list[tuple[int, ...]] | None:
        """The zarr chunk indices (one per channel chunk) behind ChunkedArray chunk ``cidx``."""
        cz, cy, cx = cidx
        idx = list(base)
        if z_dim is not None:
            idx[z_dim] = cz
        elif cz != 0:
            return None
        idx[y_dim] = cy
        idx[x_dim] = cx
        if c_chunks == 1:
            return [tuple(idx)]
        out = []
        for k in range(c_chunks):
            idx[c_dim] = k
            out.append(tuple(idx))
        return out

    def assemble(parts: list) -> np.ndarray | None:
        """(channels, z, y, x) from the decoded zarr chunks of one ChunkedArray chunk."""
        if len(parts) == 1:
            if parts[0] is None:
                return None
            data = to_czyx(parts[0])
            return data if data.shape[0] == channels else data[:channels]
        if all(p is None for p in parts):
            return None
        shape = (cs[c_dim], *chunk_zyx)
        parts = [to_czyx(p) if p is not None else np.full(shape, fill, dtype=za.dtype) for p in parts]
        return np.concatenate(parts, axis=0)[:channels]

    def read_chunk(cidx):
        zidx = zarr_indices(cidx)
        return None if zidx is None else assemble([read_view(i) for i in zidx])

    def read_chunks(cidxs) -> dict:
        """``{cidx: array | None | CorruptChunkError}`` for several chunks, shards read in bulk."""
        wanted = {c: zarr_indices(c) for c in cidxs}
        decoded = za.read_chunks_view([i for z in wanted.values() if z for i in z])
        out = {}
        for c, zidx in wanted.items():
            parts = [decoded[i] for i in zidx] if zidx else [None]
            err = next((p for p in parts if isinstance(p, CorruptChunkError)), None)
            out[c] = err if err is not None else assemble(parts)
        return out

    if key is None:
        key = ("zarr", za.location, c_dim, tuple(spatial), tuple(sorted(fixed.items())))
    layout = "zyxc" if rgb else ("zyx" if channels == 1 else "czyx")
    per = za._per_shard if za.shard_shape is not None and za._fallback is None else (1,) * nd
    return ZarrChunkedArray(
        shape_zyx, chunk_zyx, za.dtype, read_chunk, key, channels=channels, origin_zyx=offset_zyx, layout=layout,
        fill_value=fill, read_chunks=read_chunks, zarr_array=za,
        shard_chunks_zyx=tuple(per[d] if d is not None else 1 for d in spatial),
        zarr_dims={"c": c_dim, "z": z_dim, "y": y_dim, "x": x_dim}, zarr_fixed=fixed,
    )


class ZarrChunkedArray(ChunkedArray):
    """A :class:`ChunkedArray` whose region reads fetch the chunks of one shard together.

    Uncached chunks are grouped by shard (storage order) into a few tasks for the chunk
    thread pool; each task reads its shard's byte runs at once and decodes its chunks, so
    a large cutout costs a few reads and futures instead of one per chunk.
    """

    def __init__(
        self,
        *args,
        read_chunks: Callable[[list], dict],
        zarr_array: ZarrArray,
        shard_chunks_zyx,
        zarr_dims: dict[str, int | None] | None = None,
        zarr_fixed: dict[int, int] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.read_chunks = read_chunks  # {idx: array | None | CorruptChunkError} for a list of chunks
        self.zarr_array = zarr_array
        self.shard_chunks_zyx = tuple(shard_chunks_zyx)  # chunks per shard along z, y, x
        # array dimension of "c", "z", "y", "x" (None: absent) and the pinned dimensions {dim: index}
        self.zarr_dims = dict(zarr_dims or {})
        self.zarr_fixed = dict(zarr_fixed or {})

    def read_region(self, start_zyx, stop_zyx, c_range=(None, None)) -> np.ndarray:
        c0 = c_range[0] or 0
        c1 = self.channels if c_range[1] is None else c_range[1]
        shape = tuple(int(b - a) for a, b in zip(start_zyx, stop_zyx))
        if 0 in shape or c1 <= c0:
            return np.full((max(c1 - c0, 0), *shape), self.fill_value, dtype=self.dtype)
        out = np.empty((c1 - c0, *shape), dtype=self.dtype)
        g0 = [a + o for a, o in zip(start_zyx, self.origin_zyx)]
        g1 = [b + o for b, o in zip(stop_zyx, self.origin_zyx)]
        cs = self.chunk_zyx
        ranges = [range(a // c, (b - 1) // c + 1) for a, b, c in zip(g0, g1, cs)]
        csel = slice(c0, c1)
        # (source, destination) slices of every chunk index along each axis
        cuts = []
        for ax in range(3):
            axis = {}
            for i in ranges[ax]:
                lo = i * cs[ax]
                a, b = max(g0[ax], lo), min(g1[ax], lo + cs[ax])
                axis[i] = (slice(a - lo, b - lo), slice(a - g0[ax], b - g0[ax]))
            cuts.append(axis)
        cut_z, cut_y, cut_x = cuts

        def place(idx, data):
            (sz, dz), (sy, dy), (sx, dx) = cut_z[idx[0]], cut_y[idx[1]], cut_x[idx[2]]
            if data is None:
                out[:, dz, dy, dx] = self.fill_value
            else:
                out[:, dz, dy, dx] = data[csel, sz, sy, sx]

        todo = []
        for idx in itertools.product(*ranges):
            hit = self.cache.get(self.key + idx, _MISSING)
            if hit is _MISSING:
                todo.append(idx)
            else:
                place(idx, hit)
        if not todo:
            return out
        want = (self.channels, *cs)

        def run(batch):
            for idx, data in self.read_chunks(batch).items():
                if isinstance(data, CorruptChunkError):
                    warn_corrupt(data)
                    data = None
                elif data is not None:
                    if data.shape != want:
                        data = data.reshape(want)
                    if data.dtype != self.dtype:
                        data = data.astype(self.dtype)
                self.cache.put(self.key + idx, data)
                place(idx, data)

        batches = self._batches(todo)
        if len(batches) == 1:
            run(batches[0])
        else:
            for f in [chunk_pool().submit(run, b) for b in batches]:
                f.result()
        return out

    def _batches(self, todo: list) -> list[list]:
        """Chunks grouped by shard, each group cut so the pool gets a few tasks per worker."""
        workers = chunk_pool()._max_workers
        size = max(4, -(-len(todo) // (2 * workers)))
        per = self.shard_chunks_zyx
        if per == (1, 1, 1):
            return [todo[i : i + size] for i in range(0, len(todo), size)]
        groups: dict = {}
        for idx in todo:
            groups.setdefault(tuple(i // p for i, p in zip(idx, per)), []).append(idx)
        batches = []
        for members in groups.values():
            batches += [members[i : i + size] for i in range(0, len(members), size)]
        return batches


# -- node discovery -------------------------------------------------------------------------------
@dataclass
class _Node:
    kind: str  # "array" | "group"
    zarr_format: int
    attrs: dict
    meta_file: str  # where the attributes live: zarr.json (v3) or .zattrs (v2)
    meta: dict = field(default_factory=dict)


def _read_node(store: Store, key: str) -> _Node | None:
    """The array or group at ``key`` (v3 first, then v2), or None."""
    k = _join(key, "zarr.json")
    meta = _load_json(store, k)
    if meta is not None:
        kind = meta.get("node_type")
        if kind not in ("array", "group"):
            raise ValueError(f"{store.location(k)}: node_type must be 'array' or 'group', got {kind!r}")
        attrs = meta.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise ValueError(f"{store.location(k)}: 'attributes' must be an object")
        return _Node(kind, 3, attrs, store.location(k), meta)
    for name, kind in ((".zarray", "array"), (".zgroup", "group")):
        k = _join(key, name)
        meta = _load_json(store, k)
        if meta is not None:
            attrs = _load_json(store, _join(key, ".zattrs")) or {}
            return _Node(kind, 2, attrs, store.location(_join(key, ".zattrs")), meta)
    return None


def _ome(node: _Node) -> dict:
    """OME-NGFF attributes: ``attributes.ome`` (0.5) or the attributes themselves (≤ 0.4)."""
    ome = node.attrs.get("ome")
    if isinstance(ome, dict):
        return ome
    return node.attrs


def _children(store: Store, key: str, node: _Node) -> list[str]:
    """Child names of a group: directory listing, else consolidated metadata."""
    names = store.list_dir(key)
    if names is not None:
        return [n for n in names if not n.startswith(".") and n != "zarr.json"]
    consolidated = node.meta.get("consolidated_metadata") if node.meta else None
    if isinstance(consolidated, dict) and isinstance(consolidated.get("metadata"), dict):
        return sorted({k.split("/")[0] for k in consolidated["metadata"]})
    zmeta = _load_json(store, _join(key, ".zmetadata"))
    if zmeta and isinstance(zmeta.get("metadata"), dict):
        return sorted({k.split("/")[0] for k in zmeta["metadata"] if "/" in k})
    if "bioformats2raw.layout" in _ome(node):  # series are the groups "0", "1", ... (at most a few probes)
        series = []
        while len(series) < 1000 and _read_node(store, _join(key, str(len(series)))) is not None:
            series.append(str(len(series)))
        return series
    raise ValueError(f"{store.location(key)}: cannot list this remote zarr group (no consolidated metadata)")


# -- OME-Zarr multiscales -------------------------------------------------------------------------
def _axes(ms: dict, ndim: int, where: str) -> list[dict]:
    axes = ms.get("axes")
    if axes is None:  # OME-NGFF 0.1/0.2: always 5-d tczyx
        names = "tczyx"[-ndim:]
        return [{"name": n} for n in names]
    out = []
    for a in axes:
        out.append({"name": a} if isinstance(a, str) else dict(a))
    if len(out) != ndim:
        raise ValueError(f"{where}: multiscales axes {[a.get('name') for a in out]} do not match a {ndim}-d array")
    return out


def _transforms(cts, ndim: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    scale, translation = np.ones(ndim), np.zeros(ndim)
    for ct in cts or []:
        kind = ct.get("type")
        if kind == "scale" and "scale" in ct:
            scale = scale * np.asarray(ct["scale"], dtype=float)
        elif kind == "translation" and "translation" in ct:
            translation = translation + np.asarray(ct["translation"], dtype=float)
        elif kind == "identity":
            continue
        elif kind in ("scale", "translation"):
            raise ValueError(f"{where}: {kind} transformation given by 'path' is not supported")
        if scale.shape != (ndim,) or translation.shape != (ndim,):
            raise ValueError(f"{where}: coordinateTransformations do not match {ndim} axes")
        if not (scale > 0).all():
            raise ValueError(f"{where}: scale {scale.tolist()} must be positive")
    return scale, translation


def _nice(v: float) -> float:
    r = round(v)
    return float(r) if abs(v - r) < 1e-6 * max(1.0, abs(v)) else float(v)


def _hex_color(value) -> str | None:
    if isinstance(value, str) and len(value.lstrip("#")) in (6, 8):
        try:
            int(value.lstrip("#"), 16)
        except ValueError:
            return None
        return "#" + value.lstrip("#")[:6].upper()
    return None


def _multiscale_layer(store: Store, key: str, ome: dict, name: str, category: str, where: str) -> Layer:
    mss = ome.get("multiscales")
    if not isinstance(mss, list) or not mss or not isinstance(mss[0], dict):
        raise ValueError(f"{where}: 'multiscales' must be a non-empty list of objects")
    ms = mss[0]
    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise ValueError(f"{where}: multiscales[0] has no 'datasets'")
    arrays = []
    for i, ds in enumerate(datasets):
        if not isinstance(ds, dict) or "path" not in ds:
            raise ValueError(f"{where}: multiscales[0].datasets[{i}] has no 'path'")
        arrays.append(ZarrArray(store, _join(key, str(ds["path"]))))
    ndim = arrays[0].ndim
    axes = _axes(ms, ndim, where)
    names = [str(a.get("name", "")).lower() for a in axes]
    types = [str(a.get("type", "")).lower() for a in axes]
    dims: dict[str, int] = {}
    for a in "xyz":
        if a in names:
            dims[a] = names.index(a)
    if "x" not in dims or "y" not in dims:
        raise ValueError(f"{where}: multiscales axes {names} have no x and y")
    for i, (n, t) in enumerate(zip(names, types)):
        if i not in dims.values() and (t == "channel" or n in ("c", "channel")) and "c" not in dims:
            dims["c"] = i
    pinned = {names[i] or str(i): 0 for i in range(ndim) if i not in dims.values()}
    fixed = {i: 0 for i in range(ndim) if i not in dims.values()}

    g_scale, g_trans = _transforms(ms.get("coordinateTransformations"), ndim, where)
    extra: dict[str, Any] = {"ome_version": ome.get("version") or ms.get("version"), "axes": names, "path": key}
    if pinned:
        extra["pinned_axes"] = pinned
    units = {}
    for a in "xyz":
        if a in dims:
            units[a] = axes[dims[a]].get("unit")
    unit_nm = {}
    for a, u in units.items():
        if u is None:
            unit_nm[a] = 1.0
            extra["unit_assumed_nm"] = True
        elif str(u).lower() in UNIT_TO_NM:
            unit_nm[a] = UNIT_TO_NM[str(u).lower()]
        else:
            unit_nm[a] = 1.0
            extra.setdefault("unknown_units", {})[a] = u
    extra["units"] = units

    level_scale, level_trans = [], []
    for i, ds in enumerate(datasets):
        s, t = _transforms(ds.get("coordinateTransformations"), ndim, f"{where} datasets[{i}]")
        level_scale.append(s * g_scale)
        level_trans.append(t * g_scale + g_trans)
        if arrays[i].ndim != ndim:
            raise ValueError(f"{where}: datasets[{i}] has {arrays[i].ndim} dimensions, level 0 has {ndim}")

    def nm(vec, a):
        return float(vec[dims[a]]) * unit_nm[a] if a in dims else None

    vx = nm(level_scale[0], "x")
    voxel_xyz = tuple(nm(level_scale[0], a) if a in dims else vx for a in "xyz")
    translate_zyx = [nm(level_trans[0], a) if a in dims else 0.0 for a in "zyx"]
    extra["translate_nm_zyx"] = tuple(translate_zyx)
    offset = tuple(int(round(t / v)) if v else 0 for t, v in zip(translate_zyx[::-1], voxel_xyz))
    mag_translations = []
    mags = []
    for i, (za, s, t) in enumerate(zip(arrays, level_scale, level_trans)):
        factor = tuple(_nice(s[dims[a]] / level_scale[0][dims[a]]) if a in dims else 1.0 for a in "xyz")
        mag_translations.append(tuple(nm(t, a) if a in dims else 0.0 for a in "zyx"))
        array = zarr_chunked(za, dims, fixed=fixed)
        mags.append(Mag(factor=factor, array=array, path=za.key))
    extra["mag_translate_nm_zyx"] = mag_translations
    level0 = arrays[0]
    size = tuple(level0.shape[dims[a]] if a in dims else 1 for a in "xyz")
    channels = level0.shape[dims["c"]] if "c" in dims else 1
    layer = Layer(
        name=name,
        category=category,
        dtype=level0.dtype,
        voxel_size=voxel_xyz,
        mags=mags,
        offset=offset,
        size=size,
        num_channels=channels,
        format="ome-zarr",
        source=store.location(key),
        extra=extra,
    )
    _apply_omero(layer, ome.get("omero"))
    label = ome.get("image-label")
    if isinstance(label, dict):
        colors = {}
        for entry in label.get("colors") or []:
            if isinstance(entry, dict) and "label-value" in entry and "rgba" in entry:
                colors[entry["label-value"]] = tuple(entry["rgba"])
        if colors:
            extra["label_colors"] = colors
        if label.get("properties"):
            extra["label_properties"] = label["properties"]
        if isinstance(label.get("source"), dict):
            extra["label_source"] = label["source"].get("image")
    if len(mss) > 1:
        extra["other_multiscales"] = len(mss) - 1
    return layer


def _apply_omero(layer: Layer, omero) -> None:
    """Contrast limits, tint and visibility from OME ``omero`` channel settings (per channel in extra)."""
    if not isinstance(omero, dict) or not isinstance(omero.get("channels"), list):
        return
    chans = [c for c in omero["channels"] if isinstance(c, dict)]
    windows, colors, labels, active = [], [], [], []
    for c in chans:
        w = c.get("window") or {}
        try:
            windows.append((float(w["start"]), float(w["end"])))
        except (KeyError, TypeError, ValueError):  # no or malformed window: keep the dtype default
            windows.append(None)
        colors.append(_hex_color(c.get("color")))
        labels.append(c.get("label"))
        active.append(bool(c.get("active", True)))
    if not chans:
        return
    layer.extra.update(
        channel_contrast_limits=windows, channel_colors=colors, channel_names=labels, channel_active=active
    )
    if layer.num_channels == 1:
        layer.contrast_limits = windows[0]
        layer.color = colors[0]
        layer.visible = active[0]
    else:
        known = [w for w in windows if w is not None]
        if known:
            layer.contrast_limits = (min(w[0] for w in known), max(w[1] for w in known))


# -- plain arrays ---------------------------------------------------------------------------------
_LABEL_WORDS = ("label", "seg")


def _plain_layer(za: ZarrArray, name: str) -> Layer:
    key = za.key
    nd = za.ndim
    if nd < 2:
        raise ValueError(f"{za.location}: a {nd}-d array is not an image")
    extra: dict[str, Any] = {"path": key}
    names = [str(n).lower() if n is not None else "" for n in (za.dimension_names or [])]
    dims: dict[str, int] = {}
    if names and "x" in names and "y" in names:
        for a in ("z", "y", "x", "c"):
            if a in names:
                dims[a] = names.index(a)
        if "c" not in dims and "channel" in names:
            dims["c"] = names.index("channel")
    else:
        axes = "zyx" if nd >= 3 else "yx"
        for i, a in enumerate(axes):
            dims[a] = nd - len(axes) + i
    fixed = {i: 0 for i in range(nd) if i not in dims.values()}
    if fixed:
        extra["pinned_axes"] = {(za.dimension_names[i] if za.dimension_names else str(i)): 0 for i in fixed}
    if za.dimension_names:
        extra["dimension_names"] = list(za.dimension_names)
    attrs_text = json.dumps(za.attributes).lower() if za.attributes else ""
    is_labels = za.dtype.kind in "iu" and (
        any(w in name.lower() for w in _LABEL_WORDS) or "image-label" in attrs_text or '"segmentation"' in attrs_text
    )
    size = tuple(za.shape[dims[a]] if a in dims else 1 for a in "xyz")
    channels = za.shape[dims["c"]] if "c" in dims else 1
    return Layer(
        name=name,
        category="segmentation" if is_labels else "color",
        dtype=za.dtype,
        voxel_size=(1.0, 1.0, 1.0),
        mags=[Mag(factor=(1.0, 1.0, 1.0), array=zarr_chunked(za, dims, fixed=fixed), path=key)],
        size=size,
        num_channels=channels,
        format="zarr",
        source=za.location,
        extra=extra,
    )


# -- entry points ---------------------------------------------------------------------------------
def sniff(path) -> bool:
    """True for a folder or URL holding ``zarr.json``, ``.zgroup`` or ``.zarray`` that is not a
    webKnossos dataset root. Reads at most a few small files; never raises."""
    try:
        store = open_store(path)
        if not is_url(os.fspath(path)) and not os.path.isdir(store.root):
            return False
        if not any(store.exists(m) for m in ("zarr.json", ".zgroup", ".zarray")):
            return False
        return not store.exists("datasource-properties.json")
    except Exception:
        return False


def _dataset_name(path) -> str:
    s = os.fspath(path).rstrip("/")
    if is_url(s):
        s = s.split("?", 1)[0]
    name = s.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def _unique(name: str, taken: set[str]) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name}-{i}", i + 1
    taken.add(out)
    return out


def _labels_layers(store: Store, key: str, taken: set[str]) -> list[Layer]:
    """Segmentation layers of an OME ``labels`` group (empty if there is none)."""
    node = _read_node(store, key)
    if node is None or node.kind != "group":
        return []
    names = _ome(node).get("labels")
    if not isinstance(names, list):
        names = [n for n in (store.list_dir(key) or []) if not n.startswith(".") and n != "zarr.json"]
    layers = []
    for label in names:
        lkey = _join(key, str(label))
        lnode = _read_node(store, lkey)
        if lnode is None:
            continue
        lome = _ome(lnode)
        if lnode.kind == "group" and "multiscales" in lome:
            with _named(lnode.meta_file, store.location()):
                name = _unique(str(label), taken)
                layer = _multiscale_layer(store, lkey, lome, name, "segmentation", lnode.meta_file)
            layers.append(layer)
    return layers


def _image_layers(store: Store, key: str, node: _Node, name: str, taken: set[str]) -> list[Layer]:
    ome = _ome(node)
    category = "segmentation" if "image-label" in ome else "color"
    multiscales = ome.get("multiscales")
    if isinstance(multiscales, list) and multiscales and isinstance(multiscales[0], dict):
        name = str(multiscales[0].get("name") or name)
    with _named(node.meta_file, store.location()):
        layers = [_multiscale_layer(store, key, ome, _unique(name, taken), category, node.meta_file)]
    layers += _labels_layers(store, _join(key, "labels"), taken)
    return layers


def open_zarr(path, username: str | None = None, password: str | None = None) -> Dataset:
    """Open an OME-Zarr image (with its labels), a zarr group of arrays or one zarr array."""
    store = open_store(path, username, password)
    name = _dataset_name(path)
    node = _read_node(store, "")
    if node is None:
        raise ValueError(f"{store.location()}: no zarr.json, .zgroup or .zarray")
    taken: set[str] = set()
    ome = _ome(node)
    layers: list[Layer] = []
    if node.kind == "array":
        layers.append(_plain_layer(ZarrArray(store, ""), _unique(name, taken)))
    elif "multiscales" in ome:
        layers += _image_layers(store, "", node, name, taken)
    elif isinstance(ome.get("labels"), list):
        layers += _labels_layers(store, "", taken)
    elif "plate" in ome or "well" in ome:
        raise ValueError(f"{node.meta_file}: OME-Zarr HCS plates/wells are not supported; open one image of it")
    else:
        for child in _children(store, "", node):
            cnode = _read_node(store, child)
            if cnode is None:
                continue
            if cnode.kind == "array":
                za = ZarrArray(store, child)
                if za.ndim >= 2:  # 1-d arrays (tables, coordinates) are not images
                    layers.append(_plain_layer(za, _unique(child, taken)))
            elif "multiscales" in _ome(cnode):
                layers += _image_layers(store, child, cnode, child, taken)
    if not layers:
        raise ValueError(f"{store.location()}: zarr group holds no image arrays")
    fmt = "ome-zarr" if any(l.format == "ome-zarr" for l in layers) else "zarr"
    extra = {"zarr_format": node.zarr_format}
    return Dataset(name=name, format=fmt, source=store.location(), layers=layers, extra=extra)

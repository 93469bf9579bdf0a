"""Metadata files of the arrays processing creates: zarr v3 arrays, WKW headers, OME-Zarr 0.5.

Only metadata: chunk data is written by :class:`.volumes.MagTarget`. JSON files are replaced
atomically and not fsync'ed (bulk dataset writing, see :mod:`..formats.atomic`).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Sequence

import numpy as np

from ..formats.atomic import atomic_write_bytes

__all__ = [
    "OME_VERSION",
    "cap_shard",
    "ome_axes",
    "ome_dataset",
    "read_json",
    "wkw_header_bytes",
    "write_json",
    "zarr3_array_meta",
]

OME_VERSION = "0.5"
UNIT = "nanometer"
ZSTD_LEVEL = 3
MAX_SHARD_BYTES = 64 * 2**20  # shards/WKW files processing creates hold at most this (decoded)


def write_json(path: str | os.PathLike, obj, indent: int | None = 4) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (not fsync'ed)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=indent) + ("\n" if indent else "")).encode(), durable=False)


def read_json(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``; ValueError naming the file if it is not one."""
    try:
        with open(path, "rb") as f:
            value = json.loads(f.read())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")  # noqa: TRY004
    return value


def zarr3_array_meta(
    shape: Sequence[int],
    dtype,
    chunk_shape: Sequence[int],
    shard_shape: Sequence[int] | None = None,
    dimension_names: Sequence[str] | None = None,
    *,
    zstd_level: int = ZSTD_LEVEL,
) -> dict:
    """``zarr.json`` of a zarr v3 array: ``bytes`` (little endian) + ``zstd``, fill 0, default keys "/".

    With ``shard_shape`` the chunks are inner chunks of ``sharding_indexed`` shards (index at the
    end: ``bytes`` + ``crc32c``).
    """
    dtype = np.dtype(dtype)
    byte_codec = {"name": "bytes", "configuration": {"endian": "little"}} if dtype.itemsize > 1 else {"name": "bytes"}
    codecs = [byte_codec, {"name": "zstd", "configuration": {"level": int(zstd_level), "checksum": False}}]
    outer = [int(c) for c in chunk_shape]
    if shard_shape is not None:
        shard = [int(s) for s in shard_shape]
        if any(s % c for s, c in zip(shard, outer)):
            raise ValueError(f"shard shape {shard} is not a multiple of the chunk shape {outer}")
        codecs = [{
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": outer,
                "codecs": codecs,
                "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
                "index_location": "end",
            },
        }]  # fmt: skip
        outer = shard
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [int(s) for s in shape],
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": outer}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": codecs,
        "attributes": {},
    }
    if dimension_names is not None:
        meta["dimension_names"] = list(dimension_names)
    return meta


def cap_shard(shard: Sequence[int], inner: Sequence[int], voxel_bytes: int, max_bytes: int = MAX_SHARD_BYTES) -> list[int]:
    """``shard`` halved along its longest axes (staying a multiple of ``inner``) until it holds at
    most ``max_bytes``: the unit one task of a new mag writes."""
    shard = [int(s) for s in shard]
    while math.prod(shard) * voxel_bytes > max_bytes:
        axis = max(range(len(shard)), key=lambda a: (shard[a] // inner[a], shard[a]))
        if shard[axis] // inner[axis] < 2 or shard[axis] % (2 * inner[axis]):
            break
        shard[axis] //= 2
    return shard


_WKW_VOXEL_TYPES = {"uint8": 1, "uint16": 2, "uint32": 3, "uint64": 4, "float32": 5, "float64": 6,
                    "int8": 7, "int16": 8, "int32": 9, "int64": 10}  # fmt: skip


def wkw_header_bytes(dtype, channels: int, block_len: int, file_len: int, block_type: int = 2) -> bytes:
    """The 16 bytes of a mag folder's ``header.wkw`` (block type 1 RAW, 2 LZ4, 3 LZ4HC)."""
    dtype = np.dtype(dtype)
    if dtype.name not in _WKW_VOXEL_TYPES:
        raise ValueError(f"WKW cannot store {dtype.name} voxels")
    for what, n in (("block", block_len), ("file", file_len)):
        if n < 1 or n & (n - 1):
            raise ValueError(f"WKW {what} length must be a power of two, got {n}")
    per_dim = (int(math.log2(file_len)) << 4) | int(math.log2(block_len))
    return struct.pack("<3sBBBBBQ", b"WKW", 1, per_dim, block_type, _WKW_VOXEL_TYPES[dtype.name],
                       dtype.itemsize * int(channels), 0)


def ome_axes(channels: bool) -> list[dict]:
    """OME-NGFF axes ``(c,) z, y, x`` with nanometre units."""
    axes = [{"name": "c", "type": "channel"}] if channels else []
    return axes + [{"name": a, "type": "space", "unit": UNIT} for a in "zyx"]


def ome_dataset(path: str, scale: Sequence[float], translation: Sequence[float] | None = None) -> dict:
    """One ``multiscales[].datasets`` entry: scale, then translation if any is non-zero."""
    transforms = [{"type": "scale", "scale": [float(v) for v in scale]}]
    if translation is not None and any(float(v) != 0.0 for v in translation):
        transforms.append({"type": "translation", "translation": [float(v) for v in translation]})
    return {"path": path, "coordinateTransformations": transforms}

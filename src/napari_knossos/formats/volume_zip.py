"""webKnossos volume-annotation zips, read and written (webknossos-formats.md §4).

The outer zip holds one ``.nml`` and one data zip per ``<volume>`` element, named by its ``location``
attribute. A data zip stores 32³ buckets of one segmentation, either

* **WKW**: ``<mag>/header.wkw`` and ``<mag>/z{bz}/y{by}/x{bx}.wkw``, one LZ4 bucket per file (``0x05``,
  dataOffset 24, a one-entry jump table), no bounding box; or
* **zarr3**: ``datasource-properties.json`` with one layer ``volumeAnnotationData`` and per mag
  ``volumeAnnotationData/<mag>/zarr.json`` + unsharded chunks ``c.0.<bx>.<by>.<bz>``, codecs
  ``transpose`` → ``bytes`` → ``blosc`` (lz4, clevel 5). Reading accepts the server's ``"F"``
  transpose string.

Buckets are ``{mag (x, y, z): {(bz, by, bx): (32, 32, 32) array (z, y, x)}}`` in mag-local bucket
indices (bucket ``b`` covers mag voxels ``32·b … 32·b+31``). Read buckets decode lazily on access.
A missing bucket means 0, or "unchanged, show the fallback layer" when the volume has a fallback;
a stored all-zero bucket is then an erasure and is kept (without a fallback it is dropped).
A volume without buckets gets no data zip (the server rejects empty ones) and no ``location``.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import threading
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr, unescape

import numpy as np

from .mags import mag_name, parse_mag
from .store import Store

__all__ = [
    "BUCKET",
    "VOLUME_LAYER_NAME",
    "VolumeAnnotation",
    "VolumeLayerData",
    "array_from_buckets",
    "buckets_from_array",
    "read_volume_zip",
    "write_volume_zip",
]

BUCKET = 32
VOLUME_LAYER_NAME = "volumeAnnotationData"
FORMATS = ("zarr3", "wkw")
_WKW_MEMBER = re.compile(r"(?:^|/)((?:\d+-\d+-)?\d+)/(header\.wkw|z(\d+)/y(\d+)/x(\d+)\.wkw)$")
_VOLUME_TAG = re.compile(r"<volume(?=[\s/>])(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*(/?)>")
_ATTR = re.compile(r"([^\s=/>]+)\s*=\s*(\"[^\"]*\"|'[^']*')")
_ELEMENT_CLASSES = {
    "uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8",
    "int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8",
}  # fmt: skip
_ZIP_LEVEL = 1  # DEFLATE level (Z_BEST_SPEED, as webknossos writes); bucket payloads are compressed already


Mag3 = tuple[int, int, int]
Bucket3 = tuple[int, int, int]


@dataclass
class VolumeLayerData:
    """One volume layer (one ``<volume>`` of the NML and its data zip).

    ``buckets``: ``{mag (x, y, z): {(bz, by, bx): (32, 32, 32) array (z, y, x)}}`` (any Mapping).
    ``bbox_offset``/``bbox_size``: the segmentation's bounding box in mag-1 voxels (x, y, z), from the
    dataset when writing (the WKW variant stores none; reading it gives None).
    """

    dtype: np.dtype
    buckets: dict = field(default_factory=dict)
    id: int = 0
    name: str = "Volume"
    fallback_layer: str | None = None
    largest_segment_id: int | None = None
    bbox_offset: tuple[int, int, int] | None = None
    bbox_size: tuple[int, int, int] | None = None
    voxel_size: tuple[float, float, float] | None = None  # nm (x, y, z), for the zarr3 properties
    format: str = "zarr3"  # of the zip it was read from
    location: str | None = None  # data zip member it was read from

    def __post_init__(self):
        self.dtype = np.dtype(self.dtype)

    @property
    def mags(self) -> list[Mag3]:
        return sorted(self.buckets, key=lambda m: (max(m), m))

    def bucket_count(self) -> int:
        return sum(len(b) for b in self.buckets.values())


@dataclass
class VolumeAnnotation:
    """A volume-annotation zip: the NML (bytes, as stored) and its volume layers."""

    nml: bytes
    nml_name: str
    volumes: list[VolumeLayerData]

    def volume(self, name_or_id=None) -> VolumeLayerData:
        """The volume with that name or id (the only one when not given)."""
        if name_or_id is None and len(self.volumes) == 1:
            return self.volumes[0]
        for v in self.volumes:
            if name_or_id in (v.name, v.id):
                return v
        raise KeyError(f"{self.nml_name}: no volume {name_or_id!r}; it has {[(v.id, v.name) for v in self.volumes]}")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def buckets_from_array(volume_zyx: np.ndarray, origin_zyx=(0, 0, 0), *, keep_zero: bool = False) -> dict:
    """Cut a mag-local volume placed at voxel ``origin_zyx`` into ``{(bz, by, bx): bucket}``; voxels of
    partly covered buckets outside the volume are 0. All-zero buckets are left out unless ``keep_zero``."""
    vol = np.asarray(volume_zyx)
    if vol.ndim != 3:
        raise ValueError(f"a volume is (z, y, x), got shape {vol.shape}")
    lo = [int(o) // BUCKET for o in origin_zyx]
    hi = [(int(o) + n - 1) // BUCKET + 1 if n else int(o) // BUCKET for o, n in zip(origin_zyx, vol.shape)]
    out = {}
    for bz in range(lo[0], hi[0]):
        for by in range(lo[1], hi[1]):
            for bx in range(lo[2], hi[2]):
                b = (bz, by, bx)
                bucket = np.zeros((BUCKET,) * 3, vol.dtype)
                src, dst = [], []
                for ax in range(3):
                    a = max(b[ax] * BUCKET, int(origin_zyx[ax]))
                    e = min((b[ax] + 1) * BUCKET, int(origin_zyx[ax]) + vol.shape[ax])
                    src.append(slice(a - int(origin_zyx[ax]), e - int(origin_zyx[ax])))
                    dst.append(slice(a - b[ax] * BUCKET, e - b[ax] * BUCKET))
                bucket[tuple(dst)] = vol[tuple(src)]
                if keep_zero or bucket.any():
                    out[b] = bucket
    return out


def array_from_buckets(buckets: Mapping, start_zyx, stop_zyx, dtype=None, fill=0) -> np.ndarray:
    """The mag-local region ``[start, stop)`` assembled from ``{(bz, by, bx): bucket}`` (missing: ``fill``)."""
    start = [int(v) for v in start_zyx]
    stop = [int(v) for v in stop_zyx]
    if dtype is None:
        dtype = next(iter(buckets.values())).dtype if len(buckets) else np.uint64
    out = np.full([max(b - a, 0) for a, b in zip(start, stop)], fill, dtype)
    if 0 in out.shape:
        return out
    for b in buckets:
        lo = [i * BUCKET for i in b]
        if any(lo[ax] >= stop[ax] or lo[ax] + BUCKET <= start[ax] for ax in range(3)):
            continue
        data = buckets[b]
        src, dst = [], []
        for ax in range(3):
            a, e = max(lo[ax], start[ax]), min(lo[ax] + BUCKET, stop[ax])
            src.append(slice(a - lo[ax], e - lo[ax]))
            dst.append(slice(a - start[ax], e - start[ax]))
        out[tuple(dst)] = data[tuple(src)]
    return out


class _ZipStore(Store):
    """Read-only :class:`Store` over the members of an in-memory zip (thread-safe)."""

    def __init__(self, data: bytes, name: str):
        self.root = name
        self._zip = zipfile.ZipFile(io.BytesIO(data))
        self._names = set(self._zip.namelist())
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return self._zip.namelist()

    def read(self, key: str) -> bytes | None:
        key = key.strip("/")
        if key not in self._names:
            return None
        with self._lock:
            return self._zip.read(key)

    def location(self, key: str = "") -> str:
        return f"{self.root}/{key}" if key else self.root


class _LazyBuckets(Mapping):
    """``{(bz, by, bx): bucket}`` decoded from the data zip on access."""

    def __init__(self, members: dict, decode):
        self._members = members  # bucket → member name (or zarr chunk index)
        self._decode = decode

    def __getitem__(self, key) -> np.ndarray:
        return self._decode(self._members[tuple(key)])

    def __iter__(self) -> Iterator:
        return iter(sorted(self._members))

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, key) -> bool:
        return tuple(key) in self._members


# --------------------------------------------------------------------------------------------
# NML <volume> elements
# --------------------------------------------------------------------------------------------
def _volume_elements(text: str) -> list[tuple[re.Match, dict[str, str]]]:
    out = []
    for m in _VOLUME_TAG.finditer(text):
        attrs = {k: _unescape(v[1:-1]) for k, v in _ATTR.findall(m.group(0)[len("<volume") :])}
        out.append((m, attrs))
    return out


def _unescape(value: str) -> str:
    return unescape(value, {"&quot;": '"', "&apos;": "'"})


def _volume_tag(attrs: dict[str, str], self_closing: bool) -> str:
    body = "".join(f" {k}={quoteattr(str(v))}" for k, v in attrs.items() if v is not None)
    return f"<volume{body}{' /' if self_closing else ''}>"


def _nml_text(nml) -> str:
    if isinstance(nml, str):
        return nml
    data = bytes(nml)
    return data.decode("utf-8-sig")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def read_volume_zip(source) -> VolumeAnnotation:
    """Read a volume-annotation zip (path or bytes): the NML and each ``<volume>``'s buckets (lazy)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, fileobj = "<bytes>", io.BytesIO(bytes(source))
    else:
        name, fileobj = os.fspath(source), os.fspath(source)
    try:
        outer = zipfile.ZipFile(fileobj)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{name}: not a zip archive ({err})") from None
    with outer:
        nmls = [n for n in outer.namelist() if n.lower().endswith(".nml") and "/" not in n.strip("/")]
        nmls = nmls or [n for n in outer.namelist() if n.lower().endswith(".nml")]
        if not nmls:
            raise ValueError(f"{name}: no .nml file in the zip (members: {outer.namelist()[:10]})")
        nml_name = nmls[0]
        nml = outer.read(nml_name)
        text = _nml_text(nml)
        members = set(outer.namelist())
        volumes = []
        for _, attrs in _volume_elements(text):
            where = f"{name}: {nml_name}: <volume id={attrs.get('id')!r}>"
            location = attrs.get("location")
            data = outer.read(location) if location and location in members else None
            if location and data is None:
                warnings.warn(f"{where}: data zip {location!r} is not in the zip; the volume has no data", stacklevel=2)
            volumes.append(_read_volume(attrs, data, f"{name}/{location}" if location else where, where))
    return VolumeAnnotation(nml=nml, nml_name=nml_name, volumes=volumes)


def _int_attr(attrs: dict, key: str, where: str, default=None):
    value = attrs.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{where}: attribute {key}={value!r} is not an integer") from None


def _read_volume(attrs: dict, data: bytes | None, source: str, where: str) -> VolumeLayerData:
    fmt = (attrs.get("format") or "wkw").lower()
    if fmt not in FORMATS:
        raise ValueError(f"{where}: format {attrs.get('format')!r} is not supported (wkw or zarr3)")
    volume = VolumeLayerData(
        dtype=np.uint64,
        id=_int_attr(attrs, "id", where, 0),
        name=attrs.get("name") or "Volume",
        fallback_layer=attrs.get("fallbackLayer") or None,
        largest_segment_id=_int_attr(attrs, "largestSegmentId", where),
        format=fmt,
        location=attrs.get("location"),
    )
    if data is None:
        return volume
    try:
        store = _ZipStore(data, source)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{source}: not a zip archive ({err})") from None
    if fmt == "wkw":
        _read_wkw(volume, store)
    else:
        _read_zarr3(volume, store)
    return volume


def _read_wkw(volume: VolumeLayerData, store: _ZipStore) -> None:
    from .wkw import HEADER_SIZE, parse_header

    headers: dict[Mag3, object] = {}
    files: dict[Mag3, dict] = {}
    for member in store.names():
        if member.endswith("/"):
            continue
        m = _WKW_MEMBER.search(member)
        if m is None:
            raise ValueError(f"{store.location(member)}: unexpected member in a WKW volume zip")
        mag = parse_mag(m.group(1), store.location(member))
        if m.group(2) == "header.wkw":
            headers[mag] = parse_header(store.read(member), store.location(member))
        else:
            bz, by, bx = int(m.group(3)), int(m.group(4)), int(m.group(5))
            files.setdefault(mag, {})[(bz, by, bx)] = member
    for mag, header in headers.items():
        if header.block_len != BUCKET or header.file_len != 1:
            raise ValueError(
                f"{store.location(mag_name(mag) + '/header.wkw')}: blocks of {header.block_len} voxels, "
                f"{header.file_len} per file; volume zips hold one {BUCKET}³ bucket per file"
            )
        if header.channels != 1:
            raise ValueError(f"{store.location(mag_name(mag))}: {header.channels} channels, expected 1")
    dtypes = {h.dtype for h in headers.values()}
    if len(dtypes) > 1:
        raise ValueError(f"{store.root}: mags disagree on the voxel type: {sorted(d.name for d in dtypes)}")
    if dtypes:
        volume.dtype = dtypes.pop().newbyteorder("=")

    def decode(member: str) -> np.ndarray:
        raw = store.read(member)
        where = store.location(member)
        h = parse_header(raw, where)
        if h.block_len != BUCKET or h.file_len != 1 or h.channels != 1:
            raise ValueError(f"{where}: not a single {BUCKET}³ one-channel bucket (header byte 4 or 7)")
        size = h.block_bytes
        if h.compressed:
            import cramjam

            start = h.data_offset
            stop = struct.unpack_from("<Q", raw, HEADER_SIZE)[0] if len(raw) >= HEADER_SIZE + 8 else -1
            if start < h.table_bytes or stop > len(raw) or stop < start:
                raise ValueError(f"{where}: bad jump table (block at bytes {start}-{stop} of {len(raw)})")
            out = np.empty(size, np.uint8)
            try:
                n = cramjam.lz4.decompress_block_into(raw[start:stop], out, output_len=size)
            except cramjam.DecompressionError as err:
                raise ValueError(f"{where}: LZ4 block does not decode: {err}") from None
            if n != size:
                raise ValueError(f"{where}: LZ4 block inflates to {n} bytes, expected {size}")
        else:
            out = np.frombuffer(raw, np.uint8, size, h.data_offset) if len(raw) >= h.data_offset + size else None
            if out is None:
                raise ValueError(f"{where}: truncated RAW bucket ({len(raw)} bytes)")
        return out.view(h.dtype).reshape(BUCKET, BUCKET, BUCKET).astype(volume.dtype)

    for mag, members in files.items():
        if mag not in headers and not dtypes:
            first = store.read(next(iter(members.values())))
            volume.dtype = parse_header(first, store.location(next(iter(members.values())))).dtype.newbyteorder("=")
        volume.buckets[mag] = _LazyBuckets(members, decode)
    for mag in headers:
        volume.buckets.setdefault(mag, {})


def _read_zarr3(volume: VolumeLayerData, store: _ZipStore) -> None:
    from .webknossos import PROPERTIES_FILE
    from .zarr_io import ZarrArray

    raw = store.read(PROPERTIES_FILE)
    if raw is None:
        raise ValueError(f"{store.root}: a zarr3 volume zip needs {PROPERTIES_FILE}")
    where = store.location(PROPERTIES_FILE)
    try:
        props = json.loads(raw)
        layer = props["dataLayers"][0]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise ValueError(f"{where}: no readable dataLayers[0] ({type(err).__name__}: {err})") from None
    if len(props["dataLayers"]) != 1:
        raise ValueError(f"{where}: a volume zip holds exactly one layer, found {len(props['dataLayers'])}")
    layer_name = str(layer.get("name") or VOLUME_LAYER_NAME)
    bbox = layer.get("boundingBox")
    if isinstance(bbox, dict):
        try:
            volume.bbox_offset = tuple(int(v) for v in bbox["topLeft"])
            volume.bbox_size = tuple(int(bbox[k]) for k in ("width", "height", "depth"))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where}: dataLayers[0].boundingBox: {err}") from None
    ec = layer.get("elementClass")
    if ec is not None:
        if ec not in _ELEMENT_CLASSES:
            raise ValueError(f"{where}: dataLayers[0].elementClass {ec!r} is not a segmentation type")
        volume.dtype = np.dtype(_ELEMENT_CLASSES[ec])
    scale = props.get("scale")
    factor = scale.get("factor") if isinstance(scale, dict) else scale
    if isinstance(factor, list) and len(factor) == 3:
        volume.voxel_size = tuple(float(v) for v in factor)
    if volume.largest_segment_id is None and isinstance(layer.get("largestSegmentId"), int):
        volume.largest_segment_id = layer["largestSegmentId"]
    mags = layer.get("mags") or []
    names = store.names()
    for j, entry in enumerate(mags):
        mag = parse_mag(entry.get("mag"), f"{where}: dataLayers[0].mags[{j}].mag")
        path = (entry.get("path") or f"{layer_name}/{mag_name(mag)}").replace("\\", "/")
        while path.startswith("./"):
            path = path[2:]
        path = path.strip("/")
        if store.read(f"{path}/zarr.json") is None and store.read(f"{layer_name}/{path}/zarr.json") is not None:
            path = f"{layer_name}/{path}"
        za = ZarrArray(store, path)
        order = entry.get("axisOrder")
        if isinstance(order, dict):
            dims = {a: int(d) for a, d in order.items() if d is not None}
        elif za.dimension_names:
            dims = {n: i for i, n in enumerate(za.dimension_names) if n}
        else:
            dims = {"c": 0, "x": 1, "y": 2, "z": 3}
        if za.ndim != 4 or set(dims) != {"c", "x", "y", "z"}:
            raise ValueError(f"{za.location}: {za.ndim}-d array {dims}; only (c, x, y, z) volumes are supported")
        if za.chunks_per_shard is not None or za.is_fallback:
            raise ValueError(f"{za.location}: sharded or unusual codecs; volume zips hold plain {BUCKET}³ chunks")
        if tuple(za.chunk_shape[dims[a]] for a in "xyz") != (BUCKET,) * 3 or za.chunk_shape[dims["c"]] != 1:
            raise ValueError(f"{za.location}: chunks {za.chunk_shape}; volume zips hold {BUCKET}³ buckets")
        members = {}
        prefix = path + "/"
        for member in names:
            if not member.startswith(prefix) or member.endswith("/") or member[len(prefix) :] == "zarr.json":
                continue
            idx = _chunk_index(member[len(prefix) :], za)
            if idx is None or len(idx) != 4:
                raise ValueError(f"{store.location(member)}: not a chunk key of {za.location}")
            if idx[dims["c"]] != 0:
                continue
            members[(idx[dims["z"]], idx[dims["y"]], idx[dims["x"]])] = member
        perm = (dims["c"], dims["z"], dims["y"], dims["x"])

        def decode(member: str, za=za, perm=perm) -> np.ndarray:
            try:  # by member name: tolerant of a chunk_key_encoding that disagrees with the names
                chunk = za.decode_chunk(store.read(member))
            except Exception as err:  # noqa: BLE001 - any codec failure is a corrupt bucket
                raise ValueError(f"{store.location(member)}: cannot decode the bucket: {err}") from None
            return np.ascontiguousarray(chunk.transpose(perm)[0], dtype=volume.dtype)

        volume.buckets[mag] = _LazyBuckets(members, decode)


def _chunk_index(rel: str, za) -> tuple[int, ...] | None:
    """Chunk index of a member name below the array: ``c.0.1.2.3``, ``c/0/1/2/3`` or ``0.1.2.3``."""
    enc = za.metadata.get("chunk_key_encoding") or {"name": "default"}
    sep = (enc.get("configuration") or {}).get("separator") or ("." if enc.get("name") == "v2" else "/")
    if rel[:2] in ("c.", "c/"):
        sep, rel = rel[1], rel[2:]
    parts = rel.split(sep)
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def _check_bucket(volume: VolumeLayerData, mag, key, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != (BUCKET,) * 3:
        raise ValueError(f"volume {volume.name!r} mag {mag_name(mag)} bucket {key}: shape {arr.shape}")
    if len(key) != 3 or min(key) < 0:
        raise ValueError(f"volume {volume.name!r} mag {mag_name(mag)}: bad bucket index {key!r}")
    if arr.dtype != volume.dtype:
        if arr.size and arr.dtype.kind in "ui" and (arr.min() < 0 or arr.max() > np.iinfo(volume.dtype).max):
            raise ValueError(
                f"volume {volume.name!r} mag {mag_name(mag)} bucket {key}: ids do not fit {volume.dtype.name}"
            )
        arr = arr.astype(volume.dtype)
    return arr


def _stored_buckets(volume: VolumeLayerData):
    """(mag, bucket index, array) of every bucket to store: all-zero buckets only with a fallback layer."""
    for mag in volume.mags:
        mag_t = tuple(int(v) for v in np.broadcast_to(mag, 3))
        buckets = volume.buckets[mag]
        for key in sorted(buckets):
            arr = _check_bucket(volume, mag_t, tuple(int(k) for k in key), buckets[key])
            if volume.fallback_layer or arr.any():
                yield mag_t, tuple(int(k) for k in key), arr


def _wkw_header(dtype: np.dtype, data_offset: int) -> bytes:
    from .wkw import BLOCK_LZ4, VOXEL_TYPES

    voxel_type = next(t for t, d in VOXEL_TYPES.items() if d == dtype.newbyteorder("<"))
    return struct.pack("<3sBBBBBQ", b"WKW", 1, 0x05, BLOCK_LZ4, voxel_type, dtype.itemsize, data_offset)


def _wkw_data_zip(volume: VolumeLayerData) -> bytes | None:
    import cramjam

    buf = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=_ZIP_LEVEL) as zf:
        header = _wkw_header(volume.dtype, 24)
        for mag, (bz, by, bx), arr in _stored_buckets(volume):
            raw = np.ascontiguousarray(arr, dtype=volume.dtype.newbyteorder("<"))
            block = bytes(cramjam.lz4.compress_block(raw, store_size=False))
            data = header + struct.pack("<Q", 24 + len(block)) + block
            zf.writestr(f"{mag_name(mag)}/z{bz}/y{by}/x{bx}.wkw", data)
            count += 1
        if not count:
            return None
        for mag in volume.mags:
            zf.writestr(f"{mag_name(mag)}/header.wkw", _wkw_header(volume.dtype, 0))
    return buf.getvalue()


def _bbox(volume: VolumeLayerData) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(topLeft, size) in mag-1 voxels: the dataset's box, else the extent of the buckets."""
    if volume.bbox_offset is not None and volume.bbox_size is not None:
        return tuple(int(v) for v in volume.bbox_offset), tuple(int(v) for v in volume.bbox_size)
    lo, hi = [None] * 3, [0] * 3
    for mag in volume.mags:
        for b in volume.buckets[mag]:
            for ax, (i, f) in enumerate(zip(b[::-1], mag)):  # x, y, z
                lo[ax] = i * BUCKET * f if lo[ax] is None else min(lo[ax], i * BUCKET * f)
                hi[ax] = max(hi[ax], (i + 1) * BUCKET * f)
    lo = [v or 0 for v in lo]
    return tuple(lo), tuple(h - l for h, l in zip(hi, lo))


def _zarr3_array_meta(volume: VolumeLayerData, mag, top_left, size, extent_xyz) -> dict:
    shape = [1] + [
        -(-max(-(-(t + s) // f), e) // BUCKET) * BUCKET for t, s, f, e in zip(top_left, size, mag, extent_xyz)
    ]
    bytes_codec = (
        {"name": "bytes"} if volume.dtype.itemsize == 1 else {"name": "bytes", "configuration": {"endian": "little"}}
    )
    return {
        "chunk_grid": {"configuration": {"chunk_shape": [1, BUCKET, BUCKET, BUCKET]}, "name": "regular"},
        "chunk_key_encoding": {"configuration": {"separator": "."}, "name": "default"},
        "codecs": [
            {"configuration": {"order": [3, 2, 1, 0]}, "name": "transpose"},
            bytes_codec,
            {
                "configuration": {"blocksize": 0, "clevel": 5, "cname": "lz4", "shuffle": "shuffle", "typesize": 1},
                "name": "blosc",
            },
        ],
        "data_type": volume.dtype.name,
        "dimension_names": ["c", "x", "y", "z"],
        "fill_value": 0,
        "node_type": "array",
        "shape": shape,
        "zarr_format": 3,
    }


def _zarr3_data_zip(volume: VolumeLayerData) -> bytes | None:
    import numcodecs

    from .wk_writer import element_class

    blosc = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE, blocksize=0)
    top_left, size = _bbox(volume)
    buf = io.BytesIO()
    count = 0
    extents: dict[tuple, list[int]] = {}
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=_ZIP_LEVEL) as zf:
        for mag, (bz, by, bx), arr in _stored_buckets(volume):
            raw = np.ascontiguousarray(arr, dtype=volume.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)
            zf.writestr(f"{VOLUME_LAYER_NAME}/{mag_name(mag)}/c.0.{bx}.{by}.{bz}", blosc.encode(raw))
            ext = extents.setdefault(mag, [0, 0, 0])
            for ax, i in enumerate((bx, by, bz)):
                ext[ax] = max(ext[ax], (i + 1) * BUCKET)
            count += 1
        if not count:
            return None
        mags = [tuple(int(v) for v in np.broadcast_to(m, 3)) for m in volume.mags]
        for mag in mags:
            meta = _zarr3_array_meta(volume, mag, top_left, size, extents.get(mag, [0, 0, 0]))
            zf.writestr(
                f"{VOLUME_LAYER_NAME}/{mag_name(mag)}/zarr.json",
                json.dumps(meta, separators=(",", ":"), sort_keys=True),
            )
        layer = {
            "name": VOLUME_LAYER_NAME,
            "category": "segmentation",
            "boundingBox": {"topLeft": list(top_left), "width": size[0], "height": size[1], "depth": size[2]},
            "dataFormat": "zarr3",
            "mags": [
                {
                    "mag": list(mag),
                    "path": f"./{VOLUME_LAYER_NAME}/{mag_name(mag)}",
                    "axisOrder": {"c": 0, "x": 1, "y": 2, "z": 3},
                }
                for mag in mags
            ],
            "numChannels": 1,
            "elementClass": element_class(volume.dtype),
        }
        if volume.largest_segment_id is not None:
            layer["largestSegmentId"] = int(volume.largest_segment_id)
        props = {
            "id": {"name": "", "team": ""},
            "scale": {"factor": [float(v) for v in (volume.voxel_size or (1.0, 1.0, 1.0))], "unit": "nanometer"},
            "dataLayers": [layer],
            "version": 1,
        }
        zf.writestr("datasource-properties.json", json.dumps(props, indent=4))
    return buf.getvalue()


def _nml_with_volumes(text: str, entries: list[tuple[VolumeLayerData, str | None, str]]) -> str:
    """The NML with one ``<volume>`` per entry (volume, location or None, format): existing elements
    (matched by id) get new attributes, others are inserted before ``</things>``; ``<volume>``
    elements of volumes not written lose their ``location``."""
    by_id = {v.id: (v, loc, fmt) for v, loc, fmt in entries}
    seen: set[int] = set()
    pieces, pos = [], 0
    for m, attrs in _volume_elements(text):
        vid = _int_attr(attrs, "id", "<volume>", None)
        new = dict(attrs)
        if vid in by_id and vid not in seen:
            seen.add(vid)
            new.update(_volume_attrs(*by_id[vid]))
        else:
            new.pop("location", None)
        new = {k: v for k, v in new.items() if v is not None}
        pieces += [text[pos : m.start()], _volume_tag(new, self_closing=bool(m.group(1)))]
        pos = m.end()
    pieces.append(text[pos:])
    text = "".join(pieces)
    missing = [e for e in entries if e[0].id not in seen]
    if missing:
        close = text.rfind("</things>")
        if close < 0:
            raise ValueError("the NML has no </things> element to add <volume> elements to")
        indent = "  "
        added = "".join(f"{indent}{_volume_tag(_volume_attrs(*e), self_closing=True)}\n" for e in missing)
        line_start = text.rfind("\n", 0, close) + 1
        if text[line_start:close].strip():
            added = "\n" + added
            line_start = close
        text = text[:line_start] + added + text[line_start:]
    return text


def _volume_attrs(volume: VolumeLayerData, location: str | None, fmt: str) -> dict:
    attrs = {"id": str(int(volume.id)), "location": location, "fallbackLayer": volume.fallback_layer}
    attrs["name"] = volume.name
    attrs["format"] = fmt
    attrs["largestSegmentId"] = None if volume.largest_segment_id is None else str(int(volume.largest_segment_id))
    return attrs


def write_volume_zip(annotation_nml_bytes, volumes: list[VolumeLayerData], path, fmt: str = "zarr3") -> Path:
    """Write a volume-annotation zip at ``path`` atomically: the NML (its ``<volume>`` elements updated
    or added for ``volumes``) and one data zip per volume with buckets, in format ``fmt``
    (``"zarr3"`` or ``"wkw"``). Volume ids must be unique. Returns the path."""
    if fmt not in FORMATS:
        raise ValueError(f"volume zip format must be one of {FORMATS}, got {fmt!r}")
    ids = [int(v.id) for v in volumes]
    if len(set(ids)) != len(ids):
        raise ValueError(f"volume ids must be unique, got {ids}")
    for v in volumes:
        if v.dtype.kind not in "ui" or v.dtype.name not in _ELEMENT_CLASSES:
            raise ValueError(f"volume {v.name!r}: {v.dtype} is not a segmentation type")
    path = Path(path)
    text = _nml_text(annotation_nml_bytes)
    if "<things" not in text:
        raise ValueError("annotation_nml_bytes is not an NML (no <things> element)")
    entries, data_zips = [], []
    taken: set[str] = set()
    for v in volumes:
        data = _zarr3_data_zip(v) if fmt == "zarr3" else _wkw_data_zip(v)
        location = None
        if data is not None:
            location = _safe_member(f"data_{int(v.id)}_{v.name}.zip", taken)
            data_zips.append((location, data))
        entries.append((v, location, fmt))
    nml_text = _nml_with_volumes(text, entries)
    nml_name = path.name[: -len(".zip")] if path.name.lower().endswith(".zip") else path.stem
    from .atomic import atomic_open

    with (
        atomic_open(path) as f,
        zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, compresslevel=_ZIP_LEVEL) as zf,
    ):
        zf.writestr(f"{nml_name or 'annotation'}.nml", nml_text.encode("utf-8"))
        for location, data in data_zips:
            zf.writestr(location, data)
    return path


def _safe_member(name: str, taken: set[str]) -> str:
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    out, i = clean, 2
    while out in taken:
        out, i = f"{clean[:-4]}_{i}.zip", i + 1
    taken.add(out)
    return out

"""Native Zarr v2/v3 + OME-Zarr reader against zarr-python, tensorstore and fixture checksums."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import threading
import time
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, TransposeCodec, ZstdCodec

from napari_knossos.formats.chunked import CorruptChunkError
from napari_knossos.formats.store import HttpStore, LocalStore, open_store
from napari_knossos.formats.zarr_io import ZarrArray, open_zarr, sniff, zarr_chunked

from .http_server import serve

DATA = Path(__file__).parent / "data" / "zarr"
WK = DATA / "zarr3_dataset"
CHECKSUMS = json.loads((DATA / "checksums_zarr3.json").read_text())["zarr3_dataset"]
ZYX = {"z": 0, "y": 1, "x": 2}
WK_DIMS = {"c": 0, "x": 1, "y": 2, "z": 3}

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning")


def volume(shape, dtype="uint16", seed=0) -> np.ndarray:
    """Smooth-ish random data (compressible, every voxel distinct enough to catch transposes)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).sum(axis=0) * 7
    return (grid + rng.integers(0, 1000, shape)).astype(dtype)


def random_cutouts(shape, n=12, seed=1):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        lo = [int(rng.integers(0, s)) for s in shape]
        hi = [int(rng.integers(l + 1, s + 1)) for l, s in zip(lo, shape)]
        yield tuple(slice(l, h) for l, h in zip(lo, hi))


def assert_matches_zarr_python(path: Path, dims=ZYX):
    ref = zarr.open_array(str(path), mode="r")
    za = ZarrArray(open_store(path))
    assert za.shape == ref.shape and za.dtype == ref.dtype.newbyteorder("=")
    arr = zarr_chunked(za, dims)
    assert arr.shape == ref.shape and arr.dtype == za.dtype
    np.testing.assert_array_equal(arr[...], ref[...])
    for sl in random_cutouts(ref.shape):
        np.testing.assert_array_equal(arr[sl], ref[sl])
    return za, arr


# -- zarr-python written arrays -------------------------------------------------------------------
def test_v3_sharded_zstd_transpose(tmp_path):
    data = volume((70, 90, 100))
    path = tmp_path / "sharded.zarr"
    a = zarr.create_array(
        str(path), shape=data.shape, chunks=(16, 32, 32), shards=(32, 64, 64), dtype="uint16",
        filters=[TransposeCodec(order=[2, 0, 1])], serializer=BytesCodec(endian="big"),
        compressors=[ZstdCodec(level=3, checksum=True), Crc32cCodec()],
    )
    a[:] = data
    za, arr = assert_matches_zarr_python(path)
    assert za.chunk_shape == (16, 32, 32) and za.shard_shape == (32, 64, 64)
    assert arr.chunk_zyx == (16, 32, 32)
    chunk = za.read_chunk((1, 2, 3))
    assert chunk.flags.c_contiguous and chunk.shape == (16, 32, 32)
    np.testing.assert_array_equal(chunk[:, :26, :4], data[16:32, 64:90, 96:100])  # edge chunk: valid part


def test_v3_index_at_start_and_v2_key_encoding(tmp_path):
    from zarr.codecs import ShardingCodec

    data = volume((40, 50, 60), dtype="int16")
    path = tmp_path / "start.zarr"
    a = zarr.create_array(
        str(path), shape=data.shape, chunks=(32, 64, 64), dtype="int16",
        serializer=ShardingCodec(chunk_shape=(16, 16, 16), codecs=[BytesCodec(), GzipCodec()], index_location="start"),
        compressors=None, chunk_key_encoding={"name": "v2", "separator": "."},
    )
    a[:] = data
    assert (path / "1.0.0").is_file()
    za, arr = assert_matches_zarr_python(path)
    assert za._index_at_end is False and za.chunk_shape == (16, 16, 16)
    np.testing.assert_array_equal(arr.chunk((2, 3, 1))[0], za.read_chunk((2, 3, 1)))


def test_v3_unsharded_blosc_and_gzip_dtypes(tmp_path):
    for i, (dtype, compressor) in enumerate(
        [
            ("float32", BloscCodec(cname="lz4", shuffle="bitshuffle")),
            ("int16", GzipCodec(level=4)),
            ("bool", BloscCodec()),
        ]
    ):
        data = volume((33, 40, 50), dtype="int64", seed=i) - 3000
        data = (data % 2).astype(bool) if dtype == "bool" else (data / 7 if dtype == "float32" else data).astype(dtype)
        path = tmp_path / f"a{i}.zarr"
        a = zarr.create_array(str(path), shape=data.shape, chunks=(16, 16, 32), dtype=dtype, compressors=compressor)
        a[:] = data
        assert_matches_zarr_python(path)


@pytest.mark.parametrize("separator", [".", "/"])
@pytest.mark.parametrize("compressor", ["blosc", "zstd", "gzip", "zlib", "lz4", "bz2"])
def test_v2_compressors_and_separators(tmp_path, compressor, separator):
    data = volume((30, 45, 61), dtype="<u2")
    path = tmp_path / "v2.zarr"
    a = zarr.create_array(
        str(path), shape=data.shape, chunks=(8, 16, 32), dtype="<u2", zarr_format=2,
        compressors=numcodecs.get_codec({"id": compressor}), chunk_key_encoding={"name": "v2", "separator": separator},
    )
    a[:] = data
    assert (path / ("0/0/0" if separator == "/" else "0.0.0")).is_file()
    assert_matches_zarr_python(path)


def test_v2_fortran_order_big_endian_filters_fill(tmp_path):
    data = volume((40, 50, 60), dtype=">i4") - 500
    path = tmp_path / "f.zarr"
    a = zarr.create_array(
        str(path), shape=data.shape, chunks=(16, 32, 32), dtype=">i4", zarr_format=2, order="F", fill_value=-7,
        filters=[numcodecs.Delta(dtype=">i4")], compressors=numcodecs.Blosc(cname="zstd"),
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )
    a[:] = data
    za, _ = assert_matches_zarr_python(path)
    assert za.dtype == np.dtype("int32") and za.fill_value == -7
    # an all-fill chunk is not stored: None from read_chunk, fill value in the view
    a[16:32, 0:32, 0:32] = -7
    shutil.rmtree(path / "1" / "0" / "0", ignore_errors=True)
    za = ZarrArray(open_store(path))
    assert za.read_chunk((1, 0, 0)) is None
    np.testing.assert_array_equal(zarr_chunked(za, ZYX, key=("t", str(path), 2))[16:32, 0:32, 0:32], -7)


def test_fill_value_and_missing_chunks(tmp_path):
    path = tmp_path / "sparse.zarr"
    a = zarr.create_array(
        str(path), shape=(64, 64, 64), chunks=(16, 16, 16), shards=(32, 32, 32), dtype="uint8", fill_value=9
    )
    a[0:16, 0:16, 0:16] = 1  # one inner chunk of shard (0,0,0)
    a[40:48, 40:48, 40:48] = 2  # part of one inner chunk of shard (1,1,1)
    za, arr = assert_matches_zarr_python(path)
    assert za.read_chunk((0, 0, 1)) is None  # empty index entry in an existing shard
    assert za.read_chunk((0, 2, 0)) is None  # shard file missing
    assert not (path / "c" / "0" / "1" / "0").exists()
    assert za.read_chunk((0, 0, 0)).min() == 1
    assert arr[20, 20, 20] == 9 and arr[44, 44, 44] == 2 and arr[33, 33, 33] == 9


def test_channels_fixed_dims_region_and_rgb(tmp_path):
    data = volume((3, 5, 20, 30, 40), dtype="uint8")  # t, c, z, y, x
    path = tmp_path / "tczyx.zarr"
    a = zarr.create_array(str(path), shape=data.shape, chunks=(1, 2, 8, 16, 16), dtype="uint8", fill_value=0)
    a[:] = data
    a[1, 2:4, 0:8, 0:16, 0:16] = 0  # drop one channel chunk: filled while its neighbours are read
    data[1, 2:4, 0:8, 0:16, 0:16] = 0
    za = ZarrArray(open_store(path))
    arr = zarr_chunked(za, {"c": 1, "z": 2, "y": 3, "x": 4}, fixed={0: 1})
    assert arr.shape == (5, 20, 30, 40) and arr.layout == "czyx"
    np.testing.assert_array_equal(arr[...], data[1])
    region = zarr_chunked(
        za, {"z": 2, "y": 3, "x": 4}, channels_dim=1, fixed={0: 2}, offset_zyx=(3, 5, 7), shape_zyx=(10, 11, 12)
    )
    np.testing.assert_array_equal(region[...], data[2, :, 3:13, 5:16, 7:19])
    single = zarr_chunked(za, {"z": 2, "y": 3, "x": 4}, fixed={0: 2, 1: 4})
    np.testing.assert_array_equal(single[...], data[2, 4])
    rgb = zarr_chunked(ZarrArray(open_store(path)), {"c": 1, "z": 2, "y": 3, "x": 4}, rgb=True)
    np.testing.assert_array_equal(rgb[2:9, 4:20, 1:30], np.moveaxis(data[0], 0, -1)[2:9, 4:20, 1:30])
    plane = zarr_chunked(za, {"y": 3, "x": 4}, fixed={0: 0, 1: 3, 2: 11})  # a 2-d view as one z plane
    assert plane.shape == (1, 30, 40)
    np.testing.assert_array_equal(plane[0], data[0, 3, 11])


# -- the webKnossos zarr3 fixture -----------------------------------------------------------------
@pytest.mark.parametrize("layer", ["color", "segmentation", "color_rgb"])
def test_webknossos_zarr3_fixture_checksums(layer):
    store = open_store(WK)
    for mag, entry in CHECKSUMS[layer].items():
        za = ZarrArray(store, f"{layer}/{mag}")
        channels = za.shape[0]
        arr = zarr_chunked(za, WK_DIMS, rgb=channels == 3)
        for name, cut in entry["cutouts"].items():
            (ox, oy, oz), (sx, sy, sz) = cut["offset_xyz"], cut["size_xyz"]
            block = np.ascontiguousarray(arr[oz : oz + sz, oy : oy + sy, ox : ox + sx])
            want = cut["sha256_zyx_c_order" if channels == 1 else "sha256_zyxc_c_order"]
            assert hashlib.sha256(block.tobytes()).hexdigest() == want, (layer, mag, name)
            assert int(block.astype(np.int64).sum()) == cut["sum"]


@pytest.mark.parametrize("layer", ["color", "segmentation", "color_rgb"])
def test_webknossos_zarr3_fixture_vs_tensorstore(layer):
    ts = pytest.importorskip("tensorstore")
    store = open_store(WK)
    for mag in CHECKSUMS[layer]:
        ref = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(WK / layer / mag)}}).result()
        cxyz = ref.read().result()
        za = ZarrArray(store, f"{layer}/{mag}")
        assert za.dimension_names == ["c", "x", "y", "z"] and za.shape == cxyz.shape
        c, cx, cy, cz = za.chunk_shape
        np.testing.assert_array_equal(za.read_chunk((0, 1, 0, 1)), cxyz[:, cx : 2 * cx, :cy, cz : 2 * cz])
        arr = zarr_chunked(za, WK_DIMS)
        czyx = cxyz.transpose(0, 3, 2, 1)
        np.testing.assert_array_equal(arr[...], czyx[0] if len(czyx) == 1 else czyx)
        for sl in random_cutouts(arr.shape[-3:], n=6):
            want = cxyz[:, sl[2], sl[1], sl[0]].transpose(0, 3, 2, 1)
            got = arr[(slice(None), *sl)] if arr.ndim == 4 else arr[sl][None]
            np.testing.assert_array_equal(got, want)


def _rewrite_transpose_as_f(meta: dict) -> dict:
    def walk(codecs):
        for c in codecs:
            if c.get("name") == "transpose":
                c["configuration"]["order"] = "F"
            if c.get("name") == "sharding_indexed":
                walk(c["configuration"]["codecs"])
    walk(meta["codecs"])
    return meta


def test_transpose_order_f_string(tmp_path):
    # the fixture's inner transpose [3,2,1,0] is "F" for 4-d arrays
    mag = tmp_path / "color1"
    shutil.copytree(WK / "color" / "1", mag)
    meta = json.loads((mag / "zarr.json").read_text())
    (mag / "zarr.json").write_text(json.dumps(_rewrite_transpose_as_f(meta)))
    arr = zarr_chunked(ZarrArray(LocalStore(mag)), WK_DIMS)
    want = CHECKSUMS["color"]["1"]["cutouts"]["full"]["sha256_zyx_c_order"]
    assert hashlib.sha256(np.ascontiguousarray(arr[...]).tobytes()).hexdigest() == want
    # the volume-annotation variant: unsharded, "." chunk keys, blosc, transpose "F"
    data = volume((1, 40, 50, 36), dtype="uint32")
    path = tmp_path / "volume.zarr"
    a = zarr.create_array(
        str(path), shape=data.shape, chunks=(1, 32, 32, 32), dtype="uint32",
        filters=[TransposeCodec(order=[3, 2, 1, 0])],
        compressors=BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=1),
        chunk_key_encoding={"name": "default", "separator": "."}, dimension_names=["c", "x", "y", "z"],
    )
    a[:] = data
    assert (path / "c.0.1.0.1").is_file()
    meta = json.loads((path / "zarr.json").read_text())
    (path / "zarr.json").write_text(json.dumps(_rewrite_transpose_as_f(meta)))
    arr = zarr_chunked(ZarrArray(LocalStore(path)), WK_DIMS)
    np.testing.assert_array_equal(arr[...], data[0].transpose(2, 1, 0))


# -- errors ---------------------------------------------------------------------------------------
def _collect_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_corrupt_chunk_reads_zeros_with_one_warning(tmp_path):
    data = volume((32, 32, 64), dtype="uint16")
    path = tmp_path / "plain.zarr"
    a = zarr.create_array(str(path), shape=data.shape, chunks=(16, 16, 32), dtype="uint16", compressors=ZstdCodec())
    a[:] = data
    bad = path / "c" / "1" / "0" / "1"
    bad.write_bytes(b"definitely not zstd")
    za = ZarrArray(open_store(path))
    with pytest.raises(CorruptChunkError, match=re.escape(str(bad))):
        za.read_chunk((1, 0, 1))
    arr = zarr_chunked(za, ZYX)
    got, caught = _collect_warnings(lambda: (arr[...], arr[16:32, 0:16, 32:64]))
    assert len(caught) == 1 and str(bad) in str(caught[0].message)
    want = data.copy()
    want[16:32, 0:16, 32:64] = 0
    np.testing.assert_array_equal(got[0], want)


def test_corrupt_inner_chunk_and_shard_index(tmp_path):
    data = volume((32, 32, 32), dtype="uint8")
    path = tmp_path / "sharded.zarr"
    a = zarr.create_array(
        str(path), shape=data.shape, chunks=(16, 16, 16), shards=(32, 32, 32), dtype="uint8", compressors=ZstdCodec()
    )
    a[:] = data
    shard = path / "c" / "0" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    za = ZarrArray(open_store(path))
    index = np.frombuffer(bytes(raw[-(8 * 16 + 4) : -4]), "<u8").reshape(2, 2, 2, 2)
    off = int(index[0, 1, 0, 0])
    raw[off : off + 8] = b"\xff" * 8  # first inner chunk's zstd frame header
    shard.write_bytes(bytes(raw))
    arr = zarr_chunked(za, ZYX, key=("t", str(path), "inner"))
    got, caught = _collect_warnings(lambda: arr[...])
    assert len(caught) == 1 and str(shard) in str(caught[0].message) and "(0, 1, 0)" in str(caught[0].message)
    want = data.copy()
    want[0:16, 16:32, 0:16] = 0
    np.testing.assert_array_equal(got, want)
    # an index entry claiming an absurd size (checksum valid) is corrupt, not a huge read
    import google_crc32c

    raw = bytearray(shard.read_bytes())
    table = np.frombuffer(bytes(raw[-(8 * 16 + 4) : -4]), "<u8").reshape(2, 2, 2, 2).copy()
    table[1, 1, 1, 1] = 2**62
    raw[-(8 * 16 + 4) : -4] = table.tobytes()
    raw[-4:] = google_crc32c.value(table.tobytes()).to_bytes(4, "little")
    shard.write_bytes(bytes(raw))
    za.invalidate()
    with pytest.raises(CorruptChunkError, match=r"index entry of \(1, 1, 1\)"):
        za.read_chunk((1, 1, 1))
    assert za.read_chunks_view([(1, 1, 0), (1, 1, 1)])[(1, 1, 0)].shape == (16, 16, 16)
    # a broken index checksum makes the whole shard unreadable
    raw = bytearray(shard.read_bytes())
    raw[-1] ^= 0xFF
    shard.write_bytes(bytes(raw))
    za = ZarrArray(open_store(path))
    za.invalidate()  # the shard index of the old file is cached
    with pytest.raises(CorruptChunkError, match="crc32c"):
        za.read_chunk((1, 1, 1))
    shard.write_bytes(bytes(raw[:10]))  # truncated below the index size
    za.invalidate()
    with pytest.raises(CorruptChunkError, match="shorter than its"):
        za.read_chunk((0, 0, 0))


def test_malformed_metadata_names_file(tmp_path):
    path = tmp_path / "bad.zarr"
    path.mkdir()
    (path / "zarr.json").write_text('{"zarr_format": 3,\n "node_type": "array", "shape": [1, 2,, 3]}')
    for opener in (lambda: ZarrArray(open_store(path)), lambda: open_zarr(path)):
        with pytest.raises(ValueError, match=r"bad\.zarr/zarr\.json: invalid JSON at line 2 column"):
            opener()
    (path / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "array", "data_type": "uint8"}))
    with pytest.raises(ValueError, match=r"zarr\.json: missing key 'shape'"):
        ZarrArray(open_store(path))
    (path / "zarr.json").write_text(json.dumps({**json.loads((path / "zarr.json").read_text()), "shape": ["x"]}))
    with pytest.raises(ValueError, match=r"^\S*bad\.zarr/zarr\.json: "):
        ZarrArray(open_store(path))
    ome = tmp_path / "ome.zarr"
    write_ome(ome, "0.4")
    attrs = json.loads((ome / ".zattrs").read_text())
    attrs["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"] = [1, 0, 0.4, 0.4]
    (ome / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(ValueError, match=r"ome\.zarr/\.zattrs.*must be positive"):
        open_zarr(ome)
    attrs["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"] = "wide"
    (ome / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(ValueError, match=r"ome\.zarr/\.zattrs"):
        open_zarr(ome)
    v2 = tmp_path / "v2.zarr"
    zarr.create_array(str(v2), shape=(4, 4), chunks=(2, 2), dtype="u1", zarr_format=2)
    (v2 / ".zattrs").write_text("{nope}")
    with pytest.raises(ValueError, match=r"v2\.zarr/\.zattrs: invalid JSON at line 1 column 2"):
        open_zarr(v2)
    with pytest.raises(ValueError, match="no zarr array here"):
        ZarrArray(open_store(tmp_path))


def test_unsupported_codec_falls_back_to_zarr_python_locally(tmp_path, http_root):
    from zarr.codecs.numcodecs import Delta

    data = volume((20, 30, 40), dtype="int32")
    path = http_root[0] / "delta.zarr"
    a = zarr.create_array(
        str(path), shape=data.shape, chunks=(8, 16, 16), dtype="int32", filters=[Delta(dtype="int32")]
    )
    a[:] = data
    za, arr = assert_matches_zarr_python(path)
    assert za.fallback_codec == "numcodecs.delta" and za.chunk_shape == (8, 16, 16)
    with pytest.raises(ValueError, match="numcodecs.delta"):
        ZarrArray(open_store(http_root[1] + "/delta.zarr"))


# -- huge arrays open instantly ------------------------------------------------------------------
@pytest.mark.parametrize("sharded", [True, False])
def test_huge_array_opens_fast_and_reads_fill(tmp_path, sharded):
    n = 2**20
    codecs = [{"name": "bytes"}, {"name": "zstd", "configuration": {"level": 1}}]
    if sharded:
        codecs = [{"name": "sharding_indexed", "configuration": {"chunk_shape": [64, 64, 64], "codecs": codecs,
                   "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]}}]
    meta = {
        "zarr_format": 3, "node_type": "array", "shape": [n, n, n], "data_type": "uint16",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1024] * 3 if sharded else [64] * 3}},
        "chunk_key_encoding": {"name": "default"}, "fill_value": 9, "codecs": codecs,
        "dimension_names": ["z", "y", "x"], "attributes": {},
    }
    path = tmp_path / "huge.zarr"
    path.mkdir()
    (path / "zarr.json").write_text(json.dumps(meta))
    t0 = time.perf_counter()
    ds = open_zarr(path)
    assert time.perf_counter() - t0 < 1.0
    arr = ds.layers[0].mags[0].array
    assert arr.shape == (n, n, n) and ds.layers[0].size == (n, n, n)
    t0 = time.perf_counter()
    plane = arr[n // 2, :512, :512]
    corner = arr[n - 3 :, n - 2 :, n - 5 :]
    assert time.perf_counter() - t0 < 1.0
    assert plane.shape == (512, 512) and (plane == 9).all() and (corner == 9).all()


# -- sniff ----------------------------------------------------------------------------------------
def test_sniff(tmp_path):
    v3 = tmp_path / "img.ome.zarr"
    zarr.open_group(str(v3), mode="w", zarr_format=3)
    v2 = tmp_path / "grp"
    zarr.open_group(str(v2), mode="w", zarr_format=2)
    arr2 = tmp_path / "arr2.zarr"
    zarr.create_array(str(arr2), shape=(2, 2), dtype="u1", zarr_format=2)
    (tmp_path / "empty.zarr").mkdir()
    (tmp_path / "file.txt").write_text("x")
    wk = tmp_path / "wk"
    shutil.copytree(WK, wk)
    assert sniff(v3) and sniff(str(v2)) and sniff(str(arr2)) and sniff(wk / "color")
    for no in (tmp_path / "empty.zarr", tmp_path / "missing.zarr", tmp_path / "file.txt", wk, str(wk), 12, None):
        assert sniff(no) is False


# -- OME-Zarr -------------------------------------------------------------------------------------
def _ms(axes, scales, translation=None, name=None, global_scale=None):
    datasets = []
    for i, s in enumerate(scales):
        ct = [{"type": "scale", "scale": s}]
        if translation is not None:
            ct.append({"type": "translation", "translation": translation})
        datasets.append({"path": str(i), "coordinateTransformations": ct})
    ms = {"axes": axes, "datasets": datasets}
    if name:
        ms["name"] = name
    if global_scale:
        ms["coordinateTransformations"] = [{"type": "scale", "scale": global_scale}]
    return ms


def _pyramid(group, levels, chunks):
    for i, data in enumerate(levels):
        a = group.create_array(str(i), shape=data.shape, chunks=chunks[-data.ndim :], dtype=data.dtype)
        a[:] = data


def write_ome(root_path: Path, version: str):
    """An OME-Zarr image (2 levels) with one label image (2 levels), written by hand."""
    fmt = 2 if version == "0.4" else 3
    um = lambda name, kind="space": {"name": name, "type": kind, "unit": "micrometer"}
    root = zarr.open_group(str(root_path), mode="w", zarr_format=fmt)
    image = volume((2, 20, 48, 64), dtype="uint16")
    level1 = image[:, ::2, ::2, ::2].copy()
    labels = (volume((20, 48, 64), dtype="uint32") // 500).astype("uint32")
    labels1 = labels[::2, ::2, ::2].copy()
    axes = [{"name": "c", "type": "channel"}, um("z"), um("y"), um("x")]
    ms = _ms(axes, [[1, 0.5, 0.2, 0.2], [1, 1.0, 0.4, 0.4]], translation=[0, 1.0, 2.0, 3.0], name="cells-image")
    omero = {"channels": [
        {"color": "FF0000", "window": {"start": 10, "end": 500, "min": 0, "max": 65535}, "label": "DAPI"},
        {"color": "00FF00", "window": {"start": 20, "end": 900, "min": 0, "max": 9}, "label": "GFP", "active": False},
    ]}
    label_ms = _ms(axes[1:], [[0.5, 0.2, 0.2], [1.0, 0.4, 0.4]], translation=[1.0, 2.0, 3.0], name="nuclei")
    image_label = {"colors": [{"label-value": 1, "rgba": [255, 0, 0, 255]}], "source": {"image": "../../"}}
    if version == "0.4":
        root.attrs.update({"multiscales": [{**ms, "version": "0.4"}], "omero": omero})
    else:
        root.attrs["ome"] = {"version": "0.5", "multiscales": [ms], "omero": omero}
    _pyramid(root, [image, level1], (1, 8, 16, 16))
    lg = root.create_group("labels")
    lbl = lg.create_group("nuclei")
    if version == "0.4":
        lg.attrs["labels"] = ["nuclei"]
        lbl.attrs.update({"multiscales": [label_ms], "image-label": image_label})
    else:
        lg.attrs["ome"] = {"version": "0.5", "labels": ["nuclei"]}
        lbl.attrs["ome"] = {"version": "0.5", "multiscales": [label_ms], "image-label": image_label}
    _pyramid(lbl, [labels, labels1], (8, 16, 16))
    return image, level1, labels, labels1


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_multiscales_with_labels(tmp_path, version):
    path = tmp_path / "sample.ome.zarr"
    image, level1, labels, labels1 = write_ome(path, version)
    assert sniff(path)
    ds = open_zarr(path)
    assert ds.format == "ome-zarr" and ds.name == "sample"
    assert [l.name for l in ds.layers] == ["cells-image", "nuclei"]
    img, seg = ds.layers
    assert img.category == "color" and seg.category == "segmentation"
    for layer in (img, seg):
        assert layer.voxel_size == pytest.approx((200.0, 200.0, 500.0))
        assert layer.offset == (15, 10, 2)
        assert layer.extra["translate_nm_zyx"] == pytest.approx((1000.0, 2000.0, 3000.0))
        assert [m.factor for m in layer.mags] == [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0)]
        assert layer.size == (64, 48, 20)
    assert img.num_channels == 2 and img.dtype == np.uint16 and img.mags[0].array.layout == "czyx"
    assert img.mags[0].array.shape == image.shape
    np.testing.assert_array_equal(img.mags[0].array[...], image)
    np.testing.assert_array_equal(img.mags[1].array[:, 3:7, 5:20, 1:30], level1[:, 3:7, 5:20, 1:30])
    assert img.extra["channel_names"] == ["DAPI", "GFP"] and img.extra["channel_active"] == [True, False]
    assert img.extra["channel_colors"] == ["#FF0000", "#00FF00"]
    assert img.extra["channel_contrast_limits"] == [(10.0, 500.0), (20.0, 900.0)]
    assert img.contrast_limits == (10.0, 900.0)
    assert seg.dtype == np.uint32 and seg.num_channels == 1
    np.testing.assert_array_equal(seg.mags[0].array[...], labels)
    np.testing.assert_array_equal(seg.mags[1].array[...], labels1)
    assert seg.extra["label_colors"] == {1: (255, 0, 0, 255)}


def test_ome_zarr_05_time_axis_units_and_global_scale(tmp_path):
    path = tmp_path / "t.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    data = volume((2, 1, 12, 40, 30), dtype="uint8")
    axes = [
        {"name": "t", "type": "time", "unit": "second"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "nanometer"},
        {"name": "x", "type": "space", "unit": "angstrom"},
    ]
    ms = _ms(axes, [[1, 1, 0.05, 4, 40]], translation=[0, 0, 0.1, 8, 100], global_scale=[1, 1, 2, 1, 1])
    root.attrs["ome"] = {"version": "0.5", "multiscales": [ms],
                         "omero": {"channels": [{"color": "00ff00", "window": {"start": 5, "end": 200}}]}}
    _pyramid(root, [data], (1, 1, 8, 16, 16))
    ds = open_zarr(path)
    (layer,) = ds.layers
    assert layer.voxel_size == pytest.approx((4.0, 4.0, 100.0))
    assert layer.extra["translate_nm_zyx"] == pytest.approx((200.0, 8.0, 10.0))
    assert layer.offset == (2, 2, 2)
    assert layer.extra["pinned_axes"] == {"t": 0}
    assert layer.num_channels == 1 and layer.contrast_limits == (5.0, 200.0) and layer.color == "#00FF00"
    np.testing.assert_array_equal(layer.mags[0].array[...], data[0, 0])


def test_ome_zarr_2d_without_units(tmp_path):
    path = tmp_path / "flat.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    data = volume((50, 70), dtype="uint16")
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    root.attrs["multiscales"] = [_ms(axes, [[3, 3], [6, 6]])]
    _pyramid(root, [data, data[::2, ::2].copy()], (16, 32))
    (layer,) = open_zarr(path).layers
    assert layer.voxel_size == (3.0, 3.0, 3.0) and layer.extra["unit_assumed_nm"] is True
    assert layer.size == (70, 50, 1) and [m.factor for m in layer.mags] == [(1.0, 1.0, 1.0), (2.0, 2.0, 1.0)]
    assert layer.mags[0].array.shape == (1, 50, 70)
    np.testing.assert_array_equal(layer.mags[0].array[0], data)
    np.testing.assert_array_equal(layer.mags[1].array[0, 5:9], data[::2, ::2][5:9])


def test_plain_array_and_group(tmp_path):
    path = tmp_path / "arrays.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    raw = volume((2, 10, 20, 30), dtype="uint8")
    seg = volume((10, 20, 30), dtype="uint32")
    root.create_array("raw", shape=raw.shape, chunks=(1, 8, 8, 8), dtype="uint8")[:] = raw
    labels = root.create_array(
        "labels", shape=seg.shape, chunks=(8, 8, 8), dtype="uint32", dimension_names=["z", "y", "x"]
    )
    labels[:] = seg
    root.create_array("table", shape=(5,), dtype="f4")
    ds = open_zarr(path)
    assert ds.format == "zarr" and [l.name for l in ds.layers] == ["labels", "raw"]
    labels, raw_layer = ds.layers
    assert labels.category == "segmentation" and raw_layer.category == "color"
    assert raw_layer.extra["pinned_axes"] == {"0": 0} and raw_layer.voxel_size == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(raw_layer.mags[0].array[...], raw[0])
    np.testing.assert_array_equal(labels.mags[0].array[...], seg)
    single = open_zarr(path / "raw")
    assert single.name == "raw" and len(single.layers) == 1
    v2 = tmp_path / "xr.zarr"
    arr = zarr.create_array(str(v2), shape=(4, 6, 8), chunks=(2, 3, 4), dtype="uint16", zarr_format=2)
    arr[:] = np.arange(4 * 6 * 8).reshape(4, 6, 8)
    arr.attrs["_ARRAY_DIMENSIONS"] = ["x", "z", "y"]
    (layer,) = open_zarr(v2).layers
    assert layer.size == (4, 8, 6)
    np.testing.assert_array_equal(layer.mags[0].array[...], arr[:].transpose(1, 2, 0))


# -- remote ---------------------------------------------------------------------------------------
class _RangeHandler(SimpleHTTPRequestHandler):
    """Static files with single-range support (``bytes=a-b`` and ``bytes=-n``)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path.split("?", 1)[0])
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = Path(path).read_bytes()
        spec = self.headers.get("Range")
        if spec:
            first, last = spec.split("=", 1)[1].split("-")
            start = max(len(data) - int(last), 0) if first == "" else int(first)
            stop = len(data) if first == "" or last == "" else min(int(last) + 1, len(data))
            body = data[start:stop]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_RangeHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_remote_ome_zarr_and_sharded_reads(http_root):
    root, url = http_root
    image, _, labels, _ = write_ome(root / "remote.ome.zarr", "0.5")
    assert sniff(url + "/remote.ome.zarr")
    ds = open_zarr(url + "/remote.ome.zarr")
    assert [l.name for l in ds.layers] == ["cells-image", "nuclei"]
    np.testing.assert_array_equal(ds.layers[0].mags[0].array[:, 2:9, 10:40, 3:50], image[:, 2:9, 10:40, 3:50])
    np.testing.assert_array_equal(ds.layers[1].mags[0].array[...], labels)
    shutil.copytree(WK, root / "wk")
    assert not sniff(url + "/wk") and sniff(url + "/wk/color") and not sniff(url + "/nothing")
    za = ZarrArray(open_store(url + "/wk"), "segmentation/1")
    assert isinstance(za.store, HttpStore)
    arr = zarr_chunked(za, WK_DIMS)
    cut = CHECKSUMS["segmentation"]["1"]["cutouts"]["unaligned_13_200_7"]
    (ox, oy, oz), (sx, sy, sz) = cut["offset_xyz"], cut["size_xyz"]
    block = np.ascontiguousarray(arr[oz : oz + sz, oy : oy + sy, ox : ox + sx])
    assert hashlib.sha256(block.tobytes()).hexdigest() == cut["sha256_zyx_c_order"]
    # a plain group over HTTP needs consolidated metadata to list its arrays
    grp = zarr.open_group(str(root / "grp.zarr"), mode="w", zarr_format=3)
    grp.create_array("a", shape=(4, 5, 6), dtype="uint8")[:] = 3
    with pytest.raises(ValueError, match="cannot list"):
        open_zarr(url + "/grp.zarr")
    zarr.consolidate_metadata(str(root / "grp.zarr"))
    (layer,) = open_zarr(url + "/grp.zarr").layers
    assert layer.name == "a" and (layer.mags[0].array[...] == 3).all()
    # bioformats2raw: the image series "0", "1", ... are found without a listing
    b2r = zarr.open_group(str(root / "b2r.zarr"), mode="w", zarr_format=2)
    b2r.attrs["bioformats2raw.layout"] = 3
    for series in ("0", "1"):
        write_ome(root / "b2r.zarr" / series, "0.4")
    ds = open_zarr(url + "/b2r.zarr")
    assert [l.name for l in ds.layers] == ["cells-image", "nuclei", "cells-image-2", "nuclei-2"]
    np.testing.assert_array_equal(ds.layers[3].mags[1].array[...], labels[::2, ::2, ::2])


def test_shard_index_without_suffix_range_support(tmp_path):
    """A server that rejects ``Range: bytes=-N`` still works: the shard is read whole."""
    shutil.copytree(WK / "color", tmp_path / "color")
    with serve(tmp_path) as srv:
        za = ZarrArray(HttpStore(srv.url, retries=0), "color/1")
        arr = zarr_chunked(za, WK_DIMS)
        want = CHECKSUMS["color"]["1"]["cutouts"]["full"]["sha256_zyx_c_order"]
        assert hashlib.sha256(np.ascontiguousarray(arr[...]).tobytes()).hexdigest() == want

"""In-place chunk writes (formats/inplace.py): WKW, zarr3 sharded/unsharded, zarr v2, OME-Zarr, KNOSSOS.

Datasets are written by the reference libraries (webknossos in .venv-ref; wkw, zarr-python in-process),
modified with our writers, and read back with webknossos / libwkw / tensorstore / zarr-python and with a
fresh instance of our reader; touched and untouched voxels are compared with the expected volume.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from napari_knossos.formats import open_dataset
from napari_knossos.formats.cache import CHUNK_CACHE
from napari_knossos.formats.inplace import ReadOnlyDatasetError, chunk_writer
from napari_knossos.formats.knossos_writer import KnossosLayerSpec, write_knossos_dataset

from .http_server import serve
from .reference import run_reference

OFFSET_XYZ = (3, 5, 7)  # bounding box of the test layers, mag-1 voxels
SIZE_XYZ = (100, 90, 80)
GRID_ZYX = (128, 128, 128)  # mag-1 grid region holding the box (whole 64³ files / shards)


@pytest.fixture(autouse=True)
def _fresh_cache():
    CHUNK_CACHE.clear()
    yield
    CHUNK_CACHE.clear()


def _labels(shape_zyx, seed: int, dtype) -> np.ndarray:
    """Blocky segment ids (4³ blocks of ids 1..199), like a real segmentation."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 200, size=tuple(-(-s // 4) for s in shape_zyx))
    full = np.kron(coarse, np.ones((4, 4, 4), np.int64))
    return full[: shape_zyx[0], : shape_zyx[1], : shape_zyx[2]].astype(dtype)


def _grid_volume(dtype, seed=0, factor=(1, 1, 1)) -> np.ndarray:
    """The mag-local grid region (z, y, x) from voxel 0: labels inside the box, 0 outside."""
    fx, fy, fz = factor
    lo = [OFFSET_XYZ[2] // fz, OFFSET_XYZ[1] // fy, OFFSET_XYZ[0] // fx]
    hi = [
        -(-(OFFSET_XYZ[2] + SIZE_XYZ[2]) // fz),
        -(-(OFFSET_XYZ[1] + SIZE_XYZ[1]) // fy),
        -(-(OFFSET_XYZ[0] + SIZE_XYZ[0]) // fx),
    ]
    grid = np.zeros(tuple(-(-g // 64) * 64 for g in hi), dtype)
    grid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = _labels([h - l for h, l in zip(hi, lo)], seed, dtype)
    return grid


def _edits(grid: np.ndarray, extra: dict | None = None) -> dict:
    """Chunks to write (32³ grid indices): a partial edit, a whole new id, an erasure, an edge chunk."""
    chunks = {}
    c = grid[0:32, 0:32, 0:32].copy()
    c[10:20, 5:25, 8:30] = 1234  # partial: the rest keeps the dataset's voxels (and zeros outside the box)
    chunks[(0, 0, 0)] = c
    chunks[(1, 1, 1)] = np.full((32, 32, 32), 999, grid.dtype)
    chunks[(1, 0, 2)] = np.zeros((32, 32, 32), grid.dtype)  # erasure
    c = grid[64:96, 96:128, 96:128].copy()
    c[:, :, :3] = 7
    chunks[(2, 3, 3)] = c
    chunks.update(extra or {})
    return chunks


def _apply(grid: np.ndarray, chunks: dict, chunk=32) -> np.ndarray:
    hi = [max([(i[ax] + 1) * chunk for i in chunks] + [grid.shape[ax]]) for ax in range(3)]
    out = np.zeros(hi, grid.dtype)
    out[: grid.shape[0], : grid.shape[1], : grid.shape[2]] = grid
    for (z, y, x), c in chunks.items():
        out[z * chunk : (z + 1) * chunk, y * chunk : (y + 1) * chunk, x * chunk : (x + 1) * chunk] = c
    return out


def _props(layers: list[dict]) -> str:
    return json.dumps(
        {
            "id": {"name": "t", "team": ""},
            "scale": {"factor": [11.0, 11.0, 25.0], "unit": "nanometer"},
            "dataLayers": layers,
            "version": 1,
        },
        indent=2,
    )


def _layer_props(name: str, fmt: str, dtype, mags=((1, 1, 1),)) -> dict:
    return {
        "name": name,
        "category": "segmentation",
        "boundingBox": {"topLeft": list(OFFSET_XYZ), "width": SIZE_XYZ[0], "height": SIZE_XYZ[1], "depth": SIZE_XYZ[2]},
        "dataFormat": fmt,
        "mags": [
            {"mag": list(m), "path": f"./{name}/{m[0] if len(set(m)) == 1 else '-'.join(map(str, m))}"} for m in mags
        ],
        "largestSegmentId": 1234,
        "numChannels": 1,
        "elementClass": np.dtype(dtype).name,
    }


def _read_ours(root, layer_name, factor=(1, 1, 1)) -> np.ndarray:
    """The layer's bounding box at ``factor`` through a fresh reader (no cached state)."""
    CHUNK_CACHE.clear()
    return open_dataset(root).layer(layer_name).mag(factor).array[:, :, :]


def _box(arr_zyx: np.ndarray, factor=(1, 1, 1)) -> np.ndarray:
    fx, fy, fz = factor
    lo = [OFFSET_XYZ[2] // fz, OFFSET_XYZ[1] // fy, OFFSET_XYZ[0] // fx]
    hi = [
        -(-(OFFSET_XYZ[2] + SIZE_XYZ[2]) // fz),
        -(-(OFFSET_XYZ[1] + SIZE_XYZ[1]) // fy),
        -(-(OFFSET_XYZ[0] + SIZE_XYZ[0]) // fx),
    ]
    return arr_zyx[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]


# -- WKW (libwkw writes the files: RAW, LZ4, LZ4HC) ------------------------------------------------
def _wkw_stored_block(path: Path, morton: int) -> bytes:
    data = path.read_bytes()
    n = 8  # 2³ blocks per file
    ends = struct.unpack_from(f"<{n}Q", data, 16)
    start = struct.unpack_from("<Q", data, 8)[0] if morton == 0 else ends[morton - 1]
    return data[start : ends[morton]]


@pytest.mark.parametrize("block_type", [1, 2, 3], ids=["raw", "lz4", "lz4hc"])
def test_wkw_blocks_rewritten_in_place_read_back_by_libwkw(tmp_path, block_type):
    wkw = pytest.importorskip("wkw")
    dtype = np.uint32
    grid = _grid_volume(dtype)
    root = tmp_path / "ds"
    with wkw.Dataset.create(
        str(root / "seg" / "1"), wkw.Header(dtype, block_len=32, file_len=2, block_type=block_type)
    ) as ds:
        ds.write((0, 0, 0), np.asfortranarray(grid.transpose(2, 1, 0)))
    (root / "datasource-properties.json").write_text(_props([_layer_props("seg", "wkw", dtype)]))
    file0 = root / "seg" / "1" / "z0" / "y0" / "x0.wkw"
    untouched_before = _wkw_stored_block(file0, 6) if block_type != 1 else None  # block (z1, y1, x0)

    layer = open_dataset(root).layer("seg")
    arr = layer.mag((1, 1, 1)).array
    plane_before = arr[40, :, :]  # a thin read: goes through the chunk cache
    writer = chunk_writer(layer, (1, 1, 1))
    assert writer.chunk_zyx == (32, 32, 32) and writer.format == "wkw"
    assert np.array_equal(writer.current_chunk((1, 1, 1)), grid[32:64, 32:64, 32:64])
    assert not writer.current_chunk((4, 0, 1)).any()  # in a file that does not exist: zeros
    new_file_block = np.full((32, 32, 32), 4321, dtype)  # file z2/y0/x0.wkw does not exist yet
    chunks = _edits(grid, {(4, 0, 1): new_file_block})
    writer.write_chunks(chunks)
    expected = _apply(grid, chunks)

    # the already opened layer shows the new data (cache written through), untouched voxels unchanged
    plane_after = arr[40, :, :]
    oz, oy, ox = arr.origin_zyx
    assert np.array_equal(plane_after, expected[40 + oz, oy : oy + arr.shape[1], ox : ox + arr.shape[2]])
    assert not np.array_equal(plane_before, plane_after)

    with wkw.Dataset.open(str(root / "seg" / "1")) as ds:
        theirs = ds.read((0, 0, 0), expected.shape[::-1])[0].transpose(2, 1, 0)
    assert np.array_equal(theirs, expected)
    assert np.array_equal(_read_ours(root, "seg"), _box(expected))
    new_file = root / "seg" / "1" / "z2" / "y0" / "x0.wkw"
    assert new_file.exists() and new_file.read_bytes()[5] == block_type
    if block_type != 1:  # untouched compressed blocks keep their stored bytes
        assert _wkw_stored_block(file0, 6) == untouched_before
    assert not list(root.rglob("*.tmp"))


def test_wkw_write_refuses_bad_chunks_without_writing(tmp_path):
    wkw = pytest.importorskip("wkw")
    grid = _grid_volume(np.uint16)
    root = tmp_path / "ds"
    with wkw.Dataset.create(
        str(root / "seg" / "1"), wkw.Header(np.uint16, block_len=32, file_len=2, block_type=2)
    ) as ds:
        ds.write((0, 0, 0), np.asfortranarray(grid.transpose(2, 1, 0)))
    (root / "datasource-properties.json").write_text(_props([_layer_props("seg", "wkw", np.uint16)]))
    before = {p: p.read_bytes() for p in root.rglob("*.wkw")}
    writer = chunk_writer(open_dataset(root).layer("seg"), 1)
    with pytest.raises(ValueError, match=r"chunk \(0, 0, 0\): shape \(32, 32\)"):
        writer.write_chunks({(0, 0, 0): np.zeros((32, 32), np.uint16)})
    with pytest.raises(ValueError, match="do not fit uint16"):
        writer.write_chunks({(1, 1, 1): np.full((32, 32, 32), 70000, np.uint32)})
    with pytest.raises(ValueError, match="non-negative"):
        writer.write_chunks({(0, -1, 0): np.zeros((32, 32, 32), np.uint16)})
    assert {p: p.read_bytes() for p in root.rglob("*.wkw")} == before


# -- reference library: datasets written by webknossos, read back by webknossos --------------------
WK_MAKE = """
import sys, numpy as np, webknossos as wk
root, src = sys.argv[1], sys.argv[2]
ds = wk.Dataset(root, voxel_size=(11, 11, 25))
for name, fmt, dtype, shard in (("seg_wkw", "wkw", "uint32", None), ("seg_zarr3", "zarr3", "uint64", 64)):
    layer = ds.add_layer(name, "segmentation", dtype_per_channel=dtype, data_format=fmt, largest_segment_id=1234)
    for mag, tag in (((1, 1, 1), "1"), ((2, 2, 1), "2-2-1")):
        kw = {"chunk_shape": 32, "shard_shape": shard} if shard else {}
        m = layer.add_mag(mag, compress=True, **kw)
        data = np.load(f"{src}/{tag}.npy").astype(dtype)  # (z, y, x) from voxel 0 of the mag
        m.write(np.ascontiguousarray(data.transpose(2, 1, 0)), absolute_offset=(0, 0, 0),
                allow_resize=True, allow_unaligned=True)
    layer.bounding_box = wk.BoundingBox((3, 5, 7), (100, 90, 80))
print("{}")
"""

WK_READ = """
import sys, json, numpy as np, webknossos as wk
root, out = sys.argv[1], sys.argv[2]
ds = wk.Dataset.open(root)
shapes = {}
for layer in ds.layers.values():
    for mag, mv in layer.mags.items():
        bb = layer.bounding_box.align_with_mag(mag, ceil=True)
        data = mv.read(absolute_bounding_box=bb)[0].transpose(2, 1, 0)
        np.save(f"{out}/{layer.name}_{mag.to_layer_name()}.npy", data)
        shapes[f"{layer.name}_{mag.to_layer_name()}"] = list(data.shape)
print(json.dumps(shapes))
"""


@pytest.fixture(scope="module")
def wk_made(tmp_path_factory):
    """A dataset written by webknossos: seg_wkw (WKW) and seg_zarr3 (zarr3, 64³ shards of 32³ chunks),
    mags 1 and 2-2-1, the same labels in both; returns (root, {mag: grid volume})."""
    work = tmp_path_factory.mktemp("wk")
    grids = {(1, 1, 1): _grid_volume(np.uint64, seed=3), (2, 2, 1): _grid_volume(np.uint64, seed=4, factor=(2, 2, 1))}
    for mag, grid in grids.items():
        np.save(work / f"{'1' if mag == (1, 1, 1) else '2-2-1'}.npy", grid)
    run_reference(WK_MAKE, str(work / "ds"), str(work))
    return work / "ds", grids


def test_webknossos_dataset_edited_in_place_read_back_by_webknossos_and_tensorstore(wk_made, tmp_path):
    ts = pytest.importorskip("tensorstore")
    wkw = pytest.importorskip("wkw")
    src, grids = wk_made
    root = tmp_path / "ds"
    shutil.copytree(src, root)
    ds = open_dataset(root)
    expected = {}
    for name, dtype in (("seg_wkw", np.uint32), ("seg_zarr3", np.uint64)):
        for mag, grid in grids.items():
            writer = chunk_writer(ds.layer(name), mag)
            g = grid.astype(dtype)
            chunks = _edits(g) if mag == (1, 1, 1) else {(0, 1, 1): np.full((32, 32, 32), 55, dtype)}
            writer.write_chunks(chunks)
            expected[(name, mag)] = _apply(g, chunks)
    # shard index: the erased chunk (1, 0, 2) left the index of shard (0, 0, 1, 0) (c, x, y, z)
    from napari_knossos.formats.store import open_store
    from napari_knossos.formats.zarr_io import ZarrArray

    za = ZarrArray(open_store(root / "seg_zarr3"), "1")
    assert za.read_chunk((0, 2, 0, 1)) is None

    out = tmp_path / "wk_out"
    out.mkdir()
    shapes = run_reference(WK_READ, str(root), str(out))
    for (name, mag), exp in expected.items():
        tag = "1" if mag == (1, 1, 1) else "2-2-1"
        theirs = np.load(out / f"{name}_{tag}.npy")
        assert shapes[f"{name}_{tag}"] == list(theirs.shape)
        assert np.array_equal(theirs, _box(exp, mag)), (name, mag)
        assert np.array_equal(_read_ours(root, name, mag), _box(exp, mag)), (name, mag)
    # the whole grid (outside the box too) through libwkw and tensorstore
    exp = expected[("seg_wkw", (1, 1, 1))]
    with wkw.Dataset.open(str(root / "seg_wkw" / "1")) as d:
        assert np.array_equal(d.read((0, 0, 0), exp.shape[::-1])[0].transpose(2, 1, 0), exp)
    exp = expected[("seg_zarr3", (1, 1, 1))]
    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(root / "seg_zarr3" / "1")}}).result()
    z, y, x = exp.shape
    assert np.array_equal(t[0, :x, :y, :z].read().result().transpose(2, 1, 0), exp)


# -- zarr3 sharded: bytes of untouched chunks, index at the start, fresh shards ---------------------
def _zarr3_sharded(path: Path, data_czyx: np.ndarray, index_location="end", shard=64):
    import zarr

    arr = zarr.create_array(
        str(path), shape=data_czyx.shape[:1] + data_czyx.shape[:0:-1], chunks=(1, 32, 32, 32),
        shards=(1, shard, shard, shard), dtype=data_czyx.dtype, fill_value=0,
        dimension_names=["c", "x", "y", "z"], compressors=[{"name": "zstd", "configuration": {"level": 3}}],
    )  # fmt: skip
    arr[...] = data_czyx.transpose(0, 3, 2, 1)
    if index_location == "start":
        meta = json.loads((path / "zarr.json").read_text())
        meta["codecs"][0]["configuration"]["index_location"] = "start"
        (path / "zarr.json").write_text(json.dumps(meta))
        shutil.rmtree(path / "c")
        arr2 = zarr.open_array(str(path), mode="r+")
        arr2[...] = data_czyx.transpose(0, 3, 2, 1)


@pytest.mark.parametrize("index_location", ["end", "start"])
def test_zarr3_shards_rewritten_with_index_read_back_by_tensorstore(tmp_path, index_location):
    ts = pytest.importorskip("tensorstore")
    from napari_knossos.formats.store import open_store
    from napari_knossos.formats.zarr_io import ZarrArray

    grid = _grid_volume(np.uint64, seed=7)
    root = tmp_path / "ds"
    _zarr3_sharded(root / "seg" / "1", grid[None], index_location)
    (root / "datasource-properties.json").write_text(_props([_layer_props("seg", "zarr3", np.uint64)]))
    layer = open_dataset(root).layer("seg")
    arr = layer.mag(1).array
    plane_before = arr[40, :, :]
    writer = chunk_writer(layer, 1)
    assert writer.format == "zarr" and writer.chunk_zyx == (32, 32, 32)
    chunks = _edits(grid)
    chunks[(0, 0, 1)] = np.zeros((32, 32, 32), np.uint64)  # erase a chunk of shard (0, 0, 0)
    writer.write_chunks(chunks)
    expected = _apply(grid, chunks)

    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(root / "seg" / "1")}}).result()
    z, y, x = expected.shape
    assert np.array_equal(t[0, :x, :y, :z].read().result().transpose(2, 1, 0), expected)
    assert np.array_equal(_read_ours(root, "seg"), _box(expected))
    oz, oy, ox = arr.origin_zyx  # the open layer (shard index and chunks in the cache) shows the new data
    assert np.array_equal(arr[40, :, :], expected[40 + oz, oy : oy + arr.shape[1], ox : ox + arr.shape[2]])
    assert not np.array_equal(plane_before, arr[40, :, :])
    CHUNK_CACHE.clear()
    za = ZarrArray(open_store(root / "seg"), "1")
    assert za.read_chunk((0, 1, 0, 0)) is None  # the erased chunk (x1, y0, z0) left the shard index
    assert not list(root.rglob("*.tmp"))


def test_zarr3_untouched_chunk_bytes_survive_a_shard_rewrite(tmp_path):
    grid = _grid_volume(np.uint32, seed=8)
    root = tmp_path / "ds"
    _zarr3_sharded(root / "seg" / "1", grid[None])
    (root / "datasource-properties.json").write_text(_props([_layer_props("seg", "zarr3", np.uint32)]))
    shard = root / "seg" / "1" / "c" / "0" / "0" / "0" / "0"

    def stored(data: bytes, x, y, z) -> bytes:
        index = np.frombuffer(data[-(16 * 8 + 4) : -4], "<u8").reshape(1, 2, 2, 2, 2)
        off, nb = index[0, x, y, z]
        return data[off : off + nb]

    before = shard.read_bytes()
    writer = chunk_writer(open_dataset(root).layer("seg"), 1)
    writer.write_chunks({(1, 1, 1): np.full((32, 32, 32), 5, np.uint32)})
    after = shard.read_bytes()
    for x, y, z in [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0)]:
        assert stored(after, x, y, z) == stored(before, x, y, z)
    assert stored(after, 1, 1, 1) != stored(before, 1, 1, 1)


# -- zarr unsharded v3, v2 and OME-Zarr labels; pinned dimensions keep their other planes -------------
def test_zarr3_unsharded_and_zarr2_chunks_read_back_by_zarr_python_and_tensorstore(tmp_path):
    ts = pytest.importorskip("tensorstore")
    import zarr

    grid = _grid_volume(np.uint32, seed=9)
    results = {}
    for fmt, key_enc in ((3, {"name": "default", "separator": "/"}), (2, {"name": "v2", "separator": "."})):
        path = tmp_path / f"labels_v{fmt}.zarr"
        kw = {"compressors": [{"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5}}]}
        if fmt == 2:
            import numcodecs

            kw = {"compressors": numcodecs.Blosc(cname="lz4", clevel=5)}
        arr = zarr.create_array(
            str(path), shape=grid.shape, chunks=(32, 32, 32), dtype=grid.dtype, fill_value=0, zarr_format=fmt,
            chunk_key_encoding=key_enc, **kw,
        )  # fmt: skip
        arr[...] = grid
        layer = open_dataset(path).layers[0]
        chunks = _edits(grid)
        chunk_writer(layer, 1).write_chunks(chunks)
        expected = _apply(grid, chunks)
        assert np.array_equal(zarr.open_array(str(path), mode="r")[...], expected)
        driver = "zarr3" if fmt == 3 else "zarr"
        t = ts.open({"driver": driver, "kvstore": {"driver": "file", "path": str(path)}}).result()
        assert np.array_equal(t.read().result(), expected)
        assert np.array_equal(_read_ours(path, layer.name), expected)
        erased = "c/1/0/2" if fmt == 3 else "1.0.2"
        results[fmt] = (path / erased).exists()
    assert results == {3: False, 2: False}  # a chunk equal to the fill value is removed, as zarr-python does


def test_pinned_dimension_keeps_the_other_planes_of_a_chunk(tmp_path):
    ts = pytest.importorskip("tensorstore")
    import zarr

    rng = np.random.default_rng(1)
    data = rng.integers(1, 9, size=(2, 64, 64, 64)).astype(np.uint16)  # (t, z, y, x), chunks span both t
    path = tmp_path / "tzyx_labels.zarr"
    arr = zarr.create_array(
        str(path), shape=data.shape, chunks=(2, 32, 32, 32), dtype=np.uint16, fill_value=0,
        dimension_names=["t", "z", "y", "x"],
    )  # fmt: skip
    arr[...] = data
    layer = open_dataset(path).layers[0]
    assert layer.extra.get("pinned_axes") == {"t": 0}
    chunk_writer(layer, 1).write_chunks({(1, 0, 1): np.full((32, 32, 32), 3, np.uint16)})
    expected = data.copy()
    expected[0, 32:64, 0:32, 32:64] = 3
    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}).result()
    assert np.array_equal(t.read().result(), expected)


def test_ome_zarr_labels_written_in_place(tmp_path):
    import zarr

    grid = _grid_volume(np.uint32, seed=10)[:64, :64, :64]
    root = tmp_path / "image.ome.zarr"
    zarr.open_group(str(root), mode="w", zarr_format=2)
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    ms = lambda name: {
        "multiscales": [
            {"version": "0.4", "name": name, "axes": axes,
             "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [25.0, 11.0, 11.0]}]}]}
        ]
    }  # fmt: skip
    (root / ".zattrs").write_text(json.dumps(ms("image")))
    zarr.create_array(str(root / "0"), shape=grid.shape, chunks=(32, 32, 32), dtype=np.uint8, zarr_format=2)[...] = 1
    labels = root / "labels"
    zarr.open_group(str(labels), mode="w", zarr_format=2)
    (labels / ".zattrs").write_text(json.dumps({"labels": ["cells"]}))
    zarr.open_group(str(labels / "cells"), mode="w", zarr_format=2)
    (labels / "cells" / ".zattrs").write_text(json.dumps({**ms("cells"), "image-label": {"version": "0.4"}}))
    arr = zarr.create_array(
        str(labels / "cells" / "0"), shape=grid.shape, chunks=(32, 32, 32), dtype=np.uint32, zarr_format=2,
        fill_value=0, chunk_key_encoding={"name": "v2", "separator": "/"},
    )  # fmt: skip
    arr[...] = grid
    ds = open_dataset(root)
    assert ds.format == "ome-zarr"
    layer = ds.layer("cells")
    chunks = {(1, 0, 1): np.full((32, 32, 32), 77, np.uint32), (0, 0, 0): np.zeros((32, 32, 32), np.uint32)}
    chunk_writer(layer, 1).write_chunks(chunks)
    expected = _apply(grid, chunks)
    assert np.array_equal(zarr.open_array(str(labels / "cells" / "0"), mode="r")[...], expected)
    assert not (labels / "cells" / "0" / "0" / "0" / "0").exists()
    assert (labels / "cells" / "0" / "1" / "0" / "1").exists()


# -- KNOSSOS cubes ---------------------------------------------------------------------------------
def test_knossos_raw_png_and_seg_sz_zip_cubes_rewritten(tmp_path):
    import cramjam

    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, size=(64, 96, 96), dtype=np.uint8)
    seg = _labels((64, 96, 96), 11, np.uint64)
    seg2 = seg[::2, ::2, ::2].copy()
    toml = write_knossos_dataset(
        tmp_path / "kds", "edit", (10.0, 10.0, 25.0),
        [KnossosLayerSpec(".raw", [image, image[::2, ::2, ::2].copy()]),
         KnossosLayerSpec(".png", [image, image[::2, ::2, ::2].copy()]),
         KnossosLayerSpec(".seg.sz.zip", [seg, seg2])],
        cube_shape_xyz=32,
    )  # fmt: skip
    ds = open_dataset(toml)
    raw_layer, png_layer, seg_layer = ds.layer("edit (raw)"), ds.layer("edit (png)"), ds.layer("segmentation")
    seg_arr = seg_layer.mag((1, 1, 1)).array
    plane_before = seg_arr[33, :, :]

    new_img = np.full((32, 32, 32), 17, np.uint8)
    chunk_writer(raw_layer, (1, 1, 1)).write_chunks({(0, 1, 2): new_img})
    chunk_writer(png_layer, (1, 1, 1)).write_chunks({(0, 1, 2): new_img})
    big = 2**40 + 5
    seg_chunks = {(1, 0, 0): np.full((32, 32, 32), big, np.uint64), (0, 2, 1): np.zeros((32, 32, 32), np.uint64)}
    chunk_writer(seg_layer, (1, 1, 1)).write_chunks(seg_chunks)
    chunk_writer(seg_layer, (2, 2, 2)).write_chunks({(0, 0, 1): np.full((32, 32, 32), 8, np.uint64)})

    # cache written through: the open array shows the new ids
    assert (seg_arr[33, 0:32, 0:32] == big).all() and not np.array_equal(plane_before, seg_arr[33, :, :])
    exp_img = image.copy()
    exp_img[0:32, 32:64, 64:96] = 17
    exp_seg = _apply(seg, seg_chunks)[:64, :96, :96]
    exp_seg2 = seg2.copy()
    exp_seg2[0:32, 0:32, 32:48] = 8
    CHUNK_CACHE.clear()
    fresh = open_dataset(toml)
    assert np.array_equal(fresh.layer("edit (raw)").mag((1, 1, 1)).array[...], exp_img)
    assert np.array_equal(fresh.layer("edit (png)").mag((1, 1, 1)).array[...], exp_img)
    assert np.array_equal(fresh.layer("segmentation").mag((1, 1, 1)).array[...], exp_seg)
    assert np.array_equal(fresh.layer("segmentation").mag((2, 2, 2)).array[...], exp_seg2)
    # the cube file: a zip whose member <cube name>.seg.sz is a raw snappy stream of uint64, x fastest
    cube = tmp_path / "kds" / "mag1" / "x0000" / "y0000" / "z0001" / "edit_mag1_x0000_y0000_z0001.seg.sz.zip"
    with zipfile.ZipFile(cube) as zf:
        assert zf.namelist() == ["edit_mag1_x0000_y0000_z0001.seg.sz"]
        payload = bytes(cramjam.snappy.decompress_raw(zf.read(zf.namelist()[0])))
    assert np.array_equal(np.frombuffer(payload, "<u8"), np.full(32**3, big, np.uint64))
    assert (tmp_path / "kds" / "mag2" / "x0001" / "y0000" / "z0000" / "edit_mag2_x0001_y0000_z0000.seg.sz.zip").exists()


def test_knossos_lossy_cubes_and_remote_layers_refuse(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, size=(32, 32, 32), dtype=np.uint8)
    toml = write_knossos_dataset(tmp_path / "jpg", "lossy", (1, 1, 1), [KnossosLayerSpec(".jpg", [image])],
                                 cube_shape_xyz=32)  # fmt: skip
    with pytest.raises(ReadOnlyDatasetError, match=r"layer 'lossy' .*lossy \.jpg cubes.*annotation"):
        chunk_writer(open_dataset(toml).layer("lossy"), 1)

    grid = _grid_volume(np.uint32, seed=12)
    root = tmp_path / "remote_ds"
    _zarr3_sharded(root / "seg" / "1", grid[None])
    (root / "datasource-properties.json").write_text(_props([_layer_props("seg", "zarr3", np.uint32)]))
    with serve(root) as server:
        layer = open_dataset(server.url).layer("seg")
        with pytest.raises(ReadOnlyDatasetError) as err:
            chunk_writer(layer, 1)
    msg = str(err.value)
    assert "'seg'" in msg and server.url in msg and "HTTP" in msg and "annotation" in msg
    assert isinstance(err.value, PermissionError)


# -- a failure mid-write leaves the old file intact and says so --------------------------------------
FAILING_WRITE = """
import json, resource, signal, sys
import numpy as np
from napari_knossos.formats import open_dataset
from napari_knossos.formats.inplace import InPlaceWriteError, chunk_writer

root, layer_name, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
layer = open_dataset(root).layer(layer_name)
writer = chunk_writer(layer, 1)
rng = np.random.default_rng(0)
small = np.full((32, 32, 32), 3, layer.dtype)  # compresses to a few bytes
noisy = rng.integers(0, 2**31, size=(32, 32, 32)).astype(layer.dtype)  # does not compress
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    writer.write_chunks({(0, 0, 0): small, (2, 2, 2): noisy})
    print(json.dumps({"raised": False}))
except InPlaceWriteError as err:
    print(json.dumps({"raised": True, "message": str(err), "path": err.path,
                      "written": [list(i) for i in err.written], "unwritten": [list(i) for i in err.unwritten]}))
"""


def _run_failing_write(root: Path, layer_name: str, limit: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FAILING_WRITE), str(root), layer_name, str(limit)],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_failed_write_leaves_old_files_intact(tmp_path):
    wkw = pytest.importorskip("wkw")
    import zarr

    grid = _grid_volume(np.uint32, seed=13)
    # WKW: one file holds both chunks; the new file cannot grow past the limit
    root = tmp_path / "wkw_ds"
    with wkw.Dataset.create(
        str(root / "seg" / "1"), wkw.Header(np.uint32, block_len=32, file_len=4, block_type=3)
    ) as d:
        d.write((0, 0, 0), np.asfortranarray(grid.transpose(2, 1, 0)))
    (root / "datasource-properties.json").write_text(_props([_layer_props("seg", "wkw", np.uint32)]))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    result = _run_failing_write(root, "seg", max(len(b) for b in before.values()) // 2)
    assert result["raised"] and "unchanged" in result["message"] and result["path"].endswith("x0.wkw")
    assert result["written"] == [] and sorted(result["unwritten"]) == [[0, 0, 0], [2, 2, 2]]
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # no temp file left either

    # unsharded zarr: the small chunk's file is saved, the big one fails and its old file stays
    path = tmp_path / "labels.zarr"
    arr = zarr.create_array(str(path), shape=grid.shape, chunks=(32, 32, 32), dtype=np.uint32, fill_value=0)
    arr[...] = grid
    old_big = (path / "c" / "2" / "2" / "2").read_bytes()
    result = _run_failing_write(path, open_dataset(path).layers[0].name, 64 * 1024)
    assert result["raised"] and "unchanged" in result["message"] and "not saved: 1 chunk" in result["message"]
    assert result["written"] == [[0, 0, 0]] and result["unwritten"] == [[2, 2, 2]]
    assert (path / "c" / "2" / "2" / "2").read_bytes() == old_big
    assert (zarr.open_array(str(path), mode="r")[0:32, 0:32, 0:32] == 3).all()
    assert not [p for p in path.rglob("*") if p.name.endswith(".tmp")]


def test_fill_check_agrees_with_equality_for_every_dtype():
    """The zero-fill shortcut (one ``any()`` pass) decides as ``(chunk == fill).all()`` does."""
    from napari_knossos.formats.inplace import _is_fill

    for dtype in (np.bool_, np.uint8, np.int16, np.uint64, np.float32):
        for values in ([0, 0], [0, 1], [1, 1]):
            chunk = np.array(values, dtype)
            assert _is_fill(chunk, 0) == bool((chunk == 0).all())
    assert _is_fill(np.array([-0.0, 0.0]), 0) and not _is_fill(np.array([0.0, np.nan]), 0)
    assert _is_fill(np.array([np.nan, np.nan]), np.nan) and _is_fill(np.array([7, 7], np.uint8), 7)

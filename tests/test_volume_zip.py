"""webKnossos volume-annotation zips (formats/volume_zip.py): both variants, both directions with the
reference library (webknossos in .venv-ref), the server's "F" transpose, fallback and empty volumes."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from napari_knossos.formats.volume_zip import (
    VolumeLayerData,
    array_from_buckets,
    buckets_from_array,
    read_volume_zip,
    write_volume_zip,
)

from .reference import run_reference

OFFSET_XYZ = (3, 5, 7)
SIZE_XYZ = (100, 90, 80)
MAGS = {(1, 1, 1): "1", (2, 2, 1): "2-2-1"}
NML = b"""<?xml version="1.0" encoding="utf-8"?>
<things>
  <parameters>
    <experiment name="ds" />
    <scale unit="nanometer" x="11.0" y="11.0" z="25.0" />
    <time ms="1700000000000" />
  </parameters>
  <thing id="1" name="tree1">
    <nodes>
      <node id="1" radius="1.0" x="10" y="20" z="30" />
    </nodes>
    <edges />
  </thing>
  <branchpoints />
  <comments />
  <groups />
</things>
"""


def _grid(factor, seed: int, dtype) -> np.ndarray:
    """Mag-local volume (z, y, x) from voxel 0 with blocky ids inside the bounding box, 0 outside."""
    fx, fy, fz = factor
    lo = [OFFSET_XYZ[2] // fz, OFFSET_XYZ[1] // fy, OFFSET_XYZ[0] // fx]
    hi = [-(-(o + s) // f) for o, s, f in zip(OFFSET_XYZ[::-1], SIZE_XYZ[::-1], (fz, fy, fx))]
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 300, size=tuple(-(-(h - l) // 8) for h, l in zip(hi, lo)))
    labels = np.kron(coarse, np.ones((8, 8, 8), np.int64))[: hi[0] - lo[0], : hi[1] - lo[1], : hi[2] - lo[2]]
    labels[labels % 5 == 0] = 0  # some background
    grid = np.zeros(tuple(-(-h // 32) * 32 for h in hi), dtype)
    grid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = labels
    return grid


def _assembled(volume: VolumeLayerData, mag, shape) -> np.ndarray:
    return array_from_buckets(volume.buckets[mag], (0, 0, 0), shape, volume.dtype)


# -- written by webknossos, read by us -----------------------------------------------------------
WK_WRITE = """
import io, sys, json, zipfile, tempfile, numpy as np, webknossos as wk
from zipp import Path as ZipPath
from webknossos.annotation.volume_layer import VolumeLayer
from webknossos.dataset_properties import DataFormat
out, src, dtype, fmt = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
mags = (((1, 1, 1), "1"), ((2, 2, 1), "2-2-1"))
ann = wk.Annotation(name="wk_ann", dataset_name="ds", voxel_size=(11, 11, 25))
if fmt == "zarr3":
    vl = ann.add_volume_layer("Edits", dtype=dtype, fallback_layer="segmentation")
    with vl.edit() as layer:
        for mag, tag in mags:
            data = np.load(f"{src}/{tag}.npy").astype(dtype)
            layer.add_mag(mag, chunk_shape=32, shard_shape=32).write(
                np.ascontiguousarray(data.transpose(2, 1, 0)), absolute_offset=(0, 0, 0),
                allow_resize=True, allow_unaligned=True)
        layer.bounding_box = wk.BoundingBox((3, 5, 7), (100, 90, 80))
    vl.largest_segment_id = 299
else:  # WKW: one 32^3 bucket per file, as the server writes; webknossos builds no such zip itself
    with tempfile.TemporaryDirectory() as d:
        ds = wk.Dataset(d, voxel_size=(11, 11, 25))
        layer = ds.add_layer("v", "segmentation", dtype_per_channel=dtype, data_format="wkw", largest_segment_id=299)
        for mag, tag in mags:
            data = np.load(f"{src}/{tag}.npy").astype(dtype)
            layer.add_mag(mag, chunk_shape=32, shard_shape=32, compress=True).write(
                np.ascontiguousarray(data.transpose(2, 1, 0)), absolute_offset=(0, 0, 0),
                allow_resize=True, allow_unaligned=True)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for tag in ("1", "2-2-1"):
                for f in sorted((ds.path / "v" / tag).rglob("*.wkw")):
                    zf.write(f, f.relative_to(ds.path / "v").as_posix())
    container = io.BytesIO()
    with zipfile.ZipFile(container, "w") as zf:
        zf.writestr("data.zip", buf.getvalue())
    ann._volume_layers.append(VolumeLayer(
        id=0, name="Edits", fallback_layer_name="segmentation", data_format=DataFormat.WKW,
        zip=ZipPath(zipfile.ZipFile(container), "data.zip"), segments={}, largest_segment_id=299,
        voxel_size=(11, 11, 25), dtype=dtype))
ann.save(out)
print("{}")
"""

WK_READ = """
import sys, json, tempfile, numpy as np, webknossos as wk
from pathlib import Path
out, paths = sys.argv[1], sys.argv[2:]
result = {}
for p in paths:
    ann = wk.Annotation.load(p)
    entries = []
    for v in ann._volume_layers:
        entry = {"id": v.id, "name": v.name, "fallback": v.fallback_layer_name, "format": str(v.data_format.value),
                 "largest": v.largest_segment_id, "has_zip": v.zip is not None, "mags": {}}
        if v.zip is not None:
            with tempfile.TemporaryDirectory() as d:
                ds = wk.Dataset(d + "/x", voxel_size=(11, 11, 25))
                layer = ann.export_volume_layer_to_dataset(ds, volume_layer_id=v.id)
                bb = layer.bounding_box
                entry["bbox"] = [list(bb.topleft), list(bb.size)]
                entry["dtype"] = str(layer.dtype_per_channel)
                for mag, mv in layer.mags.items():
                    abb = bb.align_with_mag(mag, ceil=True)
                    data = mv.read(absolute_bounding_box=abb)[0].transpose(2, 1, 0)
                    name = f"{Path(p).stem}_{v.id}_{mag.to_layer_name()}"
                    np.save(f"{out}/{name}.npy", data)
                    entry["mags"][mag.to_layer_name()] = [name, list(abb.in_mag(mag).topleft)[::-1]]
        entries.append(entry)
    result[Path(p).name] = entries
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    src = tmp_path_factory.mktemp("grids")
    out = {}
    for mag, tag in MAGS.items():
        out[mag] = _grid(mag, seed=sum(mag), dtype=np.uint32)
        np.save(src / f"{tag}.npy", out[mag])
    return src, out


@pytest.mark.parametrize("fmt", ["zarr3", "wkw"])
def test_webknossos_volume_zip_read_identically(tmp_path, grids, fmt):
    src, expected = grids
    path = tmp_path / f"wk_{fmt}.zip"
    run_reference(WK_WRITE, str(path), str(src), "uint32", fmt)
    ann = read_volume_zip(path)
    assert ann.nml_name == "wk_ann.nml" and b"<things>" in ann.nml
    vol = ann.volume()
    assert (vol.id, vol.name, vol.fallback_layer, vol.format, vol.dtype) == (0, "Edits", "segmentation", fmt, np.uint32)
    assert vol.mags == [(1, 1, 1), (2, 2, 1)]
    if fmt == "zarr3":
        assert (vol.bbox_offset, vol.bbox_size) == (OFFSET_XYZ, SIZE_XYZ)
        assert vol.largest_segment_id == 299
    else:
        assert vol.bbox_offset is None  # WKW volume zips carry no bounding box: take the dataset's
    for mag, grid in expected.items():
        assert np.array_equal(_assembled(vol, mag, grid.shape), grid), mag
        for key, bucket in vol.buckets[mag].items():
            assert bucket.shape == (32, 32, 32) and bucket.dtype == np.uint32
            z, y, x = (k * 32 for k in key)
            assert np.array_equal(bucket, grid[z : z + 32, y : y + 32, x : x + 32])
    # the same bytes given instead of a path
    again = read_volume_zip(path.read_bytes()).volume()
    assert sorted(again.buckets[(1, 1, 1)]) == sorted(vol.buckets[(1, 1, 1)])


# -- written by us, read by webknossos -----------------------------------------------------------
def _volume(grids, dtype, **kw) -> VolumeLayerData:
    buckets = {mag: buckets_from_array(g.astype(dtype)) for mag, g in grids.items()}
    return VolumeLayerData(
        dtype=dtype, buckets=buckets, bbox_offset=OFFSET_XYZ, bbox_size=SIZE_XYZ, voxel_size=(11.0, 11.0, 25.0), **kw
    )


def test_our_volume_zips_read_by_webknossos(tmp_path, grids):
    _, expected = grids
    big = 2**40  # uint64 ids beyond 32 bits
    ids64 = {mag: np.where(g > 0, g.astype(np.uint64) + big, 0) for mag, g in expected.items()}
    paths = []
    for fmt in ("zarr3", "wkw"):
        vol = _volume(ids64, np.uint64, id=0, name="Edits", fallback_layer="segmentation", largest_segment_id=big + 299)
        other = _volume({(1, 1, 1): expected[(1, 1, 1)]}, np.uint32, id=1, name="Second")
        empty = VolumeLayerData(dtype=np.uint32, id=2, name="Empty", buckets={(1, 1, 1): {}})
        paths.append(write_volume_zip(NML, [vol, other, empty], tmp_path / f"ours_{fmt}.zip", fmt=fmt))
    out = tmp_path / "wk_out"
    out.mkdir()
    result = run_reference(WK_READ, str(out), *map(str, paths))
    for fmt, path in zip(("zarr3", "wkw"), paths):
        entries = {e["id"]: e for e in result[path.name]}
        assert [entries[i]["name"] for i in (0, 1, 2)] == ["Edits", "Second", "Empty"]
        assert entries[0]["fallback"] == "segmentation" and entries[1]["fallback"] is None
        assert entries[0]["format"] == fmt and entries[0]["largest"] == big + 299
        assert entries[2]["has_zip"] is False  # no data zip for a volume without buckets
        assert entries[0]["dtype"] == "uint64" and entries[1]["dtype"] == "uint32"
        if fmt == "zarr3":
            assert entries[0]["bbox"] == [list(OFFSET_XYZ), list(SIZE_XYZ)]
        for vid, grids_of in ((0, ids64), (1, {(1, 1, 1): expected[(1, 1, 1)]})):
            for mag, grid in grids_of.items():
                name, start_zyx = entries[vid]["mags"][MAGS[mag]]
                theirs = np.load(out / f"{name}.npy")
                z, y, x = start_zyx
                sz, sy, sx = theirs.shape
                assert np.array_equal(theirs, grid[z : z + sz, y : y + sy, x : x + sx]), (fmt, vid, mag)
        # and by us, identically
        ours = read_volume_zip(path)
        assert [v.name for v in ours.volumes] == ["Edits", "Second", "Empty"]
        assert ours.volume("Empty").location is None and ours.volume("Empty").buckets == {}
        for mag, grid in ids64.items():
            assert np.array_equal(_assembled(ours.volume(0), mag, grid.shape), grid)


def test_zarr3_layout_matches_the_server(tmp_path, grids):
    _, expected = grids
    path = write_volume_zip(NML, [_volume(expected, np.uint32, largest_segment_id=299)], tmp_path / "a.zip")
    with zipfile.ZipFile(path) as outer:
        assert outer.namelist() == ["a.nml", "data_0_Volume.zip"]
        nml = outer.read("a.nml").decode()
        data = zipfile.ZipFile(io.BytesIO(outer.read("data_0_Volume.zip")))
    assert '<volume id="0" location="data_0_Volume.zip" name="Volume" format="zarr3" largestSegmentId="299" />' in nml
    assert nml.index("<volume") > nml.index("<groups />") and nml.rstrip().endswith("</things>")
    props = json.loads(data.read("datasource-properties.json"))
    layer = props["dataLayers"][0]
    assert layer["name"] == "volumeAnnotationData" and layer["dataFormat"] == "zarr3"
    assert layer["boundingBox"] == {"topLeft": [3, 5, 7], "width": 100, "height": 90, "depth": 80}
    assert [m["mag"] for m in layer["mags"]] == [[1, 1, 1], [2, 2, 1]]
    meta = json.loads(data.read("volumeAnnotationData/2-2-1/zarr.json"))
    assert meta["dimension_names"] == ["c", "x", "y", "z"] and meta["shape"] == [1, 64, 64, 96]
    assert meta["chunk_key_encoding"] == {"configuration": {"separator": "."}, "name": "default"}
    assert [c["name"] for c in meta["codecs"]] == ["transpose", "bytes", "blosc"]
    assert meta["codecs"][2]["configuration"] == {
        "blocksize": 0, "clevel": 5, "cname": "lz4", "shuffle": "shuffle", "typesize": 1,
    }  # fmt: skip
    chunks = [n for n in data.namelist() if "/1/c." in n]
    assert chunks and all(n.startswith("volumeAnnotationData/1/c.0.") for n in chunks)
    n_nonzero = sum(1 for b in buckets_from_array(expected[(1, 1, 1)]).values() if b.any())
    assert len(chunks) == n_nonzero  # all-zero buckets are not stored without a fallback layer


def test_server_F_transpose_string_is_read(tmp_path, grids):
    _, expected = grids
    path = write_volume_zip(NML, [_volume(expected, np.uint32)], tmp_path / "ours.zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as outer, zipfile.ZipFile(buf, "w") as rewritten:
        data = zipfile.ZipFile(io.BytesIO(outer.read("data_0_Volume.zip")))
        for name in data.namelist():
            content = data.read(name)
            if name.endswith("zarr.json"):
                meta = json.loads(content)
                meta["codecs"][0]["configuration"]["order"] = "F"  # as the server writes it
                content = json.dumps(meta).encode()
            rewritten.writestr(name, content)
        nml = outer.read("ours.nml")
    server_zip = io.BytesIO()
    with zipfile.ZipFile(server_zip, "w") as zf:
        zf.writestr("server.nml", nml)
        zf.writestr("data_0_Volume.zip", buf.getvalue())
    vol = read_volume_zip(server_zip.getvalue()).volume()
    for mag, grid in expected.items():
        assert np.array_equal(_assembled(vol, mag, grid.shape), grid)


def test_zero_buckets_kept_only_with_a_fallback_layer(tmp_path):
    ones = np.ones((32, 32, 32), np.uint32)
    zeros = np.zeros((32, 32, 32), np.uint32)
    buckets = {(1, 1, 1): {(0, 0, 0): ones, (0, 0, 1): zeros}}
    for fallback, fmt in ((None, "zarr3"), ("segmentation", "zarr3"), (None, "wkw"), ("segmentation", "wkw")):
        path = write_volume_zip(
            NML, [VolumeLayerData(np.uint32, dict(buckets), fallback_layer=fallback)], tmp_path / "z.zip", fmt=fmt
        )
        vol = read_volume_zip(path).volume()
        want = [(0, 0, 0), (0, 0, 1)] if fallback else [(0, 0, 0)]
        assert sorted(vol.buckets[(1, 1, 1)]) == want, (fallback, fmt)
        if fallback:  # a stored zero is an erasure over the fallback segmentation
            assert not vol.buckets[(1, 1, 1)][(0, 0, 1)].any()
    only_zero = VolumeLayerData(np.uint32, {(1, 1, 1): {(0, 0, 0): zeros}})
    path = write_volume_zip(NML, [only_zero], tmp_path / "e.zip", fmt="wkw")
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["e.nml"]
        assert 'location="' not in zf.read("e.nml").decode()


def test_nml_volume_elements_updated_inserted_and_orphans_lose_location(tmp_path):
    nml = NML.replace(
        b"  <groups />\n",
        b'  <groups />\n  <volume id="0" location="old.zip" name="Old" format="wkw" color="keep">\n'
        b'    <segments>\n      <segment id="5" name="a &amp; b" />\n    </segments>\n  </volume>\n'
        b'  <volume id="7" location="gone.zip" name="Orphan" />\n',
    )
    vol0 = VolumeLayerData(np.uint16, {(1, 1, 1): {(0, 0, 0): np.full((32, 32, 32), 4, np.uint16)}}, id=0, name="New")
    vol1 = VolumeLayerData(np.uint8, {(2, 2, 2): {(1, 0, 0): np.full((32, 32, 32), 9, np.uint8)}}, id=1, name="B c")
    path = write_volume_zip(nml, [vol0, vol1], tmp_path / "n.zip", fmt="wkw")
    ann = read_volume_zip(path)
    text = ann.nml.decode()
    assert '<volume id="0" location="data_0_New.zip" name="New" format="wkw" color="keep">' in text
    assert '<segment id="5" name="a &amp; b" />' in text  # children kept verbatim
    assert '<volume id="7" name="Orphan" />' in text
    assert '<volume id="1" location="data_1_B_c.zip" name="B c" format="wkw" />' in text
    assert [(v.id, v.name, v.dtype) for v in ann.volumes] == [
        (0, "New", np.uint16),
        (7, "Orphan", np.uint64),
        (1, "B c", np.uint8),
    ]
    assert ann.volume(1).mags == [(2, 2, 2)]
    assert (ann.volume(1).buckets[(2, 2, 2)][(1, 0, 0)] == 9).all()
    assert ann.volume("Orphan").buckets == {}


def test_bad_input_names_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.zip: not a zip archive"):
        read_volume_zip(bad)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.nml", NML.replace(b"<groups />", b'<groups /><volume id="0" location="d.zip" format="n5" />'))
        zf.writestr("d.zip", b"")
    with pytest.raises(ValueError, match="format 'n5' is not supported"):
        read_volume_zip(buf.getvalue())
    with pytest.raises(ValueError, match="bucket .*shape"):
        write_volume_zip(NML, [VolumeLayerData(np.uint32, {(1, 1, 1): {(0, 0, 0): np.zeros((4, 4, 4))}})], bad)
    with pytest.raises(ValueError, match="not a segmentation type"):
        write_volume_zip(NML, [VolumeLayerData(np.float32, {})], bad)
    with pytest.raises(ValueError, match="unique"):
        write_volume_zip(NML, [VolumeLayerData(np.uint8, {}), VolumeLayerData(np.uint8, {})], bad)
    assert bad.read_bytes() == b"not a zip"  # nothing replaced the file


def test_buckets_helpers_round_trip():
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 3, size=(40, 70, 33)).astype(np.uint32)
    buckets = buckets_from_array(vol, origin_zyx=(5, 30, 64))
    assert all(b.shape == (32, 32, 32) for b in buckets.values())
    assert min(buckets) == (0, 0, 2)
    back = array_from_buckets(buckets, (5, 30, 64), (45, 100, 97), np.uint32)
    assert np.array_equal(back, vol)

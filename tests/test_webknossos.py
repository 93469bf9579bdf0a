"""webKnossos datasets (datasource-properties.json): fixtures, reference interop, variants, errors."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_knossos.formats import open_dataset
from napari_knossos.formats import sniff as sniff_any
from napari_knossos.formats.cache import CHUNK_CACHE
from napari_knossos.formats.webknossos import open_webknossos, sniff

from .http_server import serve
from .reference import run_reference

DATA = Path(__file__).parent / "data" / "webknossos"
CHECKSUMS = json.loads((DATA / "checksums.json").read_text())


def _sha(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _cut(arr, offset_xyz, size_xyz):
    (x0, y0, z0), (sx, sy, sz) = offset_xyz, size_xyz
    return arr[z0 : z0 + sz, y0 : y0 + sy, x0 : x0 + sx]


def _assert_matches_checksums(ds, sums: dict) -> int:
    checked = 0
    for lname, mags in sums.items():
        layer = ds.layer(lname)
        for mname, entry in mags.items():
            arr = layer.mag(mname).array
            assert arr.shape[:3] == tuple(entry["mag_shape_xyz"][::-1]), (lname, mname)
            for cname, cut in entry["cutouts"].items():
                got = _cut(arr, cut["offset_xyz"], cut["size_xyz"])
                key = "sha256_zyx_c_order" if cut["num_channels"] == 1 else "sha256_zyxc_c_order"
                assert _sha(got) == cut[key], (lname, mname, cname)
                checked += 1
    return checked


@pytest.fixture(autouse=True)
def _fresh_cache():
    CHUNK_CACHE.clear()
    yield
    CHUNK_CACHE.clear()


@pytest.fixture
def wkw_copy(tmp_path) -> Path:
    dst = tmp_path / "wkw_dataset"
    shutil.copytree(DATA / "wkw_dataset", dst)
    return dst


def _edit(root: Path, fn) -> Path:
    path = root / "datasource-properties.json"
    props = json.loads(path.read_text())
    fn(props)
    path.write_text(json.dumps(props, indent=2))
    return path


# -- reference fixtures ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["wkw_dataset", "zarr3_dataset"])
def test_fixture_datasets_match_reference_checksums(name):
    ds = open_dataset(DATA / name)
    assert ds.format == "webknossos" and ds.name == name
    assert [l.name for l in ds.layers] == ["color", "segmentation", "color_rgb"]
    color, seg, rgb = ds.layers
    assert color.voxel_size == pytest.approx((11.24, 11.24, 28.0))
    assert [m.factor for m in color.mags] == [(1, 1, 1), (2, 2, 1), (4, 4, 2)]
    assert color.format == ("wkw" if name == "wkw_dataset" else "zarr3")
    assert seg.is_segmentation and seg.largest_segment_id == 100510 and seg.dtype == np.uint32
    assert (rgb.dtype, rgb.num_channels, rgb.rgb, rgb.size) == (np.uint8, 3, True, (64, 64, 32))
    assert rgb.mags[0].array.shape == (32, 64, 64, 3)
    assert _assert_matches_checksums(ds, CHECKSUMS[name]) == 15


def test_open_via_properties_file_path():
    ds = open_dataset(DATA / "wkw_dataset" / "datasource-properties.json")
    assert ds.name == "wkw_dataset" and len(ds.layers) == 3


# -- it writes, we read ------------------------------------------------------------------------
REFERENCE_WRITER = r"""
import hashlib, json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import webknossos as wk
from webknossos import Mag
from cluster_tools import SequentialExecutor

root = sys.argv[1]
TL = (37, 50, 9)
SIZE = (100, 70, 45)
x, y, z = np.meshgrid(*[np.arange(s, dtype=np.int64) for s in SIZE], indexing="ij")
VOLUMES = {
    "gray16": ("color", dict(dtype="uint16"), ((x * 7 + y * 131 + z * 1031) % 65521).astype(np.uint16)),
    "float": ("color", dict(dtype="float32"), (np.sin(x / 7.0) * 100 + y * 0.5 - z * 1.25).astype(np.float32)),
    "rgb": ("color", dict(dtype_per_channel="uint8", num_channels=3),
            np.stack([(4 * x) & 0xFF, (3 * y + 1) & 0xFF, (5 * z + 2) & 0xFF]).astype(np.uint8)),
    "seg": ("segmentation", dict(dtype="uint32", largest_segment_id=200000),
            (1 + x // 16 + 8 * (y // 16) + 64 * (z // 8) + 100000 * ((x // 32) % 2)).astype(np.uint32)),
}

def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

out = {}
with SequentialExecutor() as ex:
    for fmt in ("wkw", "zarr3"):
        ds = wk.Dataset(f"{root}/{fmt}", voxel_size=(11.2, 11.2, 25.0))
        for name, (category, kw, data) in VOLUMES.items():
            layer = ds.add_layer(name, category, data_format=fmt, **kw)
            raw = name == "rgb"
            if fmt == "wkw":  # RAW 16³ blocks x 2³ for rgb, LZ4 32³ x 4³ otherwise
                m1 = layer.add_mag(1, chunk_shape=16 if raw else 32, chunks_per_shard=2 if raw else 4, compress=not raw)
            else:
                m1 = layer.add_mag(1, chunk_shape=32, shard_shape=64, compress=True)
            m1.write(data, absolute_offset=TL, allow_resize=True)
            layer.downsample_mag(Mag(1), Mag((2, 2, 1)), executor=ex, compress=not raw, chunk_shape=32, shard_shape=128)
        res = {}
        for lname, layer in wk.Dataset.open(f"{root}/{fmt}").layers.items():
            res[lname] = {}
            for mag, mv in layer.mags.items():
                a = mv.read()  # (c, x, y, z) of the mag's bounding box
                bb = mv.bounding_box.in_mag(mag)
                res[lname][mag.to_layer_name()] = {
                    "topleft_xyz": list(bb.topleft), "size_xyz": list(bb.size),
                    "sha_zyxc": sha(a.transpose(3, 2, 1, 0)),
                    "voxel_3_5_7": [float(v) for v in a[:, 3, 5, 7]],
                }
        out[fmt] = res
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def reference_written(tmp_path_factory):
    root = tmp_path_factory.mktemp("wk_written")
    return root, run_reference(REFERENCE_WRITER, str(root))


@pytest.mark.parametrize("fmt", ["wkw", "zarr3"])
def test_reference_written_dataset_reads_identically(reference_written, fmt):
    root, ref = reference_written
    ds = open_webknossos(root / fmt)
    assert {l.name for l in ds.layers} == {"gray16", "float", "rgb", "seg"}
    expected_types = {"gray16": (np.uint16, 1), "float": (np.float32, 1), "rgb": (np.uint8, 3), "seg": (np.uint32, 1)}
    for lname, mags in ref[fmt].items():
        layer = ds.layer(lname)
        assert (layer.dtype, layer.num_channels) == expected_types[lname]
        assert layer.offset == (37, 50, 9) and layer.size == (100, 70, 45)
        assert layer.voxel_size == pytest.approx((11.2, 11.2, 25.0))
        assert sorted(m.name for m in layer.mags) == sorted(mags)
        for mname, entry in mags.items():
            arr = layer.mag(mname).array
            assert arr.shape[:3] == tuple(entry["size_xyz"][::-1]), (lname, mname)
            full = np.asarray(arr)
            zyxc = full if full.ndim == 4 else full[..., None]
            assert _sha(zyxc) == entry["sha_zyxc"], (fmt, lname, mname)
            np.testing.assert_array_equal(zyxc[7, 5, 3], np.asarray(entry["voxel_3_5_7"], dtype=full.dtype))
    assert ds.layer("seg").largest_segment_id == 200000
    assert ds.layer("rgb").rgb


# -- variants of the properties file ------------------------------------------------------------
def test_legacy_wkw_resolutions_list_scale_uint24_bigint(wkw_copy):
    def legacy(props):
        props["scale"] = [11.24, 11.24, 28.0]
        props.pop("version")
        for layer in props["dataLayers"]:
            mags = layer.pop("mags")
            layer.pop("dataFormat")
            forms = [1, [2, 2, 1], [4, 4, 2]]
            layer["wkwResolutions"] = [
                {"resolution": forms[[1, 2, 4].index(m["mag"][0])], "cubeLength": m["cubeLength"]} for m in mags
            ]
        rgb = props["dataLayers"][2]
        rgb.pop("numChannels")
        assert rgb["elementClass"] == "uint24"
        props["dataLayers"][1]["largestSegmentId"] = {"customJsonEncoding": "bigint", "value": str(2**60 + 7)}

    _edit(wkw_copy, legacy)
    ds = open_webknossos(wkw_copy)
    assert ds.layer("color").voxel_size == pytest.approx((11.24, 11.24, 28.0))
    assert ds.layer("segmentation").largest_segment_id == 2**60 + 7
    rgb = ds.layer("color_rgb")
    assert (rgb.dtype, rgb.num_channels, rgb.rgb) == (np.uint8, 3, True)
    assert _assert_matches_checksums(ds, CHECKSUMS["wkw_dataset"]) == 15


def test_mag_forms_and_path_resolution(wkw_copy):
    def variants(props):
        color = props["dataLayers"][0]["mags"]
        color[0]["path"] = "color/1"  # plain relative path
        color[1].pop("path")  # absent: <layer>/<mag name>
        color[1]["mag"] = "2-2-1"
        color[2]["path"] = "4-4-2"  # relative to the layer folder (server fallback)
        seg = props["dataLayers"][1]["mags"]
        seg[0]["mag"] = 1
        seg[0].pop("path")
        seg[1]["path"] = str(wkw_copy / "segmentation" / "2-2-1")  # absolute local path

    _edit(wkw_copy, variants)
    ds = open_webknossos(wkw_copy)
    assert [m.factor for m in ds.layer("color").mags] == [(1, 1, 1), (2, 2, 1), (4, 4, 2)]
    assert _assert_matches_checksums(ds, CHECKSUMS["wkw_dataset"]) == 15


def test_scale_units(wkw_copy):
    for unit, factor, want in [
        ("micrometer", [0.5, 0.5, 2], (500, 500, 2000)),
        ("µm", [0.5, 0.5, 2], (500, 500, 2000)),
        ("angstrom", [10, 10, 20], (1, 1, 2)),
        ("nanometer", [4, 4, 40], (4, 4, 40)),
        (None, [4, 4, 40], (4, 4, 40)),
    ]:
        scale = {"factor": factor} if unit is None else {"factor": factor, "unit": unit}
        _edit(wkw_copy, lambda p: p.__setitem__("scale", scale))
        ds = open_webknossos(wkw_copy)
        assert ds.layers[0].voxel_size == pytest.approx(want), unit
        assert ds.extra["voxel_size_unit"] == ("nanometer" if unit is None else ds.extra["voxel_size_unit"])


def test_view_configuration_and_extras(wkw_copy):
    def view(props):
        color = props["dataLayers"][0]
        color["defaultViewConfiguration"] = {"color": [255, 128, 0], "intensityRange": [10, 200], "alpha": 50}
        color["coordinateTransformations"] = [{"type": "affine", "matrix": np.eye(4).tolist()}]
        color["additionalAxes"] = [{"name": "t", "bounds": [0, 5], "index": 1}]
        props["defaultViewConfiguration"] = {
            "zoom": 2.0,
            "position": [1, 2, 3],
            "layers": {"segmentation": {"isDisabled": True}},
        }

    _edit(wkw_copy, view)
    ds = open_webknossos(wkw_copy)
    color, seg, rgb = ds.layers
    assert color.color == "#ff8000" and color.contrast_limits == (10.0, 200.0)
    assert color.extra["opacity"] == 0.5 and color.visible
    assert color.extra["coordinate_transformations"][0]["type"] == "affine"
    assert color.extra["additional_axes"][0]["name"] == "t"
    assert not seg.visible and rgb.visible
    assert ds.extra["default_view_configuration"]["position"] == [1, 2, 3]


def test_unsupported_format_layer_is_skipped_with_warning(wkw_copy):
    def add_n5(props):
        extra = copy.deepcopy(props["dataLayers"][0])
        extra["name"] = "from_n5"
        extra["dataFormat"] = "n5"
        props["dataLayers"].append(extra)

    _edit(wkw_copy, add_n5)
    with pytest.warns(RuntimeWarning, match="from_n5.*n5.*not supported"):
        ds = open_webknossos(wkw_copy)
    assert [l.name for l in ds.layers] == ["color", "segmentation", "color_rgb"]
    assert ds.extra["skipped_layers"] == ["from_n5"]


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda p: p["dataLayers"][1]["boundingBox"].pop("width"), r"dataLayers\[1\]\.boundingBox\.width: missing"),
        (lambda p: p.pop("dataLayers"), r"dataLayers: missing"),
        (lambda p: p["dataLayers"][0].__setitem__("category", "image"), r"dataLayers\[0\]\.category"),
        (lambda p: p["dataLayers"][0].__setitem__("elementClass", "uint12"), r"dataLayers\[0\]\.elementClass"),
        (lambda p: p["dataLayers"][2].__setitem__("numChannels", 5), r"dataLayers\[2\]\.numChannels"),
        (lambda p: p["dataLayers"][0]["mags"][1].__setitem__("mag", "2-x"), r"dataLayers\[0\]\.mags\[1\]\.mag"),
        (lambda p: p["dataLayers"][0]["boundingBox"].__setitem__("topLeft", [0, 0]), r"boundingBox\.topLeft"),
        (lambda p: p.__setitem__("scale", {"factor": [1, 1, 1], "unit": "furlong"}), r"scale\.unit"),
        (lambda p: p["dataLayers"][0].__setitem__("dataFormat", "tiff"), r"dataLayers\[0\]\.dataFormat"),
        (
            lambda p: p["dataLayers"][1].__setitem__("largestSegmentId", {"customJsonEncoding": "bigint", "value": "x"}),
            r"dataLayers\[1\]\.largestSegmentId\.value",
        ),
    ],
)
def test_invalid_properties_name_file_and_key(wkw_copy, edit, match):
    path = _edit(wkw_copy, edit)
    with pytest.raises(ValueError, match=match) as info:
        open_webknossos(wkw_copy)
    assert str(path) in str(info.value)


def test_malformed_json_names_line_and_column(wkw_copy):
    path = wkw_copy / "datasource-properties.json"
    path.write_text('{\n  "scale": [1, 1, 1],\n  "dataLayers": [,]\n}\n')
    with pytest.raises(ValueError, match=r"line 3 column 18") as info:
        open_webknossos(wkw_copy)
    assert str(path) in str(info.value)


# -- zarr layers: axis orders, channels, zarr v2 ---------------------------------------------------
def _zarr_dataset(root: Path, layers: list[dict]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    props = {"id": {"name": root.name, "team": ""}, "scale": {"factor": [5, 5, 10], "unit": "nanometer"},
             "dataLayers": layers, "version": 1}
    (root / "datasource-properties.json").write_text(json.dumps(props))


def test_zarr3_axis_order_permutation_and_channel_index(tmp_path):
    zarr = pytest.importorskip("zarr")
    root = tmp_path / "perm"
    data = np.random.default_rng(1).integers(0, 60000, size=(2, 3, 20, 30, 40), dtype=np.uint16)  # c, t, z, y, x
    arr = zarr.open_array(root / "img" / "1", mode="w", zarr_format=3, shape=data.shape, chunks=(1, 1, 8, 16, 16),
                          dtype="uint16", dimension_names=["c", "t", "z", "y", "x"], fill_value=0)
    arr[:] = data
    base = {"category": "color", "boundingBox": {"topLeft": [4, 6, 2], "width": 30, "height": 20, "depth": 15},
            "dataFormat": "zarr3", "elementClass": "uint32", "numChannels": 2}
    order = {"c": 0, "t": 1, "z": 2, "y": 3, "x": 4}
    _zarr_dataset(root, [
        {**base, "name": "img", "mags": [{"mag": [1, 1, 1], "path": "./img/1", "axisOrder": order}]},
        {**base, "name": "second", "elementClass": "uint16", "numChannels": 1,
         "mags": [{"mag": [1, 1, 1], "path": "./img/1", "axisOrder": order, "channelIndex": 1}]},
        {**base, "name": "by_names", "mags": [{"mag": [1, 1, 1], "path": "./img/1"}]},
    ])
    ds = open_webknossos(root)
    img = ds.layer("img")
    assert (img.dtype, img.num_channels, img.rgb) == (np.uint16, 2, False)
    window = data[:, 0, 2:17, 6:26, 4:34]  # t pinned to 0, bounding box at (4, 6, 2)
    np.testing.assert_array_equal(np.asarray(img.mags[0].array), window)
    np.testing.assert_array_equal(np.asarray(ds.layer("second").mags[0].array), window[1])
    np.testing.assert_array_equal(np.asarray(ds.layer("by_names").mags[0].array), window)


def test_zarr_v2_layer_fortran_order(tmp_path):
    zarr = pytest.importorskip("zarr")
    root = tmp_path / "v2"
    data = np.random.default_rng(2).integers(0, 255, size=(1, 40, 30, 20), dtype=np.uint8)  # c, x, y, z
    arr = zarr.open_array(root / "color" / "1", mode="w", zarr_format=2, shape=data.shape, chunks=(1, 16, 16, 16),
                          dtype="uint8", order="F", dimension_separator="/", fill_value=0)
    arr[:] = data
    _zarr_dataset(root, [{
        "name": "color", "category": "color", "dataFormat": "zarr", "elementClass": "uint8", "numChannels": 1,
        "boundingBox": {"topLeft": [0, 0, 0], "width": 40, "height": 30, "depth": 20},
        "mags": [{"mag": [1, 1, 1], "path": "./color/1", "axisOrder": {"c": 0, "x": 1, "y": 2, "z": 3}}],
    }])
    ds = open_webknossos(root)
    np.testing.assert_array_equal(np.asarray(ds.layers[0].mags[0].array), data[0].transpose(2, 1, 0))


# -- scale: huge bounding boxes open instantly -------------------------------------------------------
def test_huge_bounding_box_opens_fast(tmp_path, wkw_copy):
    root = tmp_path / "huge"
    edge = 2**20
    levels = [2**i for i in range(11)]
    header = (wkw_copy / "color" / "1" / "header.wkw").read_bytes()
    zarr_meta = json.loads((DATA / "zarr3_dataset" / "color" / "1" / "zarr.json").read_text())
    for m in levels:
        (root / "color" / str(m)).mkdir(parents=True)
        (root / "color" / str(m) / "header.wkw").write_bytes(header)
        (root / "z3" / str(m)).mkdir(parents=True)
        zarr_meta["shape"] = [1] + [-(-edge // m // 128) * 128] * 3
        (root / "z3" / str(m) / "zarr.json").write_text(json.dumps(zarr_meta))
    bbox = {"topLeft": [0, 0, 0], "width": edge, "height": edge, "depth": edge}
    layer = {"category": "color", "boundingBox": bbox, "elementClass": "uint8", "numChannels": 1}
    _zarr_dataset(root, [
        {**layer, "name": "color", "dataFormat": "wkw", "mags": [{"mag": [m] * 3, "path": f"./color/{m}"} for m in levels]},
        {**layer, "name": "z3", "dataFormat": "zarr3", "mags": [{"mag": [m] * 3, "path": f"./z3/{m}"} for m in levels]},
    ])
    t = time.perf_counter()
    ds = open_dataset(root)
    assert time.perf_counter() - t < 1.0
    for layer in ds.layers:
        assert layer.mags[0].array.shape == (edge, edge, edge)
        assert layer.mags[-1].array.shape == (1024, 1024, 1024)
        t = time.perf_counter()
        plane = layer.mags[0].array[edge // 2, 1000:1512, 5000:5512]
        assert time.perf_counter() - t < 1.0
        assert plane.shape == (512, 512) and not plane.any()


# -- bare WKW mag folders ----------------------------------------------------------------------------
def test_bare_mag_folder_opens_with_unknown_voxel_size(wkw_copy):
    mag = wkw_copy / "segmentation" / "2-2-1"
    assert sniff(mag) and sniff_any(mag) == "webknossos"
    ds = open_dataset(mag)
    (layer,) = ds.layers
    assert layer.name == "segmentation" and layer.is_segmentation and layer.dtype == np.uint32
    assert layer.voxel_size == (1.0, 1.0, 1.0) and "voxel size unknown" in ds.extra["note"]
    assert layer.mags[0].factor == (2, 2, 1)
    assert layer.mags[0].array.shape == (128, 128, 128)  # whole files: 1 file of 128³
    entry = CHECKSUMS["wkw_dataset"]["segmentation"]["2-2-1"]["cutouts"]["full"]
    assert _sha(layer.mags[0].array[:128, :128, :128]) == entry["sha256_zyx_c_order"]


def test_bare_folder_with_a_non_mag_name_is_the_layer_at_mag_1(wkw_copy, tmp_path):
    for name in ("labels", "2-x", "0"):  # not a mag name (0 is no mag either): the folder is the layer
        bare = tmp_path / name
        shutil.copytree(wkw_copy / "segmentation" / "2-2-1", bare)
        (layer,) = open_dataset(bare).layers
        assert layer.name == name and layer.mags[0].factor == (1, 1, 1), name
    (layer,) = open_dataset(wkw_copy / "color" / "1").layers
    assert layer.name == "color" and layer.mags[0].factor == (1, 1, 1)


# -- sniffing and remote ------------------------------------------------------------------------------
def test_sniff(tmp_path, wkw_copy):
    assert sniff(wkw_copy) and sniff(str(wkw_copy)) and sniff(wkw_copy / "datasource-properties.json")
    assert sniff(DATA / "zarr3_dataset")
    assert sniff_any(DATA / "zarr3_dataset") == "webknossos"
    assert sniff(wkw_copy / "color" / "1")
    assert not sniff(wkw_copy / "color")
    assert not sniff(tmp_path / "nothing")
    assert not sniff(wkw_copy / "color" / "1" / "header.wkw")
    (tmp_path / "other.json").write_text("{}")
    assert not sniff(tmp_path / "other.json")
    assert not sniff(DATA / "zarr3_dataset" / "color" / "1")
    assert not sniff(12345)


def test_http_dataset_and_properties_url(tmp_path):
    shutil.copytree(DATA / "wkw_dataset", tmp_path / "wkw_dataset")
    with serve(tmp_path) as server:
        assert sniff(f"{server.url}/wkw_dataset") and sniff(f"{server.url}/wkw_dataset/datasource-properties.json")
        assert not sniff(f"{server.url}/missing")
        for name in ("wkw_dataset",):  # zarr3 over HTTP is covered by the zarr reader's tests
            for url in (f"{server.url}/{name}", f"{server.url}/{name}/datasource-properties.json"):
                CHUNK_CACHE.clear()
                ds = open_dataset(url)
                assert ds.name == name
                cut = CHECKSUMS[name]["segmentation"]["1"]["cutouts"]["unaligned_13_200_7"]
                got = _cut(ds.layer("segmentation").mag(1).array, cut["offset_xyz"], cut["size_xyz"])
                assert _sha(got) == cut["sha256_zyx_c_order"]
        with pytest.raises(ValueError, match="directory listing"):
            open_dataset(f"{server.url}/wkw_dataset/color/1")


def test_absolute_http_mag_path(tmp_path, wkw_copy):
    shutil.copytree(DATA / "wkw_dataset", tmp_path / "served")
    with serve(tmp_path) as server:
        _edit(wkw_copy, lambda p: p["dataLayers"][0]["mags"][0].__setitem__("path", f"{server.url}/served/color/1"))
        shutil.rmtree(wkw_copy / "color" / "1")
        ds = open_webknossos(wkw_copy)
        cut = CHECKSUMS["wkw_dataset"]["color"]["1"]["cutouts"]["bucket_32_64_32"]
        assert _sha(_cut(ds.layer("color").mag(1).array, cut["offset_xyz"], cut["size_xyz"])) == cut["sha256_zyx_c_order"]
        assert any("/served/color/1/" in r for r in server.requests)


def test_missing_mag_folder_is_skipped_with_warning(wkw_copy):
    shutil.rmtree(wkw_copy / "color" / "4-4-2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_webknossos(wkw_copy)
    assert [m.name for m in ds.layer("color").mags] == ["1", "2-2-1"]
    assert any("4-4-2" in str(w.message) for w in caught)

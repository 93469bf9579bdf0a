"""Headless convert and downsample (processing/): round trips, OME-Zarr 0.5 metadata, webknossos interop.

Sources: the bundled sample (KNOSSOS .png + .seg.sz.zip, 3 mags) and a dataset written by the
reference library ``webknossos`` (WKW and zarr3, bounding box at (37, 50, 9), mags 1 and 2-2-1).
Outputs are checked with our reader (every mag, voxel for voxel), with tensorstore (an independent
zarr implementation) and with ``webknossos`` in its own venv.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from napari_knossos.formats import knossos_writer, open_dataset
from napari_knossos.processing.convert import convert_dataset, mag_grid_origin
from napari_knossos.processing.downsample import (
    default_coarsest_mag,
    downsample_dataset,
    downsample_mean,
    downsample_mode,
    mag_ladder,
)

from .reference import run_reference

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "napari_knossos" / "sample_data" / "knossos"

REFERENCE_WRITER = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import webknossos as wk
from webknossos import Mag
from cluster_tools import SequentialExecutor

root = sys.argv[1]
TL, SIZE = (37, 50, 9), (100, 70, 45)
x, y, z = np.meshgrid(*[np.arange(s, dtype=np.int64) for s in SIZE], indexing="ij")
VOLUMES = {
    "gray16": ("color", dict(dtype="uint16"), ((x * 7 + y * 131 + z * 1031) % 65521).astype(np.uint16)),
    "rgb": ("color", dict(dtype_per_channel="uint8", num_channels=3),
            np.stack([(4 * x) & 0xFF, (3 * y + 1) & 0xFF, (5 * z + 2) & 0xFF]).astype(np.uint8)),
    "seg": ("segmentation", dict(dtype="uint32", largest_segment_id=200000),
            (1 + x // 16 + 8 * (y // 16) + 64 * (z // 8) + 100000 * ((x // 32) % 2)).astype(np.uint32)),
}
with SequentialExecutor() as ex:
    for fmt in ("wkw", "zarr3"):
        ds = wk.Dataset(f"{root}/{fmt}", voxel_size=(11.2, 11.2, 25.0))
        for name, (category, kw, data) in VOLUMES.items():
            layer = ds.add_layer(name, category, data_format=fmt, **kw)
            m1 = layer.add_mag(1, chunk_shape=32, shard_shape=64, compress=True)
            m1.write(data, absolute_offset=TL, allow_resize=True)
            layer.downsample_mag(Mag(1), Mag((2, 2, 1)), executor=ex, compress=True, chunk_shape=32, shard_shape=64)
print(json.dumps({"ok": True}))
"""

REFERENCE_READER = r"""
import hashlib, json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import webknossos as wk
out = {}
for path in sys.argv[1:]:
    ds = wk.Dataset.open(path)
    res = {"voxel_size": list(ds.voxel_size), "layers": {}}
    for lname, layer in ds.layers.items():
        entry = {"category": layer.category, "bbox": [list(layer.bounding_box.topleft), list(layer.bounding_box.size)],
                 "num_channels": layer.num_channels, "dtype": str(layer.dtype_per_channel), "mags": {}}
        if layer.category == "segmentation":
            entry["largest_segment_id"] = layer.largest_segment_id
        for mag, view in layer.mags.items():
            a = view.read()  # (c, x, y, z) of the mag's bounding box
            bb = view.bounding_box.in_mag(mag)
            entry["mags"][mag.to_layer_name()] = {
                "topleft_xyz": list(bb.topleft), "size_xyz": list(bb.size),
                "sha_czyx": hashlib.sha256(np.ascontiguousarray(a.transpose(0, 3, 2, 1)).tobytes()).hexdigest(),
            }
        res["layers"][lname] = entry
    out[path] = res
print(json.dumps(out))
"""

REFERENCE_OME = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from upath import UPath
from webknossos.dataset._image_conversion.image_source import ReadOptions
from webknossos.dataset._image_conversion.zarr_image_source import ZarrImageSource
out = {}
for path, levels in json.loads(sys.argv[1]).items():
    out[path] = []
    for rank in range(levels):  # webknossos' OME-Zarr image source: validates and ranks the multiscales
        src = ZarrImageSource(UPath(path), ReadOptions(format_options={"scale": rank}))
        out[path].append({"axes": list(src._axes), "size_xyz": list(src.expected_bbox.size_xyz),
                          "channels": src.num_channels, "dtype": str(src.dtype)})
print(json.dumps(out))
"""

REFERENCE_LADDERS = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from webknossos.dataset.layer._downsampling_utils import calculate_default_coarsest_mag, calculate_mags_to_downsample
from webknossos import Mag
out = []
for size, voxel in json.loads(sys.argv[1]):
    coarsest = calculate_default_coarsest_mag(size)
    aniso = calculate_mags_to_downsample(Mag(1), coarsest, None, voxel)
    iso = calculate_mags_to_downsample(Mag(1), coarsest, None, None)
    out.append({"coarsest": coarsest.to_list(), "anisotropic": [m.to_list() for m in aniso],
                "isotropic": [m.to_list() for m in iso]})
print(json.dumps(out))
"""


def _sha(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _czyx(mag) -> np.ndarray:
    arr = mag.array
    return arr.read_region((0, 0, 0), arr.shape_zyx)


def _assert_same_layer(src_layer, dst_layer, absolute: bool = False) -> None:
    """Every mag of ``src_layer`` is in ``dst_layer`` with equal voxels (``absolute``: at the grid origin)."""
    for i, mag in enumerate(src_layer.mags):
        want = _czyx(mag)
        got = _czyx(dst_layer.mag(mag.name))
        if absolute:
            origin = mag_grid_origin(src_layer, i)
            got = got[(slice(None), *(slice(o, o + n) for o, n in zip(origin, want.shape[1:])))]
        assert got.shape == want.shape, (src_layer.name, mag.name)
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=f"{src_layer.name} mag {mag.name}")


@pytest.fixture(scope="module")
def reference_datasets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wk_reference")
    run_reference(REFERENCE_WRITER, str(root))
    return root


# -- OME-Zarr 0.5 -------------------------------------------------------------------------------
def _zarr_json(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())


def _check_ome_image(group: Path, layer, *, label: bool) -> None:
    """An OME-Zarr 0.5 image group as the spec describes it, and its arrays as zarr v3 arrays."""
    meta = _zarr_json(group)
    assert meta["zarr_format"] == 3 and meta["node_type"] == "group"
    ome = meta["attributes"]["ome"]
    assert ome["version"] == "0.5"
    (ms,) = ome["multiscales"]
    assert "version" not in ms  # 0.5: the version lives in attributes.ome only
    axes = ms["axes"]
    names = [a["name"] for a in axes]
    assert names[-3:] == ["z", "y", "x"]
    assert all(a["type"] == "space" and a["unit"] == "nanometer" for a in axes[-3:])
    if len(axes) == 4:
        assert axes[0] == {"name": "c", "type": "channel"}
    assert (label and "image-label" in ome) or (not label and "image-label" not in ome)
    volumes = []
    for i, ds in enumerate(ms["datasets"]):
        cts = ds["coordinateTransformations"]
        assert cts[0]["type"] == "scale" and len(cts[0]["scale"]) == len(axes)
        assert all(ct["type"] in ("scale", "translation") for ct in cts) and len(cts) <= 2
        if len(cts) == 2:
            assert cts[1]["type"] == "translation" and len(cts[1]["translation"]) == len(axes)
        mag = layer.mags[i]
        want = [v * f for v, f in zip(layer.voxel_size[::-1], mag.factor[::-1])]
        assert cts[0]["scale"][-3:] == pytest.approx(want)
        array = _zarr_json(group / ds["path"])
        assert array["node_type"] == "array" and array["zarr_format"] == 3
        assert array["dimension_names"] == names and len(array["shape"]) == len(axes)
        if label:
            assert np.dtype(array["data_type"]).kind in "ui"
        volumes.append(np.prod(cts[0]["scale"]))
    assert volumes == sorted(volumes)  # highest resolution first


def _tensorstore_read(path: Path) -> np.ndarray:
    ts = pytest.importorskip("tensorstore")
    return ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}).result().read().result()


def test_sample_to_ome_zarr_metadata_round_trip_and_tensorstore(tmp_path):
    dst = convert_dataset(SAMPLE, tmp_path / "sample.ome.zarr", progress=False)
    src = open_dataset(SAMPLE)
    image, seg = src.layers
    _check_ome_image(dst, image, label=False)
    labels = _zarr_json(dst / "labels")["attributes"]["ome"]
    assert labels == {"version": "0.5", "labels": ["segmentation"]}
    _check_ome_image(dst / "labels" / "segmentation", seg, label=True)
    assert _zarr_json(dst / "labels" / "segmentation")["attributes"]["ome"]["image-label"]["source"]["image"] == "../../"

    out = open_dataset(dst)
    assert out.format == "ome-zarr" and [l.name for l in out.layers] == ["synthetic_neuropil", "segmentation"]
    assert out.layers[1].is_segmentation and out.layers[0].voxel_size == pytest.approx((10, 10, 25))
    for a, b in zip(src.layers, out.layers):
        _assert_same_layer(a, b)
    # an independent zarr v3 implementation reads the same voxels
    np.testing.assert_array_equal(_tensorstore_read(dst / "0"), np.asarray(image.mags[0].array))
    np.testing.assert_array_equal(_tensorstore_read(dst / "labels" / "segmentation" / "2"),
                                  np.asarray(seg.mags[2].array))


def test_sharded_ome_zarr_and_mag_selection(tmp_path):
    dst = convert_dataset(SAMPLE, tmp_path / "s.ome.zarr", chunk=32, shard=128, mags=["2", "4"], progress=False)
    codecs = _zarr_json(dst / "0")["codecs"]
    assert codecs[0]["name"] == "sharding_indexed" and codecs[0]["configuration"]["chunk_shape"] == [32, 32, 32]
    src, out = open_dataset(SAMPLE), open_dataset(dst)
    # OME-Zarr levels are relative to the first one: source mag 2 is the new mag 1 at 20 x 20 x 50 nm
    assert [m.name for m in out.layers[0].mags] == ["1", "2"]
    assert out.layers[0].voxel_size == pytest.approx((20, 20, 50))
    for a, b in zip(src.layers, out.layers):
        for old, new in (("2", "1"), ("4", "2")):
            np.testing.assert_array_equal(_czyx(b.mag(new)), _czyx(a.mag(old)).astype(b.dtype))
    np.testing.assert_array_equal(_tensorstore_read(dst / "1"), np.asarray(src.layers[0].mag("4").array))


@pytest.mark.parametrize("to", ["wk-zarr3", "wkw", "knossos"])
def test_sample_round_trip_every_format(tmp_path, to):
    dst = convert_dataset(SAMPLE, tmp_path / "out", to=to, progress=False)
    src, out = open_dataset(SAMPLE), open_dataset(dst)
    assert len(out.layers) == 2
    image = next(l for l in out.layers if not l.is_segmentation)
    seg = next(l for l in out.layers if l.is_segmentation)
    _assert_same_layer(src.layers[0], image)
    _assert_same_layer(src.layers[1], seg)
    if to != "knossos":
        props = json.loads((dst / "datasource-properties.json").read_text())
        seg_props = next(l for l in props["dataLayers"] if l["category"] == "segmentation")
        assert seg_props["largestSegmentId"] == int(np.asarray(src.layers[1].mags[0].array).max())
        assert seg_props["dataFormat"] == ("wkw" if to == "wkw" else "zarr3")
    else:
        assert [p.name for p in dst.glob("*.k.toml")] == ["out.k.toml"]


def test_single_mag_source_gets_the_pyramid_the_sample_was_built_with(tmp_path):
    """The sample's mags 2 and 4 were made with knossos_writer.pyramid (mean / mode); converting mag 1
    alone rebuilds them with downsample, voxel for voxel."""
    dst = convert_dataset(SAMPLE, tmp_path / "one.ome.zarr", mags=["1"], progress=False)
    src, out = open_dataset(SAMPLE), open_dataset(dst)
    for a, b in zip(src.layers, out.layers):
        assert [m.name for m in b.mags] == ["1", "2", "4"]
        _assert_same_layer(a, b)
    ms = _zarr_json(dst)["attributes"]["ome"]["multiscales"][0]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]


def test_errors_name_the_problem(tmp_path):
    dst = tmp_path / "exists"
    dst.mkdir()
    with pytest.raises(FileExistsError, match="exists"):
        convert_dataset(SAMPLE, dst, progress=False)
    with pytest.raises(ValueError, match="no layer 'nope'"):
        convert_dataset(SAMPLE, tmp_path / "x", layers=["nope"], progress=False)
    with pytest.raises(ValueError, match="unknown target format"):
        convert_dataset(SAMPLE, tmp_path / "x", to="tiff", progress=False)
    with pytest.raises(ValueError, match="power-of-two"):
        convert_dataset(SAMPLE, tmp_path / "x", to="wkw", chunk=24, shard=96, progress=False)
    with pytest.raises(ValueError, match="has no mag '3'"):  # one missing mag among existing ones
        convert_dataset(SAMPLE, tmp_path / "x", mags=["1", "3"], progress=False)
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))  # nothing left behind


# -- datasets written by webknossos ---------------------------------------------------------------
@pytest.mark.reference
@pytest.mark.parametrize("source_format", ["wkw", "zarr3"])
def test_reference_dataset_to_webknossos_formats_read_by_webknossos(reference_datasets, tmp_path, source_format):
    src = reference_datasets / source_format
    outs = [convert_dataset(src, tmp_path / to, to=to, progress=False) for to in ("wk-zarr3", "wkw")]
    ref = run_reference(REFERENCE_READER, str(src), *map(str, outs))
    want = ref[str(src)]
    for out in outs:
        got = ref[str(out)]
        assert got["voxel_size"] == pytest.approx(want["voxel_size"])
        assert set(got["layers"]) == set(want["layers"])
        for name, layer in want["layers"].items():
            mine = got["layers"][name]
            for key in ("category", "bbox", "num_channels", "dtype", "largest_segment_id"):
                assert mine.get(key) == layer.get(key), (out.name, name, key)
            assert mine["mags"] == layer["mags"], (out.name, name)
    # our reader agrees for every mag, too
    original = open_dataset(src)
    for out in outs:
        converted = open_dataset(out)
        for layer in original.layers:
            _assert_same_layer(layer, converted.layer(layer.name))


@pytest.mark.reference
def test_reference_dataset_to_ome_zarr_and_knossos(reference_datasets, tmp_path):
    src = open_dataset(reference_datasets / "zarr3")
    ome = convert_dataset(reference_datasets / "zarr3", tmp_path / "ref.ome.zarr", progress=False)
    root = _zarr_json(ome)["attributes"]["ome"]
    assert root == {"version": "0.5", "bioformats2raw.layout": 3}  # two image layers: one series each
    _check_ome_image(ome / "0", src.layer("gray16"), label=False)
    _check_ome_image(ome / "1", src.layer("rgb"), label=False)
    _check_ome_image(ome / "0" / "labels" / "seg", src.layer("seg"), label=True)
    ms = _zarr_json(ome / "0")["attributes"]["ome"]["multiscales"][0]
    # the bounding box (37, 50, 9) becomes a translation; mag 2-2-1 starts at voxel (18, 25, 9)
    assert ms["datasets"][0]["coordinateTransformations"][1]["translation"] == pytest.approx([225.0, 560.0, 414.4])
    assert ms["datasets"][1]["coordinateTransformations"][1]["translation"] == pytest.approx([225.0, 560.0, 403.2])
    out = open_dataset(ome)
    for layer in src.layers:
        mine = out.layer(layer.name)
        assert mine.offset == (37, 50, 9) and mine.size == (100, 70, 45)
        _assert_same_layer(layer, mine)

    knossos = convert_dataset(reference_datasets / "zarr3", tmp_path / "k", to="knossos", progress=False)
    out = open_dataset(knossos)
    by_description = {l.extra["description"]: l for l in out.layers}
    assert by_description["seg"].dtype == np.uint64 and by_description["rgb"].rgb
    for layer in src.layers:
        _assert_same_layer(layer, by_description[layer.name], absolute=True)
    assert by_description["gray16"].size == (137, 120, 54)  # KNOSSOS has no offset: data stays in place


@pytest.mark.reference
@pytest.mark.parametrize("source_format", ["wkw", "zarr3"])
def test_downsample_reference_dataset_in_place(reference_datasets, tmp_path, source_format):
    path = tmp_path / source_format
    shutil.copytree(reference_datasets / source_format, path)
    before = open_dataset(path)
    built = downsample_dataset(path, progress=False)
    # isotropic steps continue the dataset's own ladder (1, 2-2-1) up to the default coarsest mag 4
    assert built == {"gray16": ["4-4-2"], "rgb": ["4-4-2"], "seg": ["4-4-2"]}
    assert downsample_dataset(path, progress=False) == {"gray16": [], "rgb": [], "seg": []}
    after = open_dataset(path)
    for layer in before.layers:
        new = after.layer(layer.name)
        _assert_same_layer(layer, new)
        # expected: knossos_writer's 2x2x2 mean / mode of mag 2-2-1 with the edges repeated
        src = layer.mag("2-2-1")
        data = np.asarray(src.array)
        data = data if data.ndim == 4 else data[..., None]  # (z, y, x, c)
        origin_src = np.array(mag_grid_origin(layer, 1))
        origin_new = np.array(mag_grid_origin(new, 2))
        shape_new = np.array(new.mag("4-4-2").array.shape_zyx)
        before_pad = origin_src - 2 * origin_new
        after_pad = 2 * (origin_new + shape_new) - (origin_src + np.array(data.shape[:3]))
        padded = np.pad(data, [*zip(before_pad, after_pad), (0, 0)], mode="edge")
        down = knossos_writer.downsample_mode if layer.is_segmentation else knossos_writer.downsample_mean
        want = np.stack([down(padded[..., c]) for c in range(padded.shape[-1])])
        np.testing.assert_array_equal(_czyx(new.mag("4-4-2")), want, err_msg=layer.name)
    ref = run_reference(REFERENCE_READER, str(path))[str(path)]
    for name, layer in ref["layers"].items():
        assert sorted(layer["mags"]) == ["1", "2-2-1", "4-4-2"]
        entry = layer["mags"]["4-4-2"]
        mine = after.layer(name)
        assert entry["topleft_xyz"] == [9, 12, 4] == list(mag_grid_origin(mine, 2)[::-1])
        assert entry["size_xyz"] == list(mine.mag("4-4-2").array.shape_zyx[::-1])
        assert entry["sha_czyx"] == _sha(_czyx(mine.mag("4-4-2"))), name


@pytest.mark.reference
def test_webknossos_reads_our_ome_zarr_groups(reference_datasets, tmp_path):
    sample = convert_dataset(SAMPLE, tmp_path / "sample.ome.zarr", progress=False)
    ref = convert_dataset(reference_datasets / "zarr3", tmp_path / "ref.ome.zarr", progress=False)
    groups = {sample: open_dataset(SAMPLE).layers[0], sample / "labels" / "segmentation": open_dataset(SAMPLE).layers[1],
              ref / "1": open_dataset(reference_datasets / "zarr3").layer("rgb")}
    got = run_reference(REFERENCE_OME, json.dumps({str(g): len(layer.mags) for g, layer in groups.items()}))
    for group, layer in groups.items():
        for level, mag in zip(got[str(group)], layer.mags):
            axes = ["c", "z", "y", "x"] if layer.num_channels > 1 else ["z", "y", "x"]
            assert level["axes"] == axes
            assert level["size_xyz"] == list(mag.array.shape_zyx[::-1])
            assert level["channels"] == layer.num_channels and level["dtype"] == np.dtype(layer.dtype).name


@pytest.mark.reference
def test_mag_ladders_match_webknossos():
    cases = [((1000, 1000, 500), (11.2, 11.2, 25.0)), ((5000, 3000, 800), (4.0, 4.0, 40.0)),
             ((256, 256, 128), (10.0, 10.0, 10.0)), ((900, 200, 300), (8.0, 8.0, 12.0)),
             ((4096, 4096, 4096), (5.0, 5.0, 50.0))]
    ref = run_reference(REFERENCE_LADDERS, json.dumps(cases))
    for (size, voxel), want in zip(cases, ref):
        assert [default_coarsest_mag(size)] * 3 == want["coarsest"]
        assert [list(m) for m in mag_ladder(size, voxel, anisotropic=True)] == want["anisotropic"], (size, voxel)
        assert [list(m) for m in mag_ladder(size, voxel)] == want["isotropic"], (size, voxel)


@pytest.mark.reference
def test_convert_on_a_local_cluster_of_two_worker_processes(reference_datasets, tmp_path):
    distributed = pytest.importorskip("distributed")
    t0 = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        dst = convert_dataset(reference_datasets / "wkw", tmp_path / "cluster", to="wk-zarr3", downsample=True,
                              scheduler=lc.scheduler_address, progress=False)
    assert time.perf_counter() - t0 < 30
    src, out = open_dataset(reference_datasets / "wkw"), open_dataset(dst)
    for layer in src.layers:
        mine = out.layer(layer.name)
        assert [m.name for m in mine.mags] == ["1", "2-2-1", "4-4-2"]
        _assert_same_layer(layer, mine)
    assert out.layer("seg").largest_segment_id == 200000


# -- downsampling in place: OME-Zarr and KNOSSOS ------------------------------------------------
def test_downsample_ome_zarr_and_knossos_in_place(tmp_path):
    ome = convert_dataset(SAMPLE, tmp_path / "s.ome.zarr", downsample=False, progress=False)
    built = downsample_dataset(ome, coarsest=16, progress=False)
    assert built == {"synthetic_neuropil": ["8", "16"], "segmentation": ["8", "16"]}
    ms = _zarr_json(ome)["attributes"]["ome"]["multiscales"][0]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2", "3", "4"]
    assert ms["datasets"][4]["coordinateTransformations"] == [{"type": "scale", "scale": [400.0, 160.0, 160.0]}]
    out = open_dataset(ome)
    mag4 = np.asarray(out.layers[1].mag("4").array)
    np.testing.assert_array_equal(np.asarray(out.layers[1].mag("8").array), knossos_writer.downsample_mode(mag4))
    _check_ome_image(ome / "labels" / "segmentation", out.layers[1], label=True)

    knossos = tmp_path / "k"
    shutil.copytree(SAMPLE, knossos)
    assert downsample_dataset(knossos, coarsest=8, progress=False) == {"synthetic_neuropil": ["8"],
                                                                        "segmentation": ["8"]}
    text = next(knossos.glob("*.k.toml")).read_text()
    assert text.count("VoxelSize_nm = [[10, 10, 25], [20, 20, 50], [40, 40, 100], [80, 80, 200]]") == 2
    out = open_dataset(knossos)
    image = out.layers[0]
    np.testing.assert_array_equal(np.asarray(image.mag("8").array),
                                  knossos_writer.downsample_mean(np.asarray(image.mag("4").array)))
    assert (knossos / "mag8" / "x0000" / "y0000" / "z0000").is_dir()


def test_downsample_kernels_match_knossos_writer_and_handle_ties():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(8, 6, 10), dtype=np.uint8)
    labels = rng.integers(0, 4, size=(8, 6, 10)).astype(np.uint64)
    np.testing.assert_array_equal(downsample_mean(image, (2, 2, 2))[0], knossos_writer.downsample_mean(image))
    np.testing.assert_array_equal(downsample_mode(labels, (2, 2, 2))[0], knossos_writer.downsample_mode(labels))
    block = np.array([5, 5, 3, 3, 9, 9, 1, 7], dtype=np.uint32).reshape(1, 2, 2, 2)  # 2 x 5, 2 x 3, 2 x 9: 3 wins
    assert downsample_mode(block, (2, 2, 2)).item() == 3
    flat = np.arange(16, dtype=np.uint16).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(downsample_mean(flat, (1, 2, 2))[0, 0], [[3, 5], [11, 13]])  # rounded half up
    floats = rng.random((2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(downsample_mean(floats, (2, 2, 2))[0], floats.reshape(1, 2, 2, 2, 2, 2).mean((1, 3, 5)),
                               rtol=1e-6)


def test_mag_ladder_shapes():
    assert mag_ladder((256, 256, 128), (10, 10, 25)) == [(2, 2, 2), (4, 4, 4)]
    assert mag_ladder((256, 256, 128), (10, 10, 25), anisotropic=True) == [(2, 2, 1), (4, 4, 2)]
    assert mag_ladder((1000, 1000, 1), (5, 5, 40)) == [(2, 2, 1), (4, 4, 1), (8, 8, 1), (16, 16, 1)]
    assert mag_ladder((256, 256, 128), (10, 10, 25), align_with=[(2, 2, 1)]) == [(2, 2, 1), (4, 4, 2)]


def test_downsample_ome_zarr_v2_with_translation(tmp_path):
    """An OME-Zarr 0.4 image (zarr v2) written by zarr-python, bounding box at (25, 50, 20) in µm units."""
    zarr = pytest.importorskip("zarr")
    path = tmp_path / "v2.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    data = (np.arange(60 * 50 * 40) % 251).astype(np.uint8).reshape(60, 50, 40)
    group.create_array("0", shape=data.shape, chunks=(16, 16, 16), dtype="uint8")[:] = data
    group.attrs["multiscales"] = [{
        "version": "0.4", "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [0.05, 0.01, 0.01]}, {"type": "translation", "translation": [1.0, 0.5, 0.25]}]}],
    }]  # fmt: skip
    assert downsample_dataset(path, coarsest=4, progress=False) == {"v2": ["2", "4"]}
    datasets = json.loads((path / ".zattrs").read_text())["multiscales"][0]["datasets"]
    assert [d["path"] for d in datasets] == ["0", "1", "2"]
    scale, translation = datasets[1]["coordinateTransformations"]
    assert scale["scale"] == pytest.approx([0.1, 0.02, 0.02])
    assert translation["translation"] == pytest.approx([1.0, 0.5, 0.24])  # mag 2 starts at x voxel 12 = 24 / 2
    assert (path / "1" / ".zarray").is_file()
    layer = open_dataset(path).layers[0]
    assert layer.offset == (25, 50, 20) and [m.name for m in layer.mags] == ["1", "2", "4"]
    padded = np.pad(data, [(0, 0), (0, 0), (1, 1)], mode="edge")  # x: grid voxels 24 and 65 repeat the edges
    np.testing.assert_array_equal(np.asarray(layer.mag("2").array), knossos_writer.downsample_mean(padded))


@pytest.mark.parametrize("config", ["toml", "legacy"])
def test_downsample_knossos_toml_and_legacy_conf(tmp_path, data_dir, config):
    """tiny_dataset: a .k.toml without ServerFormat (mag folders numbered level + 1) or, with the toml
    removed, its legacy knossos.conf (mag{N}/knossos.conf markers shared by both layers)."""
    path = tmp_path / "tiny"
    shutil.copytree(data_dir / "knossos" / "tiny_dataset", path)
    if config == "legacy":
        (path / "tiny.k.toml").unlink()
    before = open_dataset(path)
    assert downsample_dataset(path, coarsest=8, progress=False) == {"tiny": ["4", "8"], "segmentation": ["4", "8"]}
    after = open_dataset(path)
    folders = {"toml": ["mag1", "mag2", "mag3", "mag4"], "legacy": ["mag1", "mag2", "mag4", "mag8"]}[config]
    for old, new in zip(before.layers, after.layers):
        assert new.extra["mag_folders"] == folders
        _assert_same_layer(old, new)
        down = knossos_writer.downsample_mode if new.is_segmentation else knossos_writer.downsample_mean
        for a, b in (("2", "4"), ("4", "8")):
            np.testing.assert_array_equal(np.asarray(new.mag(b).array), down(np.asarray(new.mag(a).array)))
    if config == "legacy":
        assert "magnification 8;" in (path / "mag8" / "knossos.conf").read_text()
        with pytest.raises(ValueError, match="share their mags"):
            downsample_dataset(path, layers=["tiny"], progress=False)
    else:
        assert "VoxelSize_nm = [[10, 10, 25], [20, 20, 50], [40, 40, 100], [80, 80, 200]]" in (
            path / "tiny.k.toml").read_text()


REFERENCE_OME_ZARR_PY = r"""
import hashlib, json, sys
import numpy as np
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
out = {}
nodes = list(Reader(parse_url(sys.argv[1]))())
for node in nodes:
    if not node.data:
        continue  # a group without arrays (the labels container)
    key = "labels" if "labels/" in str(node.zarr.path).replace("\\", "/") else "image"
    out.setdefault(key, [])
    out[key].append({"levels": [list(map(int, d.shape)) for d in node.data],
                     "sha0": hashlib.sha256(np.ascontiguousarray(np.asarray(node.data[0])).tobytes()).hexdigest(),
                     "axes": [a["name"] for a in node.metadata.get("axes", [])]})
print(json.dumps(out))
"""


@pytest.mark.reference
def test_ome_zarr_py_reads_our_ome_zarr(tmp_path):
    """napari-ome-zarr reads through ome-zarr-py (installed in the reference venv): it finds the
    image pyramid and the labels with our shapes and voxels."""
    import hashlib

    dst = convert_dataset(SAMPLE, tmp_path / "sample.ome.zarr", progress=False)
    got = run_reference(REFERENCE_OME_ZARR_PY, str(dst))
    src = open_dataset(SAMPLE)
    image, seg = src.layers
    (img,) = [n for n in got["image"] if n["levels"][0] == list(np.asarray(image.mags[0].array).shape)]
    assert img["levels"] == [list(m.array.shape) for m in image.mags]
    assert img["axes"] == ["z", "y", "x"]
    assert img["sha0"] == hashlib.sha256(np.ascontiguousarray(np.asarray(image.mags[0].array)).tobytes()).hexdigest()
    (lab,) = got["labels"]
    assert lab["levels"] == [list(m.array.shape) for m in seg.mags]
    assert lab["sha0"] == hashlib.sha256(np.ascontiguousarray(np.asarray(seg.mags[0].array)).tobytes()).hexdigest()


@pytest.mark.parametrize("chunk", [32, 64])
def test_chunks_matching_the_source_cubes_are_copied_whole_and_edges_zero_filled(tmp_path, monkeypatch, chunk):
    """KNOSSOS cubes of 32³ → OME-Zarr chunks of 32³ go to the encoder as decoded (no block
    assembled); partial cubes at the far edges and 64³ chunks take the general path. Both give the
    source's voxels, and empty cubes write no chunk."""
    from napari_knossos.processing import convert, volumes

    monkeypatch.setattr(convert, "BLOCK_BYTES", 64 * 64 * 64)  # several blocks in this small volume
    taken = []
    original = volumes._copy_aligned_chunks
    monkeypatch.setattr(volumes, "_copy_aligned_chunks", lambda *a: taken.append(original(*a)) or taken[-1])
    z, y, x = np.meshgrid(np.arange(70), np.arange(100), np.arange(90), indexing="ij")
    image = ((x * 3 + y * 5 + z * 7) % 251 + 1).astype(np.uint8)
    image[:32, :32, :32] = 0  # one empty cube
    seg = (1 + x // 20 + 10 * (y // 20) + 100 * (z // 20)).astype(np.uint64) * 1_000_003
    specs = [knossos_writer.KnossosLayerSpec(".raw", [image]),
             knossos_writer.KnossosLayerSpec(".seg.sz.zip", [seg], extra_toml={"DataType": '"uint64"'})]
    knossos_writer.write_knossos_dataset(tmp_path / "src", "cubes", (9, 9, 20), specs, cube_shape_xyz=32)
    out = convert_dataset(tmp_path / "src", tmp_path / "out.zarr", chunk=chunk, downsample=False, progress=False)
    converted = open_dataset(out)
    assert np.array_equal(np.asarray(converted.layers[0].mags[0].array), image)
    assert np.array_equal(np.asarray(converted.layers[1].mags[0].array), seg)
    direct = [v for v in taken if v is not None]
    if chunk == 32:
        assert len(direct) >= 2 and None in taken  # inner blocks directly, edge blocks zero-filled
        assert seg[:64, :64, :64].max() in direct  # the largest id of a block copied directly
        assert not (out / "0" / "c" / "0" / "0" / "0").exists()  # the empty cube wrote no chunk
        assert (out / "0" / "c" / "0" / "0" / "1").exists()
    else:
        assert not direct

"""KNOSSOS and webKnossos writers: exact file contents, round trips through our readers,
through tensorstore and through the reference library (webknossos)."""

from __future__ import annotations

import hashlib
import io
import json
import tomllib
import zipfile
from pathlib import Path

import cramjam
import numpy as np
import pytest
from PIL import Image

from napari_knossos.formats import open_dataset
from napari_knossos.formats.knossos_writer import (
    KnossosLayerSpec,
    cube_path,
    downsample_mean,
    downsample_mode,
    encode_cube,
    k_toml_text,
    legacy_conf_text,
    pyramid,
    write_cube,
    write_knossos_dataset,
    write_mag_cubes,
)
from napari_knossos.formats.wk_writer import (
    WkLayerSpec,
    array_metadata,
    element_class,
    layer_group_text,
    mag_name,
    properties_text,
    write_webknossos_dataset,
)

from .reference import run_reference

DATA = Path(__file__).parent / "data" / "writers"


def _sha(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _volumes(shape_zyx=(40, 50, 70), seed=7):
    """A test image (uint8, distinct per axis) and a segmentation with ids above 2**32 and zeros."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape_zyx), indexing="ij")
    image = ((3 * x + 5 * y + 7 * z) % 251).astype(np.uint8)
    seg = (1 + x // 9 + 10 * (y // 11) + 100 * (z // 13)).astype(np.uint64) + np.uint64(2**33)
    seg[(x >= 60) & (y >= 40)] = 0
    seg[0, 0, :5] = np.uint64(2**64 - 1)  # the largest id survives the round trip
    return image, seg


def _decode_cube(path: Path, cube_xyz=(32, 32, 32)) -> np.ndarray:
    """Decode a cube file by hand (independent of the reader)."""
    cx, cy, cz = cube_xyz
    data = path.read_bytes()
    name = path.name
    if name.endswith(".raw"):
        return np.frombuffer(data, np.uint8).reshape(cz, cy, cx)
    if name.endswith((".png", ".jpg")):
        return np.asarray(Image.open(io.BytesIO(data)).convert("L")).reshape(cz, cy, cx)
    if name.endswith(".seg.sz.zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            (info,) = zf.infolist()
            assert info.filename == name[: -len(".zip")]
            assert info.compress_type == zipfile.ZIP_DEFLATED
            raw = bytes(cramjam.snappy.decompress_raw(zf.read(info)))
        return np.frombuffer(raw, "<u8").reshape(cz, cy, cx)
    raise AssertionError(name)


def _cube_index(path: Path) -> tuple[int, int, int]:
    """(x, y, z) cube index from the ``x####/y####/z####`` folders of a cube file."""
    return tuple(int(folder.name[1:]) for folder in (path.parents[2], path.parents[1], path.parents[0]))


def _padded(volume, cube_zyx, index_xyz):
    cz, cy, cx = cube_zyx
    x, y, z = index_xyz
    out = np.zeros(cube_zyx, volume.dtype)
    part = volume[z * cz : (z + 1) * cz, y * cy : (y + 1) * cy, x * cx : (x + 1) * cx]
    out[: part.shape[0], : part.shape[1], : part.shape[2]] = part
    return out


# ----------------------------------------------------------------------------- KNOSSOS: texts


def test_legacy_conf_matches_spec_fixture_text():
    assert legacy_conf_text("tiny", (32, 24, 20), (20.0, 20.0, 50.0), 2, 32) == (
        DATA / "tiny_mag2_knossos.conf"
    ).read_text()
    assert legacy_conf_text("tiny", (64, 48, 40), (10, 10, 25), 1, 32, ".raw") == (
        DATA / "tiny_root_knossos.conf"
    ).read_text()


def test_legacy_conf_cube_type_statements():
    assert legacy_conf_text("e", (1, 1, 1), (1, 1, 1), ext=".png").endswith("cube_edge_length 128;\npng;\n")
    assert legacy_conf_text("e", (1, 1, 1), (1, 1, 1), ext=".jpg").endswith("compression_ratio 1000;\n")
    with pytest.raises(ValueError, match="legacy"):
        legacy_conf_text("e", (1, 1, 1), (1, 1, 1), ext=".seg.sz.zip")


@pytest.mark.parametrize("bad", ["", 'a"b', "with_mag1", "a/b", "line\nbreak"])
def test_unusable_experiment_names_are_rejected(bad, tmp_path):
    with pytest.raises(ValueError, match="experiment name"):
        legacy_conf_text(bad, (1, 1, 1), (1, 1, 1))
    with pytest.raises(ValueError, match="experiment name"):
        write_knossos_dataset(tmp_path, bad, (1, 1, 1), [KnossosLayerSpec(".raw", [np.zeros((2, 2, 2), np.uint8)])])


def test_k_toml_text_is_valid_toml_with_required_keys():
    layers = [
        KnossosLayerSpec(".png", [], description='raw "EM" \\ data', color="#ff0000", visible=True),
        KnossosLayerSpec(".seg.sz.zip", [], extra_toml={"DataType": '"uint64"'}),
    ]
    text = k_toml_text("ds", (256, 200, 100), (128, 128, 64), [(10, 10, 25), (20, 20, 50), (40, 40, 100.5)], layers)
    parsed = tomllib.loads(text)["Layer"]
    assert len(parsed) == 2
    first, second = parsed
    assert first == {
        "Name": "ds",
        "Description": 'raw "EM" \\ data',
        "ServerFormat": "knossos",
        "FileExtension": [".png"],
        "Extent_px": [256, 200, 100],
        "CubeShape_px": [128, 128, 64],
        "VoxelSize_nm": [[10, 10, 25], [20, 20, 50], [40, 40, 100.5]],
        "Color": "#ff0000",
        "Visible": True,
    }
    assert second["Description"] == "" and second["FileExtension"] == [".seg.sz.zip"]
    assert second["DataType"] == "uint64"
    # integers are TOML integers, as KNOSSOS requires for Extent_px
    assert "Extent_px = [256, 200, 100]" in text
    without = tomllib.loads(k_toml_text("ds", (1, 1, 1), (1, 1, 1), [(1, 1, 1)], layers[:1], server_format=None))
    assert "ServerFormat" not in without["Layer"][0]


# ----------------------------------------------------------------------------- KNOSSOS: cubes


def test_encode_cube_layouts():
    cube = np.arange(4 * 3 * 2, dtype=np.uint8).reshape(4, 3, 2)  # (cz, cy, cx)
    assert encode_cube(cube, ".raw") == cube.tobytes()  # x fastest, then y, then z
    for png_filter in ("adaptive", "none"):
        png = Image.open(io.BytesIO(encode_cube(cube, ".png", png_filter=png_filter)))
        assert png.mode == "L" and png.size == (2, 12)  # width cx, height cy*cz
        assert np.array_equal(np.asarray(png), cube.reshape(12, 2))
    ids = np.array([0, 1, 2**40, 2**64 - 1] * 6, np.uint64).reshape(4, 3, 2)
    blob = encode_cube(ids, ".seg.sz.zip", file_name="e_mag1_x0000_y0000_z0000.seg.sz.zip")
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.namelist() == ["e_mag1_x0000_y0000_z0000.seg.sz"]
        payload = bytes(cramjam.snappy.decompress_raw(zf.read("e_mag1_x0000_y0000_z0000.seg.sz")))
    assert payload == ids.astype("<u8").tobytes()
    assert encode_cube(ids, ".seg") == ids.astype("<u8").tobytes()
    # deterministic bytes (fixed zip timestamp)
    assert blob == encode_cube(ids, ".seg.sz.zip", file_name="e_mag1_x0000_y0000_z0000.seg.sz.zip")


def test_encode_cube_rejects_wrong_types():
    with pytest.raises(ValueError, match="uint8"):
        encode_cube(np.zeros((2, 2, 2), np.uint16), ".png")
    with pytest.raises(ValueError, match="non-negative"):
        encode_cube(-np.ones((2, 2, 2), np.int32), ".seg")
    with pytest.raises(ValueError, match="file name"):
        encode_cube(np.zeros((2, 2, 2), np.uint64), ".seg.sz.zip")
    with pytest.raises(ValueError, match="cannot write"):
        encode_cube(np.zeros((2, 2, 2), np.uint8), ".j2k")


def test_jpeg_cube_is_close_and_quality_matters():
    z, y, x = np.meshgrid(np.arange(16), np.arange(16), np.arange(16), indexing="ij")
    cube = (60 + 4 * x + 3 * y + 2 * z).astype(np.uint8)
    good = encode_cube(cube, ".jpg", jpeg_quality=95)
    poor = encode_cube(cube, ".jpg", jpeg_quality=20)
    assert len(poor) < len(good)
    decoded = np.asarray(Image.open(io.BytesIO(good))).reshape(16, 16, 16)
    assert np.abs(decoded.astype(int) - cube).max() <= 6


def test_write_cube_is_atomic_and_replaces(tmp_path):
    path = cube_path(tmp_path, "e", 1, (0, 0, 0), ".raw")
    write_cube(path, np.full((2, 2, 2), 1, np.uint8), ".raw")
    write_cube(path, np.full((2, 2, 2), 9, np.uint8), ".raw")
    assert path.read_bytes() == bytes([9] * 8)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left
    assert path.relative_to(tmp_path).as_posix() == "mag1/x0000/y0000/z0000/e_mag1_x0000_y0000_z0000.raw"
    assert cube_path("r", "e", 4, (12345, 2, 3), ".png").name == "e_mag4_x12345_y0002_z0003.png"


def test_write_mag_cubes_pads_borders_and_skips_empty(tmp_path):
    image, seg = _volumes()
    n = write_mag_cubes(tmp_path, "e", 1, seg, ".seg.sz.zip", (32, 32, 32))
    # 3 x 2 x 2 cubes, all of them hold some non-zero id
    assert n == 12
    for path in tmp_path.rglob("*.seg.sz.zip"):
        x, y, z = _cube_index(path)
        assert np.array_equal(_decode_cube(path), _padded(seg, (32, 32, 32), (x, y, z))), path.name
    # an empty cube is not written, and an existing file for it is removed
    blank = np.zeros_like(image)
    blank[:5, :5, :5] = 1
    target = cube_path(tmp_path, "e", 1, (2, 1, 1), ".raw")
    write_cube(target, np.ones((32, 32, 32), np.uint8), ".raw")
    assert write_mag_cubes(tmp_path, "e", 1, blank, ".raw", (32, 32, 32)) == 1
    assert not target.exists()
    assert write_mag_cubes(tmp_path, "e", 1, blank, ".raw", (32, 32, 32), skip_empty=False) == 12
    assert np.array_equal(_decode_cube(target), np.zeros((32, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="aligned"):
        write_mag_cubes(tmp_path, "e", 1, blank, ".raw", (32, 32, 32), offset_xyz=(16, 0, 0))


def test_write_mag_cubes_at_an_offset(tmp_path):
    block = np.arange(32**3, dtype=np.uint64).reshape(32, 32, 32) + np.uint64(1)
    write_mag_cubes(tmp_path, "e", 2, block, ".seg.sz.zip", (32, 32, 32), offset_xyz=(64, 32, 0))
    (only,) = list(tmp_path.rglob("*.seg.sz.zip"))
    assert only.name == "e_mag2_x0002_y0001_z0000.seg.sz.zip"
    assert np.array_equal(_decode_cube(only), block)


# ----------------------------------------------------------------------------- KNOSSOS: datasets


@pytest.fixture
def knossos_dataset(tmp_path):
    image, seg = _volumes()
    layers = [
        KnossosLayerSpec(".png", pyramid(image, 3, segmentation=False), description="image"),
        KnossosLayerSpec(".raw", pyramid(image, 3, segmentation=False), description="raw image"),
        KnossosLayerSpec(".seg.sz.zip", pyramid(seg, 3, segmentation=True), description="ids"),
    ]
    toml = write_knossos_dataset(tmp_path / "ds", "testds", (9.5, 9.5, 30), layers, cube_shape_xyz=32)
    return toml, layers


def test_knossos_dataset_files(knossos_dataset):
    toml, layers = knossos_dataset
    root = toml.parent
    assert toml.name == "testds.k.toml"
    parsed = tomllib.loads(toml.read_text())["Layer"]
    assert [layer["FileExtension"] for layer in parsed] == [[".png"], [".raw"], [".seg.sz.zip"]]
    assert all(layer["Extent_px"] == [70, 50, 40] and layer["CubeShape_px"] == [32, 32, 32] for layer in parsed)
    assert parsed[0]["VoxelSize_nm"] == [[9.5, 9.5, 30], [19, 19, 60], [38, 38, 120]]
    assert all(layer["ServerFormat"] == "knossos" for layer in parsed)
    root_conf = legacy_conf_text("testds", (70, 50, 40), (9.5, 9.5, 30), 1, 32, ".png")
    assert (root / "knossos.conf").read_text() == root_conf
    for i, mag in enumerate((1, 2, 4)):
        conf = (root / f"mag{mag}" / "knossos.conf").read_text()
        boundary = tuple(-(-e // mag) for e in (70, 50, 40))
        assert conf == legacy_conf_text("testds", boundary, (9.5 * mag, 9.5 * mag, 30 * mag), mag, 32, ".png")
        for layer in layers:
            volume = layer.mags[i]
            for path in (root / f"mag{mag}").rglob(f"*{layer.ext}"):
                x, y, z = _cube_index(path)
                assert path.name == f"testds_mag{mag}_x{x:04d}_y{y:04d}_z{z:04d}{layer.ext}"
                assert np.array_equal(_decode_cube(path), _padded(volume, (32, 32, 32), (x, y, z))), path
    assert not list(root.rglob("*.tmp"))


@pytest.mark.parametrize("config", ["testds.k.toml", "knossos.conf", "."])
def test_knossos_dataset_round_trip_through_reader(knossos_dataset, config):
    toml, layers = knossos_dataset
    ds = open_dataset(toml.parent / config)
    image_layers = [l for l in ds.layers if not l.is_segmentation]
    seg_layers = [l for l in ds.layers if l.is_segmentation]
    assert len(seg_layers) == 1
    # the TOML (also what the folder opens) has both image layers; the legacy conf only the .png one
    assert len(image_layers) == (1 if config == "knossos.conf" else 2)
    for layer in image_layers + seg_layers:
        assert layer.voxel_size == pytest.approx((9.5, 9.5, 30))
        assert [m.factor for m in layer.mags] == [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
        expected = layers[2] if layer.is_segmentation else layers[0]
        for mag, volume in zip(layer.mags, expected.mags):
            got = np.asarray(mag.array[:])
            assert got.dtype == volume.dtype
            assert np.array_equal(got, volume), (layer.name, mag.name)


def test_knossos_dataset_validates_shapes(tmp_path):
    image, _ = _volumes()
    with pytest.raises(ValueError, match="mag 2"):
        write_knossos_dataset(tmp_path, "e", (1, 1, 1), [KnossosLayerSpec(".raw", [image, image])])
    with pytest.raises(ValueError, match="same cube type"):
        twice = [KnossosLayerSpec(".raw", [image]), KnossosLayerSpec(".raw", [image])]
        write_knossos_dataset(tmp_path, "e", (1, 1, 1), twice)


def test_knossos_dataset_noncubic_cubes_skip_legacy_conf(tmp_path):
    image, seg = _volumes()
    toml = write_knossos_dataset(
        tmp_path, "e", (1, 1, 1), [KnossosLayerSpec(".raw", [image]), KnossosLayerSpec(".seg.sz.zip", [seg])],
        cube_shape_xyz=(64, 32, 16),
    )
    assert not (tmp_path / "knossos.conf").exists()
    assert (tmp_path / "mag1" / "knossos.conf").read_text() == ""  # marker for KNOSSOS' mag probing
    ds = open_dataset(toml)
    assert np.array_equal(np.asarray(ds.layers[0].mags[0].array[:]), image)
    assert np.array_equal(np.asarray(ds.layers[1].mags[0].array[:]), seg)


# ----------------------------------------------------------------------------- downsampling


def test_downsample_mean_rounds_half_up_exactly():
    block = np.array([0, 0, 0, 0, 1, 1, 1, 1], np.uint8).reshape(2, 2, 2)  # mean 0.5 -> 1
    assert downsample_mean(block).tolist() == [[[1]]]
    block = np.array([0, 0, 0, 0, 0, 1, 1, 1], np.uint8).reshape(2, 2, 2)  # mean 0.375 -> 0
    assert downsample_mean(block).tolist() == [[[0]]]
    big = np.full((2, 2, 2), 255, np.uint8)
    assert downsample_mean(big).tolist() == [[[255]]]  # no overflow
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 256, (6, 10, 14)).astype(np.uint8)
    expected = np.floor(vol.reshape(3, 2, 5, 2, 7, 2).astype(np.float64).mean(axis=(1, 3, 5)) + 0.5)
    assert np.array_equal(downsample_mean(vol), expected.astype(np.uint8))


def test_downsample_mode_majority_and_ties():
    vol = np.zeros((2, 2, 2), np.uint64)
    vol.flat[:] = [5, 5, 5, 7, 7, 0, 0, 9]
    assert downsample_mode(vol).tolist() == [[[5]]]
    vol.flat[:] = [9, 9, 3, 3, 0, 1, 2, 4]  # 9 and 3 tie: the smaller wins
    assert downsample_mode(vol).tolist() == [[[3]]]
    vol.flat[:] = [2**63 + 1] * 4 + [2**63] * 4
    assert downsample_mode(vol).tolist() == [[[2**63]]]


def test_downsample_odd_shapes_repeat_the_edge():
    vol = np.arange(3 * 3 * 3, dtype=np.uint64).reshape(3, 3, 3)
    out = downsample_mode(vol)
    assert out.shape == (2, 2, 2)
    assert out[1, 1, 1] == 26  # the lone corner voxel, repeated into a full block
    assert downsample_mean(vol.astype(np.uint8)).shape == (2, 2, 2)
    mags = pyramid(vol, 3, segmentation=True)
    assert [m.shape for m in mags] == [(3, 3, 3), (2, 2, 2), (1, 1, 1)]


def test_downsample_mode_large_volume_matches_bruteforce():
    rng = np.random.default_rng(11)
    vol = rng.integers(0, 4, (36, 8, 10)).astype(np.uint64)  # more than one internal slab
    out = downsample_mode(vol)
    for z in range(18):
        for y in range(4):
            for x in range(5):
                block = vol[2 * z : 2 * z + 2, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2].ravel()
                values, counts = np.unique(block, return_counts=True)
                assert out[z, y, x] == values[np.argmax(counts)]


# ----------------------------------------------------------------------------- webKnossos: texts


def test_zarr_json_matches_webknossos_fixture_text():
    uint8 = json.dumps(array_metadata(np.uint8, (1, 256, 256, 128)), sort_keys=True, separators=(",", ":"))
    assert uint8 == (DATA / "zarr3_color_1_zarr.json").read_text()
    uint32 = json.dumps(array_metadata(np.uint32, (1, 256, 256, 128)), sort_keys=True, separators=(",", ":"))
    assert uint32 == (DATA / "zarr3_segmentation_1_zarr.json").read_text()
    # shape rounded up to whole shards
    assert array_metadata(np.uint8, (1, 70, 50, 129))["shape"] == [1, 128, 128, 256]


def test_layer_group_and_properties_match_webknossos_fixture_text():
    voxel = (11.24, 11.24, 28.0)
    mags = [1, (2, 2, 1), (4, 4, 2)]
    assert layer_group_text(mags, voxel) == (DATA / "zarr3_color_group_zarr.json").read_text()
    shape = (128, 256, 256)

    def zeros(dtype, factor, channels=None, size=shape):
        zyx = tuple(-(-s // f) for s, f in zip(size, factor[::-1]))
        return np.broadcast_to(np.zeros((), dtype), zyx if channels is None else (channels,) + zyx)

    layers = [
        WkLayerSpec("color", "color", {m: zeros(np.uint8, (m,) * 3 if np.isscalar(m) else m) for m in mags}),
        WkLayerSpec("segmentation", "segmentation",
                    {m: zeros(np.uint32, (m,) * 3 if np.isscalar(m) else m) for m in mags}, largest_segment_id=100510),
        WkLayerSpec("color_rgb", "color", {1: zeros(np.uint8, (1, 1, 1), 3, (32, 64, 64))}),
    ]
    assert properties_text("zarr3_dataset", voxel, layers) == (DATA / "zarr3_datasource-properties.json").read_text()


def test_mag_names_and_element_classes():
    assert [mag_name(m) for m in (1, 2, (2, 2, 2), (2, 2, 1), (4, 4, 2))] == ["1", "2", "2", "2-2-1", "4-4-2"]
    assert element_class(np.uint8) == "uint8" and element_class(np.float32) == "float"
    assert element_class(np.float64) == "double" and element_class(np.uint8, 3) == "uint24"
    with pytest.raises(ValueError):
        element_class(np.float32, 3)


def test_bigint_largest_segment_id():
    layer = WkLayerSpec("s", "segmentation", {1: np.zeros((2, 2, 2), np.uint64)}, largest_segment_id=2**60)
    props = json.loads(properties_text("d", (1, 1, 1), [layer]))
    assert props["dataLayers"][0]["largestSegmentId"] == {"customJsonEncoding": "bigint", "value": str(2**60)}
    layer.largest_segment_id = 2**53 - 1
    assert json.loads(properties_text("d", (1, 1, 1), [layer]))["dataLayers"][0]["largestSegmentId"] == 2**53 - 1


# ----------------------------------------------------------------------------- webKnossos: datasets


def _wk_layers():
    image, seg = _volumes()
    seg = seg.copy()
    seg[seg == np.uint64(2**64 - 1)] = 77  # keep ids below 2**53 for the JSON number form
    return [
        WkLayerSpec("color", "color", dict(zip((1, 2, 4), pyramid(image, 3, segmentation=False)))),
        WkLayerSpec("segmentation", "segmentation", dict(zip((1, 2, 4), pyramid(seg, 3, segmentation=True)))),
    ]


@pytest.fixture
def wk_dataset(tmp_path):
    layers = _wk_layers()
    root = write_webknossos_dataset(tmp_path / "wkds", (9.5, 9.5, 30), layers, shard_shape=64)
    return root, layers


def test_wk_dataset_files(wk_dataset):
    root, layers = wk_dataset
    assert sorted(p.name for p in root.parent.iterdir()) == ["wkds"]  # temporary folder renamed away
    props = json.loads((root / "datasource-properties.json").read_text())
    assert props["id"] == {"name": "wkds", "team": ""} and props["version"] == 1
    assert props["scale"] == {"factor": [9.5, 9.5, 30.0], "unit": "nanometer"}
    color, seg = props["dataLayers"]
    assert color["boundingBox"] == {"topLeft": [0, 0, 0], "width": 70, "height": 50, "depth": 40}
    assert [m["path"] for m in color["mags"]] == ["./color/1", "./color/2", "./color/4"]
    assert [m["mag"] for m in seg["mags"]] == [[1, 1, 1], [2, 2, 2], [4, 4, 4]]
    assert all(m["axisOrder"] == {"c": 0, "x": 1, "y": 2, "z": 3} for m in color["mags"])
    assert (color["dataFormat"], color["elementClass"], color["numChannels"]) == ("zarr3", "uint8", 1)
    assert (seg["elementClass"], seg["largestSegmentId"]) == ("uint64", int(layers[1].mags[1].max()))
    meta = json.loads((root / "segmentation" / "1" / "zarr.json").read_text())
    assert meta == array_metadata(np.uint64, (1, 70, 50, 40), shard_shape=64)
    assert meta["shape"] == [1, 128, 64, 64]
    assert (root / "zarr.json").read_text() == (DATA / "zarr3_root_zarr.json").read_text()
    assert json.loads((root / "color" / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0][
        "datasets"
    ][2] == {"path": "4", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 38.0, 38.0, 120.0]}]}
    # shard keys c/0/<sx>/<sy>/<sz>
    assert (root / "color" / "1" / "c" / "0" / "1" / "0" / "0").is_file()


def test_wk_dataset_round_trip_through_reader_and_tensorstore(wk_dataset):
    import tensorstore as ts

    root, layers = wk_dataset
    ds = open_dataset(root)
    for spec in layers:
        layer = ds.layer(spec.name)
        for (factor, volume), mag in zip(spec.mags.items(), layer.mags):
            assert mag.factor == (factor,) * 3
            assert np.array_equal(np.asarray(mag.array[:]), volume)
            kvstore = {"driver": "file", "path": str(root / spec.name / str(factor))}
            store = ts.open({"driver": "zarr3", "kvstore": kvstore}).result()
            assert store.domain.labels == ("c", "x", "y", "z")
            full = store.read().result()
            z, y, x = volume.shape
            assert np.array_equal(full[0, :x, :y, :z].transpose(2, 1, 0), volume)
            assert not full[0, x:].any() and not full[0, :, y:].any()


def test_wk_dataset_overwrite_and_validation(tmp_path):
    layers = _wk_layers()
    root = write_webknossos_dataset(tmp_path / "d", (1, 1, 1), layers[:1])
    with pytest.raises(FileExistsError):
        write_webknossos_dataset(root, (1, 1, 1), layers)
    write_webknossos_dataset(root, (1, 1, 1), layers, overwrite=True)
    assert [l["name"] for l in json.loads((root / "datasource-properties.json").read_text())["dataLayers"]] == [
        "color", "segmentation"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    bad = WkLayerSpec("x", "color", {1: np.zeros((4, 4, 4), np.uint8), 2: np.zeros((3, 2, 2), np.uint8)})
    with pytest.raises(ValueError, match="mag 2"):
        write_webknossos_dataset(tmp_path / "e", (1, 1, 1), [bad])
    with pytest.raises(ValueError, match="no mag 1"):
        no_mag1 = WkLayerSpec("x", "color", {2: np.zeros((2, 2, 2), np.uint8)})
        write_webknossos_dataset(tmp_path / "e", (1, 1, 1), [no_mag1])
    assert not (tmp_path / "e").exists()


REFERENCE_READER = """
import hashlib, json, sys
import numpy as np
import webknossos as wk
from webknossos import Mag
ds = wk.Dataset.open(sys.argv[1])
out = {"voxel_size": list(ds.voxel_size), "layers": {}}
for name, layer in ds.layers.items():
    entry = {"category": layer.category, "dtype": str(layer.dtype_per_channel),
             "bbox": [list(layer.bounding_box.topleft), list(layer.bounding_box.size)],
             "largest_segment_id": getattr(layer, "largest_segment_id", None), "mags": {}}
    for mag, view in layer.mags.items():
        a = view.read()
        zyx = np.ascontiguousarray(a[0].transpose(2, 1, 0))
        entry["mags"][mag.to_layer_name()] = [list(a.shape), hashlib.sha256(zyx.tobytes()).hexdigest()]
    out["layers"][name] = entry
out["names"] = [Mag(m).to_layer_name() for m in (1, 2, (2, 2, 2), (2, 2, 1))]
print(json.dumps(out))
"""


@pytest.mark.reference
def test_wk_dataset_reads_identically_in_reference_library(wk_dataset):
    root, layers = wk_dataset
    ref = run_reference(REFERENCE_READER, str(root))
    assert ref["voxel_size"] == [9.5, 9.5, 30.0]
    assert ref["names"] == [mag_name(m) for m in (1, 2, (2, 2, 2), (2, 2, 1))]
    for spec in layers:
        entry = ref["layers"][spec.name]
        assert entry["category"] == spec.category
        assert entry["bbox"] == [[0, 0, 0], [70, 50, 40]]
        assert entry["dtype"] == str(spec.mags[1].dtype)
        if spec.category == "segmentation":
            assert entry["largest_segment_id"] == int(spec.mags[1].max())
        assert sorted(entry["mags"]) == ["1", "2", "4"]
        for factor, volume in spec.mags.items():
            shape, digest = entry["mags"][str(factor)]
            assert shape == [1, *volume.shape[::-1]]
            assert digest == _sha(volume)

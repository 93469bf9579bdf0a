"""KNOSSOS cube datasets: legacy confs, PyKNOSSOS confs and .k.toml; cube codecs; errors; HTTP."""

from __future__ import annotations

import io
import json
import shutil
import sys
import time
import warnings
import zipfile
from pathlib import Path

import cramjam
import numpy as np
import pytest
from PIL import Image

from napari_knossos.formats.knossos import cube_key, open_knossos, sniff

from .http_server import serve

TINY = Path(__file__).parent / "data" / "knossos" / "tiny_dataset"
EXPECTED = json.loads((Path(__file__).parent / "data" / "knossos" / "expected.json").read_text())
EXTENT_XYZ = (64, 48, 40)


def raw_volume() -> np.ndarray:
    """The fixture's mag-1 raw layer (z, y, x) from its documented formula."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in EXTENT_XYZ[::-1]), indexing="ij")
    return ((x + 2 * y + 3 * z) % 256).astype(np.uint8)


def seg_volume() -> np.ndarray:
    """The fixture's mag-1 segmentation: labels in cube (0,0,0) only, absent cubes read as 0."""
    out = np.zeros(EXTENT_XYZ[::-1], np.uint64)
    z, y, x = np.meshgrid(np.arange(32), np.arange(32), np.arange(32), indexing="ij")
    out[:32, :32, :32] = 1 + x // 16 + 2 * (y // 16) + 4 * (z // 16)
    return out


def xyz(key: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in key.split(","))


# ---------------------------------------------------------------------------------------------
# writers used to generate test datasets
# ---------------------------------------------------------------------------------------------
def encode_cube(block_zyx: np.ndarray, ext: str, key: str = "cube") -> bytes:
    cz, cy, cx = block_zyx.shape[:3]
    if ext == ".raw":
        return np.ascontiguousarray(block_zyx).astype(block_zyx.dtype.newbyteorder("<")).tobytes()
    if ext == ".seg":
        return block_zyx.astype("<u8").tobytes()
    if ext == ".seg.sz.zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(key + ".seg.sz", bytes(cramjam.snappy.compress_raw(block_zyx.astype("<u8").tobytes())))
        return buf.getvalue()
    image = Image.fromarray(np.ascontiguousarray(block_zyx.reshape(cz * cy, cx, *block_zyx.shape[3:])))
    buf = io.BytesIO()
    if ext == ".png":
        image.save(buf, format="PNG")
    else:
        image.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_cubes(root: Path, experiment: str, mag_folder: int, volume_zyx: np.ndarray, cube_xyz, ext: str):
    """Write ``volume`` (z, y, x[, c]) as full-size KNOSSOS cubes of ``mag{mag_folder}``."""
    cx, cy, cz = cube_xyz
    grid = [-(-n // c) for n, c in zip(volume_zyx.shape[:3], (cz, cy, cx))]
    padded = np.zeros((grid[0] * cz, grid[1] * cy, grid[2] * cx, *volume_zyx.shape[3:]), volume_zyx.dtype)
    padded[: volume_zyx.shape[0], : volume_zyx.shape[1], : volume_zyx.shape[2]] = volume_zyx
    for iz in range(grid[0]):
        for iy in range(grid[1]):
            for ix in range(grid[2]):
                block = padded[iz * cz : (iz + 1) * cz, iy * cy : (iy + 1) * cy, ix * cx : (ix + 1) * cx]
                path = root / cube_key(experiment, mag_folder, (ix, iy, iz), ext)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(encode_cube(block, ext, path.name))


def downsample(volume_zyx: np.ndarray, factor_xyz) -> np.ndarray:
    fx, fy, fz = (int(f) for f in factor_xyz)
    return volume_zyx[::fz, ::fy, ::fx]


def legacy_conf(name='"tiny"', extent=EXTENT_XYZ, scale=(10.0, 10.0, 25.0), extra="") -> str:
    return (
        f"experiment name {name};\n"
        + "".join(f"boundary {a} {v};\n" for a, v in zip("xyz", extent))
        + "".join(f"scale {a} {v};\n" for a, v in zip("xyz", scale))
        + extra
    )


# ---------------------------------------------------------------------------------------------
# the reference fixture through every entry point
# ---------------------------------------------------------------------------------------------
ENTRY_POINTS = ["knossos.conf", "tiny.k.toml", "mag1/knossos.conf", "mag2/knossos.conf", ".", "mag1"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_fixture_values_through_every_entry_point(entry):
    path = TINY / entry
    assert sniff(path)
    ds = open_knossos(path)
    assert ds.format == "knossos" and ds.name == "tiny"
    assert [(l.name, l.category) for l in ds.layers] == [("tiny", "color"), ("segmentation", "segmentation")]
    raw, seg = ds.layer("tiny"), ds.layer("segmentation")
    assert raw.dtype == np.uint8 and seg.dtype == np.uint64
    assert raw.voxel_size == (10.0, 10.0, 25.0) and raw.size == EXTENT_XYZ
    assert [m.factor for m in raw.mags] == [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0)]

    mag1 = raw.mags[0].array
    assert mag1.shape == (40, 48, 64)
    for key, value in EXPECTED["raw_samples_mag1"].items():
        x, y, z = xyz(key)
        assert mag1[z, y, x] == value, key
    np.testing.assert_array_equal(mag1[:], raw_volume())

    mag2 = raw.mags[1].array
    assert mag2.shape == (20, 24, 32)  # ceil(extent / 2)
    assert mag2[0, 0, 0] == EXPECTED["raw_samples_mag2"]["0,0,0"]
    assert mag2[5, 4, 3] == EXPECTED["raw_samples_mag2"]["mag2(3,4,5) = mag1(6,8,10)"]
    np.testing.assert_array_equal(mag2[:], raw_volume()[::2, ::2, ::2])

    labels = seg.mags[0].array
    for key, value in EXPECTED["seg_samples_mag1"].items():
        x, y, z = xyz(key)
        assert labels[z, y, x] == value, key
    assert labels[39, 47, 63] == 0 and labels[0, 0, 32] == 0  # absent cubes
    np.testing.assert_array_equal(labels[:], seg_volume())


def test_dialect_choice():
    assert open_knossos(TINY).extra["dialect"] == "toml"  # the current format wins in a folder
    assert open_knossos(TINY / "knossos.conf").extra["dialect"] == "legacy"
    ds = open_knossos(TINY / "mag1")
    assert ds.extra["dialect"] == "legacy" and ds.extra["config"].endswith("knossos.conf")
    assert [l.mags[0].path for l in ds.layers][0].endswith("mag1")


def test_legacy_variants_unquoted_name_mag_suffix_and_empty_mag_marker(tmp_path):
    ds_dir = tmp_path / "ds"
    shutil.copytree(TINY, ds_dir)
    (ds_dir / "tiny.k.toml").unlink()
    # knossos_utils writes the name without quotes; K cuts the name before "_mag" for file names
    for name in ("tiny", '"tiny_mag1"', "tiny_mag1"):
        (ds_dir / "knossos.conf").write_text(legacy_conf(name, extra="magnification 1;\ncube_edge_length 32;\n"))
        ds = open_knossos(ds_dir / "knossos.conf")
        assert ds.name == name.strip('"')
        np.testing.assert_array_equal(ds.layers[0].mags[0].array[:], raw_volume())
    # an empty mag marker (knossos_utils) means: the dataset config is the parent's
    (ds_dir / "mag1" / "knossos.conf").write_text("")
    assert sniff(ds_dir / "mag1" / "knossos.conf") and sniff(ds_dir / "mag1")
    ds = open_knossos(ds_dir / "mag1" / "knossos.conf")
    assert ds.extra["config"] == str(ds_dir / "knossos.conf")
    np.testing.assert_array_equal(ds.layers[0].mags[1].array[:], raw_volume()[::2, ::2, ::2])


def test_legacy_mags_from_markers_lowest_to_highest(tmp_path):
    vol = raw_volume()
    for m in (2, 8):  # markers for mag2 and mag8 only: K assumes mag4 in between
        write_cubes(tmp_path, "tiny", m, downsample(vol, (m, m, m)), (32, 32, 32), ".raw")
        (tmp_path / f"mag{m}" / "knossos.conf").write_text("")
    (tmp_path / "knossos.conf").write_text(legacy_conf(extra="cube_edge_length 32;\n"))
    layer = open_knossos(tmp_path).layers[0]
    assert [m.name for m in layer.mags] == ["2", "4", "8"]
    assert [m.array.shape for m in layer.mags] == [(20, 24, 32), (10, 12, 16), (5, 6, 8)]
    assert layer.voxel_size == (10.0, 10.0, 25.0)
    np.testing.assert_array_equal(layer.mags[0].array[:], vol[::2, ::2, ::2])
    assert not layer.mags[1].array[:].any()  # mag4 has no cubes: zeros
    np.testing.assert_array_equal(layer.mags[2].array[:], vol[::8, ::8, ::8])


# ---------------------------------------------------------------------------------------------
# PyKNOSSOS
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("server_format", ["", "2", "knossos"])
@pytest.mark.parametrize("cube_line", ["_CubeSize = 16,8,4,", "_CubeSize=16,8,4,"])
def test_pyknossos_conf_non_cubic_cubes_anisotropic_mags(tmp_path, cube_line, server_format):
    extent = (40, 20, 14)  # x, y, z: border cubes in every axis
    z, y, x = np.meshgrid(*(np.arange(n) for n in extent[::-1]), indexing="ij")
    vol = ((7 * x + 3 * y + 11 * z) % 251).astype(np.uint8)
    factors = [(1, 1, 1), (2, 2, 1), (4, 4, 2)]
    folders = [1, 2, 4] if server_format == "knossos" else [1, 2, 3]  # K: ordinal unless "knossos"
    for f, m in zip(factors, folders):
        write_cubes(tmp_path / "data", "E085_L01", m, downsample(vol, f), (16, 8, 4), ".raw")
    scales = ", ".join(f"{9.5 * fx},{9.5 * fy},{30 * fz}" for fx, fy, fz in factors)
    conf = tmp_path / "sbem.conf"  # a plain *.conf: recognised by its [Dataset] header
    conf.write_text(
        "[Dataset]\n_BaseName = E085_L01\n_BaseURL = data\n_BaseExt = .raw\n"
        + (f"_ServerFormat = {server_format}\n" if server_format else "")
        + f"_DataScale = {scales},\n_NumberofCubes = 3,3,4,\n_Extent = 40,20,14,\n{cube_line}\n_Origin = 0,0,0,\n"
    )
    assert sniff(conf) and sniff(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_knossos(conf)
    unspaced = [w for w in caught if "lack spaces" in str(w.message)]
    assert len(unspaced) == (0 if " = " in cube_line else 1)
    assert ds.extra["dialect"] == "pyknossos"
    (layer,) = ds.layers
    assert layer.name == "E085_L01" and layer.voxel_size == (9.5, 9.5, 30.0)
    assert [m.factor for m in layer.mags] == [tuple(map(float, f)) for f in factors]
    assert [m.name for m in layer.mags] == ["1", "2-2-1", "4-4-2"]
    assert layer.mags[0].array.chunk_zyx == (4, 8, 16)
    for mag, f in zip(layer.mags, factors):
        expected = downsample(vol, f)
        assert mag.array.shape == expected.shape  # ceil(extent / factor)
        np.testing.assert_array_equal(mag.array[:], expected)


def test_pyknossos_several_sections_visibility_and_file_type(tmp_path):
    vol = raw_volume()
    write_cubes(tmp_path, "tiny", 1, vol, (32, 32, 32), ".raw")
    write_cubes(tmp_path, "tiny", 1, vol, (32, 32, 32), ".png")
    write_cubes(tmp_path, "tiny", 1, seg_volume(), (32, 32, 32), ".seg.sz.zip")
    common = "_BaseName = tiny\n_DataScale = 10,10,25,\n_Extent = 64,48,40,\n_CubeSize = 32,32,32,\n"
    conf = tmp_path / "tiny.pyk.conf"
    conf.write_text(
        "# written by hand\n[Dataset]\n" + common + "_BaseExt = .png\n_FileType = 0\n"  # later line wins: raw
        "[Dataset]\n" + common + "_FileType = 0\n_BaseExt = .png\n_Color = red\n"  # later line wins: png
        "[Dataset]\n" + common + "_BaseExt = .seg.sz.zip\n"
    )
    ds = open_knossos(conf)
    assert [(l.name, l.extra["file_extension"], l.visible) for l in ds.layers] == [
        ("tiny (raw)", ".raw", True),
        ("tiny (png)", ".png", False),  # K hides non-first image layers
        ("segmentation", ".seg.sz.zip", True),
    ]
    assert ds.layers[1].color == "red"
    for layer in ds.layers[:2]:
        np.testing.assert_array_equal(layer.mags[0].array[:], vol)
    np.testing.assert_array_equal(ds.layers[2].mags[0].array[:], seg_volume())


# ---------------------------------------------------------------------------------------------
# .k.toml specifics, image cubes, data types
# ---------------------------------------------------------------------------------------------
def toml_layer(name, exts, extent, cube, voxel_sizes, **extra) -> str:
    lines = [
        "[[Layer]]",
        f'Name = "{name}"',
        'Description = "test layer"',
        "FileExtension = [" + ", ".join(f'"{e}"' for e in exts) + "]",
        f"Extent_px = {list(extent)}",
        f"CubeShape_px = {list(cube)}",
        f"VoxelSize_nm = {[list(v) for v in voxel_sizes]}",
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def smooth_volume(extent_xyz) -> np.ndarray:
    z, y, x = np.meshgrid(*(np.arange(n) for n in extent_xyz[::-1]), indexing="ij")
    return (40 + x + y + 2 * z).astype(np.uint8)


def test_png_and_jpg_cubes(tmp_path):
    extent, cube = (48, 40, 24), (16, 16, 8)
    vol = smooth_volume(extent)
    for ext in (".png", ".jpg"):
        write_cubes(tmp_path, "img", 1, vol, cube, ext)
    (tmp_path / "img.k.toml").write_text(toml_layer("img", [".png", ".jpg"], extent, cube, [(5, 5, 5)]))
    ds = open_knossos(tmp_path / "img.k.toml")
    assert [l.name for l in ds.layers] == ["img (png)", "img (jpg)"]
    png, jpg = (l.mags[0].array[:] for l in ds.layers)
    np.testing.assert_array_equal(png, vol)
    err = np.abs(jpg.astype(int) - vol.astype(int))
    assert err.mean() < 1.5 and err.max() < 16


@pytest.mark.parametrize("server_format, folders", [(None, [1, 2, 3]), ("knossos", [1, 2, 4])])
def test_toml_mag_folders_follow_knossos(tmp_path, server_format, folders):
    vol = raw_volume()
    factors = [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
    for f, m in zip(factors, folders):
        write_cubes(tmp_path, "tiny", m, downsample(vol, f), (32, 32, 32), ".raw")
    extra = {"ServerFormat": server_format} if server_format else {}
    (tmp_path / "t.k.toml").write_text(
        toml_layer("tiny", [".raw"], EXTENT_XYZ, (32, 32, 32), [(10 * f[0], 10 * f[1], 25 * f[2]) for f in factors], **extra)
    )
    layer = open_knossos(tmp_path / "t.k.toml").layers[0]
    assert layer.extra["mag_folders"] == [f"mag{m}" for m in folders]
    for mag, f in zip(layer.mags, factors):
        np.testing.assert_array_equal(mag.array[:], downsample(vol, f))


def test_png_16_bit_cubes(tmp_path):
    extent, cube = (16, 16, 8), (16, 16, 8)
    vol = (np.arange(16 * 16 * 8).reshape(8, 16, 16) * 31).astype(np.uint16)
    path = tmp_path / cube_key("deep", 1, (0, 0, 0), ".png")
    path.parent.mkdir(parents=True)
    Image.fromarray(vol.reshape(8 * 16, 16)).save(path)
    (tmp_path / "deep.k.toml").write_text(toml_layer("deep", [".png"], extent, cube, [(5, 5, 5)], DataType="uint16"))
    layer = open_knossos(tmp_path).layers[0]
    assert layer.dtype == np.uint16
    np.testing.assert_array_equal(layer.mags[0].array[:], vol)


def test_legacy_compression_ratio_builds_knossos_layer_list(tmp_path):
    vol = smooth_volume(EXTENT_XYZ)
    write_cubes(tmp_path, "tiny", 1, vol, (32, 32, 32), ".jpg")
    write_cubes(tmp_path, "tiny", 1, vol, (32, 32, 32), ".png")
    (tmp_path / "mag1" / "knossos.conf").write_text("")
    (tmp_path / "knossos.conf").write_text(legacy_conf(extra="cube_edge_length 32;\ncompression_ratio 1000;\npng;\n"))
    ds = open_knossos(tmp_path)
    assert [(l.name, l.extra["file_extension"], l.visible) for l in ds.layers] == [
        ("tiny (jpg)", ".jpg", True),
        ("tiny (png)", ".png", False),
        ("segmentation", ".seg.sz.zip", True),
    ]
    np.testing.assert_array_equal(ds.layers[1].mags[0].array[:], vol)
    assert np.abs(ds.layers[0].mags[0].array[:].astype(int) - vol).mean() < 1.5
    assert not ds.layers[2].mags[0].array[:].any()  # no segmentation cubes: zeros


def test_jpeg2000_without_imagecodecs_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # as if not installed
    (tmp_path / "knossos.conf").write_text(legacy_conf(extra="compression_ratio 6;\n"))
    with pytest.raises(ValueError, match=r"imagecodecs.*napari-knossos\[jpeg2000\]") as err:
        open_knossos(tmp_path / "knossos.conf")
    assert "knossos.conf" in str(err.value) and ".6.jp2" in str(err.value)


def test_toml_uint16_raw_rgb_raw_and_seg(tmp_path):
    extent, cube = (20, 12, 6), (8, 8, 4)
    vol16 = (np.arange(np.prod(extent)).reshape(extent[::-1]) * 37).astype(np.uint16)
    rgb = np.stack([smooth_volume(extent), smooth_volume(extent)[::-1], 255 - smooth_volume(extent)], -1)
    labels = (np.arange(np.prod(extent)).reshape(extent[::-1]).astype(np.uint64) << np.uint64(40)) + np.uint64(7)
    write_cubes(tmp_path / "a", "deep", 1, vol16, cube, ".raw")
    write_cubes(tmp_path / "b", "rgb", 1, rgb, cube, ".raw")
    write_cubes(tmp_path / "c", "ids", 1, labels, cube, ".seg")
    (tmp_path / "multi.k.toml").write_text(
        toml_layer("deep", [".raw"], extent, cube, [(4, 4, 40)], URL="a", DataType="uint16")
        + toml_layer("rgb", [".raw"], extent, cube, [(4, 4, 40)], URL="b", NumChannels=3, Visible=True)
        + toml_layer("ids", [".seg"], extent, cube, [(4, 4, 40)], URL="c")
    )
    deep, color, ids = open_knossos(tmp_path / "multi.k.toml").layers
    assert deep.dtype == np.uint16 and deep.visible
    np.testing.assert_array_equal(deep.mags[0].array[:], vol16)
    assert color.rgb and color.num_channels == 3 and color.visible and color.mags[0].array.shape == (6, 12, 20, 3)
    np.testing.assert_array_equal(color.mags[0].array[:], rgb)
    assert ids.name == "segmentation" and ids.dtype == np.uint64
    np.testing.assert_array_equal(ids.mags[0].array[:], labels)


def test_huge_extent_opens_fast_and_wide_cube_indices(tmp_path):
    n = 2**20
    (tmp_path / "huge.k.toml").write_text(
        toml_layer("huge_mag1", [".raw", ".seg.sz.zip"], (n, n, n), (64, 32, 16), [(1, 1, 1), (2, 2, 2)])
    )
    # one cube far out: x index 12345 needs five digits (never truncated to four)
    cube = (np.arange(64 * 32 * 16) % 253).astype(np.uint8).reshape(16, 32, 64)
    key = cube_key("huge_mag1", 1, (12345, 3, 60000), ".raw")
    assert key == "mag1/x12345/y0003/z60000/huge_mag1_x12345_y0003_z60000.raw"
    assert cube_key("a", 2, (0, 7, 10000), ".seg.sz.zip") == "mag2/x0000/y0007/z10000/a_mag2_x0000_y0007_z10000.seg.sz.zip"
    (tmp_path / key).parent.mkdir(parents=True)
    (tmp_path / key).write_bytes(cube.tobytes())

    t0 = time.perf_counter()
    ds = open_knossos(tmp_path / "huge.k.toml")
    assert time.perf_counter() - t0 < 1.0
    raw = ds.layers[0]
    assert raw.mags[0].array.shape == (n, n, n) and raw.mags[1].array.shape == (n // 2,) * 3
    t0 = time.perf_counter()
    assert not raw.mags[0].array[n - 1, 5000:5300, 70000:70300].any()  # deep plane, no cubes: zeros
    assert not ds.layers[1].mags[1].array[n // 2 - 1, :200, :200].any()
    assert time.perf_counter() - t0 < 1.0
    x0, y0, z0 = 12345 * 64, 3 * 32, 60000 * 16
    np.testing.assert_array_equal(raw.mags[0].array[z0 : z0 + 16, y0 : y0 + 32, x0 : x0 + 64], cube)

    (tmp_path / "knossos.conf").write_text(legacy_conf(extent=(n, n, n)))
    t0 = time.perf_counter()
    legacy = open_knossos(tmp_path / "knossos.conf")
    assert time.perf_counter() - t0 < 1.0
    assert legacy.layers[0].mags[0].array.shape == (n, n, n)


# ---------------------------------------------------------------------------------------------
# corrupt cubes: zeros + exactly one warning naming the file
# ---------------------------------------------------------------------------------------------
def _zip_with(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.seg.sz", payload)
    return buf.getvalue()


CORRUPTIONS = {
    "truncated raw": (".raw", lambda data: data[:1000]),
    "garbage seg zip": (".seg.sz.zip", lambda data: b"this is not a zip archive" * 10),
    "garbage snappy in zip": (".seg.sz.zip", lambda data: _zip_with(b"\xff\xff\xff\x7f garbage")),
    "short snappy payload": (".seg.sz.zip", lambda data: _zip_with(bytes(cramjam.snappy.compress_raw(b"\0" * 800)))),
    "empty zip": (".seg.sz.zip", lambda data: b"PK\x05\x06" + b"\0" * 18),
    # a deflate bomb: 64 MiB of zeros inflating from ~64 KiB is refused before it is inflated
    "zip bomb": (".seg.sz.zip", lambda data: _bomb()),
}


def _bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.seg.sz", b"\0" * (64 * 2**20))
    return buf.getvalue()


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_cube_reads_as_zeros_with_one_warning(tmp_path, case):
    ext, damage = CORRUPTIONS[case]
    ds_dir = tmp_path / "ds"
    shutil.copytree(TINY, ds_dir)
    cube = ds_dir / cube_key("tiny", 1, (0, 0, 0), ext)
    cube.write_bytes(damage(cube.read_bytes()))
    layer = open_knossos(ds_dir / "tiny.k.toml").layers[0 if ext == ".raw" else 1]
    expected = raw_volume() if ext == ".raw" else seg_volume()
    expected[:32, :32, :32] = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            np.testing.assert_array_equal(layer.mags[0].array[:], expected)
        # a fresh open (new arrays, same files) does not warn again either
        again = open_knossos(ds_dir / "tiny.k.toml").layers[0 if ext == ".raw" else 1]
        again.mags[0].array[:16, :16, :16]
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert str(cube) in messages[0]


def test_corrupt_png_cube(tmp_path):
    extent, cube = (16, 16, 8), (16, 16, 8)
    write_cubes(tmp_path, "img", 1, smooth_volume(extent), cube, ".png")
    (tmp_path / "img.k.toml").write_text(toml_layer("img", [".png"], extent, cube, [(5, 5, 5)]))
    path = tmp_path / cube_key("img", 1, (0, 0, 0), ".png")
    path.write_bytes(path.read_bytes()[:60])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not open_knossos(tmp_path).layers[0].mags[0].array[:].any()
    assert [str(path) in str(w.message) for w in caught] == [True]


# ---------------------------------------------------------------------------------------------
# malformed configs
# ---------------------------------------------------------------------------------------------
MALFORMED_LEGACY = {
    "non-numeric boundary": (legacy_conf().replace("boundary y 48;", "boundary y abc;"), "line 3"),
    "non-numeric scale": (legacy_conf().replace("scale z 25.0;", "scale z 2x5;"), "line 7"),
    "missing boundary": (legacy_conf().replace("boundary z 40;\n", ""), "boundary z"),
    "missing name": (legacy_conf().replace('experiment name "tiny";\n', ""), "experiment name"),
    "no statements": ("# nothing here\n", "experiment name"),
    "bad magnification": (legacy_conf(extra="magnification two;\n"), "line 8"),
    "bad cube edge": (legacy_conf(extra="cube_edge_length 0;\n"), "line 8"),
    "unbalanced quote": (legacy_conf(name='"tiny'), "line 1"),
}


@pytest.mark.parametrize("case", list(MALFORMED_LEGACY))
def test_malformed_legacy_conf(tmp_path, case):
    text, where = MALFORMED_LEGACY[case]
    (tmp_path / "broken.k.conf").write_text(text)
    with pytest.raises(ValueError) as err:
        open_knossos(tmp_path / "broken.k.conf")
    assert "broken.k.conf" in str(err.value) and where in str(err.value)


GOOD_LAYER = toml_layer("t", [".raw"], (64, 48, 40), (32, 32, 32), [(10, 10, 25)])
MALFORMED_TOML = {
    "syntax": (GOOD_LAYER.replace('Name = "t"', 'Name = "t'), "line 2"),
    "missing extent": (GOOD_LAYER.replace("Extent_px = [64, 48, 40]\n", ""), "Layer[0].Extent_px"),
    "float extent": (GOOD_LAYER.replace("[64, 48, 40]", "[64.5, 48, 40]"), "Layer[0].Extent_px"),
    "two-value cube": (GOOD_LAYER.replace("[32, 32, 32]", "[32, 32]"), "Layer[0].CubeShape_px"),
    "voxel size pair": (GOOD_LAYER.replace("[[10, 10, 25]]", "[[10, 10]]"), "Layer[0].VoxelSize_nm"),
    "voxel size flat": (GOOD_LAYER.replace("[[10, 10, 25]]", "[10, 10, 25]"), "Layer[0].VoxelSize_nm"),
    "voxel size empty": (GOOD_LAYER.replace("[[10, 10, 25]]", "[]"), "Layer[0].VoxelSize_nm"),
    "unknown extension": (GOOD_LAYER.replace('".raw"', '".tif"'), "Layer[0].FileExtension"),
    "name not a string": (GOOD_LAYER.replace('Name = "t"', "Name = 5"), "Layer[0].Name"),
    "no layers": ('Name = "t"\n', "Layer"),
    "second layer": (GOOD_LAYER + GOOD_LAYER.replace('Name = "t"\n', ""), "Layer[1].Name"),
    "bad data type": (GOOD_LAYER + 'DataType = "float32"\n', "Layer[0].DataType"),
}


@pytest.mark.parametrize("case", list(MALFORMED_TOML))
def test_malformed_toml(tmp_path, case):
    text, where = MALFORMED_TOML[case]
    path = tmp_path / "broken.k.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        open_knossos(path)
    assert "broken.k.toml" in str(err.value) and where in str(err.value), str(err.value)


MALFORMED_PYK = {
    "data scale not triplets": ("_DataScale = 10,10,25,20,\n", "line 3"),
    "non-numeric extent": ("_DataScale = 10,10,25,\n_Extent = 64,forty,40\n", "line 4"),
    "missing data scale": ("_Extent = 64,48,40\n", "_DataScale"),
    "bad file type": ("_DataScale = 10,10,25\n_Extent = 64,48,40\n_FileType = 9\n", "line 5"),
    "unknown ext": ("_DataScale = 10,10,25\n_Extent = 64,48,40\n_BaseExt = .tif\n", "line 5"),
    "neurodata server": ("_DataScale = 10,10,25\n_Extent = 64,48,40\n_ServerFormat = 1\n", "line 5"),
}


@pytest.mark.parametrize("case", list(MALFORMED_PYK))
def test_malformed_pyknossos(tmp_path, case):
    body, where = MALFORMED_PYK[case]
    path = tmp_path / "broken.pyk.conf"
    path.write_text("[Dataset]\n_BaseName = t\n" + body)
    with pytest.raises(ValueError) as err:
        open_knossos(path)
    assert "broken.pyk.conf" in str(err.value) and where in str(err.value), str(err.value)


def test_not_a_dataset_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="no KNOSSOS dataset config"):
        open_knossos(tmp_path)


# ---------------------------------------------------------------------------------------------
# sniffing
# ---------------------------------------------------------------------------------------------
def test_sniff_true_cases(tmp_path):
    pyk = "[Dataset]\n_BaseName = t\n_DataScale = 1,1,1\n_Extent = 8,8,8\n"
    for name in ("ariadne.conf", "x.pyknossos.conf", "x.pyk.conf", "x.pyk.auth.conf", "kasthuri11.conf"):
        (tmp_path / name).write_text(pyk)
        assert sniff(tmp_path / name), name
    (tmp_path / "legacy.k.conf").write_text(legacy_conf())
    assert sniff(tmp_path / "legacy.k.conf") and sniff(str(tmp_path / "legacy.k.conf"))
    assert sniff(f"file://{TINY / 'knossos.conf'}")
    for entry in ENTRY_POINTS:
        assert sniff(TINY / entry) and sniff(str(TINY / entry))
    folder = tmp_path / "pykfolder"
    folder.mkdir()
    (folder / "d.pyk.conf").write_text(pyk)
    assert sniff(folder)


def test_sniff_false_cases(tmp_path):
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "notes.txt").write_text("boundary x 5;\n")
    (tmp_path / "random" / "app.conf").write_text("[section]\nkey = value\n")
    assert not sniff(tmp_path / "random")
    assert not sniff(tmp_path / "random" / "notes.txt")
    assert not sniff(tmp_path / "random" / "app.conf")
    (tmp_path / "layerless.k.toml").write_text('Name = "x"\n')
    (tmp_path / "empty.pyk.conf").write_text("_BaseName = x\n")
    (tmp_path / "binary.k.conf").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "mag1").mkdir()
    (tmp_path / "mag1" / "knossos.conf").write_text("")  # an empty marker with no parent config
    for p in ("layerless.k.toml", "empty.pyk.conf", "binary.k.conf", "mag1", "mag1/knossos.conf"):
        assert not sniff(tmp_path / p), p
    for p in (tmp_path / "does-not-exist", tmp_path / "nope" / "knossos.conf", "", "   ", "\0bad", 12):
        assert sniff(p) is False


# ---------------------------------------------------------------------------------------------
# HTTP: URL entry points, credentials, AdditionalQuery, ftp_mode
# ---------------------------------------------------------------------------------------------
def _check_fixture(ds):
    np.testing.assert_array_equal(ds.layer("tiny").mags[0].array[:], raw_volume())
    np.testing.assert_array_equal(ds.layer("tiny").mags[1].array[:], raw_volume()[::2, ::2, ::2])
    np.testing.assert_array_equal(ds.layer("segmentation").mags[0].array[:], seg_volume())


@pytest.mark.parametrize("entry", ["knossos.conf", "tiny.k.toml", "mag1/knossos.conf", "", "mag1/"])
def test_http_entry_points_with_basic_auth(tmp_path, entry):
    shutil.copytree(TINY, tmp_path / "tiny")
    with serve(tmp_path, credentials="ann:s3cret") as srv:
        host = srv.url.removeprefix("http://")
        url = f"http://ann:s3cret@{host}/tiny/{entry}"
        assert sniff(url)
        ds = open_knossos(url)
        _check_fixture(ds)
        assert "s3cret" not in repr(ds.source) + repr(ds.extra)
        for layer in ds.layers:
            assert "s3cret" not in layer.name + layer.source + "".join(m.path for m in layer.mags)
        # the same with explicit credentials instead of URL userinfo
        _check_fixture(open_knossos(f"{srv.url}/tiny/{entry}", username="ann", password="s3cret"))


def test_http_without_credentials_is_a_clear_error(tmp_path):
    shutil.copytree(TINY, tmp_path / "tiny")
    with serve(tmp_path, credentials="ann:s3cret") as srv:
        assert sniff(f"{srv.url}/tiny/tiny.k.toml")  # decided by name; opening says why it fails
        assert not sniff(f"{srv.url}/tiny/")
        with pytest.raises(OSError, match="401"):
            open_knossos(f"{srv.url}/tiny/tiny.k.toml")


def test_http_config_credentials_and_additional_query(tmp_path):
    shutil.copytree(TINY, tmp_path / "tiny")
    with serve(tmp_path / "tiny", credentials="bob:pw123") as srv:
        host = srv.url.removeprefix("http://")
        pyk = tmp_path / "remote.pyk.conf"
        pyk.write_text(
            f"[Dataset]\n_BaseName = tiny\n_BaseURL = {srv.url}\n_UserName = bob\n_Password = pw123\n"
            "_DataScale = 10,10,25, 20,20,50,\n_Extent = 64,48,40,\n_CubeSize = 32,32,32,\n"
        )
        layer = open_knossos(pyk).layers[0]
        np.testing.assert_array_equal(layer.mags[1].array[:], raw_volume()[::2, ::2, ::2])
        assert "pw123" not in layer.source

        toml = tmp_path / "remote.k.toml"
        toml.write_text(
            toml_layer("tiny", [".raw"], EXTENT_XYZ, (32, 32, 32), [(10, 10, 25)],
                       URL=f"http://bob:pw123@{host}/", AdditionalQuery="token=abc&x=1")
        )
        np.testing.assert_array_equal(open_knossos(toml).layers[0].mags[0].array[:], raw_volume())
        cube_requests = [r for r in srv.requests if r.endswith(".raw?token=abc&x=1")]
        assert len(cube_requests) == 8

        legacy = tmp_path / "ftp" / "knossos.conf"  # legacy remote base: ftp_mode HOST PATH USER PASS TIMEOUT
        legacy.parent.mkdir()
        legacy.write_text(legacy_conf(extra=f"cube_edge_length 32;\nftp_mode {host} / bob pw123 30;\n"))
        ds = open_knossos(legacy)
        assert [m.name for m in ds.layers[0].mags] == ["1", "2"]  # mag markers probed over HTTP
        _check_fixture(ds)


def test_http_missing_cube_is_zeros(tmp_path):
    shutil.copytree(TINY, tmp_path / "tiny")
    (tmp_path / "tiny" / cube_key("tiny", 1, (1, 1, 1), ".raw")).unlink()
    with serve(tmp_path) as srv:
        arr = open_knossos(f"{srv.url}/tiny/tiny.k.toml").layers[0].mags[0].array
        expected = raw_volume()
        expected[32:, 32:, 32:] = 0
        np.testing.assert_array_equal(arr[:], expected)

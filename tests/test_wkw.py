"""WKW reading: header validation, Morton order, block decoding, interop with the ``wkw`` package."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import time
import warnings

import numpy as np
import pytest

from napari_knossos.formats.cache import CHUNK_CACHE
from napari_knossos.formats.chunked import CorruptChunkError
from napari_knossos.formats.store import open_store
from napari_knossos.formats.wkw import WkwMag, morton_index, parse_header

from .http_server import serve

wkw = pytest.importorskip("wkw")

FIXTURE = "webknossos/wkw_dataset"


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _checksums(data_dir) -> dict:
    return json.loads((data_dir / "webknossos" / "checksums.json").read_text())["wkw_dataset"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    CHUNK_CACHE.clear()
    yield
    CHUNK_CACHE.clear()


# -- the reference fixture -------------------------------------------------------------------
def _fixture_cases():
    import pathlib

    sums = json.loads((pathlib.Path(__file__).parent / "data/webknossos/checksums.json").read_text())["wkw_dataset"]
    return [(layer, mag) for layer, mags in sums.items() for mag in mags]


@pytest.mark.parametrize("layer,mag", _fixture_cases())
def test_fixture_mags_match_reference_checksums(data_dir, layer, mag):
    entry = _checksums(data_dir)[layer][mag]
    wm = WkwMag(open_store(data_dir / FIXTURE), f"{layer}/{mag}")
    arr = wm.chunked(size_xyz=entry["mag_shape_xyz"], rgb=wm.channels == 3)
    assert arr.shape[:3] == tuple(entry["mag_shape_xyz"][::-1])
    for name, cut in entry["cutouts"].items():
        (x0, y0, z0), (sx, sy, sz) = cut["offset_xyz"], cut["size_xyz"]
        got = arr[z0 : z0 + sz, y0 : y0 + sy, x0 : x0 + sx]
        want = cut["sha256_zyx_c_order"] if cut["num_channels"] == 1 else cut["sha256_zyxc_c_order"]
        assert _sha(got) == want, f"{layer}/{mag} {name}"
        assert int(got.astype(np.uint64).sum()) == cut["sum"]


def test_fixture_geometry_from_header(data_dir):
    store = open_store(data_dir / FIXTURE)
    color = WkwMag(store, "color/1")
    assert (color.block_len, color.file_len, color.file_edge) == (32, 4, 128)
    assert color.header.block_type == 3 and color.dtype == np.uint8 and color.channels == 1
    rgb = WkwMag(store, "color_rgb/1")
    assert (rgb.block_len, rgb.file_len, rgb.header.block_type, rgb.channels) == (16, 2, 1, 3)
    seg = WkwMag(store, "segmentation/1")
    assert seg.dtype == np.uint32
    # the zero region x >= 192, y >= 192 of the segmentation
    arr = seg.chunked(size_xyz=(256, 256, 128))
    assert not arr[:, 192:, 192:].any() and arr[:, :192].all()


def test_read_block_layout(data_dir):
    """One block is (c, z, y, x); values follow generate.py's colour formula."""
    wm = WkwMag(open_store(data_dir / FIXTURE), "color/1")
    block = wm.read_block(1, 2, 3)  # z 32..63, y 64..95, x 96..127
    assert block.shape == (1, 32, 32, 32)
    z, y, x = np.meshgrid(np.arange(32, 64), np.arange(64, 96), np.arange(96, 128), indexing="ij")
    want = (3 * (x // 8) + 5 * (y // 4) + 7 * z + 64 * ((x // 8 + y // 4 + z) % 3)) & 0xFF
    np.testing.assert_array_equal(block[0], want)
    assert wm.read_block(0, 0, 9) is None  # file z0/y0/x2.wkw does not exist


# -- header and Morton order -------------------------------------------------------------------
def test_morton_index_matches_spec():
    order = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1), (2, 0, 0)]
    assert [morton_index(*c) for c in order] == list(range(9))
    assert morton_index(29, 20, 3) == 13029


def _header(magic=b"WKW", version=1, per_dim=0x55, block_type=2, voxel_type=1, voxel_size=1, offset=0) -> bytes:
    return struct.pack("<3sBBBBBQ", magic, version, per_dim, block_type, voxel_type, voxel_size, offset)


def test_parse_header_fields():
    h = parse_header(_header(per_dim=0x25, block_type=3, voxel_type=3, voxel_size=12, offset=16 + 8 * 64), "f")
    assert (h.block_len, h.file_len, h.blocks_per_file, h.channels, h.dtype) == (32, 4, 64, 3, np.dtype("<u4"))
    assert h.block_bytes == 32**3 * 12 and h.compressed and h.table_bytes == 16 + 8 * 64
    assert parse_header(_header(voxel_type=10, voxel_size=8), "f").dtype == np.dtype("<i8")


@pytest.mark.parametrize(
    "data,where",
    [
        (_header(magic=b"WKX"), "byte 0 (magic)"),
        (_header(version=2), "byte 3 (version)"),
        (_header(per_dim=0x0F), "byte 4"),
        (_header(per_dim=0xF5), "byte 4"),
        (_header(block_type=4), "byte 5 (blockType)"),
        (_header(block_type=0), "byte 5 (blockType)"),
        (_header(voxel_type=11), "byte 6 (voxelType)"),
        (_header(voxel_type=2, voxel_size=3), "byte 7 (voxelSize)"),
        (_header(voxel_size=0), "byte 7 (voxelSize)"),
        (_header()[:10], "truncated at byte 10"),
    ],
)
def test_bad_header_raises_valueerror_naming_file_and_byte(tmp_path, data, where):
    mag = tmp_path / "1"
    mag.mkdir()
    (mag / "header.wkw").write_bytes(data)
    with pytest.raises(ValueError, match=r"header\.wkw") as info:
        WkwMag(open_store(mag))
    assert where in str(info.value)


def test_missing_header_raises(tmp_path):
    with pytest.raises(ValueError, match="header.wkw"):
        WkwMag(open_store(tmp_path))


# -- interop: the wkw package writes, we read -----------------------------------------------------
CASES = [
    # dtype, channels, block_len, file_len, block type
    (np.uint8, 1, 32, 2, wkw.Header.BLOCK_TYPE_LZ4HC),
    (np.uint16, 1, 16, 4, wkw.Header.BLOCK_TYPE_LZ4),
    (np.uint32, 1, 8, 8, wkw.Header.BLOCK_TYPE_RAW),
    (np.uint64, 1, 16, 1, wkw.Header.BLOCK_TYPE_LZ4),
    (np.float32, 1, 32, 1, wkw.Header.BLOCK_TYPE_LZ4HC),
    (np.float64, 1, 8, 4, wkw.Header.BLOCK_TYPE_RAW),
    (np.int8, 1, 16, 2, wkw.Header.BLOCK_TYPE_LZ4),
    (np.int16, 1, 8, 2, wkw.Header.BLOCK_TYPE_RAW),
    (np.int32, 1, 16, 2, wkw.Header.BLOCK_TYPE_LZ4HC),
    (np.int64, 1, 8, 4, wkw.Header.BLOCK_TYPE_LZ4),
    (np.uint8, 3, 16, 2, wkw.Header.BLOCK_TYPE_LZ4),
    (np.uint16, 2, 8, 4, wkw.Header.BLOCK_TYPE_RAW),
]


def _volume(dtype, channels: int, shape_xyz, seed: int) -> np.ndarray:
    """(c, x, y, z) test data: smooth (compressible) structure plus noise."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape_xyz], indexing="ij")
    base = np.stack([(x * 3 + y * 5 + z * 7 + 11 * c) % 97 for c in range(channels)]).astype(np.float64)
    noise = rng.integers(0, 4, size=base.shape)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (base * 1.5 - 40.25 + noise).astype(dtype)
    info = np.iinfo(dtype)
    scale = max(1, min(info.max // 200, 2**40))
    return ((base + noise) * scale + (info.min // 2 if dtype.kind == "i" else 0)).astype(dtype)


@pytest.mark.parametrize("dtype,channels,block_len,file_len,block_type", CASES)
def test_wkw_package_writes_we_read(tmp_path, dtype, channels, block_len, file_len, block_type):
    edge = block_len * file_len
    shape = (2 * edge, edge, edge) if edge <= 64 else (edge, edge, edge)  # whole files (compressed writes)
    data = _volume(dtype, channels, shape, seed=block_len * 31 + file_len)
    root = tmp_path / "mag"
    header = wkw.Header(dtype, num_channels=channels, block_len=block_len, file_len=file_len, block_type=block_type)
    with wkw.Dataset.create(str(root), header) as ds:
        ds.write((0, 0, 0), np.asfortranarray(data if channels > 1 else data[0]))
    wm = WkwMag(open_store(root))
    assert (wm.dtype, wm.channels, wm.block_len, wm.file_len) == (np.dtype(dtype), channels, block_len, file_len)
    # a window one file beyond the data (missing files read as 0)
    size = (shape[0] + edge, shape[1], shape[2])
    arr = wm.chunked(size_xyz=size)
    with wkw.Dataset.open(str(root)) as ds:
        for off, sz in [((0, 0, 0), size), ((3, 5, 1), (edge + 7, edge - 6, edge - 2)), ((edge - 1, 1, 2), (2, 3, 1))]:
            theirs = ds.read(off, sz)  # (c, x, y, z)
            (x0, y0, z0), (sx, sy, sz_) = off, sz
            ours = arr[..., z0 : z0 + sz_, y0 : y0 + sy, x0 : x0 + sx]
            if channels == 1:
                np.testing.assert_array_equal(ours, theirs[0].transpose(2, 1, 0))
            else:
                np.testing.assert_array_equal(ours, theirs.transpose(0, 3, 2, 1))
    czyx = data.transpose(0, 3, 2, 1)
    np.testing.assert_array_equal(np.asarray(arr)[..., : shape[0]], czyx[0] if channels == 1 else czyx)
    assert not np.asarray(arr)[..., shape[0] :].any()


def test_cached_blocks_survive_slab_reuse(tmp_path):
    """Blocks cached by a bulk read stay valid after later reads of other regions."""
    data = _volume(np.uint8, 1, (64, 64, 64), seed=3)[0]
    root = tmp_path / "mag"
    with wkw.Dataset.create(str(root), wkw.Header(np.uint8, block_len=16, file_len=4, block_type=2)) as ds:
        ds.write((0, 0, 0), np.asfortranarray(data))
    arr = WkwMag(open_store(root)).chunked(size_xyz=(64, 64, 64))
    first = arr[0:32, 0:32, 0:32].copy()
    arr[32:64, 32:64, 32:64]
    arr[0:64, 0:64, 0:64]
    np.testing.assert_array_equal(arr[0:32, 0:32, 0:32], first)
    np.testing.assert_array_equal(np.asarray(arr), data.transpose(2, 1, 0))


# -- damaged data ---------------------------------------------------------------------------------
def _write_lz4(tmp_path, name="mag") -> tuple:
    data = _volume(np.uint16, 1, (64, 32, 32), seed=5)[0]
    root = tmp_path / name
    with wkw.Dataset.create(str(root), wkw.Header(np.uint16, block_len=16, file_len=2, block_type=2)) as ds:
        ds.write((0, 0, 0), np.asfortranarray(data))
    return root, data.transpose(2, 1, 0)


def _read_with_warnings(root, shape_xyz=(64, 32, 32)):
    CHUNK_CACHE.clear()
    arr = WkwMag(open_store(root)).chunked(size_xyz=shape_xyz)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = np.asarray(arr)
        again = arr[:, :, 32:]  # cached: no second warning
    return out, again, [w for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize(
    "damage,reason",
    [
        ("truncate_data", "truncated at byte"),
        ("truncate_table", "truncated at byte"),
        ("garbage_block", "does not decode"),
        ("bad_jump_table", "bad jump table"),
        ("bad_file_header", "bad file header"),
        ("geometry_mismatch", "disagrees with header.wkw"),
    ],
)
def test_corrupt_file_reads_zeros_with_one_warning(tmp_path, damage, reason):
    root, want = _write_lz4(tmp_path)
    bad = root / "z0" / "y0" / "x1.wkw"  # x 32..63
    raw = bytearray(bad.read_bytes())
    n = 8  # blocks per file
    if damage == "truncate_data":
        raw = raw[: len(raw) - 100]
    elif damage == "truncate_table":
        raw = raw[:40]
    elif damage == "garbage_block":
        start = 16 + 8 * n
        raw[start : start + 64] = b"\xff" * 64
    elif damage == "bad_jump_table":
        struct.pack_into("<Q", raw, 16 + 8 * 3, 20)  # block 3 ends before it starts
    elif damage == "bad_file_header":
        raw[0:3] = b"XXX"
    elif damage == "geometry_mismatch":
        raw[6] = 8  # voxel type int16 in a uint16 mag
    bad.write_bytes(bytes(raw))
    out, again, caught = _read_with_warnings(root)
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert str(bad) in message and reason in message
    # the good file is intact; the damaged file's unreadable blocks are zeros
    np.testing.assert_array_equal(out[:, :, :32], want[:, :, :32])
    damaged = out[:, :, 32:]
    if damage in ("truncate_data", "garbage_block", "bad_jump_table"):  # other blocks of the file still decode
        readable = damaged == want[:, :, 32:]
        assert readable.any() and (damaged[~readable] == 0).all()
    else:
        assert not damaged.any()
    np.testing.assert_array_equal(again, damaged)


def test_corrupt_raw_block_truncated(tmp_path):
    data = _volume(np.uint8, 1, (32, 32, 32), seed=7)[0]
    root = tmp_path / "raw"
    with wkw.Dataset.create(str(root), wkw.Header(np.uint8, block_len=16, file_len=2, block_type=1)) as ds:
        ds.write((0, 0, 0), np.asfortranarray(data))
    f = root / "z0" / "y0" / "x0.wkw"
    f.write_bytes(f.read_bytes()[: 16 + 16**3 * 5 + 100])  # blocks 0-4 whole, 5 partly, 6-7 gone
    CHUNK_CACHE.clear()
    wm = WkwMag(open_store(root))
    with pytest.raises(CorruptChunkError, match="truncated at byte"):
        wm.read_block(1, 0, 1)  # Morton 5
    np.testing.assert_array_equal(wm.read_block(1, 0, 0)[0], data[0:16, 0:16, 16:32].transpose(2, 1, 0))  # Morton 4
    out, _, caught = _read_with_warnings(root, (32, 32, 32))
    assert len(caught) == 1 and str(f) in str(caught[0].message)
    np.testing.assert_array_equal(out[16:, :16, :16], data[:16, :16, 16:].transpose(2, 1, 0))
    assert not out[16:, :16, 16:].any()


def test_missing_files_are_zeros_without_warning(tmp_path):
    root, want = _write_lz4(tmp_path)
    (root / "z0" / "y0" / "x1.wkw").unlink()
    out, _, caught = _read_with_warnings(root)
    assert caught == []
    np.testing.assert_array_equal(out[:, :, :32], want[:, :, :32])
    assert not out[:, :, 32:].any()


# -- bare mag folders, windows, remote ------------------------------------------------------------------
def test_file_extent_from_names(tmp_path):
    root, _ = _write_lz4(tmp_path)
    assert WkwMag(open_store(root)).file_extent_xyz() == (64, 32, 32)
    arr = WkwMag(open_store(root)).chunked()
    assert arr.shape == (32, 32, 64)


def test_window_with_offset_and_anisotropic_mag(tmp_path):
    root, want = _write_lz4(tmp_path)  # mag-local (z, y, x) = (32, 32, 64)
    wm = WkwMag(open_store(root))
    # mag-1 box at (10, 6, 3) of size (100, 50, 20), seen at mag 2-2-1
    arr = wm.chunked(size_xyz=(100, 50, 20), offset_xyz=(10, 6, 3), factor_xyz=(2, 2, 1))
    assert arr.shape == (20, 25, 50)  # z 3..22, y 3..27, x 5..54
    np.testing.assert_array_equal(np.asarray(arr), want[3:23, 3:28, 5:55])


def test_http_reads_match_local(data_dir, tmp_path):
    shutil.copytree(data_dir / FIXTURE, tmp_path / "ds")
    entry = _checksums(data_dir)["segmentation"]["1"]["cutouts"]["unaligned_13_200_7"]
    with serve(tmp_path) as server:
        wm = WkwMag(open_store(f"{server.url}/ds"), "segmentation/1")
        arr = wm.chunked(size_xyz=(256, 256, 128))
        (x0, y0, z0), (sx, sy, sz) = entry["offset_xyz"], entry["size_xyz"]
        assert _sha(arr[z0 : z0 + sz, y0 : y0 + sy, x0 : x0 + sx]) == entry["sha256_zyx_c_order"]
        data_requests = [r for r in server.requests if r.endswith(".wkw") and "header" not in r]
        assert len(data_requests) < 2 * 8  # per file: one jump-table read and few merged block reads
        with pytest.raises(ValueError, match="directory listing"):
            wm.file_extent_xyz()


def test_bucket_read_is_fast(tmp_path):
    """Reading one uncached 32³ block costs well under a few ms (latency goal: ~2x libwkw)."""
    data = _volume(np.uint8, 1, (128, 128, 128), seed=9)[0]
    root = tmp_path / "fast"
    with wkw.Dataset.create(str(root), wkw.Header(np.uint8, block_len=32, file_len=4, block_type=3)) as ds:
        ds.write((0, 0, 0), np.asfortranarray(data))
    times = []
    for i in range(20):
        CHUNK_CACHE.clear()
        arr = WkwMag(open_store(root)).chunked(size_xyz=(128, 128, 128))
        t = time.perf_counter()
        block = arr[32:64, 64:96, 0:32]
        times.append(time.perf_counter() - t)
    np.testing.assert_array_equal(block, data[0:32, 64:96, 32:64].transpose(2, 1, 0))
    assert np.median(times) < 0.005


def test_truncated_remote_file_reads_zeros_with_one_warning(tmp_path):
    root, want = _write_lz4(tmp_path, "served")
    bad = root / "z0" / "y0" / "x1.wkw"
    bad.write_bytes(bad.read_bytes()[:200])  # header, jump table and a sliver of block 0
    with serve(tmp_path) as server:
        arr = WkwMag(open_store(f"{server.url}/served")).chunked(size_xyz=(64, 32, 32))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = np.asarray(arr)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "served/z0/y0/x1.wkw" in messages[0] and "truncated" in messages[0]
    np.testing.assert_array_equal(out[:, :, :32], want[:, :, :32])
    assert not out[:, :, 32:].any()


# -- volumetric (cache-bypassing) and thin (cached) region reads ------------------------------------
def _multi_file(tmp_path, dtype, channels, block_type, name="multi"):
    """A 3x2x2-file volume (block 8, file 2 blocks: 16³ voxels per file) minus file z1/y0/x1."""
    data = _volume(dtype, channels, (48, 32, 32), seed=11)  # (c, x, y, z)
    root = tmp_path / name
    header = wkw.Header(dtype, num_channels=channels, block_len=8, file_len=2, block_type=block_type)
    with wkw.Dataset.create(str(root), header) as ds:
        ds.write((0, 0, 0), np.asfortranarray(data if channels > 1 else data[0]))
    (root / "z1" / "y0" / "x1.wkw").unlink()  # x 16..31, y 0..15, z 16..31
    want = data.transpose(0, 3, 2, 1).copy()  # (c, z, y, x)
    want[:, 16:32, 0:16, 16:32] = 0
    return root, want


@pytest.mark.parametrize(
    "dtype,channels,block_type",
    [(np.uint8, 1, 3), (np.uint16, 2, 1), (np.int32, 1, 2), (np.float32, 3, 2)],
)
def test_volumetric_reads_unaligned_windows(tmp_path, dtype, channels, block_type):
    root, want = _multi_file(tmp_path, dtype, channels, block_type)
    arr = WkwMag(open_store(root)).chunked(size_xyz=(48, 32, 32))
    rng = np.random.default_rng(5)
    boxes = [((0, 0, 0), (32, 32, 48)), ((8, 8, 8), (8, 8, 8)), ((16, 0, 16), (8, 8, 8)), ((3, 5, 7), (8, 9, 8))]
    boxes += [(tuple(rng.integers(0, 12, 3)), tuple(rng.integers(8, 21, 3))) for _ in range(12)]
    for (z, y, x), (sz, sy, sx) in boxes:
        region = (slice(z, z + sz), slice(y, y + sy), slice(x, x + sx))
        if channels == 1:
            np.testing.assert_array_equal(arr[region], want[0][region])
        else:
            np.testing.assert_array_equal(arr[(slice(None), *region)], want[(slice(None), *region)])
            np.testing.assert_array_equal(arr[(slice(1, 2), *region)], want[(slice(1, 2), *region)])
    assert len(CHUNK_CACHE) == 0  # volumetric reads bypass the cache


def test_thin_reads_fill_the_cache_and_hit_it(tmp_path):
    root, want = _multi_file(tmp_path, np.uint8, 1, 3)
    arr = WkwMag(open_store(root)).chunked(size_xyz=(48, 32, 32))
    np.testing.assert_array_equal(arr[10], want[0, 10])  # a plane: 4 x 6 blocks
    assert len(CHUNK_CACHE) == 4 * 6
    hits = CHUNK_CACHE.hits
    for z in range(11, 16):  # the next planes of the same blocks come from the cache
        np.testing.assert_array_equal(arr[z], want[0, z])
    assert CHUNK_CACHE.hits - hits == 5 * 4 * 6 and len(CHUNK_CACHE) == 4 * 6
    np.testing.assert_array_equal(arr[8:16, :, 3:40], want[0, 8:16, :, 3:40])  # volumetric: same data
    assert len(CHUNK_CACHE) == 4 * 6


def test_volumetric_read_inside_a_pool_task(tmp_path):
    """A read running on the chunk pool does not wait on the pool."""
    from napari_knossos.formats.chunked import chunk_pool

    root, want = _multi_file(tmp_path, np.uint16, 2, 2)
    arr = WkwMag(open_store(root)).chunked(size_xyz=(48, 32, 32))
    got = chunk_pool().submit(lambda: arr[:, 2:30, 1:31, 5:45]).result(timeout=30)
    np.testing.assert_array_equal(got, want[:, 2:30, 1:31, 5:45])


def test_file_removed_after_its_table_was_read_reads_zeros(tmp_path):
    root, want = _multi_file(tmp_path, np.uint8, 1, 3)
    arr = WkwMag(open_store(root)).chunked(size_xyz=(48, 32, 32))
    arr[0]  # loads the jump tables of the files at z 0..15
    (root / "z0" / "y1" / "x2.wkw").unlink()  # x 32..47, y 16..31, z 0..15
    want[:, 0:16, 16:32, 32:48] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(arr[0:16, 4:32, 20:48], want[0, 0:16, 4:32, 20:48])
        CHUNK_CACHE.clear()
        np.testing.assert_array_equal(arr[1], want[0, 1])


@pytest.mark.parametrize("damage", ["truncate_data", "garbage_block", "bad_jump_table", "bad_file_header"])
def test_corrupt_file_thin_reads_zeros_with_one_warning(tmp_path, damage):
    """Plane by plane (the cached path) a damaged file reads as zeros with one warning too."""
    root, want = _write_lz4(tmp_path)
    bad = root / "z0" / "y0" / "x1.wkw"
    raw = bytearray(bad.read_bytes())
    if damage == "truncate_data":
        raw = raw[: len(raw) - 100]
    elif damage == "garbage_block":
        raw[16 + 64 : 16 + 128] = b"\xff" * 64
    elif damage == "bad_jump_table":
        struct.pack_into("<Q", raw, 16 + 8 * 3, 20)
    else:
        raw[0:3] = b"XXX"
    bad.write_bytes(bytes(raw))
    arr = WkwMag(open_store(root)).chunked(size_xyz=(64, 32, 32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        planes = np.stack([arr[z] for z in range(32)])
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and str(bad) in messages[0]
    np.testing.assert_array_equal(planes[:, :, :32], want[:, :, :32])
    damaged = planes[:, :, 32:]
    if damage == "bad_file_header":
        assert not damaged.any()
    else:  # the file's other blocks still decode
        readable = damaged == want[:, :, 32:]
        assert readable.any() and (damaged[~readable] == 0).all()
    CHUNK_CACHE.clear()
    np.testing.assert_array_equal(np.asarray(arr), planes)  # the volumetric path agrees

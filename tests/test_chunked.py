"""ChunkedArray: slicing semantics equal numpy's, only touched chunks are read, cache bounds."""

import threading
import warnings

import numpy as np
import pytest

from napari_knossos.formats.cache import ChunkCache
from napari_knossos.formats.chunked import ChunkedArray, CorruptChunkError
from napari_knossos.layer_data import lazy_dask


def make(volume_czyx, chunk=(8, 8, 8), origin=(0, 0, 0), shape=None, layout=None, missing=(), corrupt=()):
    """A ChunkedArray over an in-memory (c, z, y, x) grid; records which chunks were read."""
    c = volume_czyx.shape[0]
    grid = [-(-n // k) for n, k in zip(volume_czyx.shape[1:], chunk)]
    padded = np.zeros((c, *[g * k for g, k in zip(grid, chunk)]), volume_czyx.dtype)
    padded[:, : volume_czyx.shape[1], : volume_czyx.shape[2], : volume_czyx.shape[3]] = volume_czyx
    reads = []
    lock = threading.Lock()

    def read_chunk(idx):
        with lock:
            reads.append(tuple(idx))
        if tuple(idx) in missing:
            return None
        if tuple(idx) in corrupt:
            raise CorruptChunkError(f"mem://chunk{idx}", "bad bytes")
        sl = tuple(slice(i * k, (i + 1) * k) for i, k in zip(idx, chunk))
        return padded[(slice(None), *sl)].copy()

    shape = shape or tuple(n - o for n, o in zip(volume_czyx.shape[1:], origin))
    arr = ChunkedArray(shape, chunk, volume_czyx.dtype, read_chunk, ("mem", id(reads)), channels=c,
                       origin_zyx=origin, layout=layout, cache=ChunkCache(2**26))
    return arr, reads


@pytest.fixture
def vol():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(1, 21, 34, 27), dtype=np.uint8)


@pytest.mark.parametrize(
    "key",
    [
        (slice(None),),
        (5,),
        (slice(3, 17), slice(2, 30, 3), slice(None, None, 2)),
        (-1, slice(4, 9), 26),
        (Ellipsis, 3),
        (slice(2, 2),),
        (slice(10, 3),),
        (np.array([1, 5, 7]),),
        (slice(None, None, -1), 3),
    ],
)
def test_getitem_equals_numpy(vol, key):
    arr, _ = make(vol)
    np.testing.assert_array_equal(arr[key], vol[0][key])


def test_only_touched_chunks_are_read(vol):
    arr, reads = make(vol)
    arr[9, 0:8, 8:16]
    assert reads == [(1, 0, 1)]


def test_origin_window_and_missing_chunks(vol):
    arr, reads = make(vol, origin=(3, 5, 7), missing={(0, 0, 0)})
    expect = vol[0, 3:, 5:, 7:].copy()
    expect[: 8 - 3, : 8 - 5, : 8 - 7] = 0  # chunk (0,0,0) missing -> zeros
    np.testing.assert_array_equal(arr[:], expect)


def test_channels_layouts():
    rng = np.random.default_rng(1)
    v = rng.integers(0, 255, size=(3, 10, 11, 12), dtype=np.uint8)
    czyx, _ = make(v, layout="czyx")
    zyxc, _ = make(v, layout="zyxc")
    assert czyx.shape == (3, 10, 11, 12) and zyxc.shape == (10, 11, 12, 3)
    np.testing.assert_array_equal(czyx[1, 2:5], v[1, 2:5])
    np.testing.assert_array_equal(zyxc[4, :, 3:9], np.moveaxis(v, 0, -1)[4, :, 3:9])


def test_corrupt_chunk_reads_zeros_with_one_warning(vol):
    arr, _ = make(vol, corrupt={(0, 0, 0)})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        a = arr[0:4, 0:4, 0:4]
        arr.cache.clear()
        arr[0:4, 0:4, 0:4]
    assert not a.any()
    msgs = [str(x.message) for x in w if "corrupt" in str(x.message)]
    assert len(msgs) == 1 and "mem://chunk(0, 0, 0)" in msgs[0]


def test_cache_hits_and_bound():
    cache = ChunkCache(max_bytes=1000)
    for i in range(10):
        cache.put(("k", i), np.zeros(300, np.uint8))
    assert cache.nbytes <= 1000 and len(cache) == 3
    assert cache.get(("k", 9), None) is not None and cache.get(("k", 0), None) is None
    cache.put(("none",), None)
    assert cache.get(("none",), "sentinel") is None


def test_dask_graph_is_constant_size_and_slices_pass_through():
    big = 2**20
    reads = []

    def read_chunk(idx):
        reads.append(idx)
        return None

    arr = ChunkedArray((big, big, big), (128, 128, 128), np.uint8, read_chunk, ("huge",))
    d = lazy_dask(arr, "huge")
    assert len(d.__dask_graph__()) == 1
    plane = d[big // 2, 1024:2048, 5120:6144].compute()
    assert plane.shape == (1024, 1024) and not plane.any()
    assert len(reads) == 8 * 8  # only the 64 cubes the plane touches


def test_lazy_level_composes_napari_style_slicing(vol):
    from napari_knossos.layer_data import LazyLevel

    arr, reads = make(vol, origin=(2, 3, 5))
    level = LazyLevel(arr)
    assert level.shape == arr.shape and level.chunks[0] == (6, 8, 5)  # 19 = 6 + 8 + 5 from origin 2
    tile = level[:, 4:20, 3:15]  # napari: the visible tile, all z
    assert reads == [] and tile.shape == (19, 16, 12)
    plane = tile[7]  # napari: the current plane
    assert reads == [] and plane.chunks is None
    got = np.asarray(plane)
    np.testing.assert_array_equal(got, vol[0, 2:, 3:, 5:][7, 4:20, 3:15])
    assert {r[0] for r in reads} == {(7 + 2) // 8}  # only chunks of that one plane were read
    np.testing.assert_array_equal(np.asarray(level[..., ::2][3, 1:4]), vol[0, 2:, 3:, 5:][3, 1:4, ::2])
    np.testing.assert_array_equal(level[[1, 2]], vol[0, 2:, 3:, 5:][[1, 2]])

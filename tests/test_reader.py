"""The npe2 reader contribution: sniffing, layer data, laziness at scale (no Qt needed)."""

import time
from pathlib import Path

import numpy as np
import pytest

from napari_knossos._reader import get_reader
from napari_knossos.formats.cache import CHUNK_CACHE
from napari_knossos.layer_data import LazyLevel, lazy_dask

BIG = 2**20


def write_raw_cube(root: Path, name: str, mag: int, idx, data_zyx: np.ndarray):
    x, y, z = idx
    folder = root / f"mag{mag}" / f"x{x:04d}" / f"y{y:04d}" / f"z{z:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}_mag{mag}_x{x:04d}_y{y:04d}_z{z:04d}.raw").write_bytes(data_zyx.tobytes())


@pytest.fixture
def huge_knossos(tmp_path):
    """A 2^20-voxel-per-axis KNOSSOS dataset (.k.toml, 3 mags) with only a few cubes present."""
    root = tmp_path / "huge"
    root.mkdir()
    (root / "huge.k.toml").write_text(
        '[[Layer]]\nName = "huge"\nDescription = "mostly missing"\nFileExtension = [".raw"]\n'
        f"Extent_px = [{BIG}, {BIG}, {BIG}]\nCubeShape_px = [128, 128, 128]\n"
        'ServerFormat = "knossos"\nVoxelSize_nm = [[9, 9, 20], [18, 18, 40], [36, 36, 80]]\n'
    )
    rng = np.random.default_rng(3)
    cubes = {}
    c = BIG // 2 // 128  # deep inside
    for dx in range(8):
        for dy in range(8):
            data = rng.integers(1, 255, (128, 128, 128), dtype=np.uint8)
            write_raw_cube(root, "huge", 1, (c + dx, c + dy, c), data)
            cubes[(dx, dy)] = data
    return root, c, cubes


def test_get_reader_rejects_foreign_paths_without_raising(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "random.conf").write_text("[section]\nkey = 1\n")
    (tmp_path / "x.json").write_text("{broken")
    for p in ["notes.txt", "random.conf", "x.json", "missing/knossos.conf", ""]:
        assert get_reader(str(tmp_path / p)) is None
    assert get_reader(str(tmp_path)) is None
    assert get_reader("http://127.0.0.1:9/nothing") is None
    assert get_reader([]) is None


def test_huge_dataset_opens_fast_with_constant_graph(huge_knossos):
    root, c, cubes = huge_knossos
    t0 = time.perf_counter()
    reader = get_reader(str(root / "huge.k.toml"))
    layers = reader(str(root / "huge.k.toml"))
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, elapsed  # ~5 ms idle: generous for a loaded 2-core machine
    (data, kwargs, kind), = layers
    assert kind == "image" and kwargs["multiscale"] and len(data) == 3
    assert data[0].shape == (BIG, BIG, BIG) and data[2].shape == (BIG // 4,) * 3
    assert all(isinstance(d, LazyLevel) for d in data)
    assert all(len(lazy_dask(d.base, "x").__dask_graph__()) == 1 for d in data)  # O(1) dask graph too
    assert data[0].chunks[1][:2] == (128, 128) and len(data[0].chunks[2]) == BIG // 128
    assert kwargs["scale"] == (20.0, 9.0, 9.0) and kwargs["units"] == ("nm", "nm", "nm")
    assert kwargs["contrast_limits"] == [0.0, 255.0]
    meta = kwargs["metadata"]["napari_knossos"]
    assert meta["format"] == "knossos" and meta["mags"] == ["1", "2", "4"]

    CHUNK_CACHE.clear()
    z = c * 128 + 77
    t0 = time.perf_counter()
    plane = np.asarray(data[0][z, c * 128 : c * 128 + 1024, c * 128 : c * 128 + 1024])
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, elapsed  # BENCHMARKS.md: 57 ms idle
    expect = np.block([[cubes[(dx, dy)][77] for dx in range(8)] for dy in range(8)])
    np.testing.assert_array_equal(plane, expect)
    # a plane far from any cube is zeros and cheap
    assert not np.asarray(data[0][10, 0:1024, 0:1024]).any()


def test_reader_accepts_dataset_folder_and_list(huge_knossos):
    root, *_ = huge_knossos
    assert get_reader(str(root)) is not None
    assert get_reader([str(root / "huge.k.toml")]) is not None

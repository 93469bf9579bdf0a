"""EditableVolume: edits over segmentation pyramids written in the test and opened with our readers."""

from __future__ import annotations

import hashlib
import itertools
import statistics
import time
import zipfile

import numpy as np
import pytest

from napari_knossos.annotation.kzip import Annotation, read_kzip, write_kzip
from napari_knossos.annotation.volume import (
    EditableVolume,
    RegionChange,
    VolumeEditRefused,
    downsample_mode_by,
)
from napari_knossos.formats import open_dataset
from napari_knossos.formats.cache import CHUNK_CACHE
from napari_knossos.formats.knossos_writer import (
    KnossosLayerSpec,
    downsample_mode,
    pyramid,
    write_knossos_dataset,
)
from napari_knossos.formats.model import Layer, Mag
from napari_knossos.formats.wk_writer import WkLayerSpec, write_webknossos_dataset

from .http_server import serve
from .reference import run_reference


# ------------------------------------------------------------------------------------ data
def blocky_segmentation(shape_zyx, block=6, ids=5, seed=0) -> np.ndarray:
    """Ids 0..ids-1 in blocks of ``block`` voxels (0 = background), a few single-voxel speckles."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, ids, size=tuple(-(-s // block) for s in shape_zyx)).astype(np.uint64)
    seg = coarse
    for axis in range(3):
        seg = np.repeat(seg, block, axis=axis)
    seg = np.ascontiguousarray(seg[tuple(slice(0, s) for s in shape_zyx)])
    speckles = rng.integers(0, seg.size, size=seg.size // 50)
    seg.reshape(-1)[speckles] = rng.integers(1, ids, size=speckles.size)
    return seg


def anisotropic_pyramid(mag1: np.ndarray, factors_xyz) -> dict:
    """Mags by cascading mode downsampling from the previous mag (as the editor recomputes them)."""
    out = {tuple(factors_xyz[0]): mag1}
    for prev, cur in itertools.pairwise(factors_xyz):
        ratio_zyx = tuple(c // p for c, p in zip(cur, prev))[::-1]
        out[tuple(cur)] = downsample_mode_by(out[tuple(prev)], ratio_zyx)
    return out


def wk_layer(tmp_path, mags: dict, name="ds"):
    root = write_webknossos_dataset(tmp_path / name, (11.24, 11.24, 28.0),
                                    [WkLayerSpec("segmentation", "segmentation", mags)])
    return open_dataset(root).layer("segmentation")


def knossos_layer(tmp_path, seg: np.ndarray, levels=3, name="kds"):
    toml = write_knossos_dataset(tmp_path / name, "exp_edit", (10.0, 10.0, 25.0),
                                 [KnossosLayerSpec(".seg.sz.zip", pyramid(seg, levels, segmentation=True),
                                                   extra_toml={"DataType": '"uint64"'})])
    return open_dataset(toml).layers[0]


def read_all(vol: EditableVolume) -> dict:
    return {m: vol.read(m, *vol.extent(m)) for m in vol.mags}


@pytest.fixture
def iso(tmp_path):
    """Segmentation (z, y, x) = (40, 52, 66) with mags 1, 2, 4 (power-of-two pyramid), zarr3."""
    seg = blocky_segmentation((40, 52, 66))
    mags = pyramid(seg, 3, segmentation=True)
    layer = wk_layer(tmp_path, {2**i: m for i, m in enumerate(mags)})
    return layer, mags


# ------------------------------------------------------------------------------- downsampling
def test_downsample_mode_matches_pyramid_writer_and_brute_force():
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 4, size=(9, 14, 11)).astype(np.uint64)
    assert np.array_equal(downsample_mode_by(vol, (2, 2, 2)), downsample_mode(vol))
    ratio = (1, 3, 2)
    got = downsample_mode_by(vol, ratio)
    padded = np.pad(vol, [(0, -s % r) for s, r in zip(vol.shape, ratio)], mode="edge")
    for z, y, x in np.ndindex(got.shape):
        block = padded[z:z + 1, 3 * y:3 * y + 3, 2 * x:2 * x + 2].ravel()
        values, counts = np.unique(block, return_counts=True)  # sorted: the first maximum is the smallest id
        assert got[z, y, x] == values[np.argmax(counts)]


# ------------------------------------------------------------------------------------- reads
def test_new_overlay_is_empty_with_given_shape(tmp_path):
    vol = EditableVolume(shape_zyx=(20, 30, 41), dtype=np.uint32, mags=[(1, 1, 1), (2, 2, 1), (4, 4, 2)])
    assert vol.mags == [(1, 1, 1), (2, 2, 1), (4, 4, 2)]
    assert vol.extent((2, 2, 1)) == ((0, 0, 0), (20, 15, 21))
    assert vol.extent((4, 4, 2)) == ((0, 0, 0), (10, 8, 11))
    data = vol.read((2, 2, 1), (0, 0, 0), (20, 15, 21))
    assert data.dtype == np.uint32 and not data.any()
    assert not vol.dirty and not vol.can_undo


def test_reads_see_base_layer_and_global_coordinates():
    size_xyz, offset_xyz = (21, 14, 9), (6, 4, 2)
    mag1 = blocky_segmentation((9, 14, 21), block=3)
    mag2 = downsample_mode_by(mag1, (2, 2, 2))
    layer = Layer("seg", "segmentation", np.dtype(np.uint64), (1.0, 1.0, 1.0),
                  [Mag((1, 1, 1), mag1), Mag((2, 2, 2), mag2)], offset=offset_xyz, size=size_xyz)
    vol = EditableVolume(layer)
    assert vol.extent(1) == ((2, 4, 6), (11, 18, 27))
    assert np.array_equal(vol.read(1, (2, 4, 6), (11, 18, 27)), mag1)
    # outside the data reads as 0
    window = vol.read(1, (0, 0, 0), (12, 20, 30))
    assert not window[:2].any() and not window[:, :, 27:].any()
    assert np.array_equal(window[2:11, 4:18, 6:27], mag1)


# ------------------------------------------------------------------------------------ painting
def test_paint_at_mag2_writes_mag1_blocks_and_keeps_mags_consistent(iso):
    layer, base = iso
    vol = EditableVolume(layer)
    assert np.array_equal(vol.read(2, *vol.extent(2)), base[1])
    center, radius, value = (7, 12, 15), 4, 77
    rec = vol.brush(2, center, radius, value, dims=3)
    assert rec.changed and rec.kind == "paint" and rec.mag == (2, 2, 2)

    # mag 2 reads back exactly what was painted
    offs = np.indices((9, 9, 9)).reshape(3, -1).T - 4
    ball = offs[(offs**2).sum(axis=1) <= radius**2] + center
    expected2 = base[1].copy()
    expected2[tuple(ball.T)] = value
    got = read_all(vol)
    assert np.array_equal(got[(2, 2, 2)], expected2)

    # mag 1: the 2x2x2 block under each painted mag-2 voxel, nothing else
    expected1 = base[0].copy()
    for z, y, x in ball:
        expected1[2 * z:2 * z + 2, 2 * y:2 * y + 2, 2 * x:2 * x + 2] = value
    assert np.array_equal(got[(1, 1, 1)], expected1)
    assert rec.voxels_changed == int((expected1 != base[0]).sum())

    # mag 4 agrees with the edited mag 2 by mode downsampling (the rule the base pyramid was built with)
    assert np.array_equal(got[(4, 4, 4)], downsample_mode(expected2))
    assert np.array_equal(got[(2, 2, 2)], downsample_mode(expected1))


def test_anisotropic_mags(tmp_path):
    factors = [(1, 1, 1), (2, 2, 1), (4, 4, 2)]
    seg = blocky_segmentation((24, 40, 44), block=4, seed=5)
    mags = anisotropic_pyramid(seg, factors)
    layer = wk_layer(tmp_path, mags)
    vol = EditableVolume(layer)
    assert vol.mags == factors
    vol.brush((2, 2, 1), (9, 10, 11), 3, 50, dims=2)  # xy disc at mag (2, 2, 1)
    got = read_all(vol)
    disc = np.zeros((1, 7, 7), bool)
    yy, xx = np.ogrid[-3:4, -3:4]
    disc[0] = yy**2 + xx**2 <= 9
    exp221 = mags[(2, 2, 1)].copy()
    exp221[9:10, 7:14, 8:15][disc] = 50
    assert np.array_equal(got[(2, 2, 1)], exp221)
    exp1 = seg.copy()
    up = np.repeat(np.repeat(disc, 2, axis=1), 2, axis=2)
    exp1[9:10, 14:28, 16:30][up] = 50
    assert np.array_equal(got[(1, 1, 1)], exp1)
    assert np.array_equal(got[(2, 2, 1)], downsample_mode_by(exp1, (1, 2, 2)))
    assert np.array_equal(got[(4, 4, 2)], downsample_mode_by(exp221, (2, 2, 2)))


def test_brush_shapes_and_planes():
    vol = EditableVolume(shape_zyx=(30, 30, 30))
    r = 3
    for plane_axis in range(3):
        vol.brush(1, (15, 15, 15), r, 1 + plane_axis, dims=2, plane_axis=plane_axis)
        data = vol.read(1, (0, 0, 0), (30, 30, 30)) == 1 + plane_axis
        assert np.flatnonzero(data.any(axis=tuple(a for a in range(3) if a != plane_axis))).tolist() == [15]
        d = np.indices((7, 7)) - 3
        assert data.sum() == int(((d**2).sum(axis=0) <= r * r).sum())
    vol.brush(1, (5, 5, 5), 1, 9, shape="square", dims=3)
    square = vol.read(1, (0, 0, 0), (30, 30, 30)) == 9
    assert square.sum() == 27 and square[4:7, 4:7, 4:7].all()
    vol.brush(1, (20, 20, 8), (0, 2, 1), 10, dims=3)  # ellipse in the yx plane: (y/2)² + x² <= 1
    ell = vol.read(1, (0, 0, 0), (30, 30, 30)) == 10
    expected = np.zeros_like(ell)
    expected[20, 18:23, 8] = True
    expected[20, 20, 7:10] = True
    assert np.array_equal(ell, expected)


def test_overpaint_and_erase_only_selected(iso):
    layer, base = iso
    seg = base[0]
    vol = EditableVolume(layer)
    center = (20, 26, 33)
    box = (slice(14, 27), slice(20, 33), slice(27, 40))
    vol.brush(1, center, 6, 99, shape="square", dims=3, mode="overpaint")
    got = vol.read(1, *vol.extent(1))
    region = seg[box]
    assert (region == 0).any() and (region != 0).any()
    assert np.array_equal(got[box], np.where(region == 0, 0, 99))
    outside = np.ones(seg.shape, bool)
    outside[box] = False
    assert np.array_equal(got[outside], seg[outside])

    vol.undo()
    ids_there = set(np.unique(region).tolist()) - {0}
    keep = min(ids_there)
    erase = set(ids_there) - {keep}
    vol.brush(1, center, 6, 5, shape="square", dims=3, mode="erase", erase_only=erase)
    got = vol.read(1, *vol.extent(1))
    assert np.array_equal(got[box], np.where(np.isin(region, list(erase)), 0, region))
    vol.brush(1, center, 6, 5, shape="square", dims=3, mode="erase")
    assert not vol.read(1, *vol.extent(1))[box].any()
    assert np.array_equal(vol.read(4, *vol.extent(4)), downsample_mode(downsample_mode(vol.read(1, *vol.extent(1)))))


# ------------------------------------------------------------------------------- bounds, fill
def test_bounds_refuse_and_clip(iso):
    layer, base = iso
    vol = EditableVolume(layer)
    bounds = ((10, 11, 13), (30, 41, 51))  # mag-1, odd starts: mag-2 voxels straddle them
    with pytest.raises(VolumeEditRefused, match="outside"):
        vol.brush(1, (5, 20, 20), 3, 7, bounds=bounds)
    with pytest.raises(VolumeEditRefused):
        vol.fill(2, (2, 10, 10), 7, bounds=bounds)
    assert not vol.can_undo and not vol.dirty
    vol.brush(2, (5, 6, 7), 8, 7, shape="square", dims=3, bounds=bounds)  # mag-1 box (10, 12, 14) inside
    got = vol.read(1, *vol.extent(1))
    changed = got != base[0]
    inside = np.zeros(changed.shape, bool)
    inside[10:30, 11:41, 13:51] = True
    assert changed.any() and not (changed & ~inside).any()
    # only whole mag-2 blocks inside the bounds: the cube (mag-2 z -3..13, y -2..14, x -1..15) cut at the
    # mag-2 voxels 5, 6, 7 (first blocks wholly inside) -> mag-1 z 10..27, y 12..29, x 14..31
    expected = np.zeros(got.shape, bool)
    expected[10:28, 12:30, 14:32] = True
    assert np.array_equal(got == 7, expected)
    with pytest.raises(VolumeEditRefused, match="do not overlap"):
        vol.brush(1, (5, 5, 5), 1, 1, bounds=((100, 0, 0), (120, 10, 10)))


def test_fill_bounded_3d_and_2d():
    seg = np.zeros((20, 30, 40), np.uint64)
    seg[2:18, 5:25, 5:12] = 4  # blob A
    seg[2:18, 5:25, 20:30] = 4  # blob B, not connected to A
    seg[10, 5:25, 12:20] = 6
    seg[10, 14, 12:20] = 4  # a one-voxel bridge from A to B in z = 10 only
    layer = Layer("seg", "segmentation", np.dtype(np.uint64), (1.0, 1.0, 1.0), [Mag((1, 1, 1), seg)])
    vol = EditableVolume(layer)
    bounds = ((0, 0, 0), (20, 30, 25))  # cuts blob B at x = 25
    rec = vol.fill(1, (3, 6, 6), 8, bounds=bounds)
    got = vol.read(1, (0, 0, 0), (20, 30, 40))
    expected = seg.copy()
    expected[2:18, 5:25, 5:12] = 8
    expected[10, 14, 12:20] = 8
    expected[2:18, 5:25, 20:25] = 8  # B inside the bounds, reached through the bridge
    assert np.array_equal(got, expected)
    assert rec.voxels_changed == int((expected != seg).sum())
    vol.undo()
    assert np.array_equal(vol.read(1, (0, 0, 0), (20, 30, 40)), seg)

    vol.fill(1, (3, 6, 6), 8, dims=2, plane_axis=0)  # only slice z = 3 of blob A
    expected = seg.copy()
    expected[3, 5:25, 5:12] = 8
    assert np.array_equal(vol.read(1, (0, 0, 0), (20, 30, 40)), expected)
    same = vol.fill(1, (3, 6, 6), 8)  # 8 onto 8: nothing to do, no undo step
    assert not same.changed and vol.can_undo and len(vol._undo) == 1


def test_fill_at_mag2_overwrites_whole_blocks(iso):
    layer, base = iso
    vol = EditableVolume(layer)
    seed = (10, 13, 16)
    seed_id = base[1][seed]
    vol.fill(2, seed, 123, dims=2, plane_axis=0)
    from scipy import ndimage

    labels, _ = ndimage.label(base[1][10] == seed_id)
    comp = labels == labels[seed[1:]]
    exp2 = base[1].copy()
    exp2[10][comp] = 123
    got = read_all(vol)
    assert np.array_equal(got[(2, 2, 2)], exp2)
    exp1 = base[0].copy()
    for y, x in np.argwhere(comp):
        exp1[20:22, 2 * y:2 * y + 2, 2 * x:2 * x + 2] = 123
    assert np.array_equal(got[(1, 1, 1)], exp1)
    assert np.array_equal(got[(4, 4, 4)], downsample_mode(exp2))


def test_relabel_inside_bounds(iso):
    layer, base = iso
    vol = EditableVolume(layer)
    bounds = ((0, 0, 0), (20, 52, 66))
    vol.relabel([1, 2], 3, bounds=bounds)
    got = vol.read(1, *vol.extent(1))
    exp = base[0].copy()
    exp[:20][np.isin(exp[:20], [1, 2])] = 3
    assert np.array_equal(got, exp)


# --------------------------------------------------------------------- undo, redo, notifications
def test_undo_redo_restore_every_mag_exactly(iso):
    layer, base = iso
    vol = EditableVolume(layer)
    events: list[RegionChange] = []
    vol.subscribe(events.append)
    states = [read_all(vol)]
    vol.brush(1, (20, 20, 20), 10, 11)
    states.append(read_all(vol))
    vol.brush(4, (5, 6, 7), 2, 12, dims=3)
    states.append(read_all(vol))
    vol.fill(2, (3, 3, 3), 13)
    states.append(read_all(vol))
    vol.brush(2, (9, 12, 14), 5, 0, mode="erase", dims=3)
    states.append(read_all(vol))
    assert len(events) == 4 and all(e.reason == "edit" for e in events)
    for e in events:  # the box covers every changed mag-1 voxel
        assert all(lo < hi for lo, hi in zip(e.start_zyx, e.stop_zyx))
    before, after = states[0], states[1]
    diff = np.argwhere(after[(1, 1, 1)] != before[(1, 1, 1)])
    assert (diff.min(axis=0) >= events[0].start_zyx).all() and (diff.max(axis=0) < events[0].stop_zyx).all()

    for i in range(len(states) - 1, 0, -1):
        assert vol.undo() is not None
        now = read_all(vol)
        assert all(np.array_equal(now[m], states[i - 1][m]) for m in vol.mags)
    assert vol.undo() is None and not vol.can_undo and vol.can_redo
    assert all(np.array_equal(states[0][m], b) for m, b in zip(vol.mags, base))
    for i in range(1, len(states)):
        vol.redo()
        now = read_all(vol)
        assert all(np.array_equal(now[m], states[i][m]) for m in vol.mags)
    assert vol.redo() is None
    assert [e.reason for e in events[4:]] == ["undo"] * 4 + ["redo"] * 4
    # a new edit clears the redo stack
    vol.undo()
    vol.brush(1, (1, 1, 1), 1, 3)
    assert not vol.can_redo
    vol.unsubscribe(events.append)
    n = len(events)
    vol.undo()
    assert len(events) == n


def test_undo_stores_only_touched_region(iso):
    layer, _ = iso
    vol = EditableVolume(layer)
    rec = vol.brush(1, (20, 26, 33), 10, 200)
    stored = sum(p[2].size for p in rec.patches)
    assert stored <= 21 * 21 * 3  # mag 1: one 21x21 disc box; mags 2 and 4 smaller
    assert {p[0] for p in rec.patches} <= {0, 1, 2}


def test_undo_memory_budget_and_region_limit():
    vol = EditableVolume(shape_zyx=(16, 64, 64), undo_bytes=30_000)
    vol.brush(1, (3, 20, 20), 10, 1)  # 21 x 21 uint64 ≈ 3.5 kB
    vol.fill(1, (8, 0, 0), 2)  # ≈ 0.5 MB: the first step is dropped
    assert vol.undo().kind == "fill" and not vol.can_undo
    vol.max_region_voxels = 1000
    with pytest.raises(VolumeEditRefused, match="too large"):
        vol.fill(1, (8, 0, 0), 2)
    vol.fill(1, (8, 0, 0), 2, dims=2, bounds=((8, 0, 0), (9, 30, 30)))  # 900 voxels: allowed


def test_touched_chunks(iso):
    layer, _ = iso
    vol = EditableVolume(layer, chunk_zyx=(16, 16, 16))
    vol.brush(1, (20, 30, 40), 2, 9, dims=3)  # mag-1 box z 18-22, y 28-32, x 38-42
    assert vol.touched_chunks(1) == {(1, 1, 2), (1, 2, 2)}
    assert vol.touched_chunks(1, (32, 32, 32)) == {(0, 0, 1), (0, 1, 1)}
    assert vol.touched_chunks(2, (32, 32, 32)) == {(0, 0, 0)}
    assert vol.dirty


# ------------------------------------------------------------------------------------- k.zip
def test_kzip_round_trip_overlays_base(tmp_path):
    seg = blocky_segmentation((70, 140, 150), block=8, seed=2)
    layer = knossos_layer(tmp_path, seg)
    vol = EditableVolume(layer)
    assert vol.kzip_mag_numbers() == {0: 1, 1: 2, 2: 4}
    vol.brush(2, (10, 50, 60), 6, 4242, dims=3)
    vol.fill(1, (65, 135, 145), 31)
    edited = read_all(vol)
    ann = Annotation()
    n = vol.save_to_kzip(ann, "exp_edit")
    assert not vol.dirty and n == len(ann.cubes)
    path = tmp_path / "edit.k.zip"
    write_kzip(ann, path)
    names = [n for n in zipfile.ZipFile(path).namelist() if n.endswith(".seg.sz")]
    assert "exp_edit_mag1x0y0z0.seg.sz" in names and all(n.startswith("exp_edit_mag") for n in names)
    assert {k[0] for k in ann.cubes} == {1, 2, 4}

    back = read_kzip(path)
    assert back.experiment == "exp_edit" and set(back.cubes) == set(ann.cubes)
    fresh = open_dataset(tmp_path / "kds" / "exp_edit.k.toml").layers[0]  # the dataset is untouched
    assert np.array_equal(fresh.mags[0].array[...], seg)
    again = EditableVolume.from_kzip(back, fresh)
    assert not again.dirty and not again.can_undo
    now = read_all(again)
    assert all(np.array_equal(now[m], edited[m]) for m in vol.mags)

    # only mag-1 cubes in the k.zip: the other mags are recomputed from them
    mag1_only = Annotation(experiment="exp_edit", cubes={k: c for k, c in back.cubes.items() if k[0] == 1})
    third = EditableVolume.from_kzip(mag1_only, fresh)
    now = read_all(third)
    assert all(np.array_equal(now[m], edited[m]) for m in vol.mags)


def test_kzip_from_new_overlay():
    vol = EditableVolume(shape_zyx=(40, 200, 300), mags=[(1, 1, 1), (2, 2, 2)])
    vol.brush(1, (3, 150, 250), 5, 8, dims=3)
    ann = Annotation()
    vol.save_to_kzip(ann, "fresh")
    assert set(ann.cubes) == {(1, 1, 1, 0), (2, 0, 0, 0)}
    data = write_kzip(ann)
    back = EditableVolume.from_kzip(read_kzip(data), shape_zyx=(40, 200, 300), mags=[(1, 1, 1), (2, 2, 2)])
    assert all(np.array_equal(a, b) for a, b in zip(read_all(back).values(), read_all(vol).values()))
    with pytest.raises(ValueError, match="experiment"):
        vol.save_to_kzip(Annotation())


# ------------------------------------------------------------------------- saving (formats.*)
REFERENCE_HASHES = """
import hashlib, json, sys
import numpy as np
import webknossos as wk
layer = wk.Dataset.open(sys.argv[1]).get_layer("segmentation")
out = {}
for mag, view in layer.mags.items():
    zyx = np.ascontiguousarray(view.read()[0].transpose(2, 1, 0))
    out[mag.to_layer_name()] = hashlib.sha256(zyx.astype("<u8").tobytes()).hexdigest()
print(json.dumps(out))
"""


def test_save_in_place_zarr3(tmp_path):
    inplace = pytest.importorskip("napari_knossos.formats.inplace")
    seg = blocky_segmentation((40, 70, 90), seed=7)
    mags = pyramid(seg, 3, segmentation=True)
    layer = wk_layer(tmp_path, {2**i: m for i, m in enumerate(mags)})
    vol = EditableVolume(layer)
    vol.brush(2, (10, 17, 20), 6, 555, dims=3)
    vol.fill(1, (39, 69, 89), 556)
    edited = read_all(vol)
    expected_n = sum(len(vol.touched_chunks(m, inplace.chunk_writer(layer, m).chunk_zyx)) for m in vol.mags)
    n = vol.save_in_place()
    assert n == expected_n and n >= 3
    assert not vol.dirty and not vol.touched_chunks(1)
    assert np.array_equal(read_all(vol)[(1, 1, 1)], edited[(1, 1, 1)])  # now read from the dataset
    CHUNK_CACHE.clear()
    fresh = open_dataset(tmp_path / "ds").layer("segmentation")
    for m, mag in zip(vol.mags, fresh.mags):
        assert np.array_equal(mag.array[...], edited[m])
    assert issubclass(inplace.ReadOnlyDatasetError, PermissionError)
    # undo after saving edits again, the next save restores the dataset
    while vol.undo():
        pass
    vol.save_in_place()
    CHUNK_CACHE.clear()
    fresh = open_dataset(tmp_path / "ds").layer("segmentation")
    for base, mag in zip(mags, fresh.mags):
        assert np.array_equal(mag.array[...], base)


@pytest.mark.reference
def test_save_in_place_zarr3_read_by_reference_library(tmp_path):
    pytest.importorskip("napari_knossos.formats.inplace")
    seg = blocky_segmentation((40, 70, 90), seed=8)
    mags = pyramid(seg, 3, segmentation=True)
    layer = wk_layer(tmp_path, {2**i: m for i, m in enumerate(mags)})
    vol = EditableVolume(layer)
    vol.brush(2, (10, 17, 20), 6, 2**40 + 5, dims=3)
    vol.fill(4, (0, 0, 0), 77)
    edited = read_all(vol)
    vol.save_in_place()
    ref = run_reference(REFERENCE_HASHES, str(tmp_path / "ds"))
    assert ref == {"1": _sha(edited[(1, 1, 1)]), "2": _sha(edited[(2, 2, 2)]), "4": _sha(edited[(4, 4, 4)])}


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, "<u8").tobytes()).hexdigest()


def test_save_in_place_knossos_cubes(tmp_path):
    pytest.importorskip("napari_knossos.formats.inplace")
    seg = blocky_segmentation((70, 140, 150), block=8, seed=4)
    base = pyramid(seg, 3, segmentation=True)
    layer = knossos_layer(tmp_path, seg)
    vol = EditableVolume(layer)  # edit chunks 32³, KNOSSOS cubes 128³
    vol.brush(4, (3, 20, 30), 5, 900, dims=3)
    vol.brush(1, (69, 139, 149), 4, 901)
    edited = read_all(vol)
    assert any(not np.array_equal(edited[m], b) for m, b in zip(vol.mags, base))
    expected_n = sum(len(vol.touched_chunks(m, (128, 128, 128))) for m in vol.mags)
    # mag 1: the mag-4 stab covers x 100-143 (cubes x0 and x1), the far corner is cube (x1, y1, z0); mags 2, 4: one
    assert vol.save_in_place() == expected_n == 5
    CHUNK_CACHE.clear()
    fresh = open_dataset(tmp_path / "kds" / "exp_edit.k.toml").layers[0]
    for m, mag in zip(vol.mags, fresh.mags):
        assert np.array_equal(mag.array[...], edited[m])


def test_save_in_place_refuses_remote_and_keeps_edits(tmp_path):
    inplace = pytest.importorskip("napari_knossos.formats.inplace")
    seg = blocky_segmentation((20, 30, 40), seed=9)
    wk_layer(tmp_path, {2**i: m for i, m in enumerate(pyramid(seg, 2, segmentation=True))})
    with serve(tmp_path) as srv:
        layer = open_dataset(f"{srv.url}/ds").layer("segmentation")
        vol = EditableVolume(layer)
        vol.brush(1, (5, 5, 5), 2, 44)
        edited = read_all(vol)
        with pytest.raises(inplace.ReadOnlyDatasetError, match="annotation"):
            vol.save_in_place()
        assert vol.dirty and vol.touched_chunks(1)
        assert all(np.array_equal(a, b) for a, b in zip(read_all(vol).values(), edited.values()))
        ann = Annotation()
        assert vol.save_to_kzip(ann, "ds") > 0 and not vol.dirty
    with pytest.raises(ValueError, match="no dataset"):
        EditableVolume(shape_zyx=(4, 4, 4)).save_in_place()


def test_save_to_volume_zip_round_trip(tmp_path, iso):
    volume_zip = pytest.importorskip("napari_knossos.formats.volume_zip")
    layer, _ = iso
    vol = EditableVolume(layer)
    vol.brush(2, (10, 13, 16), 5, 321, dims=3)
    vol.brush(1, (30, 40, 50), 4, 0, mode="erase")  # an erasure: stored because the dataset is the fallback
    nml = b'<?xml version="1.0" encoding="UTF-8"?>\n<things>\n  <parameters><experiment name="ds"/></parameters>\n</things>\n'
    for fmt in ("zarr3", "wkw"):
        edited = read_all(vol)
        path = tmp_path / f"volume_{fmt}.zip"
        n = vol.save_to_volume_zip(path, nml, fmt=fmt, name="edits", volume_id=3)
        assert not vol.dirty
        read = volume_zip.read_volume_zip(path)
        data = read.volume("edits")
        assert data.fallback_layer == "segmentation" and data.id == 3 and data.bucket_count() == n
        assert set(data.mags) == {(1, 1, 1), (2, 2, 2), (4, 4, 4)}
        assert data.largest_segment_id == 321
        back = EditableVolume.from_volume_zip(read, layer)
        assert not back.dirty
        now = read_all(back)
        assert all(np.array_equal(now[m], edited[m]) for m in vol.mags)
        vol.brush(1, (1, 1, 1), 1, 5)  # dirty again for the next format


def test_volume_zip_of_new_overlay(tmp_path):
    pytest.importorskip("napari_knossos.formats.volume_zip")
    vol = EditableVolume(shape_zyx=(50, 60, 70), dtype=np.uint32, mags=[(1, 1, 1), (2, 2, 1)], offset_xyz=(8, 0, 4),
                         voxel_size=(5, 5, 40))
    vol.brush((2, 2, 1), (10, 12, 9), 3, 9, dims=3)
    edited = read_all(vol)
    nml = b"<things><parameters/></things>"
    for fmt in ("zarr3", "wkw"):
        path = tmp_path / f"new_{fmt}.zip"
        vol.save_to_volume_zip(path, nml, fmt=fmt)
        back = EditableVolume.from_volume_zip(path)  # no fallback: a new segmentation over the stored box
        assert back.dtype == np.uint32 and back.mags == vol.mags
        for m in vol.mags:
            box = back.extent(m)
            assert np.array_equal(back.read(m, *box), vol.read(m, *box))
            assert back.read(m, *box).sum() == edited[m].sum()


# ---------------------------------------------------------------------------------- performance
def _median_seconds(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@pytest.fixture(scope="module")
def big_layer(tmp_path_factory):
    seg = np.zeros((256, 256, 256), np.uint64)
    seg[:, :, 128:] = 3
    seg[40:60, 40:60, 40:60] = 9
    mags = pyramid(seg, 4, segmentation=True)
    return wk_layer(tmp_path_factory.mktemp("big"), {2**i: m for i, m in enumerate(mags)})


def test_performance_brush_stab(big_layer):
    vol = EditableVolume(big_layer)
    vol.brush(1, (100, 120, 120), 10, 5)  # warm the chunk cache
    z = iter(range(101, 10_000))
    median = _median_seconds(lambda: vol.brush(1, (next(z), 120, 120), 10, 5), 30)
    print(f"brush stab r=10 2-D, 4 mags: median {median * 1e3:.2f} ms")
    assert median < 0.02  # goal 5 ms (issue 5), ~0.5 ms idle; generous under load


def test_performance_fill_256(big_layer):
    EditableVolume(big_layer).fill(1, (0, 0, 0), 6)  # warm-up: decode the chunks into the cache
    times = []
    for value in (7, 8, 9, 10, 11):
        vol = EditableVolume(big_layer)
        t = time.perf_counter()
        rec = vol.fill(1, (0, 0, 0), value)
        times.append(time.perf_counter() - t)
        assert rec.voxels_changed > 8_000_000
    median = statistics.median(times)
    print(f"3-D fill of a 256^3 region (8.4 M voxels changed, 4 mags): median {median:.3f} s "
          f"({', '.join(f'{t:.3f}' for t in times)})")
    assert median < 1.0  # goal 0.5 s (issue 5); generous for a loaded 2-core test machine


def test_performance_save_100_chunks(big_layer):
    vol = EditableVolume(big_layer)
    for i in range(100):  # one stab in each of 100 chunks of 32^3
        z, y, x = 16 + 32 * (i % 8), 16 + 32 * (i // 8 % 8), 16 + 32 * (i // 64)
        vol.brush(1, (z, y, x), 3, 17)
    assert len(vol.touched_chunks(1, (32, 32, 32))) == 100

    def assemble():
        return sum(1 for m in vol.mags for _ in vol.edited_chunks(m, (32, 32, 32)))

    median = _median_seconds(assemble, 5)
    print(f"assemble 100 touched 32^3 chunks (+ coarser mags): median {median:.3f} s")
    assert median < 1.0

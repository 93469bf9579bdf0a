"""Segment meshes (processing.mesh): known voxel objects written as real KNOSSOS and webKnossos
datasets, meshed at mag 1 and 2, checked against the voxels they came from."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import trimesh

from napari_knossos.annotation.ply import read_ply
from napari_knossos.formats import Dataset, Layer, open_dataset
from napari_knossos.formats.knossos_writer import KnossosLayerSpec, pyramid, write_knossos_dataset
from napari_knossos.formats.wk_writer import WkLayerSpec, write_webknossos_dataset
from napari_knossos.processing import mesh as M

VOXEL = (8.0, 8.0, 16.0)  # nm (x, y, z): the ball below is a ball in nm
SHAPE_ZYX = (48, 112, 160)
BALL, BOX, LOWER, UPPER, ROD, FLAT = 7, 9, 11, 12, 13, 15


def _volume() -> np.ndarray:
    seg = np.zeros(SHAPE_ZYX, np.uint64)
    z, y, x = np.ogrid[: SHAPE_ZYX[0], : SHAPE_ZYX[1], : SHAPE_ZYX[2]]
    centre_nm, radius_nm = (40 * VOXEL[0], 40 * VOXEL[1], 20 * VOXEL[2]), 150.0
    seg[((x * VOXEL[0] - centre_nm[0]) ** 2 + (y * VOXEL[1] - centre_nm[1]) ** 2
         + (z * VOXEL[2] - centre_nm[2]) ** 2) <= radius_nm**2] = BALL
    seg[5:37, 10:40, 70:100] = BOX
    seg[20, 25, 100:150] = BOX  # a one-voxel thread of the box, gone at mag 2 and 4
    seg[10:20, 60:80, 70:90] = LOWER  # two supervoxels of one object
    seg[20:30, 60:80, 70:90] = UPPER
    seg[40, 90, 5:60] = ROD  # a one-voxel segment, only at mag 1
    seg[44:47, 95:110, 100:140] = FLAT
    return seg


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """The same segmentation (mags 1, 2, 4) as a KNOSSOS dataset (32³ cubes) and a webKnossos zarr3 one."""
    root = tmp_path_factory.mktemp("mesh-data")
    mags = pyramid(_volume(), 3, segmentation=True)
    knossos = write_knossos_dataset(root / "knossos", "meshes", VOXEL,
                                    [KnossosLayerSpec(".seg.sz.zip", mags)], cube_shape_xyz=32)
    wk = write_webknossos_dataset(root / "wk", VOXEL, [WkLayerSpec("segmentation", "segmentation",
                                                                   {1: mags[0], 2: mags[1], 4: mags[2]})],
                                  shard_shape=64, chunk_shape=32)
    return {"knossos": str(knossos), "webknossos": str(wk)}


def _segmentation_layer(path):
    return next(layer for layer in open_dataset(path).layers if layer.is_segmentation)


def _trimesh(mesh):
    return trimesh.Trimesh(mesh.vertices.astype(np.float64), mesh.faces)


def _voxel_object(layer, ids, factor: int):
    """The voxels of ``ids`` as stored at mag ``factor``: (count, bounding box in nm of their faces)."""
    mask = np.isin(np.asarray(layer.mag(factor).array[...]), ids)
    where = np.argwhere(mask)  # z, y, x
    f, size = np.array([factor] * 3, float), np.asarray(VOXEL)
    lo = (where.min(axis=0)[::-1] * f - 0.5) * size  # nm of the outer faces (x, y, z)
    hi = ((where.max(axis=0)[::-1] + 1) * f - 0.5) * size
    return int(mask.sum()), lo, hi


@pytest.mark.parametrize("fmt", ["knossos", "webknossos"])
@pytest.mark.parametrize("mag", [1, 2])
@pytest.mark.parametrize("ids", [[BALL], [BOX], [LOWER, UPPER]], ids=["ball", "box+thread", "object"])
def test_mesh_matches_voxels(datasets, fmt, mag, ids):
    layer = _segmentation_layer(datasets[fmt])
    mesh = M.segment_mesh(layer, ids, mag)
    tm = _trimesh(mesh)
    assert tm.is_watertight and tm.is_winding_consistent
    count, lo, hi = _voxel_object(layer, ids, mag)
    voxel_nm3 = math.prod(VOXEL) * mag**3
    # marching cubes cuts voxel edges, smoothing rounds corners: under 1 % here; the faces of the
    # voxel object stay within a quarter voxel
    assert tm.volume == pytest.approx(count * voxel_nm3, rel=0.02 if mag == 1 else 0.03)
    quarter = np.asarray(VOXEL) * mag / 4
    np.testing.assert_array_less(np.abs(tm.bounds[0] - lo), quarter)
    np.testing.assert_array_less(np.abs(tm.bounds[1] - hi), quarter)
    assert mesh.normals is not None and len(mesh.normals) == len(mesh.vertices)


def test_thread_beyond_the_coarse_box_is_followed(datasets):
    """The box's one-voxel thread is invisible at mag 4 (where the box is scanned): the mask at mag 1
    touches the side of the scanned box, which is then widened until the thread ends."""
    layer = _segmentation_layer(datasets["knossos"])
    coarse = M.segment_bounding_boxes(layer, [BOX])[BOX]  # mag 4, the coarsest
    assert coarse[1][2] <= 104
    mesh = M.segment_mesh(layer, BOX, 1)
    _, _, hi = _voxel_object(layer, [BOX], 1)
    assert hi[0] == pytest.approx((150 - 0.5) * VOXEL[0])
    assert _trimesh(mesh).bounds[1][0] > hi[0] - 2 * VOXEL[0]


def test_segment_missing_at_coarse_mags_is_found_at_mag1(datasets):
    layer = _segmentation_layer(datasets["webknossos"])
    assert ROD not in M.segment_bounding_boxes(layer, [ROD, BALL])
    mesh = M.segment_mesh(layer, ROD, 1)
    assert _trimesh(mesh).is_watertight
    with pytest.raises(LookupError, match=r"segment \[13\] not found at mag 2"):
        M.segment_mesh(layer, ROD, 2)


def test_bounds_clip_and_close_the_mesh(datasets):
    layer = _segmentation_layer(datasets["knossos"])
    bounds = ((0, 0, 0), (20, 112, 160))  # lower half of the ball (z < 20)
    tm = _trimesh(M.segment_mesh(layer, BALL, 1, bounds=bounds, smooth_iterations=0))
    assert tm.is_watertight
    assert tm.bounds[1][2] == pytest.approx((20 - 0.5) * VOXEL[2])
    whole = _trimesh(M.segment_mesh(layer, BALL, 1, smooth_iterations=0))
    assert 0.3 * whole.volume < tm.volume < 0.7 * whole.volume


def test_array_and_edited_volume_sources(datasets):
    from napari_knossos.annotation.volume import EditableVolume

    layer = _segmentation_layer(datasets["knossos"])
    from_array = M.segment_mesh(_volume(), BALL, voxel_size_xyz=VOXEL)
    assert from_array.equals(M.segment_mesh(layer, BALL))
    volume = EditableVolume(layer)
    new_id = 99
    volume.write(1, (30, 60, 120), np.full((6, 10, 12), new_id, volume.dtype))  # z, y, x
    tm = _trimesh(M.segment_mesh(volume, new_id, 1, smooth_iterations=0))
    assert tm.is_watertight
    assert tm.volume == pytest.approx(6 * 10 * 12 * math.prod(VOXEL), rel=0.05)
    np.testing.assert_allclose(tm.bounds[0], (np.array([120, 60, 30]) - 0.5) * VOXEL)
    # the edit reached the coarser mags: mag 2 finds it too
    assert _trimesh(M.segment_mesh(volume, new_id, 2)).is_watertight


def test_meshes_for_segments_threads_equal_single_meshes(datasets, tmp_path):
    path = datasets["webknossos"]
    segments = {BALL: BALL, BOX: BOX, "object": [LOWER, UPPER], ROD: ROD, FLAT: FLAT}
    with pytest.warns(RuntimeWarning, match=r"not found at mag 2: \[13\]"):
        meshes = M.meshes_for_segments(path, segments, 2)
    assert sorted(map(str, meshes)) == sorted(map(str, [BALL, BOX, "object", FLAT]))
    for key, ids in segments.items():
        if key != ROD:
            assert meshes[key].equals(M.segment_mesh(path, ids, 2))
    written = M.write_meshes(meshes, tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(f"{k}.ply" for k in meshes)
    for key, mesh in meshes.items():
        back = read_ply(tmp_path / "out" / f"{key}.ply")
        np.testing.assert_array_equal(back.vertices, mesh.vertices)
        np.testing.assert_array_equal(back.faces, mesh.faces)
        loaded = trimesh.load(tmp_path / "out" / f"{key}.ply", process=True)
        assert loaded.is_watertight
        assert loaded.volume == pytest.approx(_trimesh(mesh).volume, rel=1e-5)
    assert not list((tmp_path / "out").glob(".*"))  # no temp files left


def test_meshes_on_a_local_cluster_with_two_workers(datasets, tmp_path):
    distributed = pytest.importorskip("distributed")
    path = datasets["knossos"]
    ids = [BALL, BOX, LOWER, UPPER, FLAT]
    local = M.meshes_for_segments(path, ids, 1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = M.meshes_for_segments(path, ids, 1, scheduler=client, progress=False)
        # the workers opened the dataset themselves, from its path
        opened = client.run(lambda: M._open_path.cache_info().currsize)
        assert len(opened) == 2 and sum(opened.values()) >= 1
        # the command line, given the scheduler's address
        out = tmp_path / "cli"
        assert _run_cli(["mesh", path, "--segments", f"{BALL},{BOX}", "--out", str(out), "--scheduler",
                         cluster.scheduler_address, "--no-progress"]) == 0
    assert sorted(remote) == sorted(local)
    for key in ids:
        assert remote[key].equals(local[key])
    for key in (BALL, BOX):
        assert read_ply(out / f"{key}.ply").equals(local[key])


@pytest.mark.parametrize("method", ["cluster", "quadric"])
def test_decimation(datasets, method):
    if method == "quadric":
        pytest.importorskip("fast_simplification")
    layer = _segmentation_layer(datasets["knossos"])
    full = M.segment_mesh(layer, BALL, 1)
    small = M.segment_mesh(layer, BALL, 1, target_faces=len(full.faces) // 8, decimation=method)
    assert len(small.faces) <= len(full.faces) // 8
    assert len(small.faces) >= len(full.faces) // 40
    tm, ref = _trimesh(small), _trimesh(full)
    assert tm.volume == pytest.approx(ref.volume, rel=0.1)
    np.testing.assert_allclose(tm.bounds, ref.bounds, atol=2 * max(VOXEL))


@pytest.mark.parametrize("method", ["cluster", "quadric"])
def test_decimation_in_threads_equals_one_at_a_time(datasets, method):
    """fast-simplification keeps its mesh in C++ globals: concurrent calls must not mix meshes."""
    if method == "quadric":
        pytest.importorskip("fast_simplification")
    path, ids = datasets["webknossos"], [BALL, BOX, LOWER, UPPER, FLAT]
    for _ in range(3):
        meshes = M.meshes_for_segments(path, ids, 1, target_faces=300, decimation=method)
        for key in ids:
            assert meshes[key].equals(M.segment_mesh(path, key, 1, target_faces=300, decimation=method))


def test_decimate_refuses_unknown_method():
    mesh = M.mesh_from_mask(np.ones((4, 4, 4), bool))
    with pytest.raises(ValueError, match="decimation method"):
        M.decimate(mesh, 10, "fancy")
    assert M.decimate(mesh, 10**6) is mesh


def test_errors_name_what_is_wrong(datasets):
    layer = _segmentation_layer(datasets["knossos"])
    with pytest.raises(ValueError, match="0 is background"):
        M.segment_mesh(layer, 0)
    with pytest.raises(KeyError, match="no mag 8"):
        M.segment_mesh(layer, BALL, 8)
    with pytest.raises(LookupError, match=r"layer 'segmentation'.*segment \[12345\] not found"):
        M.segment_mesh(layer, 12345)
    with pytest.raises(M.SegmentTooLarge, match=r"more than 1000; mesh it at a coarser mag"):
        M.segment_mesh(layer, BOX, 1, max_voxels=1000)
    with pytest.warns(RuntimeWarning, match=r"segments skipped, more than 1000 voxels .*: \[9\]"):
        assert list(M.meshes_for_segments(layer, [BOX, FLAT], 2, max_voxels=1000)) == [FLAT]
    with pytest.raises(TypeError, match="cannot be sent to the workers of scheduler 'processes'; pass the dataset"):
        M.meshes_for_segments(layer, [BALL], scheduler="processes")
    with pytest.raises(TypeError, match="cannot read segment voxels"):
        M.segment_mesh(object(), 1)
    colour_only = Dataset("c", "test", "colour-only", [Layer("color", "color", np.dtype("uint8"), VOXEL, [])])
    with pytest.raises(ValueError, match="colour-only: no segmentation layer"):
        M.segmentation_source(colour_only)


def test_parse_segments_and_mags():
    assert M.parse_segments("1, 3-5,10+11") == {1: [1], 3: [3], 4: [4], 5: [5], 10: [10, 11]}
    with pytest.raises(ValueError, match="cannot read 'x'"):
        M.parse_segments("1,x")
    assert M.parse_mag("2-2-1") == (2.0, 2.0, 1.0)
    assert M.parse_mag(4) == (4.0, 4.0, 4.0)


def _run_cli(argv):
    cli = pytest.importorskip("napari_knossos.cli")
    return cli.main(argv)


def test_mesh_command(datasets, tmp_path, capsys):
    out = tmp_path / "meshes"
    code = _run_cli(["mesh", datasets["knossos"], "--segments", f"{BALL},{LOWER}+{UPPER}", "--mag", "2",
                     "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{BALL}.ply", f"{LOWER}.ply"])
    assert "wrote 2 meshes" in capsys.readouterr().out
    layer = _segmentation_layer(datasets["knossos"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = M.segment_mesh(layer, [LOWER, UPPER], 2)
    assert read_ply(out / f"{LOWER}.ply").equals(expected)
    # a segment without a mesh: the others are written, exit code 1, the reason on stderr
    code = _run_cli(["mesh", datasets["webknossos"], "--segments", f"{ROD},{FLAT}", "--mag", "2-2-2", "--out",
                     str(tmp_path / "partial"), "--faces", "100", "--no-progress"])
    assert code == 1
    assert [p.name for p in (tmp_path / "partial").iterdir()] == [f"{FLAT}.ply"]
    assert len(read_ply(tmp_path / "partial" / f"{FLAT}.ply").faces) <= 100
    assert f"not found at mag 2: [{ROD}]" in capsys.readouterr().err
    assert _run_cli(["mesh", datasets["knossos"], "--segments", "1,x"]) == 1
    assert "--segments: cannot read 'x'" in capsys.readouterr().err

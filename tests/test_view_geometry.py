"""view_geometry on a real napari viewer: the same axes, slice and field of view the adapters
computed inline before (reference formulas kept below), for several axis orders, zooms and canvas
sizes; and the segment under the cursor read from the editable window equals a volume read."""

from __future__ import annotations

import numpy as np
import pytest

from napari_knossos.formats.knossos_writer import pyramid
from napari_knossos.formats.wk_writer import WkLayerSpec, write_webknossos_dataset
from napari_knossos.movement_area import box_from_view
from napari_knossos.segmentation_layers import SegmentationSession, find_segmentation_layers
from napari_knossos.view_geometry import (
    canvas_size,
    current_slice,
    displayed_axes,
    field_of_view,
    hidden_axes,
    hidden_axis,
    slice_world,
)

from .gui import blocks, canvas

VOXEL = (10.0, 10.0, 20.0)  # x, y, z nm
SCALE = (20.0, 10.0, 10.0)  # z, y, x
SHAPE = (32, 96, 128)


# -- the formulas as movement_area.py and segmentation_layers.py wrote them inline (commit 78d593d) --
def old_displayed(viewer):
    offset = viewer.dims.ndim - 3
    return [a - offset for a in viewer.dims.displayed]


def old_box_from_view(viewer, scale_zyx, depth):
    from napari_knossos.movement_area import box_from_rectangle

    displayed = old_displayed(viewer)
    hidden = next(a for a in range(3) if a not in displayed)
    center = np.asarray(viewer.scene.camera.center, np.float64)[-len(displayed):]
    h, w = viewer.canvas.size
    half_world = np.array([h, w], np.float64) / 2 / float(viewer.scene.camera.zoom)
    scale = np.asarray(scale_zyx, np.float64)
    corners = np.zeros((2, 3))
    for i, axis in enumerate(displayed):
        corners[0, axis] = (center[i] - half_world[i]) / scale[axis]
        corners[1, axis] = (center[i] + half_world[i]) / scale[axis]
    current = float(viewer.dims.point[viewer.dims.ndim - 3 + hidden]) / scale[hidden]
    half = depth // 2
    return box_from_rectangle(corners, displayed, (round(current) - half, round(current) - half + depth))


def old_view_box(session, pad):
    ext_lo, ext_hi = (np.asarray(v) for v in session.volume.bounds)
    viewer = session.viewer
    cam = viewer.scene.camera
    offset = viewer.dims.ndim - 3
    displayed = old_displayed(viewer)
    hidden = next(a for a in range(3) if a not in displayed)
    h, w = viewer.canvas.size
    half = np.array([h, w], np.float64) / 2 / max(float(cam.zoom), 1e-12) * (1 + 2 * pad)
    center = np.asarray(cam.center, np.float64)[-2:]
    lo, hi = ext_lo.copy(), ext_hi.copy()
    for i, axis in enumerate(displayed[-2:]):
        lo[axis] = int(np.floor((center[i] - half[i]) / session.scale_zyx[axis]))
        hi[axis] = int(np.ceil((center[i] + half[i]) / session.scale_zyx[axis])) + 1
    current = round(float(viewer.dims.point[offset + hidden]) / session.scale_zyx[hidden])
    f = int(session.factor_zyx()[hidden])
    lo[hidden] = current - 8 * f
    hi[hidden] = current + 9 * f
    lo, hi = np.maximum(lo, ext_lo), np.minimum(hi, ext_hi)
    return tuple(lo.tolist()), tuple(np.maximum(hi, lo).tolist())


@pytest.fixture
def session(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_KNOSSOS_DATA_DIR", str(tmp_path / "data"))
    mags = pyramid(blocks(SHAPE), 2, segmentation=True)
    root = write_webknossos_dataset(tmp_path / "ds", VOXEL, [
        WkLayerSpec("segmentation", "segmentation", {1: mags[0], 2: mags[1]})])
    viewer = make_napari_viewer(show=True)
    viewer.open(str(root), plugin="napari-knossos")
    viewer.window._qt_window.resize(1000, 800)
    qtbot.wait(20)
    s = SegmentationSession(viewer, find_segmentation_layers(viewer)[0])
    yield s, qtbot
    if s._installed:
        s.uninstall()


def look(viewer, qtbot, order, zoom, center_voxel, slice_voxel):
    viewer.dims.order = order
    viewer.dims.set_point(order[0], slice_voxel * SCALE[order[0]])
    center = [c * s for c, s in zip(center_voxel, SCALE)]
    viewer.scene.camera.center = tuple(center[a] for a in order)
    viewer.scene.camera.zoom = zoom
    qtbot.wait(10)


@pytest.mark.parametrize("window_size", [(1000, 800), (700, 900)])
def test_geometry_matches_the_inline_formulas(session, window_size):
    session, qtbot = session
    viewer = session.viewer
    viewer.window._qt_window.resize(*window_size)
    qtbot.wait(50)
    native = canvas(viewer)
    assert canvas_size(viewer) == (native.width(), native.height())
    for order in [(0, 1, 2), (1, 0, 2), (2, 0, 1), (0, 2, 1)]:
        for zoom in (0.05, 0.4, 3.0):
            look(viewer, qtbot, order, zoom, (10, 40, 60), {0: 10, 1: 30, 2: 50}[order[0]])
            displayed = displayed_axes(viewer)
            assert displayed == old_displayed(viewer) == list(order[1:])
            assert hidden_axis(viewer) == order[0] and hidden_axes(viewer) == [order[0]]
            assert slice_world(viewer) == float(viewer.dims.point[order[0]])
            assert current_slice(viewer, SCALE) == float(viewer.dims.point[order[0]]) / SCALE[order[0]]
            lo, hi = field_of_view(viewer, SCALE)
            h, w = viewer.canvas.size
            for i, axis in enumerate(displayed):  # the canvas' rows then columns, in voxels
                assert hi[axis] - lo[axis] == pytest.approx((h, w)[i] / zoom / SCALE[axis])
            for depth in (1, 4, 9):
                assert box_from_view(viewer, SCALE, depth) == old_box_from_view(viewer, SCALE, depth)
            for pad in (0.0, 0.5):
                assert session.view_box(pad) == old_view_box(session, pad)
    viewer.dims.ndisplay = 3
    qtbot.wait(10)
    assert displayed_axes(viewer) == old_displayed(viewer) and hidden_axes(viewer) == []
    with pytest.raises(ValueError, match="3-D view"):
        hidden_axis(viewer)


def volume_id(session, voxel):
    vol = session.volume
    v = np.asarray(voxel)
    return int(vol.read(vol.mags[0], tuple(v.tolist()), tuple((v + 1).tolist()))[0, 0, 0])


def test_segment_at_reads_the_window_like_the_volume(session):
    session, qtbot = session
    viewer = session.viewer
    look(viewer, qtbot, (0, 1, 2), 3.0, (12, 48, 64), 12)  # level 0, a window smaller than the data
    session.install()
    assert session.window_box[0] == 0
    _, start, stop = session.window_box
    assert any(a > 0 or b < n for a, b, n in zip(start, stop, SHAPE))
    rng = np.random.default_rng(3)
    inside = [tuple(int(rng.integers(a, b)) for a, b in zip(start, stop)) for _ in range(200)]
    outside = [(12, 48, 127), (0, 0, 0), (31, 95, 127), (12, 48, stop[2]), (12, 48, 500)]
    outside = [v for v in outside if not all(a <= c < b for c, a, b in zip(v, start, stop))]
    assert len(outside) >= 3

    def check():
        for v in inside:
            assert session._window_id(np.array(v)) is not None
            assert session.segment_at(np.array(v) * SCALE) == volume_id(session, v), v
        for v in outside:
            assert session._window_id(np.array(v)) is None
            expected = volume_id(session, v) if all(0 <= c < n for c, n in zip(v, SHAPE)) else 0
            assert session.segment_at(np.array(v) * SCALE) == expected, v

    check()
    # an unsaved paint stroke across the window's edge: the window and the volume agree
    session.active_id = 777
    session.brush_radius = 3.0
    with session.volume.stroke():
        for x in range(stop[2] - 6, stop[2] + 4):
            session.paint_at(np.array([12, 48, x]) * SCALE)
    assert session.volume.dirty
    painted = [(12, 48, x) for x in range(stop[2] - 6, min(stop[2] + 4, SHAPE[2]))]
    inside += [v for v in painted if v[2] < stop[2]]
    outside += [v for v in painted if v[2] >= stop[2]]
    assert all(session.segment_at(np.array(v) * SCALE) == 777 for v in painted)
    check()
    session.undo()
    assert all(session.segment_at(np.array(v) * SCALE) != 777 for v in painted)
    check()
    # a merged view shows object ids in the window: segment_at still gives the supervoxel
    session.merge_at(np.array(inside[0]) * SCALE)
    session.set_merged_view(True)
    assert session._window_id(np.array(inside[0])) is None
    check_ids = [session.segment_at(np.array(v) * SCALE) for v in inside]
    assert check_ids == [volume_id(session, v) for v in inside]
    session.set_merged_view(False)
    # at mag 2 the window holds mag-2 ids: read from the volume
    session.labels.locked_data_level = 1
    qtbot.wait(50)
    session.relocate()
    assert session.window_box[0] == 1
    assert all(session._window_id(np.array(v)) is None for v in inside[:5])
    assert [session.segment_at(np.array(v) * SCALE) for v in inside] == [volume_id(session, v) for v in inside]

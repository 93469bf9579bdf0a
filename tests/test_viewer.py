"""napari under xvfb: the samples open from the plugin, sit at their voxel size, and show."""

import os
import subprocess
import sys

import numpy as np
import pytest

from napari_knossos._sample_data import sample_path

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("key", ["neuropil_knossos", "neuropil_webknossos"])
def test_open_sample_shows_neuropil(make_napari_viewer, key):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-knossos", key)
    kinds = [type(l).__name__ for l in viewer.layers]
    assert kinds == ["Image", "Labels"], kinds
    image, labels = viewer.layers
    assert image.multiscale and len(image.data) == 3
    assert labels.multiscale and len(labels.data) == 3
    assert tuple(image.scale) == tuple(labels.scale)
    assert [str(u) for u in image.units] == ["nanometer"] * 3
    assert tuple(image.axis_labels) == ("z", "y", "x")

    viewer.reset_view()
    mid = viewer.dims.nsteps[0] // 2
    viewer.dims.current_step = (mid, *viewer.dims.current_step[1:])
    labels.visible = False
    shot = viewer.screenshot(canvas_only=True, flash=False)
    gray = shot[..., :3].mean(axis=-1)
    assert gray.std() > 10, "image looks flat"
    labels.visible = True
    labels.opacity = 1.0
    shot_l = viewer.screenshot(canvas_only=True, flash=False)
    colourful = np.ptp(shot_l[..., :3].astype(int), axis=-1) > 40
    assert colourful.mean() > 0.2, "labels are not shown in colour"
    ids = np.unique(np.asarray(labels.data[0][mid * 1]))
    assert len(ids) > 20


def test_open_dataset_path_with_plugin(make_napari_viewer):
    viewer = make_napari_viewer()
    path = sample_path("knossos")
    layers = viewer.open(str(path.parent), plugin="napari-knossos")
    assert [l.name for l in layers] == [l.name for l in viewer.layers] and len(layers) == 2


def test_console_script_screenshot(tmp_path):
    out = tmp_path / "shot.png"
    env = {**os.environ}
    proc = subprocess.run(
        [sys.executable, "-m", "napari_knossos", "--screenshot", str(out)],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from PIL import Image

    img = np.asarray(Image.open(out))
    assert img.shape[0] > 200 and img[..., :3].std() > 10


def test_napari_reads_only_visible_cubes_of_a_huge_pyramid(make_napari_viewer):
    """Zoomed into level 0 of a 2^16-per-axis pyramid, napari reads a handful of cubes."""
    import threading

    from napari_knossos.formats.chunked import ChunkedArray
    from napari_knossos.layer_data import LazyLevel

    n = 2**16
    reads, lock = [], threading.Lock()

    def read_chunk(idx):
        with lock:
            reads.append(idx)
        return np.full((1, 128, 128, 128), 100, np.uint8)

    levels = [LazyLevel(ChunkedArray((n // f,) * 3, (128,) * 3, np.uint8, read_chunk, ("huge-gui", f)))
              for f in (1, 2, 4, 8, 16, 32, 64, 128)]
    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(levels, multiscale=True, contrast_limits=[0, 255])
    viewer.dims.current_step = (n // 2, 0, 0)
    viewer.scene.camera.center = (n / 2, n / 2)
    viewer.scene.camera.zoom = 1.0
    reads.clear()
    viewer.screenshot(canvas_only=True, flash=False)
    assert layer.data_level == 0
    assert 0 < len(reads) < 100, len(reads)
    assert {r[0] for r in reads} == {n // 2 // 128}


def _canvas_pixel(viewer, world_yx):
    """Canvas widget pixel (x, y) of a world (y, x) position in the 2-D view."""
    cam = viewer.scene.camera
    native = viewer.window._qt_viewer.canvas.native  # the real widget, to send real mouse events
    cy, cx = cam.center[-2:]
    px = (world_yx[1] - cx) * cam.zoom + native.width() / 2
    py = (world_yx[0] - cy) * cam.zoom + native.height() / 2
    return native, (int(round(px)), int(round(py)))


def test_annotated_sample_drag_node_with_mouse_and_save(make_napari_viewer, qtbot, tmp_path):
    """Open the annotated sample, drag a node with the mouse in napari's select mode, save NML."""
    from qtpy.QtCore import QPoint, Qt

    from napari_knossos._writer import write_nml
    from napari_knossos.annotation.nml import read_nml

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-knossos", "neuropil_annotated")
    names = [type(l).__name__ for l in viewer.layers]
    assert names[:4] == ["Image", "Labels", "Points", "Vectors"] and "Surface" in names
    points = next(l for l in viewer.layers if type(l).__name__ == "Points")
    vectors = next(l for l in viewer.layers if type(l).__name__ == "Vectors")
    viewer.layers.selection.active = points
    viewer.reset_view()
    z = 60
    viewer.dims.set_point(0, z * points.scale[0])
    # the nodes of this slice are drawn where they are: the canvas has tree colours there
    shot = viewer.screenshot(canvas_only=True, flash=False)
    row = int(np.flatnonzero(points.data[:, 0] == z)[0])
    node_id = int(points.features["node_id"].iloc[row])
    world = points.data[row, 1:] * points.scale[1:]
    native, (px, py) = _canvas_pixel(viewer, world)
    colour = shot[py, px, :3].astype(int)
    np.testing.assert_allclose(colour / 255, points.face_color[row, :3], atol=0.25)

    points.mode = "select"
    before = points.data[row].copy()
    qtbot.mousePress(native, Qt.MouseButton.LeftButton, pos=QPoint(px, py))
    for step in range(1, 6):
        qtbot.mouseMove(native, QPoint(px + 8 * step, py))
    qtbot.mouseRelease(native, Qt.MouseButton.LeftButton, pos=QPoint(px + 40, py))
    moved = points.data[row] - before
    assert moved[0] == 0 and moved[2] > 2, moved  # dragged along x in the current slice

    out = tmp_path / "dragged.nml"
    write_nml(str(out), [(l.data, l._get_state(), l._type_string) for l in (points, vectors)])
    np.testing.assert_allclose(read_nml(out).position(node_id), points.data[row][::-1], atol=0.51)

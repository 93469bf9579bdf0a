"""Helpers for GUI tests that drive napari's canvas with real Qt events (test-only private access)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPoint, Qt


def canvas(viewer):
    """The canvas' native Qt widget, to send real mouse and key events to."""
    return viewer.window._qt_viewer.canvas.native


def make_room(viewer, qtbot) -> None:
    """A 1280×1000 window without the layer list/controls docks, so docked widgets leave the
    canvas room to click in."""
    viewer.window._qt_window.resize(1280, 1000)
    qt_viewer = viewer.window._qt_viewer
    qt_viewer.dockLayerList.hide()
    qt_viewer.dockLayerControls.hide()
    qtbot.wait(20)


def look_at(viewer, qtbot, scale_zyx, z, y, x, zoom, active=None) -> None:
    """Show slice ``z`` centred on voxel (y, x) at ``zoom`` canvas pixels per nm."""
    viewer.dims.set_point(0, z * scale_zyx[0])
    viewer.scene.camera.center = (z * scale_zyx[0], y * scale_zyx[1], x * scale_zyx[2])
    viewer.scene.camera.zoom = zoom
    if active is not None:
        viewer.layers.selection.active = viewer.layers[active]
    qtbot.wait(50)


def pixel_of(viewer, scale_zyx, y, x) -> QPoint:
    """Canvas pixel of voxel (y, x) in the 2-D view."""
    cam = viewer.scene.camera
    native = canvas(viewer)
    cy, cx = cam.center[-2:]
    return QPoint(round((x * scale_zyx[2] - cx) * cam.zoom + native.width() / 2),
                  round((y * scale_zyx[1] - cy) * cam.zoom + native.height() / 2))


def drag_through(viewer, qtbot, scale_zyx, path, button, modifier=Qt.KeyboardModifier.NoModifier, during=None,
                 settle_ms=5) -> None:
    """Press at the first voxel (y, x) of ``path``, move through the others, release at the last
    (real Qt mouse events on the canvas); ``during()`` runs before the release."""
    native = canvas(viewer)
    points = [pixel_of(viewer, scale_zyx, y, x) for y, x in path]
    qtbot.mousePress(native, button, modifier, points[0])
    for p in points[1:]:
        qtbot.mouseMove(native, p)
        qtbot.wait(2)
    if during is not None:
        during()
    qtbot.mouseRelease(native, button, modifier, points[-1])
    qtbot.wait(settle_ms)


def blocks(shape_zyx, block=16, seed=0) -> np.ndarray:
    """A segmentation of cubes of ``block`` voxels per axis with ids 1..N (no background), deterministic."""
    rng = np.random.default_rng(seed)
    grid = [-(-s // block) for s in shape_zyx]
    seg = rng.permutation(np.prod(grid)).reshape(grid).astype(np.uint32) + 1
    for axis in range(3):
        seg = np.repeat(seg, block, axis=axis)
    return np.ascontiguousarray(seg[tuple(slice(0, s) for s in shape_zyx)])


def em_and_segmentation_dataset(folder, voxel_size_xyz, shape_zyx=(32, 128, 128)):
    """A webKnossos dataset (our writer) with a "color" EM-like gradient and a "segmentation" of
    :func:`blocks` at mags 1 and 2; returns (dataset folder, mag-1 segmentation)."""
    from napari_knossos.formats.knossos_writer import pyramid
    from napari_knossos.formats.wk_writer import WkLayerSpec, write_webknossos_dataset

    seg = blocks(shape_zyx)
    em = (np.indices(shape_zyx).sum(0) % 200 + 30).astype(np.uint8)
    mags = pyramid(seg, 2, segmentation=True)
    root = write_webknossos_dataset(folder, voxel_size_xyz, [
        WkLayerSpec("color", "color", {1: em}),
        WkLayerSpec("segmentation", "segmentation", {1: mags[0], 2: mags[1]})])
    return root, seg

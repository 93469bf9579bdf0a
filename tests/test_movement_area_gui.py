"""The movement-area widget: numbers, current view, drawn rectangle; darkening; refusals; saving."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

from napari_knossos.annotation.nml import read_nml
from napari_knossos.widgets.movement_area import MovementAreaWidget
from napari_knossos.widgets.tracing import TracingWidget

from . import gui
from .gui import canvas, look_at, make_room

SCALE = (25.0, 10.0, 10.0)


@pytest.fixture
def area_setup(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_KNOSSOS_DATA_DIR", str(tmp_path / "data"))
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.full((40, 200, 200), 200, np.uint8), scale=SCALE, units="nm", name="em",
                     contrast_limits=(0, 255))
    tracing = TracingWidget(viewer)
    viewer.window.add_dock_widget(tracing, name="Tracing")
    area = MovementAreaWidget(viewer)
    viewer.window.add_dock_widget(area, name="Movement area", area="left")
    make_room(viewer, qtbot)
    look_at(viewer, qtbot, SCALE, 20, 100, 100, 0.25, active="em")
    return viewer, tracing, area, qtbot


def pixel_of(viewer, y, x):
    return gui.pixel_of(viewer, SCALE, y, x)


def brightness(viewer, y, x):
    shot = viewer.screenshot(canvas_only=True, flash=False)
    p = pixel_of(viewer, y, x)
    sx = shot.shape[1] / canvas(viewer).width()
    return float(shot[int(p.y() * sx), int(p.x() * sx), :3].mean())


def right_click(viewer, qtbot, y, x):
    pos = pixel_of(viewer, y, x)
    qtbot.mousePress(canvas(viewer), Qt.MouseButton.RightButton, pos=pos)
    qtbot.mouseRelease(canvas(viewer), Qt.MouseButton.RightButton, pos=pos)
    qtbot.wait(5)


def test_area_by_numbers_darkens_outside_and_refuses_nodes(area_setup, tmp_path):
    viewer, tracing, area, qtbot = area_setup
    skel = tracing.session.skel
    inside, outside = brightness(viewer, 100, 100), brightness(viewer, 20, 20)
    assert abs(inside - outside) < 2  # no area yet: uniform image
    area.min_x.value, area.min_y.value, area.min_z.value = 50, 60, 10
    area.size_x.value, area.size_y.value, area.size_z.value = 100, 80, 20
    area.apply()
    box = skel.parameters.movement_area
    assert tuple(box.top_left) == (50, 60, 10) and tuple(box.size) == (100, 80, 20)
    qtbot.wait(20)
    inside, outside = brightness(viewer, 100, 100), brightness(viewer, 20, 20)
    assert outside < 0.6 * inside, (inside, outside)  # darkened by 0.6
    area.darkness.value = 0.9
    qtbot.wait(20)
    assert brightness(viewer, 20, 20) < 0.2 * inside
    # a node inside is placed, one outside is refused with a message
    right_click(viewer, qtbot, 100, 100)
    right_click(viewer, qtbot, 20, 20)
    assert skel.num_nodes == 1 and "movement area" in tracing.status_label.text().lower()
    # outside the area's depth the whole plane is dark
    viewer.dims.set_point(0, 35 * SCALE[0])
    qtbot.wait(20)
    assert brightness(viewer, 100, 100) < 0.2 * inside
    # saved in the NML as <MovementArea>, and undoable
    out = tracing.save(str(tmp_path / "area.nml"))
    assert tuple(read_nml(out).parameters.movement_area.top_left) == (50, 60, 10)
    tracing.session.undo()  # undo the placement
    tracing.session.undo()  # undo the area
    assert skel.parameters.movement_area is None
    assert "no movement area" in area.status.value


def test_area_from_view_and_drawn_rectangle(area_setup):
    viewer, tracing, area, qtbot = area_setup
    skel = tracing.session.skel
    area.depth.value = 10
    area.from_view()
    box = skel.parameters.movement_area
    native = canvas(viewer)
    width_vox = native.width() / viewer.scene.camera.zoom / SCALE[2]
    assert abs(box.size[0] - width_vox) <= 2 and box.size[2] == 10
    assert box.top_left[2] == 15  # 20 - 10 // 2
    # draw a rectangle from voxel (30, 40) to (90, 120) with the mouse
    area.depth.value = 6
    area.start_drawing()
    drawing = viewer.layers["draw the movement area"]
    start, end = pixel_of(viewer, 30, 40), pixel_of(viewer, 90, 120)
    qtbot.mousePress(native, Qt.MouseButton.LeftButton, pos=start)
    for t in np.linspace(0, 1, 6)[1:]:
        qtbot.mouseMove(native, QPoint(round(start.x() + t * (end.x() - start.x())), round(start.y() + t * (end.y() - start.y()))))
        qtbot.wait(2)
    qtbot.mouseRelease(native, Qt.MouseButton.LeftButton, pos=end)
    qtbot.wait(20)
    box = skel.parameters.movement_area
    np.testing.assert_allclose(box.top_left, (40, 30, 17), atol=1)
    np.testing.assert_allclose(box.size, (80, 60, 6), atol=1)
    assert drawing not in viewer.layers


def test_area_from_an_nml_is_shown(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_knossos.annotation.nml import write_nml
    from napari_knossos.annotation.skeleton import BoundingBox, Skeleton

    monkeypatch.setenv("NAPARI_KNOSSOS_DATA_DIR", str(tmp_path / "data"))
    skel = Skeleton()
    skel.parameters.scale = (10.0, 10.0, 25.0)
    skel.parameters.movement_area = BoundingBox((10, 20, 5), (30, 40, 10))
    tree = skel.add_tree()
    skel.add_node((15, 25, 6), tree.id)
    write_nml(skel, tmp_path / "area.nml", dialect="knossos")
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.full((40, 200, 200), 200, np.uint8), scale=SCALE, units="nm", name="em")
    viewer.open(str(tmp_path / "area.nml"), plugin="napari-knossos")
    area = MovementAreaWidget(viewer)
    assert (area.min_x.value, area.min_y.value, area.min_z.value) == (10, 20, 5)
    assert (area.size_x.value, area.size_y.value, area.size_z.value) == (30, 40, 10)
    viewer.dims.set_point(0, 8 * SCALE[0])
    qtbot.wait(20)
    assert len(area.overlay.layer.data) == 5  # four dark bands and the outline

"""napari hands plugin dock widgets a ``PublicOnlyProxy`` of the viewer, which warns on every
private attribute access (and will refuse it from napari 0.10). A whole work cycle through the
three widgets, driven with real mouse and key events, must touch no private napari attribute."""

from __future__ import annotations

import warnings

import pytest
from napari.utils._proxies import PublicOnlyProxy  # what napari wraps plugin widgets' viewer in
from qtpy.QtCore import QPoint, Qt

from napari_knossos.widgets.movement_area import MovementAreaWidget
from napari_knossos.widgets.segmentation import SegmentationWidget
from napari_knossos.widgets.tracing import TracingWidget

from . import gui
from .gui import canvas, look_at, make_room

VOXEL = (10.0, 10.0, 25.0)
SCALE = (25.0, 10.0, 10.0)


def press_at(viewer, qtbot, path, button, modifier=Qt.KeyboardModifier.NoModifier):
    gui.drag_through(viewer, qtbot, SCALE, path, button, modifier, settle_ms=10)


@pytest.mark.filterwarnings("default::FutureWarning")
def test_a_work_cycle_through_the_public_only_proxy(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_KNOSSOS_DATA_DIR", str(tmp_path / "data"))
    root, _seg = gui.em_and_segmentation_dataset(tmp_path / "ds", VOXEL)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(root), plugin="napari-knossos")
    proxy = PublicOnlyProxy(viewer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracing = TracingWidget(proxy)
        viewer.window.add_dock_widget(tracing, name="Tracing")
        segmentation = SegmentationWidget(proxy)
        viewer.window.add_dock_widget(segmentation, name="Segmentation", area="left")
        area = MovementAreaWidget(proxy)
        viewer.window.add_dock_widget(area, name="Movement area", area="left")
        make_room(viewer, qtbot)
        look_at(viewer, qtbot, SCALE, 10, 64, 64, 0.4, active="color")
        # trace: three linked nodes, a new tree, undo
        for y, x in [(40, 40), (60, 50), (80, 70)]:
            press_at(viewer, qtbot, [(y, x)], Qt.MouseButton.RightButton)
        skel = tracing.session.skel
        assert skel.num_nodes == 3 and skel.num_edges == 2
        qtbot.keyClick(canvas(viewer), Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        qtbot.wait(10)
        assert skel.num_nodes == 2
        # comments shown, a Shift+left-drag box selects both nodes (a temporary Shapes layer)
        tracing.show_comments.setChecked(True)
        press_at(viewer, qtbot, [(30, 30), (50, 50), (70, 60)], Qt.MouseButton.LeftButton,
                 Qt.KeyboardModifier.ShiftModifier)
        assert tracing.session.editor.selected_nodes == {1, 2}
        # movement area from the view, then a paint stroke and a fill inside it
        area.depth.value = 10
        area.from_view()
        assert skel.parameters.movement_area is not None
        segmentation.start()
        segmentation.tool.value = "Paint"
        segmentation.active_id.value = 777
        segmentation.radius.value = 3
        press_at(viewer, qtbot, [(100, 30 + 2 * i) for i in range(6)], Qt.MouseButton.RightButton)
        volume = segmentation.session.volume
        assert volume.read((1, 1, 1), (10, 100, 35), (11, 101, 36))[0, 0, 0] == 777
        segmentation.tool.value = "Merge"
        press_at(viewer, qtbot, [(100, 36)], Qt.MouseButton.RightButton)
        merged = segmentation.session.selected_object
        assert merged is not None
        # a left-click with a tool on selects the object under the cursor (a new one here)
        segmentation.tool.value = "Paint"
        press_at(viewer, qtbot, [(40, 100)], Qt.MouseButton.LeftButton)
        picked = segmentation.session.selected_object
        assert picked not in (None, merged) and segmentation.objects_table.selected_id() == picked
        # a click on a row of the object table selects that object; Ctrl+Z (tool on) undoes the new one
        table = segmentation.objects_table
        index = table.model.index(table.model.table_row(merged), 0)
        qtbot.mouseClick(table.view.viewport(), Qt.MouseButton.LeftButton, pos=table.view.visualRect(index).center())
        assert segmentation.session.selected_object == merged and f"object {merged}" in segmentation.object_label.value
        qtbot.keyClick(canvas(viewer), Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        qtbot.wait(10)
        assert picked not in segmentation.session.segments.objects and skel.num_nodes == 2
        segmentation.tool.value = "Off"
        segmentation.mesh_selected(block=True)  # background thread, progress bar, Surface layer
        qtbot.waitUntil(lambda: any(type(layer).__name__ == "Surface" for layer in viewer.layers), timeout=20000)
        # mouse moves update the segment under the cursor
        native = canvas(viewer)
        # (voxels the stroke's first stabs cover: napari may coalesce the later mouse moves of a drag)
        qtbot.mouseMove(native, gui.pixel_of(viewer, SCALE, 100, 33))
        qtbot.mouseMove(native, gui.pixel_of(viewer, SCALE, 101, 34) + QPoint(1, 1))
        qtbot.wait(10)
        assert "777" in segmentation.session.cursor_text
        # saves
        assert segmentation.save() >= 0
        out = tracing.session.save(str(tmp_path / "work.k.zip"))
        assert out and (tmp_path / "work.k.zip").exists()
    private = [str(w.message) for w in caught if "Private attribute access" in str(w.message)]
    assert not private, private

"""The tracing dock widget driven like a user: real mouse and key events on napari's canvas.

Each test opens a viewer with a dark 3-D image (voxel size 10 × 10 × 25 nm), docks the
tracing widget and acts through the canvas widget; assertions are on the model, the layers
and screenshots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

from napari_knossos.annotation.editing import Mode
from napari_knossos.widgets.tracing import TracingWidget

from . import gui
from .gui import canvas, look_at, make_room

SCALE = (25.0, 10.0, 10.0)  # z, y, x nm


@pytest.fixture
def traced(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_KNOSSOS_DATA_DIR", str(tmp_path / "data"))
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((40, 200, 200), np.uint8), scale=SCALE, units="nm", name="em",
                     contrast_limits=(0, 255))
    widget = TracingWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Tracing")
    make_room(viewer, qtbot)
    assert canvas(viewer).width() >= 500, canvas(viewer).width()
    look_at(viewer, qtbot, SCALE, 20, 100, 100, 0.3, active="em")
    return viewer, widget, qtbot


def pixel_of(viewer, y, x):
    return gui.pixel_of(viewer, SCALE, y, x)


def click(viewer, qtbot, y, x, button=Qt.MouseButton.RightButton, modifier=Qt.KeyboardModifier.NoModifier):
    native = canvas(viewer)
    pos = pixel_of(viewer, y, x)
    qtbot.mousePress(native, button, modifier, pos)
    qtbot.mouseRelease(native, button, modifier, pos)
    qtbot.wait(5)


def key(viewer, qtbot, k, modifier=Qt.KeyboardModifier.NoModifier):
    qtbot.keyClick(canvas(viewer), k, modifier)
    qtbot.wait(5)


def test_right_click_places_linked_nodes_where_clicked_and_draws_them(traced):
    viewer, widget, qtbot = traced
    skel = widget.session.skel
    for y, x in [(50, 60), (80, 90), (120, 100)]:
        click(viewer, qtbot, y, x)
    assert skel.num_nodes == 3
    np.testing.assert_array_equal(skel.positions(), [[60, 50, 20], [90, 80, 20], [100, 120, 20]])
    assert sorted(map(tuple, np.sort(skel.edges, axis=1).tolist())) == [(1, 2), (2, 3)]
    assert widget.session.editor.active_node == 3
    assert "● unsaved" in widget.dirty_label.text()
    # the nodes are drawn where they were placed, in their tree's colour; the active one ringed red
    shot = viewer.screenshot(canvas_only=True, flash=False)
    sx = shot.shape[1] / canvas(viewer).width()
    for nid, (y, x) in zip((1, 2), [(50, 60), (80, 90)]):
        p = pixel_of(viewer, y, x)
        colour = shot[int(p.y() * sx), int(p.x() * sx), :3] / 255
        assert colour.max() > 0.5, (nid, colour)  # not the black image
    p = pixel_of(viewer, 120, 100)
    y0, x0 = int(p.y() * sx), int(p.x() * sx)
    around = shot[y0 - 8 : y0 + 9, x0 - 8 : x0 + 9, :3].astype(int)
    redness = around[..., 0] - np.maximum(around[..., 1], around[..., 2])
    assert redness.max() > 120, around[..., 0].max()  # red ring of the active node
    p1 = pixel_of(viewer, 50, 60)
    around1 = shot[int(p1.y() * sx) - 8 : int(p1.y() * sx) + 9, int(p1.x() * sx) - 8 : int(p1.x() * sx) + 9, :3].astype(int)
    assert (around1[..., 0] - np.maximum(around1[..., 1], around1[..., 2])).max() < 60  # no ring on node 1
    # the edge between nodes 1 and 2 is drawn halfway
    mid = pixel_of(viewer, 65, 75)
    my, mx = int(mid.y() * sx), int(mid.x() * sx)
    assert shot[my - 2 : my + 3, mx - 2 : mx + 3, :3].max() > 100  # a ~2 px line


def test_new_tree_key_undo_redo_and_review_mode(traced):
    viewer, widget, qtbot = traced
    skel, ed = widget.session.skel, widget.session.editor
    click(viewer, qtbot, 50, 50)
    click(viewer, qtbot, 60, 50)
    key(viewer, qtbot, Qt.Key.Key_C)  # Tracing mode traces one tree: refused
    assert len(skel.trees) == 1 and "Tracing Advanced" in widget.status_label.text()
    widget.mode_combo.setCurrentText(Mode.TRACING_ADVANCED.value)
    key(viewer, qtbot, Qt.Key.Key_C)  # new tree
    assert len(skel.trees) == 2
    click(viewer, qtbot, 100, 100)
    assert len(skel.trees) == 2 and skel.tree_of(3) != skel.tree_of(1), widget.status_label.text()
    assert skel.num_edges == 1  # the first node of the new tree is not linked
    key(viewer, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert skel.num_nodes == 2 and not skel.has_node(3)
    key(viewer, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert skel.has_node(3) and skel.num_nodes == 3
    widget.mode_combo.setCurrentText(Mode.REVIEW.value)
    assert ed.mode is Mode.REVIEW and "read-only" in widget.mode_label.text()
    assert "Review" in widget.cheat_sheet.toPlainText()
    click(viewer, qtbot, 150, 150)
    assert skel.num_nodes == 3 and "Review" in widget.status_label.text()
    key(viewer, qtbot, Qt.Key.Key_Delete)
    assert skel.num_nodes == 3


def test_select_drag_link_and_delete_with_the_mouse(traced):
    viewer, widget, qtbot = traced
    skel, ed = widget.session.skel, widget.session.editor
    widget.mode_combo.setCurrentText(Mode.TRACING_ADVANCED.value)
    click(viewer, qtbot, 50, 50)
    click(viewer, qtbot, 50, 100)
    click(viewer, qtbot, 100, 100)
    # left-click on node 1 makes it active
    click(viewer, qtbot, 50, 50, Qt.MouseButton.LeftButton)
    assert ed.active_node == 1
    # Alt+left-click on node 3 links it to the active node (a cycle: allowed in Advanced)
    click(viewer, qtbot, 100, 100, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.AltModifier)
    assert skel.has_edge(1, 3)
    # left-drag node 2 to (70, 130): it moves, the camera does not pan
    native = canvas(viewer)
    center = tuple(viewer.scene.camera.center)
    start, end = pixel_of(viewer, 50, 100), pixel_of(viewer, 70, 130)
    qtbot.mousePress(native, Qt.MouseButton.LeftButton, pos=start)
    for t in np.linspace(0, 1, 6)[1:]:
        qtbot.mouseMove(native, QPoint(int(start.x() + t * (end.x() - start.x())), int(start.y() + t * (end.y() - start.y()))))
        qtbot.wait(2)
    qtbot.mouseRelease(native, Qt.MouseButton.LeftButton, pos=end)
    np.testing.assert_allclose(skel.position(2), [130, 70, 20], atol=1)
    assert tuple(viewer.scene.camera.center) == center
    # Shift+left-click adds node 3 to the selection; Delete deletes the selection
    click(viewer, qtbot, 50, 50, Qt.MouseButton.LeftButton)
    click(viewer, qtbot, 100, 100, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier)
    assert ed.selected_nodes == {1, 3}
    key(viewer, qtbot, Qt.Key.Key_Delete)
    assert skel.node_ids().tolist() == [2], widget.status_label.text()
    key(viewer, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert skel.node_ids().tolist() == [1, 2, 3] and skel.has_edge(1, 3)


def test_branch_points_jump_traverse_comments_and_radius(traced):
    viewer, widget, qtbot = traced
    skel, ed = widget.session.skel, widget.session.editor
    click(viewer, qtbot, 50, 50)
    key(viewer, qtbot, Qt.Key.Key_B)  # node 1 is a branch point
    click(viewer, qtbot, 60, 60)
    click(viewer, qtbot, 70, 70)
    assert [b[0] for b in skel.branchpoints] == [1]
    viewer.scene.camera.center = (0, 0, 0)
    key(viewer, qtbot, Qt.Key.Key_J)  # pop and jump
    assert ed.active_node == 1 and skel.branchpoints == []
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], [50 * SCALE[1], 50 * SCALE[2]])
    key(viewer, qtbot, Qt.Key.Key_X)  # depth-first: next node after 1
    assert ed.active_node == 2
    key(viewer, qtbot, Qt.Key.Key_X, Qt.KeyboardModifier.ShiftModifier)
    assert ed.active_node == 1
    # comment slot Ctrl+1
    widget.slot_edits[0].setText("soma")
    key(viewer, qtbot, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert skel.comments == {1: "soma"}
    # S jumps back to the active node
    viewer.dims.set_point(0, 0.0)
    key(viewer, qtbot, Qt.Key.Key_S)
    assert viewer.dims.point[0] == pytest.approx(20 * SCALE[0])
    # Shift+wheel scales the active node's radius by 10 %
    r0 = float(np.nan_to_num(skel.nodes["radius"][0], nan=1.5))
    zoom = viewer.scene.camera.zoom
    wheel(viewer, pixel_of(viewer, 50, 50), +120, Qt.KeyboardModifier.ShiftModifier)
    assert float(skel.nodes["radius"][0]) == pytest.approx(r0 * 1.1, rel=1e-5)
    assert viewer.scene.camera.zoom == zoom  # Shift+wheel does not zoom


def wheel(viewer, pos, delta, modifiers):
    from qtpy.QtCore import QPointF
    from qtpy.QtGui import QWheelEvent
    from qtpy.QtWidgets import QApplication

    native = canvas(viewer)
    event = QWheelEvent(QPointF(pos), QPointF(native.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, delta),
                        Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(native, event)


def test_synapse_workflow_with_keys_table_and_csv(traced, tmp_path):
    viewer, widget, qtbot = traced
    skel, ed = widget.session.skel, widget.session.editor
    widget.mode_combo.setCurrentText(Mode.TRACING_ADVANCED.value)
    click(viewer, qtbot, 40, 40)
    click(viewer, qtbot, 40, 60)  # axon: nodes 1-2 in tree 1
    key(viewer, qtbot, Qt.Key.Key_C, Qt.KeyboardModifier.ShiftModifier)  # start synapse on node 2
    assert ed.synapse_state == "cleft"
    click(viewer, qtbot, 45, 65)
    click(viewer, qtbot, 50, 65)  # the cleft, its own tree
    key(viewer, qtbot, Qt.Key.Key_C)  # end the cleft
    assert ed.synapse_state == "awaiting_post"
    click(viewer, qtbot, 55, 70)  # the post-synapse
    assert ed.synapse_state == "idle"
    (syn,) = skel.synapses()
    cleft = skel.trees[syn["cleft_tree"]]
    assert syn["pre_node"] == 2 and syn["post_node"] == 5
    assert cleft.properties["synapticCleft"].lower() == "true"
    assert skel.node_ids(cleft.id).tolist() == [3, 4]
    assert skel.tree_of(5) not in (skel.tree_of(2), cleft.id)
    # the synapse table shows it; double-click on "post tree" jumps to the post-synapse
    widget.tabs.setCurrentIndex(1)
    table = widget.synapse_table
    assert table.rowCount() == 1
    assert int(table.item(0, 0).text()) == cleft.id and int(table.item(0, 1).text()) == skel.tree_of(2)
    assert int(table.item(0, 2).text()) == skel.tree_of(5)
    viewer.scene.camera.center = (0, 0, 0)
    widget._on_synapse_clicked(0, 2)
    assert ed.active_node == 5
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], [55 * SCALE[1], 70 * SCALE[2]])
    # exports
    syn_csv = widget.export_synapses(str(tmp_path / "syn.csv"))
    lines = Path(syn_csv).read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("cleft_tree")
    con = widget.export_connectivity(str(tmp_path / "con.csv"))
    rows = [r.split(",") for r in Path(con).read_text().splitlines()]
    pre, post = skel.tree_of(2), skel.tree_of(5)
    header = [int(x) for x in rows[0][1:]]
    matrix = {int(r[0]): [int(x) for x in r[1:]] for r in rows[1:]}
    assert matrix[pre][header.index(post)] == 1
    # Ctrl+Shift+C reverses the direction
    ed.set_active_node(3)
    key(viewer, qtbot, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    (syn,) = skel.synapses()
    assert syn["pre_node"] == 5 and syn["post_node"] == 2
    # hide synapse trees
    widget.show_synapse_trees.setChecked(False)
    assert not skel.trees[cleft.id].visible


def test_table_navigation_keys_save_autosave_and_recovery(traced, tmp_path):
    from napari_knossos.annotation.kzip import read_kzip
    from napari_knossos.widgets.tracing import TracingWidget

    viewer, widget, qtbot = traced
    skel, ed = widget.session.skel, widget.session.editor
    for y in (40, 60, 80):
        click(viewer, qtbot, y, 50)
    ed.set_comment(2, "spine")
    # N / P walk the node table (filter by comment narrows it)
    ed.set_active_node(1)
    key(viewer, qtbot, Qt.Key.Key_N)
    assert ed.active_node == 2
    key(viewer, qtbot, Qt.Key.Key_P)
    assert ed.active_node == 1
    # save: atomic .k.zip with the working time; the unsaved marker goes away
    widget.timer.activity()
    out = widget.save(str(tmp_path / "traced.k.zip"))
    assert "saved" == widget.dirty_label.text()
    ann = read_kzip(out)
    np.testing.assert_array_equal(ann.skeleton.positions(), skel.positions())
    assert ann.skeleton.comments == {2: "spine"} and ann.skeleton.parameters.time_ms is not None
    # an edit, then an autosave: the recovery file holds the edit, the annotation does not
    click(viewer, qtbot, 100, 50)
    rec = widget.autosave_now()
    assert rec.exists() and read_kzip(rec).skeleton.num_nodes == 4
    assert read_kzip(out).skeleton.num_nodes == 3
    # opening the annotation again offers the newer recovery; Restore brings node 4 back
    for layer in list(viewer.layers):
        if "skeleton" in layer.name:
            viewer.layers.remove(layer)
    viewer.open(out, plugin="napari-knossos")
    widget2 = TracingWidget(viewer)
    assert widget2.recovery_box.isVisibleTo(widget2) and rec.name in widget2.recovery_text.text()
    assert widget2.session.skel.num_nodes == 3
    widget2.restore_recovery()
    assert widget2.session.skel.num_nodes == 4 and widget2.session.editor.dirty
    assert len(widget2.session.points.data) + widget2.session.sync.pending == 4
    widget2.close()


def test_properties_drive_node_size_and_colour(traced):
    viewer, widget, qtbot = traced
    skel, ed = widget.session.skel, widget.session.editor
    for y in (40, 60, 80):
        click(viewer, qtbot, y, 50)
    widget.session.sync.flush()
    for nid, value in ((1, "1"), (2, "5"), (3, "10")):
        ed.set_active_node(nid)
        widget.prop_key.setText("myNumber")
        widget.prop_value.setText(value)
        widget.set_property("node")
    assert skel.node_properties["myNumber"] == {1: "1", 2: "5", 3: "10"}
    assert widget.size_by.findText("myNumber") >= 0
    widget.size_by.setCurrentText("myNumber")
    widget.color_by.setCurrentText("myNumber")
    widget.apply_style()
    points = widget.session.points
    assert points.size[0] < points.size[1] < points.size[2]
    assert not np.allclose(points.face_color[0], points.face_color[2])
    # tree property
    widget.prop_key.setText("cellType")
    widget.prop_value.setText("pyramidal")
    widget.set_property("tree")
    assert skel.trees[1].properties["cellType"] == "pyramidal"


def test_cheat_sheet_follows_the_mode(traced):
    _viewer, widget, _qtbot = traced
    text = widget.cheat_sheet.toPlainText()
    assert "Tracing" in text and "right-click" in text and "Ctrl+Z" in text
    assert "Shift+C" not in text  # no synapse keys in Tracing
    widget.mode_combo.setCurrentText(Mode.TRACING_ADVANCED.value)
    assert "Shift+C" in widget.cheat_sheet.toPlainText()
    widget.mode_combo.setCurrentText(Mode.REVIEW.value)
    review = widget.cheat_sheet.toPlainText()
    assert "read-only" in review.lower() and "Delete" not in review and "S" in review


def test_advanced_keys_trees_cycles_linking_stubs_and_two_node_synapse(traced):
    viewer, widget, qtbot = traced
    skel, ed = widget.session.skel, widget.session.editor
    widget.mode_combo.setCurrentText(Mode.TRACING_ADVANCED.value)
    click(viewer, qtbot, 40, 40)
    click(viewer, qtbot, 40, 60)
    # Ctrl+right-click: a linked stub, pushed as a branch point (KNOSSOS); the previous node stays active
    click(viewer, qtbot, 60, 60, modifier=Qt.KeyboardModifier.ControlModifier)
    assert ed.active_node == 2 and skel.has_edge(2, 3) and [b[0] for b in skel.branchpoints] == [3]
    # A: linking off for the next node only
    key(viewer, qtbot, Qt.Key.Key_A)
    assert "off once" in widget.status_label.text()
    click(viewer, qtbot, 80, 80)
    assert not any(skel.has_edge(4, n) for n in (1, 2, 3))
    # L: a cycle 1-2-3-1 made with Alt+click links, then selected and jumped to
    ed.set_active_node(3)
    click(viewer, qtbot, 40, 40, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.AltModifier)
    key(viewer, qtbot, Qt.Key.Key_L)
    assert ed.selected_nodes == {1, 2, 3}
    # C: a second tree; Z / Shift+Z step through the tree table
    key(viewer, qtbot, Qt.Key.Key_C)
    click(viewer, qtbot, 120, 120)
    t1, t2 = sorted(skel.trees)
    ed.set_active_node(1)
    key(viewer, qtbot, Qt.Key.Key_Z)
    assert ed.active_tree == t2
    key(viewer, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ShiftModifier)
    assert ed.active_tree == t1
    # Shift+C with two selected nodes of different trees: a synapse at once
    click(viewer, qtbot, 40, 60, Qt.MouseButton.LeftButton)
    click(viewer, qtbot, 120, 120, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier)
    key(viewer, qtbot, Qt.Key.Key_C, Qt.KeyboardModifier.ShiftModifier)
    (syn,) = skel.synapses()
    assert (syn["pre_node"], syn["post_node"]) == (2, 5)
    # Ctrl+Delete deletes the active tree
    ed.set_active_node(5)
    key(viewer, qtbot, Qt.Key.Key_Delete, Qt.KeyboardModifier.ControlModifier)
    assert t2 not in skel.trees and not skel.has_node(5)


def test_3d_view_picks_along_the_ray_and_does_not_place(traced):
    viewer, widget, qtbot = traced
    session, skel = widget.session, widget.session.skel
    click(viewer, qtbot, 50, 60)
    click(viewer, qtbot, 100, 120)
    viewer.dims.ndisplay = 3
    qtbot.wait(20)
    # napari gives a 3-D click as a point and a view direction: the node nearest the camera
    # within the pick tolerance of that ray is chosen
    direction = np.array([1.0, 0.3, -0.2]) / np.linalg.norm([1.0, 0.3, -0.2])
    node1 = np.array([20, 50, 60]) * SCALE
    assert session.pick_node(node1 - 5000 * direction, direction) == 1
    assert session.pick_node(node1 + 40 + 5000 * direction, direction) is None
    # a real right-click in 3-D places nothing and says why
    click(viewer, qtbot, 150, 30)
    assert skel.num_nodes == 2 and "2-D" in widget.status_label.text()


def test_meshes_follow_tree_merges_deletes_and_undo(traced):
    from napari_knossos.annotation.ply import Mesh

    viewer, widget, qtbot = traced
    session, ed = widget.session, widget.session.editor
    widget.mode_combo.setCurrentText(Mode.TRACING_ADVANCED.value)
    click(viewer, qtbot, 50, 50)
    key(viewer, qtbot, Qt.Key.Key_C)
    click(viewer, qtbot, 120, 120)
    t1, t2 = sorted(session.skel.trees)
    cube = Mesh(np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]], np.float32),
                np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]))
    ed.set_mesh(t1, cube)
    ed.set_mesh(t2, Mesh(cube.vertices + 500, cube.faces))
    assert set(session.mesh_layers()) == {t1, t2}
    ed.set_tree_attrs(t2, color=(0.0, 1.0, 0.0, 1.0))  # a tree's colour is its mesh's colour
    np.testing.assert_allclose(session.mesh_layers()[t2].vertex_colors[0], [0, 1, 0, 1])
    widget.mesh_opacity.setValue(0.3)
    assert all(layer.opacity == pytest.approx(0.3) for layer in session.mesh_layers().values())
    # merging the trees merges their meshes; undo splits them again
    ed.merge_trees([t1, t2])
    layers = session.mesh_layers()
    assert set(layers) == {t1} and len(layers[t1].data[0]) == 8 and len(layers[t1].data[1]) == 8
    ed.undo()
    assert set(session.mesh_layers()) == {t1, t2} and len(session.mesh_layers()[t1].data[0]) == 4
    # jump to a mesh: the view centres on it (nm)
    ed.set_active_tree(t2)
    assert session.jump_to_mesh()
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], [550, 550])
    # deleting a tree removes its mesh; undo brings it back
    ed.delete_trees([t2])
    assert set(session.mesh_layers()) == {t1}
    ed.undo()
    assert set(session.mesh_layers()) == {t1, t2}


def test_skeleton_depth_shows_and_picks_nearby_slices(traced):
    viewer, widget, qtbot = traced
    ed = widget.session.editor
    assert widget.depth.value() == 2 and widget.session.depth == 2
    click(viewer, qtbot, 60, 60)
    click(viewer, qtbot, 90, 60)
    viewer.dims.set_point(0, 22 * SCALE[0])  # two slices away: still drawn and clickable
    qtbot.wait(20)

    def seen(y, x):
        shot = viewer.screenshot(canvas_only=True, flash=False)
        p = pixel_of(viewer, y, x)
        sx = shot.shape[1] / canvas(viewer).width()
        return shot[int(p.y() * sx) - 2 : int(p.y() * sx) + 3, int(p.x() * sx) - 2 : int(p.x() * sx) + 3, :3].max()

    assert seen(60, 60) > 100
    click(viewer, qtbot, 60, 60, Qt.MouseButton.LeftButton)
    assert ed.active_node == 1
    assert viewer.layers["em"].projection_mode == "none"  # the image still shows its exact slice
    widget.depth.setValue(0)
    qtbot.wait(20)
    assert seen(60, 60) < 30


def _green_run(viewer, y, x) -> int:
    """Width in screenshot pixels of the green run through voxel (y, x) on its row."""
    shot = viewer.screenshot(canvas_only=True, flash=False).astype(int)
    sx = shot.shape[1] / canvas(viewer).width()
    p = pixel_of(viewer, y, x)
    row = shot[int(p.y() * sx), :, :3]
    green = (row[:, 1] > 150) & (row[:, 0] < 90) & (row[:, 2] < 90)
    x0 = int(p.x() * sx)
    if not green[x0]:
        return 0
    left, right = x0, x0
    while left > 0 and green[left - 1]:
        left -= 1
    while right < len(green) - 1 and green[right + 1]:
        right += 1
    return right - left + 1


def test_comment_slot_colour_and_radius_highlight_matching_nodes(traced):
    viewer, widget, qtbot = traced
    session = widget.session
    click(viewer, qtbot, 100, 80)
    click(viewer, qtbot, 100, 130)  # the active node: ringed red
    session.sync.flush()
    qtbot.keyClicks(widget.slot_edits[2], "soma")
    widget.set_slot_color(2, (0.0, 1.0, 0.0))
    session.editor.set_comment(1, "big SOMA here")  # contains the slot text, ignoring case
    points = session.points
    qtbot.waitUntil(lambda: np.allclose(points.face_color[0], [0, 1, 0, 1]), timeout=3000)
    assert not np.allclose(points.face_color[1], [0, 1, 0, 1])  # no comment, tree colour
    np.testing.assert_allclose(points.border_color[0], [0, 1, 0, 1])  # not ringed
    qtbot.wait(50)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    sx = shot.shape[1] / canvas(viewer).width()
    for (y, x), want_green in (((100, 80), True), ((100, 130), False)):
        p = pixel_of(viewer, y, x)
        r, g, b = shot[int(p.y() * sx), int(p.x() * sx), :3].astype(int)
        assert (g > 200 and r < 60 and b < 60) == want_green, (y, x, r, g, b)
    small = _green_run(viewer, 100, 80)
    assert points.size[0] == 3.0 and small > 0  # KNOSSOS default radius 1.5 voxels
    widget.slot_radius_spins[2].setValue(6.0)  # the slot's radius, in voxels
    qtbot.waitUntil(lambda: points.size[0] == 12.0, timeout=3000)
    assert points.size[1] == 3.0
    qtbot.wait(50)
    big = _green_run(viewer, 100, 80)
    assert big > 3 * small, (small, big)
    # an earlier slot that also matches wins; switching comment colours off restores the tree colour
    widget.slot_edits[0].setText("big")
    widget.set_slot_color(0, (1.0, 0.0, 1.0))
    qtbot.waitUntil(lambda: np.allclose(points.face_color[0], [1, 0, 1, 1]), timeout=3000)
    assert points.size[0] == 3.0  # slot 1 has no radius
    widget.comment_colors.setChecked(False)
    qtbot.waitUntil(lambda: np.allclose(points.face_color[0], points.face_color[1]), timeout=3000)
    # Ctrl+1 comments with slot 1's text: the node takes its highlight at once
    widget.comment_colors.setChecked(True)
    key(viewer, qtbot, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert session.skel.comments[2] == "big"
    qtbot.waitUntil(lambda: np.allclose(points.face_color[1], [1, 0, 1, 1]), timeout=3000)


def test_settings_survive_a_restart_and_a_corrupt_file_gives_defaults(traced, make_napari_viewer, config_dir):
    _viewer, widget, qtbot = traced
    path = config_dir / "tracing-settings.json"
    assert widget.settings_file == path and not path.exists()
    widget.slot_edits[0].setText("seed")
    widget.set_slot_color(0, (0.0, 1.0, 0.0, 1.0))
    widget.slot_radius_spins[0].setValue(4.0)
    widget.slot_edits[9].setText("ending")
    widget.depth.setValue(5)
    widget.comment_radii.setChecked(False)
    widget.color_auto.setChecked(False)
    widget.color_max.setValue(20.0)
    qtbot.waitUntil(path.exists, timeout=3000)  # saved shortly after the changes, by itself
    qtbot.wait(600)
    assert [p.name for p in config_dir.iterdir()] == ["tracing-settings.json"]  # atomic: no temp left
    again = TracingWidget(make_napari_viewer())  # a new napari: no layers, no session
    assert again.session is None
    assert [s.text for s in again.comment_slots()] == ["seed"] + [""] * 8 + ["ending"]
    assert again.comment_slots()[0].color == (0.0, 1.0, 0.0, 1.0) and again.comment_slots()[0].radius == 4.0
    assert again.depth.value() == 5 and not again.comment_radii.isChecked()
    assert not again.color_auto.isChecked() and again.color_max.value() == 20.0
    assert again.current_settings() == widget.current_settings()
    path.write_text('{"comment_slots": [{"text": "seed", "color": "green"}]')
    with pytest.warns(UserWarning, match="tracing-settings.json") as caught:
        fresh = TracingWidget(make_napari_viewer())
    assert len(caught) == 1 and str(path) in str(caught[0].message)
    assert str(path) in fresh.status_label.text()
    assert fresh.comment_slots()[0].text == "" and fresh.depth.value() == 2


def drag(viewer, qtbot, path, button=Qt.MouseButton.LeftButton, modifier=Qt.KeyboardModifier.NoModifier,
         during=None):
    gui.drag_through(viewer, qtbot, SCALE, path, button, modifier, during)


def test_comments_are_drawn_beside_their_nodes_when_switched_on(traced, config_dir):
    viewer, widget, qtbot = traced
    session = widget.session
    assert not widget.show_comments.isChecked()  # KNOSSOS' default: "show node comments" off
    click(viewer, qtbot, 100, 60)
    click(viewer, qtbot, 100, 140)
    session.sync.flush()
    widget.slot_edits[0].setText("soma")
    session.editor.set_active_node(1)
    key(viewer, qtbot, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    qtbot.wait(50)

    def label_pixels(y, x):
        """Bright yellowish pixels just right of voxel (y, x), where the comment goes."""
        shot = viewer.screenshot(canvas_only=True, flash=False).astype(int)
        sx = shot.shape[1] / canvas(viewer).width()
        p = pixel_of(viewer, y, x)
        box = shot[int((p.y() - 20) * sx) : int((p.y() + 20) * sx), int((p.x() + 5) * sx) : int((p.x() + 60) * sx), :3]
        return int(((box[..., 0] > 150) & (box[..., 1] > 150) & (box[..., 2] < 200)).sum())

    assert label_pixels(100, 60) == 0
    widget.tabs.setCurrentIndex(widget.tabs.indexOf(widget.show_comments.parentWidget()))
    qtbot.mouseClick(widget.show_comments, Qt.MouseButton.LeftButton,
                     pos=QPoint(8, widget.show_comments.height() // 2))
    assert widget.show_comments.isChecked() and session.sync.show_comments
    qtbot.wait(50)
    assert label_pixels(100, 60) > 10  # "soma" drawn beside node 1
    assert label_pixels(100, 140) == 0  # node 2 has no comment: no label
    assert session.sync.comment_layer.text.values.tolist() == ["soma"]  # only commented nodes: a layer of their own
    assert session.points.text.values.tolist() == ""
    # a node in the "(new)" layer gets its label too
    click(viewer, qtbot, 140, 140)  # node 3 goes to the "(new)" layer
    session.skel.comments[3] = "spine"  # (a model edit without the editor; the next placed node redraws)
    click(viewer, qtbot, 160, 100)
    assert session.sync.pending == 2 and sorted(session.sync.comment_layer.text.values.tolist()) == ["soma", "spine"]
    qtbot.wait(50)
    assert label_pixels(140, 140) > 10
    qtbot.waitUntil(lambda: (config_dir / "tracing-settings.json").exists(), timeout=3000)
    assert '"show_comments": true' in (config_dir / "tracing-settings.json").read_text()
    comment_layer = session.sync.comment_layer
    assert comment_layer in viewer.layers and viewer.layers.selection.active.name == "em"
    click(viewer, qtbot, 100, 60, Qt.MouseButton.LeftButton)  # a click on the node still picks it
    assert session.editor.active_node == 1
    widget.show_comments.setChecked(False)
    qtbot.wait(50)
    assert label_pixels(100, 60) == 0 and comment_layer not in viewer.layers


def test_shift_and_ctrl_drag_box_select_the_shown_nodes_and_plain_drag_pans(traced):
    viewer, widget, qtbot = traced
    ed, session = widget.session.editor, widget.session
    widget.mode_combo.setCurrentText(Mode.TRACING_ADVANCED.value)
    for y, x in [(60, 60), (80, 90), (110, 70), (160, 160)]:  # nodes 1-3 in the box, 4 outside
        click(viewer, qtbot, y, x)
    viewer.dims.set_point(0, 30 * SCALE[0])  # node 5: inside the box in x/y but 10 slices away
    click(viewer, qtbot, 90, 80)
    viewer.dims.set_point(0, 20 * SCALE[0])
    qtbot.wait(10)
    ed.select_nodes([4])
    center = tuple(viewer.scene.camera.center)
    assert viewer.scene.camera.mouse_pan
    seen = []

    def box_shown():
        boxes = [layer for layer in viewer.layers if layer.name == "selection box" and layer.visible]
        seen.append(len(boxes))
        if boxes:
            corners = boxes[0].data[0] * np.asarray(SCALE)  # voxel corners → nm
            seen.append(np.allclose(corners[:, 1:].min(0), np.array([40, 40]) * SCALE[1], atol=SCALE[1]))
        seen.append(viewer.scene.camera.mouse_pan)

    path = [(40, 40), (70, 70), (100, 100), (130, 120)]
    drag(viewer, qtbot, path, modifier=Qt.KeyboardModifier.ShiftModifier, during=box_shown)
    assert seen == [1, True, False]  # the box was drawn while dragging, with napari's pan off
    (box,) = [layer for layer in viewer.layers if layer.name == "selection box"]
    assert not box.visible and viewer.scene.camera.mouse_pan  # hidden after; pan back on
    assert ed.selected_nodes == {1, 2, 3, 4}  # added to the selection; node 5 is off the shown slab
    assert tuple(viewer.scene.camera.center) == center  # no pan meanwhile
    assert viewer.layers.selection.active.name == "em"
    seen.clear()
    drag(viewer, qtbot, [(130, 130), (150, 150), (170, 170)], modifier=Qt.KeyboardModifier.ShiftModifier,
         during=box_shown)  # the second box reuses the layer
    assert seen == [1, False, False] and tuple(viewer.scene.camera.center) == center
    assert [layer.name for layer in viewer.layers].count("selection box") == 1
    assert ed.selected_nodes == {1, 2, 3, 4}
    # Ctrl+drag toggles: nodes 2 and 3 out
    drag(viewer, qtbot, [(75, 65), (100, 80), (120, 100)], modifier=Qt.KeyboardModifier.ControlModifier)
    assert ed.selected_nodes == {1, 4}
    # with a deeper skeleton depth node 5 is shown, so the box takes it
    widget.depth.setValue(10)
    drag(viewer, qtbot, [(85, 75), (95, 85)], modifier=Qt.KeyboardModifier.ShiftModifier)
    assert ed.selected_nodes == {1, 4, 5}
    # a plain left-drag on empty canvas still pans and leaves the selection alone
    drag(viewer, qtbot, [(150, 40), (150, 60), (150, 80)])
    assert tuple(viewer.scene.camera.center) != center
    assert ed.selected_nodes == {1, 4, 5} and session.skel.num_nodes == 5


def test_ctrl_s_saves_through_the_widget_not_naparis_dialog(traced, tmp_path, monkeypatch):
    from napari_knossos.annotation.kzip import read_kzip
    from napari_knossos.widgets import tracing as tracing_widget

    viewer, widget, qtbot = traced
    target = tmp_path / "first.k.zip"
    asked = []

    def get_save_file_name(*args, **kwargs):
        asked.append(args[1])
        return str(target), "KNOSSOS (*.k.zip)"

    monkeypatch.setattr(tracing_widget.QFileDialog, "getSaveFileName", staticmethod(get_save_file_name))
    click(viewer, qtbot, 50, 50)
    click(viewer, qtbot, 60, 60)
    key(viewer, qtbot, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)  # no file yet: "Save as"
    assert asked == ["Save annotation"] and target.exists()
    assert read_kzip(target).skeleton.num_nodes == 2 and widget.dirty_label.text() == "saved"
    click(viewer, qtbot, 70, 70)
    key(viewer, qtbot, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)  # now to the same file, no dialog
    assert asked == ["Save annotation"] and read_kzip(target).skeleton.num_nodes == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("first")] == ["first.k.zip"]  # atomic
    assert "Ctrl+S" in widget.cheat_sheet.toPlainText()


def test_working_time_counts_pans_clicks_and_keys_not_only_edits(traced):
    from napari_knossos.annotation.worktime import WorkTimer

    viewer, widget, qtbot = traced
    now = [1000.0]
    widget.timer = WorkTimer(clock=lambda: now[0])
    drag(viewer, qtbot, [(100, 100), (100, 120), (100, 140)])  # a pan: no edit
    assert widget.session.skel.num_nodes == 0
    now[0] += 20.0
    drag(viewer, qtbot, [(100, 100), (120, 100)])  # another pan, 20 s later
    assert widget.timer.elapsed_ms == 20_000
    now[0] += 30.0
    key(viewer, qtbot, Qt.Key.Key_Right)  # napari's own key (next slice)
    assert widget.timer.elapsed_ms == 50_000
    now[0] += 10.0
    wheel(viewer, pixel_of(viewer, 100, 100), -120, Qt.KeyboardModifier.NoModifier)  # zoom
    assert widget.timer.elapsed_ms == 60_000
    now[0] += 600.0  # idle: at most the idle timeout counts
    assert widget.timer.elapsed_ms == 120_000


def test_default_radius_for_new_nodes_and_set_radius_from_the_node_menu(traced, config_dir, monkeypatch):
    from napari_knossos.widgets import tables

    viewer, widget, qtbot = traced
    skel, ed = widget.session.skel, widget.session.editor
    widget.default_radius.setValue(3.0)
    assert ed.default_radius == 3.0
    click(viewer, qtbot, 50, 50)
    click(viewer, qtbot, 60, 60)
    click(viewer, qtbot, 70, 70)
    assert skel.nodes["radius"].tolist() == [3.0] * 3
    widget.session.sync.flush()
    assert widget.session.points.size.tolist() == [6.0] * 3
    monkeypatch.setattr(tables.QInputDialog, "getDouble", staticmethod(lambda *a: (5.0, True)))
    click(viewer, qtbot, 50, 50, Qt.MouseButton.LeftButton)
    click(viewer, qtbot, 70, 70, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier)
    (action,) = [a for a in widget.tables.node_menu().actions() if a.objectName() == "set_radius"]
    action.trigger()
    assert skel.nodes["radius"].tolist() == [5.0, 3.0, 5.0]
    key(viewer, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # one undo step
    assert skel.nodes["radius"].tolist() == [3.0] * 3
    qtbot.waitUntil(lambda: (config_dir / "tracing-settings.json").exists(), timeout=3000)
    assert '"default_radius": 3.0' in (config_dir / "tracing-settings.json").read_text()


def test_keys_tab_lists_mouse_new_keys_and_segmentation_keys(traced):
    from napari_knossos.segmentation_layers import SEGMENTATION_KEYS

    _viewer, widget, _qtbot = traced
    text = widget.cheat_sheet.toPlainText()
    assert "Shift / Ctrl + left-drag" in text and "box" in text and "Ctrl+S" in text
    segmentation = text[text.index("Segmentation"):]
    shown = {"Control-Z": "Ctrl+Z", "Control-Shift-Z": "Ctrl+Shift+Z", "Shift-L": "Shift+L", "C": "C", "-": "-", "=": "="}
    for key_name, (_action, description) in SEGMENTATION_KEYS.items():
        assert shown[key_name] in segmentation and description in segmentation
    from napari_knossos.widgets.tracing import _key_text

    assert [_key_text(k) for k in ("-", "=", "Control-Shift-Z", "Shift--")] == ["-", "=", "Ctrl+Shift+Z", "Shift+-"]


def dock_of(widget):
    """The QDockWidget holding ``widget`` (up its parent chain)."""
    from qtpy.QtWidgets import QDockWidget

    w = widget.parentWidget()
    while not isinstance(w, QDockWidget):
        w = w.parentWidget()
    return w


def test_removing_the_dock_unbinds_keys_mouse_timer_and_event_filter(traced, tmp_path, monkeypatch):
    from napari_knossos.widgets import tracing as tracing_widget

    viewer, widget, qtbot = traced
    session = widget.session
    saved = []
    monkeypatch.setattr(tracing_widget.QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (saved.append(1), (str(tmp_path / "a.k.zip"), ""))[1]))
    click(viewer, qtbot, 50, 50)
    assert session.skel.num_nodes == 1 and widget._tick.isActive() and widget._filtering
    bound = len(session._bound)
    viewer.window.remove_dock_widget(dock_of(widget))  # napari's "x" on the dock
    qtbot.wait(20)
    assert not widget._tick.isActive() and not widget._filtering and not session._bound
    assert session._on_mouse_drag not in viewer.mouse_drag_callbacks and bound > 0
    click(viewer, qtbot, 80, 80)  # right-click: no node
    key(viewer, qtbot, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)  # not saved through the widget
    assert session.skel.num_nodes == 1 and saved == [] and not (tmp_path / "a.k.zip").exists()


def test_floating_dock_still_counts_activity_and_ctrl_s_saves(traced, tmp_path, monkeypatch):
    from napari_knossos.annotation.kzip import read_kzip
    from napari_knossos.annotation.worktime import WorkTimer
    from napari_knossos.widgets import tracing as tracing_widget

    viewer, widget, qtbot = traced
    target = tmp_path / "float.k.zip"
    monkeypatch.setattr(tracing_widget.QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), "KNOSSOS (*.k.zip)")))
    dock = dock_of(widget)
    dock.setFloating(True)
    qtbot.wait(50)
    assert dock.isFloating() and widget.window() is dock
    now = [1000.0]
    widget.timer = WorkTimer(clock=lambda: now[0])
    drag(viewer, qtbot, [(100, 100), (100, 120)])  # a pan on the canvas
    now[0] += 20.0
    key(viewer, qtbot, Qt.Key.Key_Right)
    assert widget.timer.elapsed_ms == 20_000  # canvas activity counts with the dock floating
    click(viewer, qtbot, 50, 50)
    key(viewer, qtbot, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)  # Ctrl+S on the canvas
    assert target.exists() and read_kzip(target).skeleton.num_nodes == 1
    click(viewer, qtbot, 60, 60)
    widget.locking_word.setFocus()
    qtbot.keyClick(widget.locking_word, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)  # in the dock's field
    assert read_kzip(target).skeleton.num_nodes == 2 and widget.locking_word.text() == "seed"


def test_helper_layers_do_not_pile_up_key_bindings(traced):
    viewer, widget, qtbot = traced
    session = widget.session
    click(viewer, qtbot, 50, 50)
    click(viewer, qtbot, 60, 60)  # the "(new)" layers exist
    widget.show_comments.setChecked(True)
    before = len(session._bound)
    for _ in range(3):  # the comment layer added and removed again and again
        widget.show_comments.setChecked(False)
        widget.show_comments.setChecked(True)
    assert len(session._bound) == before
    assert all(target is viewer or target in viewer.layers for target, _k, _f in session._bound)

"""Skeleton ↔ napari layers (no viewer needed): data, features, colours, and edits back."""

import numpy as np
import pytest
from napari.layers import Points, Vectors

from napari_knossos.annotation import Skeleton
from napari_knossos.skeleton_layers import SkeletonSync, skeleton_layer_data


@pytest.fixture
def skel():
    s = Skeleton()
    s.parameters.scale = (10.0, 10.0, 25.0)
    a = s.add_tree(name="axon", color=(1.0, 0.0, 0.0, 1.0))
    b = s.add_tree(name="dendrite")
    n1 = s.add_node((10, 20, 5), a.id, radius=2.0)
    n2 = s.add_node((12, 22, 6), a.id)
    n3 = s.add_node((30, 40, 7), b.id)
    s.link(n1, n2)
    s.set_comment(n2, "soma")
    s.node_properties["myNumber"] = {n3: "42"}
    return s


def make_layers(skel):
    (pd_, pkw, pt), (vd, vkw, vt) = skeleton_layer_data(skel)
    assert (pt, vt) == ("points", "vectors")
    return Points(pd_, **pkw), Vectors(vd, **vkw)


def test_layer_data_positions_features_colours(skel):
    points, vectors = make_layers(skel)
    np.testing.assert_array_equal(points.data, [[5, 20, 10], [6, 22, 12], [7, 40, 30]])
    assert tuple(points.scale) == (25.0, 10.0, 10.0) and [str(u) for u in points.units] == ["nanometer"] * 3
    f = points.features
    assert f["node_id"].tolist() == [1, 2, 3] and f["tree_id"].tolist() == [1, 1, 2]
    assert f["comment"].tolist() == ["", "soma", ""] and f["myNumber"].tolist() == ["", "", "42"]
    assert f["radius"].tolist() == [2.0, 1.5, 1.5]  # KNOSSOS default radius where none given
    np.testing.assert_allclose(points.face_color[0], [1, 0, 0, 1])
    assert not np.allclose(points.face_color[2], [1, 0, 0, 1])  # other tree, palette colour
    np.testing.assert_array_equal(vectors.data, [[[5, 20, 10], [1, 2, 2]]])
    assert points.metadata["napari_knossos_skeleton"] is skel


def test_moving_and_deleting_points_edits_the_model(skel):
    points, vectors = make_layers(skel)
    SkeletonSync(skel, points, vectors)
    # what napari's select-and-drag does: move data in place, emit "changed" for the indices
    points.data[0] = [5, 30, 11]
    points.events.data(value=points.data, action="changed", data_indices=(0,), vertex_indices=((),))
    np.testing.assert_array_equal(skel.position(1), [11, 30, 5])
    np.testing.assert_array_equal(vectors.data[0, 0], [5, 30, 11])  # the edge follows
    points.remove([1])  # napari's delete of the selected point
    assert skel.num_nodes == 2 and not skel.has_node(2) and skel.num_edges == 0
    assert 2 not in skel.comments and len(vectors.data) == 0


def test_refresh_after_model_edit(skel):
    points, vectors = make_layers(skel)
    sync = SkeletonSync(skel, points, vectors)
    nid = skel.add_node((1, 2, 3), 2)
    skel.link(3, nid)
    sync.refresh()
    assert len(points.data) == 4 and len(vectors.data) == 2
    assert points.features["node_id"].tolist() == [1, 2, 3, nid]


def test_incremental_updates_match_a_full_redraw(skel):
    """Editor changes drawn incrementally ("(new)" layers, appends, moves, undo) show exactly
    what a full redraw from the model shows."""
    from napari_knossos.annotation.editing import Mode, SkeletonEditor

    points, vectors = make_layers(skel)
    added = []
    editor = SkeletonEditor(skel, Mode.TRACING_ADVANCED)
    sync = SkeletonSync(skel, points, vectors, editor=editor, add_layer=added.append)
    editor.set_active_node(2)
    for i in range(5):
        editor.place_node((20 + i, 30, 6))
    new_points, new_vectors = sync.new_points, sync.new_vectors
    assert sync.pending == 5 and len(points.data) == 3 and new_points in added
    # the new layers hold spare slots: hidden points, zero-length vectors
    assert new_points.shown.tolist() == [True] * 5 + [False] * (len(new_points.data) - 5)
    assert new_points.features["node_id"].tolist()[:6] == [4, 5, 6, 7, 8, -1]
    assert new_points.features["tree_id"].tolist()[:5] == [1] * 5
    np.testing.assert_array_equal(new_points.data[4], [6, 30, 24])
    np.testing.assert_allclose(new_points.face_color[:5], np.tile(points.face_color[0], (5, 1)))
    lengths = np.abs(new_vectors.data[:, 1]).sum(axis=1)
    assert (lengths[:5] > 0).all() and (lengths[5:] == 0).all()  # 2-4, 4-5, …, 7-8
    np.testing.assert_array_equal(new_vectors.data[0], [[6, 22, 12], [0, 8, 8]])
    # the active node is ringed red, the others not
    np.testing.assert_allclose(new_points.border_color[4], [1.0, 0.1, 0.1, 1.0])
    np.testing.assert_allclose(new_points.border_color[0], new_points.face_color[0])
    # moving a main node moves its edges; undo of a placement shrinks the new layer
    editor.move_nodes({1: (11, 21, 5)})
    np.testing.assert_array_equal(points.data[0], [5, 21, 11])
    np.testing.assert_array_equal(vectors.data[0, 0], [5, 21, 11])
    editor.undo()  # the move
    editor.undo()  # the last placement
    assert sync.pending == 4 and new_points.shown.sum() == 4 and (np.abs(new_vectors.data[:, 1]).sum(axis=1) > 0).sum() == 4
    # flush folds everything into the main layers: same as a fresh layer build
    sync.flush()
    fresh_points, fresh_vectors = make_layers(skel)
    assert sync.pending == 0 and not new_points.shown.any() and not np.abs(new_vectors.data[:, 1]).any()
    np.testing.assert_array_equal(points.data, fresh_points.data)
    np.testing.assert_array_equal(vectors.data, fresh_vectors.data)
    assert points.features["node_id"].tolist() == fresh_points.features["node_id"].tolist()
    np.testing.assert_allclose(points.face_color, fresh_points.face_color)


def test_new_layer_survives_being_emptied_and_refilled(skel):
    """After the "(new)" layer was emptied by a non-append redraw, appending works again."""
    from napari_knossos.annotation.editing import Mode, SkeletonEditor

    points, vectors = make_layers(skel)
    editor = SkeletonEditor(skel, Mode.TRACING_ADVANCED)
    sync = SkeletonSync(skel, points, vectors, editor=editor, add_layer=lambda layer: None)
    editor.set_active_node(3)
    editor.place_node((1, 1, 7))
    editor.undo()  # the new layer is empty again
    editor.place_node((2, 2, 7))
    editor.place_node((3, 3, 7))
    assert sync.new_points.features["node_id"].tolist()[:3] == [4, 5, -1]
    assert sync.new_points.features["comment"].tolist()[:2] == ["", ""]


def test_comments_are_a_text_only_layer_of_the_commented_nodes_following_edits(skel):
    """Shown comments are a separate Points layer holding only the commented nodes of visible
    trees (the 100k-node layer draws no text); it follows edits and the "(new)" layers, keeps the
    skeleton's scale and depth display, is removed when switched off and is never saved."""
    from napari_knossos.annotation.editing import Mode, SkeletonEditor
    from napari_knossos.annotation_layers import annotation_from_layers

    points, vectors = make_layers(skel)
    points.projection_mode = vectors.projection_mode = "all"
    editor = SkeletonEditor(skel, Mode.TRACING_ADVANCED)
    added, removed = [], []
    sync = SkeletonSync(skel, points, vectors, editor=editor, add_layer=added.append, remove_layer=removed.append)
    assert not sync.show_comments and sync.comment_layer is None
    editor.set_active_node(2)
    editor.place_node((20, 30, 6))  # node 4, in the "(new)" layer, before comments are shown
    sync.set_show_comments(True)
    layer = sync.comment_layer
    assert layer in added and layer.metadata["napari_knossos_role"] == "comments"
    assert layer.text.visible and layer.text.values.tolist() == ["soma"]
    np.testing.assert_array_equal(layer.data, [[6, 22, 12]])  # node 2 (z, y, x)
    assert tuple(layer.scale) == tuple(points.scale) and layer.projection_mode == "all"
    assert points.text.values.tolist() == "" and sync.new_points.text.values.tolist() == ""  # no text on those
    skel.comments[4] = "ending"  # a model edit without the editor: the next redraw of new nodes shows it
    editor.place_node((21, 30, 6))
    assert sorted(layer.text.values.tolist()) == ["ending", "soma"]
    editor.set_comment(1, "seed")  # through the editor
    assert dict(zip(layer.text.values.tolist(), map(tuple, layer.data.tolist()))) == {
        "seed": (5, 20, 10), "soma": (6, 22, 12), "ending": (6, 30, 20)}
    editor.move_nodes({1: (11, 21, 5)})  # the label follows its node
    assert (5, 21, 11) in map(tuple, layer.data.tolist())
    editor.set_comment(3, "bouton")  # tree "dendrite"
    skel.trees[skel.tree_of(1)].visible = False  # hidden trees' comments are not drawn
    sync.refresh()
    assert layer.text.values.tolist() == ["bouton"] and len(layer.data) == 1
    # not saved: the writers skip it (alone, they refuse with its name)
    data = [(points.data, {"metadata": points.metadata, "features": points.features}, "points"),
            (layer.data, {"name": layer.name, "metadata": layer.metadata}, "points")]
    assert annotation_from_layers(data).skeleton.num_nodes == skel.num_nodes
    with pytest.raises(ValueError, match=layer.name):
        annotation_from_layers(data[1:])
    sync.set_show_comments(False)
    assert removed == [layer] and sync.comment_layer is None
    editor.set_comment(2, "spine")
    assert sync.comment_layer is None


def test_match_comment_slots_first_case_insensitive_substring():
    """KNOSSOS CommentSetting: a comment matches a slot whose non-empty text it contains, ignoring
    case; the first such slot wins."""
    from napari_knossos.skeleton_layers import match_comment_slots

    slots = ["", "soma", "Seed", "soma end"]
    got = match_comment_slots(["Soma body", "seed 3", "SOMA END", "axon", "", "seedsoma"], slots)
    assert got.tolist() == [1, 2, 1, -1, -1, 1]


def test_comment_highlights_colour_and_radius_then_property_styles_win(skel):
    points, vectors = make_layers(skel)
    sync = SkeletonSync(skel, points, vectors)
    tree_face = np.array(points.face_color)
    green = (0.0, 1.0, 0.0, 1.0)
    sync.set_comment_highlights([("", None, None), ("SOM", green, 4.0), ("soma", (0, 0, 1, 1), 9.0)])
    np.testing.assert_allclose(points.face_color[1], green)  # node 2 "soma": the first matching slot
    np.testing.assert_allclose(points.face_color[[0, 2]], tree_face[[0, 2]])
    np.testing.assert_allclose(points.border_color[1], green)  # no ring: border = face
    assert points.size.tolist() == [4.0, 8.0, 3.0]  # diameter = 2 × slot radius
    # a slot without colour or radius leaves those alone
    sync.set_comment_highlights([("soma", None, 2.5)])
    np.testing.assert_allclose(points.face_color[1], tree_face[1])
    assert points.size.tolist() == [4.0, 5.0, 3.0]
    # the highlight follows the comment on refresh
    skel.set_comment(3, "a Soma too")
    sync.refresh()
    assert points.size.tolist() == [4.0, 5.0, 5.0]
    # KNOSSOS: radius = scale × property value; the property wins over the comment radius
    sync.set_style(size_property="myNumber", radius_scale=0.5)
    assert points.size.tolist() == [4.0, 5.0, 42.0]


def test_property_colour_range_and_vectorised_values(skel):
    from napari.utils.colormaps import ensure_colormap

    skel.node_properties["depth"] = {1: "0", 2: "5", 3: "not a number"}
    points, vectors = make_layers(skel)
    sync = SkeletonSync(skel, points, vectors)
    tree_face = np.array(points.face_color)
    cmap = ensure_colormap("viridis")
    sync.set_style(color_property="depth", colormap="viridis")  # auto range 0–5
    np.testing.assert_allclose(points.face_color[:2], cmap.map(np.array([0.0, 1.0])), atol=1e-6)
    np.testing.assert_allclose(points.face_color[2], tree_face[2])  # not numeric: tree colour
    sync.set_style(color_property="depth", colormap="viridis", color_range=(0.0, 10.0))
    np.testing.assert_allclose(points.face_color[1], cmap.map(np.array([0.5]))[0], atol=1e-6)
    sync.set_style()  # off again
    np.testing.assert_allclose(points.face_color, tree_face)

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

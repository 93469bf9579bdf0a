"""SWC import/export with the KNOSSOS mapping (units, type ↔ comment, renumbering)."""

import numpy as np
import pytest

from napari_knossos.annotation.skeleton import Skeleton
from napari_knossos.annotation.swc import read_swc, write_swc

VOXEL = (10.0, 10.0, 25.0)

# soma-rooted neuron in µm: 1 soma — 2 basal — 3 axon, 2 — 4 (type 0), 5 fork, 6 end, 7 custom, 8 apical (type 9 → none)
SWC_UM = """# a comment line
1 1 0.1 0.2 0.5 0.05 -1
2 3 0.2 0.2 0.5 0.015 1   # trailing comment
3 2 0.3 0.2 0.5 0.02 2

4 0 0.3 0.4 0.75 0.02 2
5 5 0.4 0.4 0.75 0.02 4
6 6 0.5 0.4 0.75 0.02 5
7 7 0.5 0.5 1.0 0.02 5
8 4 0.6 0.6 1.25 0.03 -1
9 9 0.7 0.6 1.25 0.03 8
"""


def test_read_um_converts_to_voxels_and_maps_types():
    skel = read_swc(SWC_UM, voxel_size_nm=VOXEL)
    assert list(skel.trees) == [1]
    np.testing.assert_array_equal(skel.nodes["id"], np.arange(1, 10))
    np.testing.assert_array_equal(skel.positions()[:4], [[10, 20, 20], [20, 20, 20], [30, 20, 20], [30, 40, 30]])
    np.testing.assert_allclose(skel.nodes["radius"][:3], [5, 1.5, 2])  # radius ÷ x size
    assert skel.comments == {1: "soma", 2: "basal", 3: "axon", 5: "fork point", 6: "end point", 7: "custom",
                             8: "apical"}
    assert sorted(map(tuple, skel.edges.tolist())) == [(1, 2), (2, 3), (2, 4), (4, 5), (5, 6), (5, 7), (8, 9)]
    assert set(skel.nodes["tree"].tolist()) == {1}


def test_write_renumbers_soma_first_in_knossos_traversal_order():
    # soma (node 20) sits in the second component and in the middle of its chain
    skel = Skeleton()
    skel.add_tree(id=3)
    for nid, x in [(5, 0), (6, 1), (7, 2), (10, 3), (20, 4), (30, 5)]:
        skel.add_node((x, 0, 0), 3, node_id=nid, radius=1.0)
    for a, b in [(5, 6), (6, 7), (10, 20), (20, 30)]:
        skel.link(a, b)
    skel.set_comment(20, "soma")
    skel.set_comment(30, "dendrite")
    skel.set_comment(10, "something else")
    text = write_swc(skel, 3, voxel_size_nm=VOXEL, units="voxel")
    assert text == ("1 1 4 0 0 1 -1\n"      # soma component first, soma is its root
                    "2 0 3 0 0 1 1\n"       # neighbours in id order, depth first
                    "3 3 5 0 0 1 1\n"       # dendrite → 3
                    "4 0 0 0 0 1 -1\n"      # then the other component from its smallest id
                    "5 0 1 0 0 1 4\n"
                    "6 0 2 0 0 1 5\n")


def test_round_trip_um():
    skel = read_swc(SWC_UM, voxel_size_nm=VOXEL)
    text = write_swc(skel, 1, voxel_size_nm=VOXEL, units="um")
    again = read_swc(text, voxel_size_nm=VOXEL)
    # same geometry and types; ids renumbered in traversal order → compare per position
    def by_position(s):
        return {tuple(p): (s.comments.get(int(n)), float(r))
                for p, n, r in zip(s.positions().tolist(), s.nodes["id"], s.nodes["radius"])}
    assert by_position(again) == by_position(skel)
    assert again.num_edges == skel.num_edges
    assert write_swc(again, 1, voxel_size_nm=VOXEL, units="um") == text  # stable after one pass
    first = text.splitlines()[0].split()
    assert first == ["1", "1", "0.1", "0.2", "0.5", "0.05", "-1"]


def test_round_trip_voxel_units():
    skel = read_swc(SWC_UM, voxel_size_nm=VOXEL)
    text = write_swc(skel, 1, units="voxel")
    assert text.splitlines()[0] == "1 1 10 20 20 5 -1"
    again = read_swc(text, units="voxel")
    np.testing.assert_array_equal(np.sort(again.positions(), axis=0), np.sort(skel.positions(), axis=0))
    assert write_swc(again, 1, units="voxel") == text


def test_type_mapping_both_ways():
    lines = "".join(f"{i} {t} {i} 0 0 1 -1\n" for i, t in enumerate(range(9), 1))
    skel = read_swc(lines, units="voxel")
    assert [skel.comments.get(i) for i in range(1, 10)] == [None, "soma", "axon", "basal", "apical", "fork point",
                                                           "end point", "custom", None]
    out = write_swc(skel, 1, units="voxel").splitlines()
    soma_first = [int(line.split()[1]) for line in out]
    assert soma_first == [1, 0, 2, 3, 4, 5, 6, 7, 0]


def test_adds_a_tree_to_an_existing_skeleton_and_shifts_colliding_ids():
    skel = read_swc(SWC_UM, voxel_size_nm=VOXEL)
    read_swc("1 1 0 0 0 1 -1\n2 0 1 0 0 1 1\n", units="voxel", skeleton=skel, tree_id=7)
    assert sorted(skel.trees) == [1, 7]
    assert skel.node_ids(7).tolist() == [10, 11]  # shifted past the largest id
    assert skel.has_edge(10, 11) and skel.comments[10] == "soma"
    # zero-based ids are shifted to start at 1
    zero = read_swc("0 0 0 0 0 1 -1\n1 0 1 0 0 1 0\n", units="voxel")
    assert zero.nodes["id"].tolist() == [1, 2] and zero.has_edge(1, 2)


def test_default_radius_and_cycles():
    skel = Skeleton()
    skel.add_tree(id=1)
    for nid in (1, 2, 3):
        skel.add_node((nid, 0, 0), 1, node_id=nid)
    for a, b in [(1, 2), (2, 3), (3, 1)]:
        skel.link(a, b)
    with pytest.warns(UserWarning, match="1 edge"):
        text = write_swc(skel, 1, voxel_size_nm=VOXEL)
    assert len(text.splitlines()) == 3
    assert all(line.split()[5] == "0.015" for line in text.splitlines())  # 1.5 voxels × 10 nm
    with pytest.raises(KeyError):
        write_swc(skel, 99, voxel_size_nm=VOXEL)
    skel.add_tree(id=2)
    assert write_swc(skel, 2, voxel_size_nm=VOXEL) == ""  # an empty tree has no lines


def test_read_from_path(tmp_path):
    path = tmp_path / "n.swc"
    path.write_text(SWC_UM)
    assert read_swc(path, voxel_size_nm=VOXEL).num_nodes == 9
    assert read_swc(str(path), voxel_size_nm=VOXEL).num_nodes == 9


@pytest.mark.parametrize("text, line, what", [
    ("1 1 0 0 0 1 -1\n2 1 0 0 0 1\n", 2, "expected 7 fields"),
    ("1 1 0 0 0 1 -1\n\n2 x 0 0 0 1 1\n", 3, "malformed"),
    ("1 1 0 0 0 1 -1\n1 1 0 0 0 1 -1\n", 2, "duplicate node id 1"),
    ("1 1 0 0 0 1 -1\n2 1 0 0 0 1 5\n", 2, "parent 5"),
    ("1 1 0 0 0 1 1\n", 1, "own parent"),
    ("1 1 nan 0 0 1 -1\n", 1, "non-finite"),
    ("-3 1 0 0 0 1 -1\n", 1, "negative node id"),
])
def test_malformed_lines_are_named(text, line, what):
    with pytest.raises(ValueError, match=rf"x\.swc: line {line}: .*{what}"):
        read_swc(text, units="voxel", name="x.swc")


def test_units_need_a_voxel_size():
    with pytest.raises(ValueError, match="voxel_size_nm"):
        read_swc(SWC_UM)
    with pytest.raises(ValueError, match="units"):
        read_swc(SWC_UM, units="mm")

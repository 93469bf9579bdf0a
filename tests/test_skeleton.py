"""The skeleton model class: nodes, edges, trees, comments, branch points, synapses, growth."""

import numpy as np
import pytest

from napari_knossos.annotation.skeleton import NODE_COLUMNS, Group, Skeleton, Tree


def three_nodes() -> Skeleton:
    skel = Skeleton()
    skel.add_tree(id=1)
    skel.add_tree(id=2)
    skel.add_node((1, 2, 3), 1, node_id=10, radius=2.5, time=7)
    skel.add_node((4, 5, 6), 1, node_id=20)
    skel.add_node((7, 8, 9), 2, node_id=30)
    skel.link(10, 20)
    skel.link(30, 20)
    return skel


def test_empty_skeleton():
    skel = Skeleton()
    assert (skel.num_nodes, skel.num_edges, skel.version) == (0, 0, 0)
    assert skel.next_node_id() == 1 and skel.next_tree_id() == 1
    assert skel.rows([]).tolist() == []
    with pytest.raises(KeyError, match="no node with id 1"):
        skel.rows(1)
    assert not skel.has_node(1)
    assert repr(skel) == "Skeleton(0 trees, 0 nodes, 0 edges)"
    assert set(skel.nodes) == set(NODE_COLUMNS)


def test_add_tree_ids_and_errors():
    skel = Skeleton()
    assert skel.add_tree().id == 1
    assert skel.add_tree(id=5, name="axon").name == "axon"
    assert skel.add_tree().id == 6
    skel.add_tree(Tree(id=3, color=(1.0, 0.0, 0.0, 1.0)))
    assert sorted(skel.trees) == [1, 3, 5, 6]
    with pytest.raises(ValueError, match="tree id 5 exists"):
        skel.add_tree(id=5)
    assert skel.version == 4


def test_add_node_columns_defaults_and_errors():
    skel = three_nodes()
    assert skel.nodes["id"].tolist() == [10, 20, 30]
    assert skel.nodes["tree"].tolist() == [1, 1, 2]
    assert skel.positions().tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert skel.nodes["radius"][0] == np.float32(2.5) and np.isnan(skel.nodes["radius"][1])
    assert skel.nodes["time"].tolist() == [7, -1, -1]
    assert skel.nodes["in_vp"].tolist() == [-1, -1, -1]
    for name, (dtype, _) in NODE_COLUMNS.items():
        assert skel.nodes[name].dtype == np.dtype(dtype)
    assert skel.add_node((0, 0, 0), 2) == 31  # next id: max + 1
    with pytest.raises(KeyError, match="no tree with id 9"):
        skel.add_node((0, 0, 0), 9)
    with pytest.raises(ValueError, match="node id 20 exists"):
        skel.add_node((0, 0, 0), 1, node_id=20)
    with pytest.raises(TypeError, match="unknown node attributes"):
        skel.add_node((0, 0, 0), 1, colour=3)
    assert skel.num_nodes == 4


def test_add_node_in_the_middle_keeps_rows_sorted():
    skel = three_nodes()
    skel.add_node((0, 0, 1), 2, node_id=15, in_mag=2)
    skel.add_node((0, 0, 2), 2, node_id=1)
    assert skel.nodes["id"].tolist() == [1, 10, 15, 20, 30]
    assert skel.nodes["tree"].tolist() == [2, 1, 2, 1, 2]
    assert skel.nodes["z"].tolist() == [2, 3, 1, 6, 9]
    assert skel.nodes["in_mag"].tolist() == [-1, -1, 2, -1, -1]
    assert skel.rows([30, 1, 15]).tolist() == [4, 0, 2]


def test_appends_reuse_spare_capacity_and_keep_snapshots():
    skel = three_nodes()
    skel.add_node((0, 0, 0), 1)
    before = {k: v.copy() for k, v in skel.nodes.items()}
    held = dict(skel.nodes)
    held_edges = skel.edges
    for i in range(50):
        skel.add_node((i, i, i), 1)
        skel.link(int(skel.nodes["id"][-2]), int(skel.nodes["id"][-1]))
    # appends wrote into the same buffers (no copy per add) ...
    assert np.shares_memory(held["x"], skel.nodes["x"])
    assert np.shares_memory(held_edges, skel.edges)
    # ... and arrays handed out earlier still show the old skeleton
    for k in NODE_COLUMNS:
        assert np.array_equal(held[k], before[k], equal_nan=k in ("radius", "rot_x", "rot_y", "rot_z"))
    assert skel.num_nodes == 54 and skel.num_edges == 52
    assert skel.nodes["id"].tolist() == [10, 20, 30, *range(31, 82)]
    skel.add_node((0, 0, 0), 1, node_id=11)  # insert before the end: fresh buffers
    assert not np.shares_memory(held["id"], skel.nodes["id"])
    assert held["id"].tolist() == before["id"].tolist()


def test_growth_after_replaced_columns():
    skel = three_nodes()
    skel.set_nodes({"id": [5, 3], "tree": [1, 1], "x": [1.0, 2.0]})
    assert skel.add_node((9, 9, 9), 1) == 6
    assert skel.nodes["id"].tolist() == [3, 5, 6]
    assert skel.nodes["x"].tolist() == [2, 1, 9]
    skel.delete_nodes([5])
    held = skel.nodes["id"]
    assert skel.add_node((1, 1, 1), 2) == 7  # deleting leaves spare capacity: in place
    assert np.shares_memory(held, skel.nodes["id"]) and held.tolist() == [3, 6]
    assert skel.nodes["id"].tolist() == [3, 6, 7]
    skel.set_edges([[3, 6]])
    skel.link(6, 7)
    skel.link(3, 7)
    skel.unlink(3, 6)
    held = skel.edges
    skel.link(3, 6)
    assert np.shares_memory(held, skel.edges) and held.tolist() == [[6, 7], [3, 7]]
    assert skel.edges.tolist() == [[6, 7], [3, 7], [3, 6]]
    skel.nodes["x"] = skel.nodes["x"] + 1  # anyone may replace a column
    skel.add_node((0, 0, 0), 1)
    assert skel.nodes["x"].tolist() == [3, 10, 2, 0]


def test_lookup_helpers():
    skel = three_nodes()
    assert skel.has_node(20) and not skel.has_node(25) and not skel.has_node(99)
    assert skel.position(30).tolist() == [7, 8, 9]
    assert skel.tree_of(30) == 2
    assert skel.node_ids(1).tolist() == [10, 20]
    assert skel.node_ids().tolist() == [10, 20, 30]
    with pytest.raises(KeyError, match="no node with id 25"):
        skel.rows([10, 25, 99])
    with pytest.raises(KeyError):
        skel.position(99)
    assert repr(skel) == "Skeleton(2 trees, 3 nodes, 2 edges)"


def test_set_nodes_sorts_fills_defaults_and_rejects_duplicates():
    skel = Skeleton()
    skel.set_nodes({"id": [3, 1, 2], "tree": [1, 1, 2], "x": [30, 10, 20], "time": [3, 1, 2]})
    assert skel.nodes["id"].tolist() == [1, 2, 3]
    assert skel.nodes["x"].tolist() == [10, 20, 30]
    assert skel.nodes["time"].tolist() == [1, 2, 3]
    assert skel.nodes["y"].tolist() == [0, 0, 0] and skel.nodes["in_mag"].tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="duplicate node id 2"):
        skel.set_nodes({"id": [2, 1, 2], "tree": [1, 1, 1]})


def test_delete_nodes_cleans_edges_comments_properties_branchpoints_active():
    skel = three_nodes()
    skel.set_comment(20, "soma")
    skel.set_comment(10, "keep")
    skel.node_properties["myNumber"] = {20: "3", 30: "4"}
    skel.push_branchpoint(20)
    skel.push_branchpoint(30)
    skel.parameters.active_node = 20
    v = skel.version
    skel.delete_nodes([20])
    assert skel.nodes["id"].tolist() == [10, 30]
    assert skel.edges.shape == (0, 2)
    assert skel.comments == {10: "keep"}
    assert skel.node_properties == {"myNumber": {30: "4"}}
    assert skel.branchpoints == [(30, None)]
    assert skel.parameters.active_node is None
    assert skel.version == v + 1
    skel.delete_nodes([])
    assert skel.version == v + 1
    with pytest.raises(KeyError, match="no node with id 99"):
        skel.delete_nodes([10, 99])
    assert skel.nodes["id"].tolist() == [10, 30]  # nothing deleted on error


def test_delete_many_nodes_and_edges():
    skel = Skeleton()
    skel.add_tree(id=1)
    n = 200
    skel.set_nodes({"id": np.arange(1, n + 1), "tree": np.ones(n, int), "x": np.arange(n, dtype=float)})
    skel.set_edges(np.stack([np.arange(1, n), np.arange(2, n + 1)], axis=1))
    gone = np.arange(2, n + 1, 3)  # > 32 rows: mask path
    skel.delete_nodes(gone)
    assert skel.nodes["id"].tolist() == [i for i in range(1, n + 1) if i not in set(gone.tolist())]
    assert skel.nodes["x"].tolist() == (skel.nodes["id"] - 1).tolist()
    assert not np.isin(skel.edges, gone).any()
    assert len(skel.edges) == sum(1 for i in range(1, n) if i not in set(gone) and i + 1 not in set(gone))


def test_move_set_attr_comment():
    skel = three_nodes()
    skel.move_node(20, (9, 8, 7))
    assert skel.position(20).tolist() == [9, 8, 7]
    skel.set_node_attr(20, "radius", 4.0)
    skel.set_node_attr(30, "tree", 1)
    assert skel.nodes["radius"][1] == 4.0 and skel.tree_of(30) == 1
    with pytest.raises(KeyError):
        skel.set_node_attr(20, "id", 5)
    with pytest.raises(KeyError):
        skel.set_node_attr(20, "colour", 5)
    with pytest.raises(KeyError):
        skel.move_node(99, (0, 0, 0))
    skel.set_comment(10, "first")
    assert skel.comments == {10: "first"}
    skel.set_comment(10, "")
    skel.set_comment(30, "x")
    skel.set_comment(30, None)
    assert skel.comments == {}
    with pytest.raises(KeyError):
        skel.set_comment(99, "x")


def test_link_unlink_has_edge():
    skel = three_nodes()
    assert skel.edges.tolist() == [[10, 20], [30, 20]]
    assert skel.has_edge(20, 10) and skel.has_edge(10, 20) and not skel.has_edge(10, 30)
    v = skel.version
    skel.link(20, 10)  # exists (other direction): no-op
    assert skel.num_edges == 2 and skel.version == v
    with pytest.raises(ValueError, match="itself"):
        skel.link(10, 10)
    with pytest.raises(KeyError):
        skel.link(10, 99)
    skel.link(10, 30)
    assert skel.edges.tolist() == [[10, 20], [30, 20], [10, 30]]
    skel.unlink(20, 30)
    assert skel.edges.tolist() == [[10, 20], [10, 30]]
    v = skel.version
    skel.unlink(20, 30)  # not linked: no-op
    assert skel.version == v
    skel.set_edges([[10, 20], [20, 10], [10, 30]])  # files may store an edge twice
    skel.unlink(10, 20)
    assert skel.edges.tolist() == [[10, 30]]
    skel.set_edges([1, 2, 3, 4])
    assert skel.edges.tolist() == [[1, 2], [3, 4]]


def test_branchpoint_stack():
    skel = three_nodes()
    assert skel.pop_branchpoint() is None
    skel.push_branchpoint(10, time=5)
    skel.push_branchpoint(30)
    skel.push_branchpoint(20)
    assert skel.branchpoints == [(10, 5), (30, None), (20, None)]
    assert skel.pop_branchpoint() == 20
    assert skel.pop_branchpoint() == 30
    assert skel.branchpoints == [(10, 5)]
    with pytest.raises(KeyError):
        skel.push_branchpoint(99)


def test_synapses_from_cleft_trees():
    skel = three_nodes()
    skel.add_tree(id=3, properties={"synapticCleft": "true", "preSynapse": "10", "postSynapse": "30"})
    skel.add_tree(id=4, properties={"synapticCleft": "1", "preSynapse": "99", "postSynapse": "x"})
    skel.add_tree(id=5, properties={"synapticCleft": "false", "preSynapse": "10"})
    assert skel.trees[3].is_synapse and skel.trees[4].is_synapse and not skel.trees[5].is_synapse
    assert skel.synapses() == [
        {"cleft_tree": 3, "pre_node": 10, "post_node": 30},
        {"cleft_tree": 4, "pre_node": None, "post_node": None},
    ]


def test_groups_walk_depth_first():
    skel = Skeleton()
    skel.groups = [Group(1, "a", children=[Group(2, "b", children=[Group(4, "d")]), Group(3, "c")]), Group(5, "e")]
    assert [g.id for g in skel.iter_groups()] == [1, 2, 4, 3, 5]


def test_every_edit_bumps_version():
    skel = three_nodes()
    edits = [
        lambda: skel.add_tree(),
        lambda: skel.add_node((0, 0, 0), 1),
        lambda: skel.move_node(10, (1, 1, 1)),
        lambda: skel.set_node_attr(10, "radius", 1.0),
        lambda: skel.set_comment(10, "c"),
        lambda: skel.link(10, 30),
        lambda: skel.unlink(10, 30),
        lambda: skel.set_edges([[10, 20]]),
        lambda: skel.push_branchpoint(10),
        lambda: skel.pop_branchpoint(),
        lambda: skel.delete_nodes([30]),
        lambda: skel.set_nodes({"id": [1], "tree": [1]}),
    ]
    for edit in edits:
        v = skel.version
        edit()
        assert skel.version > v


def test_copies_do_not_share_spare_capacity():
    import copy
    import pickle

    skel = three_nodes()
    skel.add_node((0, 0, 0), 1)  # buffers with spare rows now back the columns
    for clone in (copy.deepcopy(skel), pickle.loads(pickle.dumps(skel))):
        clone.move_node(10, (5, 5, 5))  # in place, in the clone's own arrays
        clone.add_node((1, 1, 1), 1)
        clone.link(10, 31)
        assert clone.position(10).tolist() == [5, 5, 5]
        assert clone.nodes["id"].tolist() == [10, 20, 30, 31, 32]
        assert clone.edges.tolist() == [[10, 20], [30, 20], [10, 31]]
    assert skel.position(10).tolist() == [1, 2, 3] and skel.num_nodes == 4 and skel.num_edges == 2

"""Graph operations on skeletons: exact results on hand-built skeletons, cross-checks on random ones."""

import math
from itertools import pairwise

import numpy as np
import pytest

from napari_knossos.annotation import graph
from napari_knossos.annotation.skeleton import MetadataEntry, Skeleton

# Sample skeleton (edges in stored direction):
#   tree 1:  1 → 2 → 3 → 4        7 (isolated)
#                    3 → 5 → 6
#   tree 2:  10 → 11 → 12 → 10 (cycle), 12 → 13
#   tree 3:  20 → 21
#   across trees: 6 → 20
NODES = {  # id: (tree, x, y, z)
    1: (1, 0, 0, 0), 2: (1, 3, 4, 0), 3: (1, 3, 4, 12), 4: (1, 3, 4, 13), 5: (1, 6, 8, 12),
    6: (1, 6, 8, 13), 7: (1, 100, 100, 100),
    10: (2, 0, 0, 0), 11: (2, 1, 0, 0), 12: (2, 1, 1, 0), 13: (2, 1, 1, 1),
    20: (3, 50, 0, 0), 21: (3, 50, 0, 2),
}
EDGES = [(1, 2), (2, 3), (3, 4), (3, 5), (5, 6), (10, 11), (11, 12), (12, 10), (12, 13), (20, 21), (6, 20)]
TREE1_NM = 5 + 12 + 1 + 5 + 1
TREE2_NM = 3 + math.sqrt(2)
TREE3_NM = 2
CROSS_NM = math.sqrt(44**2 + 8**2 + 13**2)


def build(nodes: dict, edges, trees=None) -> Skeleton:
    skel = Skeleton()
    for tid in trees or sorted({t for t, *_ in nodes.values()}):
        skel.add_tree(id=tid)
    ids = list(nodes)
    cols = np.array([nodes[i] for i in ids], dtype=float)
    skel.set_nodes({"id": ids, "tree": cols[:, 0].astype(int), "x": cols[:, 1], "y": cols[:, 2], "z": cols[:, 3]})
    skel.set_edges(np.asarray(edges, np.int64).reshape(-1, 2))
    return skel


@pytest.fixture
def skel() -> Skeleton:
    s = build(NODES, EDGES)
    s.trees[1].group_id = 7
    s.trees[1].name = "axon"
    s.trees[1].color = (1.0, 0.0, 0.0, 1.0)
    s.trees[1].properties = {"comment": "axon", "myNumber": "1"}
    s.trees[1].metadata = [MetadataEntry("kind", "axon")]
    s.trees[3].properties = {"comment": "other", "extra": "x", "synapticCleft": "true", "preSynapse": "10"}
    s.trees[3].metadata = [MetadataEntry("kind", "dendrite"), MetadataEntry("score", 0.5)]
    s.set_comment(5, "five")
    s.set_comment(20, "twenty")
    s.node_properties["myNumber"] = {6: "6", 21: "21"}
    s.push_branchpoint(13)
    s.parameters.scale = (1.0, 1.0, 1.0)
    return s


def ids_of_tree(skel, tid):
    return skel.node_ids(tid).tolist()


# -- adjacency ------------------------------------------------------------------------------
def test_adjacency_csr_exact(skel):
    adj = graph.adjacency(skel)
    ids = adj.ids.tolist()
    assert ids == sorted(NODES)
    got = {ids[r]: [ids[x] for x in adj.neighbor_rows(r)] for r in range(len(ids))}
    assert got == {1: [2], 2: [1, 3], 3: [2, 4, 5], 4: [3], 5: [3, 6], 6: [5, 20], 7: [],
                   10: [11, 12], 11: [10, 12], 12: [10, 11, 13], 13: [12], 20: [6, 21], 21: [20]}
    assert adj.indptr.tolist() == [0, 1, 3, 6, 7, 9, 11, 11, 13, 15, 18, 19, 21, 22]
    # 1 = stored from this node, 2 = stored towards it
    r3 = ids.index(3)
    assert adj.direction[adj.indptr[r3] : adj.indptr[r3 + 1]].tolist() == [2, 1, 1]
    r10 = ids.index(10)
    assert adj.direction[adj.indptr[r10] : adj.indptr[r10 + 1]].tolist() == [1, 2]
    pairs = [(ids[u], ids[v]) for u, v in adj.edges.tolist()]
    assert pairs == sorted(tuple(sorted(e)) for e in EDGES)
    assert adj.degree.tolist() == [1, 2, 3, 1, 2, 2, 0, 2, 2, 3, 1, 2, 1]
    assert adj.version == skel.version


def test_adjacency_cache_follows_the_model(skel):
    first = graph.adjacency(skel)
    assert graph.adjacency(skel) is first
    skel.move_node(7, (1, 1, 1))  # positions, comments and attributes do not change the graph
    skel.set_comment(7, "moved")
    assert graph.adjacency(skel) is first
    skel.link(7, 1)
    second = graph.adjacency(skel)
    assert second is not first and graph.neighbors(skel, 7).tolist() == [1]
    skel.add_node((0, 0, 0), 1)
    third = graph.adjacency(skel)
    assert third is not second and third.num_nodes == len(NODES) + 1
    skel.delete_nodes([7])
    assert graph.neighbors(skel, 1).tolist() == [2]


def test_duplicates_self_loops_dangling_edges_are_ignored(skel):
    skel.set_edges([*EDGES, (4, 3), (3, 4), (21, 21), (13, 99), (98, 97)])
    adj = graph.adjacency(skel)
    assert graph.neighbors(skel, 3).tolist() == [2, 4, 5]
    r3 = int(skel.rows(3)[0])
    assert adj.direction[adj.indptr[r3] : adj.indptr[r3 + 1]].tolist() == [2, 3, 1]  # 3–4 stored both ways
    assert graph.neighbors(skel, 21).tolist() == [20]
    assert graph.neighbors(skel, 13).tolist() == [12]
    assert len(adj.edges) == len(EDGES)
    assert not graph.has_cycle(skel, 1) and not graph.has_cycle(skel, 3)
    assert graph.path_length_nm(skel, 1) == pytest.approx(TREE1_NM)
    assert graph.node_degree(skel, 1).tolist() == [1, 2, 3, 1, 2, 1, 0]


@pytest.mark.parametrize("ids", [[1, 2, 3, 4], [2, 5, 9, 11], [7, 10**12, 10**12 + 5, 2**40 + 1]])
def test_id_layouts(ids):
    """Contiguous ids, gaps (lookup table) and huge sparse ids (binary search)."""
    nodes = {i: (1, k, 0, 0) for k, i in enumerate(ids)}
    skel = build(nodes, [(ids[0], ids[1]), (ids[3], ids[1]), (ids[2], 123456)])
    assert graph.neighbors(skel, ids[1]).tolist() == [ids[0], ids[3]]
    assert graph.connected_components(skel).tolist() == [0, 0, 1, 0]
    assert graph.dfs_order(skel, ids[3]).tolist() == [ids[3], ids[1], ids[0]]


# -- degrees, components --------------------------------------------------------------------
def test_degree_and_branch_nodes(skel):
    assert graph.node_degree(skel).tolist() == [1, 2, 3, 1, 2, 2, 0, 2, 2, 3, 1, 2, 1]
    assert graph.node_degree(skel, 1).tolist() == [1, 2, 3, 1, 2, 1, 0]  # 6–20 leaves the tree
    assert graph.node_degree(skel, 3).tolist() == [1, 1]
    assert graph.branch_nodes(skel).tolist() == [3, 12]
    assert graph.branch_nodes(skel, 2).tolist() == [12]
    assert graph.branch_nodes(skel, 3).tolist() == []
    with pytest.raises(KeyError, match="no tree with id 9"):
        graph.node_degree(skel, 9)
    with pytest.raises(KeyError):
        graph.neighbors(skel, 99)


def test_connected_components(skel):
    assert skel.node_ids().tolist() == [1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 20, 21]
    assert graph.connected_components(skel).tolist() == [0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 0, 0]
    assert graph.connected_components(skel, 1).tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert graph.connected_components(skel, 2).tolist() == [0, 0, 0, 0]
    assert graph.connected_components(skel, 3).tolist() == [0, 0]
    assert graph.component_nodes(skel, 21).tolist() == [1, 2, 3, 4, 5, 6, 20, 21]
    assert graph.component_nodes(skel, 7).tolist() == [7]
    skel.add_tree(id=4)
    assert graph.connected_components(skel, 4).tolist() == []
    with pytest.raises(KeyError):
        graph.connected_components(skel, 9)
    with pytest.raises(KeyError):
        graph.component_nodes(skel, 99)


def test_empty_skeleton_graph():
    skel = Skeleton()
    assert graph.connected_components(skel).tolist() == []
    assert graph.node_degree(skel).tolist() == []
    assert not graph.has_cycle(skel)
    assert graph.find_cycle_edges(skel).shape == (0, 2)
    assert graph.path_length_nm(skel, scale_xyz=(1, 1, 1)) == 0.0
    assert graph.path_lengths_nm(skel, (1, 1, 1)) == {}


# -- traversal ------------------------------------------------------------------------------
def test_dfs_order(skel):
    assert graph.dfs_order(skel, 1).tolist() == [1, 2, 3, 4, 5, 6, 20, 21]
    assert graph.dfs_order(skel, 3).tolist() == [3, 2, 1, 4, 5, 6, 20, 21]
    assert graph.dfs_order(skel, 21).tolist() == [21, 20, 6, 5, 3, 2, 1, 4]
    assert graph.dfs_order(skel, 13).tolist() == [13, 12, 10, 11]
    assert graph.dfs_order(skel, 11).tolist() == [11, 10, 12, 13]
    assert graph.dfs_order(skel, 7).tolist() == [7]
    # KNOSSOS X / Shift+X: along / against the stored (tracing) direction
    assert graph.dfs_order(skel, 3, "forward").tolist() == [3, 4, 5, 6, 20, 21]
    assert graph.dfs_order(skel, 3, "backward").tolist() == [3, 2, 1]
    assert graph.dfs_order(skel, 12, "forward").tolist() == [12, 10, 11, 13]
    assert graph.dfs_order(skel, 12, "backward").tolist() == [12, 11, 10]
    with pytest.raises(ValueError):
        graph.dfs_order(skel, 1, "sideways")
    with pytest.raises(KeyError):
        graph.dfs_order(skel, 99)


def test_next_branchpoint(skel):
    # component of 1 in dfs order from its smallest id: 1 2 3 4 5 6 20 21; degree ≥ 3: node 3
    assert graph.next_branchpoint(skel, 1) == 3
    assert graph.next_branchpoint(skel, 3) is None
    assert graph.next_branchpoint(skel, 4, -1) == 3
    assert graph.next_branchpoint(skel, 3, -1) is None
    skel.push_branchpoint(20)  # the branch point stack counts too
    assert graph.next_branchpoint(skel, 3) == 20
    assert graph.next_branchpoint(skel, 21, -1) == 20
    assert graph.next_branchpoint(skel, 6, -1) == 3
    # component of 13: order 10 11 12 13; 12 has degree 3, 13 is on the stack
    assert graph.next_branchpoint(skel, 10) == 12
    assert graph.next_branchpoint(skel, 12) == 13
    assert graph.next_branchpoint(skel, 13, -1) == 12
    assert graph.next_branchpoint(skel, 7) is None
    with pytest.raises(ValueError):
        graph.next_branchpoint(skel, 1, 2)
    with pytest.raises(KeyError):
        graph.next_branchpoint(skel, 99)


# -- measures -------------------------------------------------------------------------------
def test_path_lengths(skel):
    assert graph.path_length_nm(skel, 1) == pytest.approx(TREE1_NM)
    assert graph.path_length_nm(skel, 2) == pytest.approx(TREE2_NM)
    assert graph.path_length_nm(skel, 3) == pytest.approx(TREE3_NM)
    assert graph.path_length_nm(skel) == pytest.approx(TREE1_NM + TREE2_NM + TREE3_NM + CROSS_NM)
    # anisotropic voxels: 1–2 and 3–5 are (3, 4, 0) → 10 nm at (2, 2, 1)
    assert graph.path_length_nm(skel, 1, (2, 2, 1)) == pytest.approx(10 + 12 + 1 + 10 + 1)
    skel.add_tree(id=4)
    assert graph.path_lengths_nm(skel) == pytest.approx({1: TREE1_NM, 2: TREE2_NM, 3: TREE3_NM, 4: 0.0})
    skel.parameters.scale = None
    with pytest.raises(ValueError, match="scale"):
        graph.path_length_nm(skel, 1)
    with pytest.raises(KeyError):
        graph.path_length_nm(skel, 9, (1, 1, 1))


def test_path_lengths_with_sparse_tree_ids():
    nodes = {1: (10**9, 0, 0, 0), 2: (10**9, 3, 4, 0), 3: (-5, 0, 0, 0), 4: (-5, 0, 0, 2)}
    skel = build(nodes, [(1, 2), (3, 4), (2, 3)])
    assert graph.path_lengths_nm(skel, (1, 1, 1)) == pytest.approx({-5: 2.0, 10**9: 5.0})


# -- cycles ---------------------------------------------------------------------------------
def test_cycles(skel):
    assert graph.has_cycle(skel)
    assert not graph.has_cycle(skel, 1)
    assert graph.has_cycle(skel, 2)
    assert graph.find_cycle_edges(skel).tolist() == [[10, 11], [10, 12], [11, 12]]
    assert graph.find_cycle_edges(skel, 2).tolist() == [[10, 11], [10, 12], [11, 12]]
    assert graph.find_cycle_edges(skel, 1).shape == (0, 2)
    # a cycle through two trees exists only for the whole skeleton
    skel.link(21, 1)
    assert not graph.has_cycle(skel, 1) and not graph.has_cycle(skel, 3)
    assert graph.find_cycle_edges(skel).tolist() == [
        [1, 2], [1, 21], [2, 3], [3, 5], [5, 6], [6, 20], [10, 11], [10, 12], [11, 12], [20, 21]]
    skel.unlink(11, 12)
    skel.unlink(1, 21)
    assert not graph.has_cycle(skel)
    assert graph.find_cycle_edges(skel).shape == (0, 2)


def test_cycle_edges_exclude_bridges_between_cycles():
    # two triangles joined by the bridge 3–4, with a tail 6–7
    nodes = {i: (1, i, 0, 0) for i in range(1, 8)}
    skel = build(nodes, [(1, 2), (2, 3), (3, 1), (3, 4), (4, 5), (5, 6), (6, 4), (6, 7)])
    assert graph.find_cycle_edges(skel).tolist() == [[1, 2], [1, 3], [2, 3], [4, 5], [4, 6], [5, 6]]


# -- editing: merge -------------------------------------------------------------------------
def test_merge_trees(skel):
    comments, props, stack = dict(skel.comments), {k: dict(v) for k, v in skel.node_properties.items()}, list(
        skel.branchpoints)
    v = skel.version
    graph.merge_trees(skel, 1, 3)
    assert sorted(skel.trees) == [1, 2]
    assert ids_of_tree(skel, 1) == [1, 2, 3, 4, 5, 6, 7, 20, 21]
    assert skel.edges.tolist() == [list(e) for e in EDGES]  # no edge added
    t = skel.trees[1]
    assert (t.name, t.color, t.group_id) == ("axon", (1.0, 0.0, 0.0, 1.0), 7)
    assert t.properties == {"comment": "axon", "myNumber": "1", "extra": "x"}  # keep's win, no synapse keys
    assert [(m.key, m.value) for m in t.metadata] == [("kind", "axon"), ("score", 0.5)]
    assert (skel.comments, skel.node_properties, skel.branchpoints) == (comments, props, stack)
    assert skel.version > v


def test_merge_trees_with_link(skel):
    graph.merge_trees(skel, 2, 3, link=(13, 20))
    assert ids_of_tree(skel, 2) == [10, 11, 12, 13, 20, 21]
    assert skel.edges.tolist()[-1] == [13, 20]
    assert graph.component_nodes(skel, 10).tolist() == [1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 20, 21]


def test_merge_trees_errors_change_nothing(skel):
    before = (skel.nodes["tree"].tolist(), sorted(skel.trees), skel.edges.tolist(), dict(skel.trees[1].properties))
    with pytest.raises(ValueError, match="itself"):
        graph.merge_trees(skel, 1, 1)
    with pytest.raises(KeyError, match="no tree with id 9"):
        graph.merge_trees(skel, 1, 9)
    with pytest.raises(KeyError):
        graph.merge_trees(skel, 9, 1)
    with pytest.raises(KeyError):
        graph.merge_trees(skel, 1, 3, link=(1, 99))
    with pytest.raises(ValueError, match="must join"):
        graph.merge_trees(skel, 1, 3, link=(1, 10))
    with pytest.raises(ValueError, match="itself"):
        graph.merge_trees(skel, 1, 3, link=(20, 20))
    assert before == (skel.nodes["tree"].tolist(), sorted(skel.trees), skel.edges.tolist(),
                      dict(skel.trees[1].properties))


# -- editing: split at an edge --------------------------------------------------------------
def test_split_tree_at_edge_moves_b_side(skel):
    new = graph.split_tree_at_edge(skel, 3, 5)
    assert new == 4
    assert ids_of_tree(skel, 1) == [1, 2, 3, 4, 7]
    assert ids_of_tree(skel, 4) == [5, 6]  # 20 (tree 3, linked to 6) stays in its tree
    assert ids_of_tree(skel, 3) == [20, 21]
    assert not skel.has_edge(3, 5)
    t = skel.trees[4]
    assert (t.name, t.color, t.group_id, t.properties) == ("", None, 7, {})
    assert skel.comments[5] == "five" and skel.node_properties["myNumber"][6] == "6"


def test_split_tree_at_edge_b_side_may_hold_the_first_node(skel):
    assert graph.split_tree_at_edge(skel, 2, 1) == 4
    assert ids_of_tree(skel, 4) == [1]
    assert ids_of_tree(skel, 1) == [2, 3, 4, 5, 6, 7]


def test_split_tree_at_edge_without_split(skel):
    v = skel.version
    assert graph.split_tree_at_edge(skel, 11, 12) is None  # on the cycle: still connected
    assert not skel.has_edge(11, 12) and ids_of_tree(skel, 2) == [10, 11, 12, 13]
    assert graph.split_tree_at_edge(skel, 20, 6) is None  # between two trees: only unlinked
    assert not skel.has_edge(6, 20)
    assert sorted(skel.trees) == [1, 2, 3] and skel.version > v
    with pytest.raises(KeyError, match="no edge between nodes 1 and 3"):
        graph.split_tree_at_edge(skel, 1, 3)
    with pytest.raises(KeyError):
        graph.split_tree_at_edge(skel, 1, 99)


# -- editing: extract, split by components --------------------------------------------------
def test_extract_component_across_trees(skel):
    new = graph.extract_component(skel, 2)
    assert new == 4
    assert ids_of_tree(skel, 4) == [1, 2, 3, 4, 5, 6, 20, 21]
    assert ids_of_tree(skel, 1) == [7]
    assert sorted(skel.trees) == [1, 2, 4]  # tree 3 became empty: deleted (KNOSSOS)
    assert skel.trees[4].group_id == 7 and skel.trees[4].name == ""
    assert skel.comments == {5: "five", 20: "twenty"}


def test_extract_component_of_a_whole_tree_does_nothing(skel):
    v = skel.version
    assert graph.extract_component(skel, 13) is None
    assert sorted(skel.trees) == [1, 2, 3] and skel.version == v


def test_extract_isolated_node(skel):
    assert graph.extract_component(skel, 7) == 4
    assert ids_of_tree(skel, 4) == [7] and 7 not in ids_of_tree(skel, 1)
    with pytest.raises(KeyError):
        graph.extract_component(skel, 99)


def test_split_connected_components(skel):
    assert graph.split_connected_components(skel, 2) == []
    assert graph.split_connected_components(skel, 1) == [4]
    assert ids_of_tree(skel, 1) == [1, 2, 3, 4, 5, 6]
    assert ids_of_tree(skel, 4) == [7]
    skel.unlink(2, 3)
    skel.unlink(10, 11)
    skel.unlink(11, 12)
    assert graph.split_connected_components(skel, 1) == [5]
    assert ids_of_tree(skel, 5) == [3, 4, 5, 6]
    assert graph.split_connected_components(skel, 2) == [6]
    assert ids_of_tree(skel, 2) == [10, 12, 13] and ids_of_tree(skel, 6) == [11]
    assert all(skel.trees[t].group_id == 7 for t in (4, 5))
    with pytest.raises(KeyError):
        graph.split_connected_components(skel, 9)


def test_split_connected_components_orders_new_trees_by_smallest_id():
    nodes = {i: (1, i, 0, 0) for i in (1, 2, 3, 4, 5, 6)}
    skel = build(nodes, [(6, 2), (5, 3)])  # parts: {1}, {2, 6}, {3, 5}, {4}
    assert graph.split_connected_components(skel, 1) == [2, 3, 4]
    assert skel.nodes["tree"].tolist() == [1, 2, 3, 4, 3, 2]


# -- editing: helpers -----------------------------------------------------------------------
def test_add_linked_node(skel):
    nid = graph.add_linked_node(skel, (1, 2, 3), 1, link_to=6, radius=2.0)
    assert nid == 22 and skel.tree_of(22) == 1
    assert skel.edges.tolist()[-1] == [6, 22]  # tracing direction: from the active node
    assert skel.nodes["radius"][-1] == 2.0
    assert graph.dfs_order(skel, 5, "forward").tolist() == [5, 6, 20, 21, 22]
    assert graph.add_linked_node(skel, (0, 0, 0), 2) == 23 and skel.num_edges == len(EDGES) + 1
    n = skel.num_nodes
    with pytest.raises(KeyError):
        graph.add_linked_node(skel, (0, 0, 0), 1, link_to=99)
    with pytest.raises(KeyError):
        graph.add_linked_node(skel, (0, 0, 0), 9, link_to=1)
    assert skel.num_nodes == n


def test_move_nodes_to_tree(skel):
    graph.move_nodes_to_tree(skel, [20, 21], 2)
    assert ids_of_tree(skel, 2) == [10, 11, 12, 13, 20, 21]
    assert sorted(skel.trees) == [1, 2, 3]  # emptied tree kept, as KNOSSOS does
    graph.move_nodes_to_tree(skel, np.array([7]), 3, delete_empty_trees=True)
    assert ids_of_tree(skel, 3) == [7] and sorted(skel.trees) == [1, 2, 3]
    graph.move_nodes_to_tree(skel, [7], 1, delete_empty_trees=True)
    assert sorted(skel.trees) == [1, 2]
    with pytest.raises(KeyError):
        graph.move_nodes_to_tree(skel, [1], 9)
    with pytest.raises(KeyError):
        graph.move_nodes_to_tree(skel, [99], 1)


def test_delete_tree(skel):
    skel.set_comment(12, "twelve")
    graph.delete_tree(skel, 2)
    assert sorted(skel.trees) == [1, 3]
    assert skel.node_ids().tolist() == [1, 2, 3, 4, 5, 6, 7, 20, 21]
    assert not np.isin(skel.edges, [10, 11, 12, 13]).any() and len(skel.edges) == len(EDGES) - 4
    assert 12 not in skel.comments and skel.branchpoints == []
    with pytest.raises(KeyError):
        graph.delete_tree(skel, 2)


# -- random cross-checks --------------------------------------------------------------------
def reference_components(ids, edges):
    parent = {i: i for i in ids}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        if a in parent and b in parent:
            ra, rb = find(a), find(b)
            parent[max(ra, rb)] = min(ra, rb)
    roots = [find(i) for i in ids]
    order = {r: k for k, r in enumerate(sorted(set(roots), key=lambda r: min(i for i in ids if find(i) == r)))}
    return [order[r] for r in roots]


def reference_dfs(adj_lists, start):
    order, seen = [], set()

    def visit(x):
        seen.add(x)
        order.append(x)
        for y in sorted(adj_lists[x]):
            if y not in seen:
                visit(y)

    visit(start)
    return order


@pytest.mark.parametrize("seed", range(4))
def test_random_graphs_match_references(seed):
    rng = np.random.default_rng(seed)
    n = 300
    ids = np.sort(rng.choice(10_000, n, replace=False)) + 1
    trees = rng.integers(1, 6, n)
    nodes = {int(i): (int(t), *rng.uniform(0, 100, 3)) for i, t in zip(ids, trees)}
    # random forest plus a few extra edges (cycles, cross-tree) and duplicates
    edges = [(int(ids[k]), int(ids[rng.integers(0, k)])) for k in range(1, n) if rng.random() < 0.8]
    edges += [tuple(int(x) for x in rng.choice(ids, 2, replace=False)) for _ in range(6)]
    edges += [edges[0][::-1], edges[1]]
    skel = build(nodes, edges, trees=range(1, 6))
    id_list = ids.tolist()
    assert graph.connected_components(skel).tolist() == reference_components(id_list, edges)
    adj_lists = {i: set() for i in id_list}
    for a, b in edges:
        adj_lists[a].add(b)
        adj_lists[b].add(a)
    simple = {tuple(sorted(e)) for e in edges}
    for tid in range(1, 6):
        members = [i for i in id_list if nodes[i][0] == tid]
        inner = [e for e in simple if nodes[e[0]][0] == tid and nodes[e[1]][0] == tid]
        assert graph.connected_components(skel, tid).tolist() == reference_components(members, inner)
        comps = len(set(reference_components(members, inner)))
        assert graph.has_cycle(skel, tid) == (len(inner) > len(members) - comps)
    assert graph.node_degree(skel).tolist() == [len(adj_lists[i]) for i in id_list]
    for start in rng.choice(ids, 10).tolist():
        assert graph.dfs_order(skel, start).tolist() == reference_dfs(adj_lists, start)
    # an edge is on a cycle iff its ends stay connected without it
    expected = []
    for a, b in sorted(simple):
        rest = [e for e in simple if e != (a, b)]
        labels = reference_components(id_list, rest)
        if labels[id_list.index(a)] == labels[id_list.index(b)]:
            expected.append([a, b])
    assert graph.find_cycle_edges(skel).tolist() == expected
    comps = len(set(reference_components(id_list, edges)))
    assert graph.has_cycle(skel) == (len(simple) > n - comps)
    pos = {i: np.array(nodes[i][1:]) for i in id_list}
    total = sum(np.linalg.norm((pos[a] - pos[b]) * (2, 3, 5)) for a, b in simple)
    assert graph.path_length_nm(skel, scale_xyz=(2, 3, 5)) == pytest.approx(total)


def test_long_chain_with_descending_ids_components():
    """Worst case for pointer jumping: one path whose ids run against the edge order."""
    n = 5000
    ids = np.arange(1, n + 1)
    skel = Skeleton()
    skel.add_tree(id=1)
    skel.set_nodes({"id": ids, "tree": np.ones(n, int)})
    perm = np.random.default_rng(3).permutation(ids)
    skel.set_edges(np.stack([perm[:-1], perm[1:]], axis=1))
    assert graph.connected_components(skel).tolist() == [0] * n
    assert not graph.has_cycle(skel)
    assert len(graph.dfs_order(skel, int(perm[0]))) == n
    assert graph.dfs_order(skel, int(perm[0]), "forward").tolist() == perm.tolist()
    assert graph.component_nodes(skel, 5).tolist() == ids.tolist()


# -- incremental cache updates --------------------------------------------------------------
def assert_same_adjacency(a, b):
    assert a.ids.tolist() == b.ids.tolist()
    assert a.indptr.tolist() == b.indptr.tolist()
    assert a.neighbors.tolist() == b.neighbors.tolist()
    assert a.direction.tolist() == b.direction.tolist()
    assert a.edges.tolist() == b.edges.tolist()


def test_appends_update_the_cache_without_rebuilding(skel, monkeypatch):
    graph.adjacency(skel)
    graph.connected_components(skel)
    skel.add_node((0, 0, 0), 1)  # first append after set_nodes copies into spare capacity
    skel.link(22, 7)
    graph.adjacency(skel)
    graph.connected_components(skel)
    builds = []
    monkeypatch.setattr(graph, "_build_adjacency", lambda s: builds.append(s))
    monkeypatch.setattr(graph, "_component_roots", lambda *a: builds.append(a))
    a = graph.add_linked_node(skel, (1, 1, 1), 1, link_to=4)  # new leaf on an old node
    b = graph.add_linked_node(skel, (1, 1, 2), 3, link_to=a)  # new–new
    skel.link(21, 13)  # joins two components
    skel.link(b, 7)
    skel.link(2, 4)  # old–old, closes a cycle
    skel.add_node((5, 5, 5), 2)  # isolated newcomer
    adj = graph.adjacency(skel)
    labels = graph.connected_components(skel)
    degree = graph.node_degree(skel)
    order = graph.dfs_order(skel, a, "forward")
    assert builds == []
    monkeypatch.undo()
    assert_same_adjacency(adj, graph._build_adjacency(skel))
    assert graph.neighbors(skel, 4).tolist() == [2, 3, a]
    assert order.tolist() == [a, b, 7]  # 22 → 7 is stored towards 7
    e = graph._valid_edge_rows(skel)
    roots = graph._component_roots(skel.num_nodes, e[:, 0], e[:, 1])
    assert labels.tolist() == graph._labels_from_roots(roots).tolist()
    assert labels.tolist() == [0] * 16 + [1]
    assert degree.tolist() == np.diff(graph._build_adjacency(skel).indptr).tolist()
    assert graph.has_cycle(skel, 1)


def test_insert_before_the_end_rebuilds(skel):
    graph.adjacency(skel)
    skel.add_node((0, 0, 0), 1)
    graph.adjacency(skel)
    skel.add_node((0, 0, 0), 2, node_id=8)  # not an append: fresh buffers
    skel.link(8, 13)
    assert_same_adjacency(graph.adjacency(skel), graph._build_adjacency(skel))
    assert graph.neighbors(skel, 13).tolist() == [8, 12]
    assert graph.component_nodes(skel, 8).tolist() == [8, 10, 11, 12, 13]


def test_appended_duplicate_and_many_edges(skel):
    graph.adjacency(skel)
    skel.add_node((0, 0, 0), 1)
    graph.adjacency(skel)
    skel._append_edge(4, 3)  # a file-style duplicate in the other direction, appended in place
    skel._append_edge(22, 22)  # self-loop: ignored
    adj = graph.adjacency(skel)
    assert_same_adjacency(adj, graph._build_adjacency(skel))
    r3 = int(skel.rows(3)[0])
    assert adj.direction[adj.indptr[r3] : adj.indptr[r3 + 1]].tolist() == [2, 3, 1]
    for i in range(300):  # more appended edges than the incremental limit: rebuilt
        nid = skel.add_node((i, 0, 0), 2)
        skel.link(nid - 1, nid)
    assert_same_adjacency(graph.adjacency(skel), graph._build_adjacency(skel))
    assert graph.connected_components(skel).tolist()[-301:] == [3] * 301  # 22 and its chain


def test_huge_components_use_the_vectorised_labels(skel, monkeypatch):
    monkeypatch.setattr(graph, "_PYTHON_BFS_LIMIT", 2)
    assert graph.component_nodes(skel, 21).tolist() == [1, 2, 3, 4, 5, 6, 20, 21]
    assert graph.component_nodes(skel, 7).tolist() == [7]
    assert graph.extract_component(skel, 12) is None
    assert graph.extract_component(skel, 2) == 4
    assert ids_of_tree(skel, 4) == [1, 2, 3, 4, 5, 6, 20, 21]


def test_many_joins_rebuild_the_labels(skel):
    new = [skel.add_node((i, 0, 0), 2) for i in range(20)]
    assert graph.connected_components(skel).tolist()[-20:] == list(range(3, 23))
    for a, b in pairwise(new):
        skel.link(a, b)
    skel.link(new[-1], 7)
    assert graph.connected_components(skel).tolist() == [0] * 6 + [1] + [2] * 4 + [0, 0] + [1] * 20

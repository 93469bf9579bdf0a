"""Synapse table, connectivity matrix and their CSV files: the KNOSSOS fixture, hand-built
skeletons with known geometry, NML round trips and a 10k-synapse timing."""

import csv
import math
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from napari_knossos.annotation.graph import path_length_nm
from napari_knossos.annotation.nml import read_nml, write_nml
from napari_knossos.annotation.skeleton import Skeleton, Tree
from napari_knossos.annotation.synapses import (
    SynapseTable,
    connectivity_matrix,
    synapse_table,
    write_connectivity_csv,
    write_synapses_csv,
)

FIXTURE = Path(__file__).parent / "data" / "nml" / "knossos_synthetic.nml"


def cleft(tree_id: int, pre, post, name: str = "") -> Tree:
    props = {"synapticCleft": "true"}
    if pre is not None:
        props["preSynapse"] = str(pre)
    if post is not None:
        props["postSynapse"] = str(post)
    return Tree(id=tree_id, name=name, visible=False, properties=props)


def build(trees: list[Tree], nodes: dict, edges=(), scale=None) -> Skeleton:
    """``nodes``: id → (tree, x, y, z)."""
    skel = Skeleton()
    for tree in trees:
        skel.add_tree(tree)
    ids = list(nodes)
    cols = np.array([nodes[i] for i in ids], float).reshape(-1, 4)
    skel.set_nodes({"id": ids, "tree": cols[:, 0].astype(int), "x": cols[:, 1], "y": cols[:, 2], "z": cols[:, 3]})
    skel.set_edges(np.asarray(edges, np.int64).reshape(-1, 2))
    skel.parameters.scale = scale
    return skel


# neurons 1 (A), 2 (B), 3 (C); clefts 10.. ; node ids: neuron nodes < 100, cleft nodes ≥ 100
NEURONS = [Tree(id=1, name="A"), Tree(id=2, name="B"), Tree(id=3, name="C")]
NEURON_NODES = {1: (1, 0, 0, 0), 2: (1, 10, 0, 0), 3: (2, 20, 0, 0), 4: (2, 30, 0, 0), 5: (3, 40, 0, 0)}


def sample() -> Skeleton:
    trees = [
        *NEURONS,
        cleft(10, 2, 3, name="two nodes"),  # cleft nodes 100, 101
        cleft(11, 4, 1, name="L shape"),  # 102 - 103 - 104, edge 103-104 stored twice
        cleft(12, 999, 5, name="unknown pre"),  # one node 105
        cleft(13, None, "abc", name="no pre, bad post"),  # no nodes
        cleft(14, 1, 3),  # no nodes: position falls back to pre node 1
        cleft(15, None, 4),  # no nodes, no pre: falls back to post node 4
    ]
    nodes = {
        **NEURON_NODES,
        100: (10, 0, 0, 0), 101: (10, 3, 4, 0),
        102: (11, 0, 0, 0), 103: (11, 3, 0, 0), 104: (11, 3, 4, 0),
        105: (12, 7, 8, 9),
    }  # fmt: skip
    edges = [(1, 2), (3, 4), (100, 101), (102, 103), (103, 104), (104, 103), (105, 105)]
    return build(trees, nodes, edges, scale=(2.0, 2.0, 2.0))


def test_fixture_synapse_matches_the_nml_text():
    skel = read_nml(FIXTURE)
    table = synapse_table(skel)
    # expected values straight from the XML (KNOSSOS default: 1-based coordinates)
    root = ET.parse(FIXTURE).getroot()
    things = [t for t in root.iter("thing") if t.get("synapticCleft") == "true"]
    assert len(table) == len(things) == 1
    thing = things[0]
    node_tree = {int(n.get("id")): int(t.get("id")) for t in root.iter("thing") for n in t.iter("node")}
    cleft_nodes = list(thing.iter("node"))
    assert table.cleft_tree.tolist() == [int(thing.get("id"))]
    assert table.pre_node.tolist() == [int(thing.get("preSynapse"))]
    assert table.post_node.tolist() == [int(thing.get("postSynapse"))]
    assert table.pre_tree.tolist() == [node_tree[int(thing.get("preSynapse"))]]
    assert table.post_tree.tolist() == [node_tree[int(thing.get("postSynapse"))]]
    assert table.cleft_nodes.tolist() == [len(cleft_nodes)]
    for axis in "xyz":
        expected = np.mean([float(n.get(axis)) - 1 for n in cleft_nodes])
        assert getattr(table, axis).tolist() == [expected]
    assert table.cleft_size_nm.tolist() == [0.0]  # a single node has no length
    assert table.cleft_extent_nm.tolist() == [0.0]
    assert table.complete.tolist() == [True]


def test_sample_rows():
    table = synapse_table(sample())
    assert isinstance(table, SynapseTable)
    assert table.cleft_tree.tolist() == [10, 11, 12, 13, 14, 15]
    assert table.pre_node.tolist() == [2, 4, -1, -1, 1, -1]
    assert table.pre_tree.tolist() == [1, 2, -1, -1, 1, -1]
    assert table.post_node.tolist() == [3, 1, 5, -1, 3, 4]
    assert table.post_tree.tolist() == [2, 1, 3, -1, 2, 2]
    assert table.cleft_nodes.tolist() == [2, 3, 1, 0, 0, 0]
    assert table.complete.tolist() == [True, True, False, False, True, False]
    assert table.name.tolist() == ["two nodes", "L shape", "unknown pre", "no pre, bad post", "", ""]
    # scale 2 nm per voxel: (0,0,0)-(3,4,0) = 5 voxels; L: 3 + 4 voxels (the doubled edge counts
    # once), bounding box 3 x 4 → diagonal 5 voxels; the self-loop of node 105 adds nothing
    assert table.cleft_size_nm.tolist() == [2 * 5.0, 2 * (3.0 + 4.0), 0.0, 0.0, 0.0, 0.0]
    assert table.cleft_extent_nm.tolist() == [2 * 5.0, 2 * 5.0, 0.0, 0.0, 0.0, 0.0]
    assert table.x.tolist()[:3] == [1.5, 2.0, 7.0]
    assert table.y.tolist()[:3] == [2.0, 4 / 3, 8.0]
    assert table.z.tolist()[:3] == [0.0, 0.0, 9.0]
    assert np.isnan([table.x[3], table.y[3], table.z[3]]).all()  # no nodes, no pre, no post
    assert [table.x[4], table.y[4], table.z[4]] == list(NEURON_NODES[1][1:])  # pre node
    assert [table.x[5], table.y[5], table.z[5]] == list(NEURON_NODES[4][1:])  # post node
    assert set(table.to_dict()) == set(SynapseTable.column_names())
    assert {len(c) for c in table.to_dict().values()} == {6}


def test_scale_argument_and_missing_scale():
    skel = sample()
    table = synapse_table(skel, scale_xyz=(1.0, 10.0, 100.0))
    assert table.cleft_size_nm[0] == pytest.approx(math.hypot(3 * 1.0, 4 * 10.0))
    assert table.cleft_size_nm[1] == pytest.approx(3 * 1.0 + 4 * 10.0)
    skel.parameters.scale = None
    table = synapse_table(skel)
    assert np.isnan(table.cleft_size_nm).all() and np.isnan(table.cleft_extent_nm).all()
    assert table.cleft_nodes.tolist() == [2, 3, 1, 0, 0, 0]  # the rest does not need a scale


def test_matches_skeleton_synapses():
    skel = sample()
    table = synapse_table(skel)
    expected = skel.synapses()
    assert table.cleft_tree.tolist() == [s["cleft_tree"] for s in expected]
    assert table.pre_node.tolist() == [-1 if s["pre_node"] is None else s["pre_node"] for s in expected]
    assert table.post_node.tolist() == [-1 if s["post_node"] is None else s["post_node"] for s in expected]


def test_empty_and_no_synapses():
    for skel in (Skeleton(), build(NEURONS, NEURON_NODES, [(1, 2)], scale=(1, 1, 1))):
        table = synapse_table(skel)
        assert len(table) == 0
        assert all(len(c) == 0 for c in table.to_dict().values())
        ids, matrix = connectivity_matrix(skel)
        assert ids.shape == (0,) and matrix.shape == (0, 0)


def test_clefts_without_any_nodes_in_the_skeleton():
    skel = Skeleton()
    skel.add_tree(cleft(1, 5, 6))
    table = synapse_table(skel, scale_xyz=(1, 1, 1))
    assert table.pre_node.tolist() == [-1] and table.cleft_nodes.tolist() == [0]
    assert table.cleft_size_nm.tolist() == [0.0]


def test_survives_an_nml_round_trip(tmp_path):
    skel = sample()
    path = tmp_path / "synapses.nml"
    write_nml(skel, path, dialect="knossos")
    again = synapse_table(read_nml(path))
    before = synapse_table(skel)
    for name in SynapseTable.column_names():
        a, b = getattr(before, name), getattr(again, name)
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b)
        else:
            assert a.tolist() == b.tolist(), name


def read_csv(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_synapses_csv(tmp_path):
    skel = sample()
    skel.trees[10].name = 'comma, "quote"'
    path = tmp_path / "synapses.csv"
    path.write_text("old content")
    write_synapses_csv(skel, path)
    rows = read_csv(path)
    table = synapse_table(skel)
    assert rows[0] == SynapseTable.column_names()
    assert len(rows) == 1 + len(table)
    for i, row in enumerate(rows[1:]):
        record = dict(zip(rows[0], row))
        for name in SynapseTable.column_names():
            value = getattr(table, name)[i]
            if name == "name":
                assert record[name] == value
            elif isinstance(value, float) and math.isnan(value):
                assert record[name] == ""
            else:
                assert float(record[name]) == value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synapses.csv"]  # no temp file left


def expected_counts(skel: Skeleton) -> Counter:
    """Pre tree → post tree counts, directly from the tree properties."""
    counts: Counter = Counter()
    clefts = {t.id for t in skel.trees.values() if t.is_synapse}
    for tree in skel.trees.values():
        if not tree.is_synapse:
            continue
        ends = []
        for key in ("preSynapse", "postSynapse"):
            value = tree.properties.get(key, "")
            ends.append(skel.tree_of(int(value)) if value.isdigit() and skel.has_node(int(value)) else None)
        if None not in ends and not set(ends) & clefts:
            counts[tuple(ends)] += 1
    return counts


def connectivity_sample() -> Skeleton:
    skel = sample()
    for i, (pre, post) in enumerate([(2, 4), (1, 3), (1, 2), (100, 3)]):  # A→B, A→B, A→A, cleft→B
        skel.add_tree(cleft(20 + i, pre, post))
    return skel


def test_connectivity_matrix():
    skel = connectivity_sample()
    ids, matrix = connectivity_matrix(skel)
    counts = expected_counts(skel)
    assert ids.tolist() == sorted({t for pair in counts for t in pair}) == [1, 2]
    assert matrix.dtype.kind == "i"
    for i, pre in enumerate(ids.tolist()):
        for j, post in enumerate(ids.tolist()):
            assert matrix[i, j] == counts[(pre, post)]
    # A→B: clefts 10, 14, 20, 21; B→A: 11; A→A: 22; 12, 13, 15 incomplete; 23 starts in a cleft
    assert matrix.tolist() == [[1, 4], [1, 0]]


def test_connectivity_csv(tmp_path):
    skel = connectivity_sample()
    ids, matrix = connectivity_matrix(skel)
    path = tmp_path / "connectivity.csv"
    write_connectivity_csv(skel, path)
    rows = read_csv(path)
    assert rows[0] == ["pre\\post", *map(str, ids.tolist())]
    assert [r[0] for r in rows[1:]] == list(map(str, ids.tolist()))
    assert [[int(v) for v in r[1:]] for r in rows[1:]] == matrix.tolist()
    write_connectivity_csv(skel, path, labels="name")
    rows = read_csv(path)
    assert rows[0][1:] == [skel.trees[t].name for t in ids.tolist()] == ["A", "B"]
    skel.trees[1].name = ""
    write_connectivity_csv(skel, path, labels="name")
    assert read_csv(path)[0][1:] == ["1", "B"]
    with pytest.raises(ValueError, match="labels"):
        write_connectivity_csv(skel, path, labels="colour")


def big_skeleton(n_synapses: int, n_neurons: int = 100, neuron_nodes: int = 200):
    """Random neurons (chains) and 3-node clefts between random neuron nodes; returns the
    skeleton, the pre and post node ids and the tree of every neuron node."""
    rng = np.random.default_rng(7)
    skel = Skeleton()
    for t in range(1, n_neurons + 1):
        skel.add_tree(id=t, name=f"neuron {t}")
    n_neuron_nodes = n_neurons * neuron_nodes
    neuron_tree = np.repeat(np.arange(1, n_neurons + 1), neuron_nodes)
    pre = rng.integers(1, n_neuron_nodes + 1, n_synapses)
    post = rng.integers(1, n_neuron_nodes + 1, n_synapses)
    first_cleft = n_neurons + 1
    for k in range(n_synapses):
        skel.trees[first_cleft + k] = cleft(first_cleft + k, int(pre[k]), int(post[k]))
    cleft_tree = np.repeat(np.arange(first_cleft, first_cleft + n_synapses), 3)
    ids = np.arange(1, n_neuron_nodes + 3 * n_synapses + 1)
    trees = np.concatenate([neuron_tree, cleft_tree])
    xyz = rng.uniform(0, 1000, (len(ids), 3))
    skel.set_nodes({"id": ids, "tree": trees, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    neuron_edges = np.stack([ids[: n_neuron_nodes - 1], ids[1:n_neuron_nodes]], 1)
    neuron_edges = neuron_edges[neuron_tree[:-1] == neuron_tree[1:]]
    c = ids[n_neuron_nodes:].reshape(-1, 3)
    cleft_edges = np.concatenate([c[:, :2], c[:, 1:]])
    skel.set_edges(np.concatenate([neuron_edges, cleft_edges]))
    skel.parameters.scale = (10.0, 10.0, 25.0)
    return skel, pre, post, neuron_tree


def test_10k_synapses_fast_and_right():
    skel, pre, post, neuron_tree = big_skeleton(10_000)
    start = time.perf_counter()
    table = synapse_table(skel)
    cold = time.perf_counter() - start
    warm = min(_timed(lambda: synapse_table(skel)) for _ in range(3))
    print(f"synapse_table 10k synapses, 80k nodes: cold {cold * 1e3:.1f} ms, warm {warm * 1e3:.1f} ms")
    assert warm < 0.1
    assert len(table) == 10_000
    assert table.pre_node.tolist() == pre.tolist() and table.post_node.tolist() == post.tolist()
    assert table.pre_tree.tolist() == neuron_tree[pre - 1].tolist()
    assert (table.cleft_nodes == 3).all()
    # spot-check sizes against the graph module's per-tree path lengths
    for row in (0, 4321, 9999):
        tid = int(table.cleft_tree[row])
        assert table.cleft_size_nm[row] == pytest.approx(path_length_nm(skel, tid))
    ids, matrix = connectivity_matrix(skel)
    pairs = Counter(zip(neuron_tree[pre - 1].tolist(), neuron_tree[post - 1].tolist()))
    assert ids.tolist() == sorted({t for pair in pairs for t in pair})
    assert {(int(ids[i]), int(ids[j])): int(matrix[i, j]) for i, j in zip(*np.nonzero(matrix))} == pairs
    assert matrix.sum() == 10_000


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start

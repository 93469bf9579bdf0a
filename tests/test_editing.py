"""SkeletonEditor: exact undo/redo of every edit, work modes, radius locking, movement area,
KNOSSOS synapses (round trip through NML and k.zip), change notifications, dirty flag, speed.

Skeletons are built in the tests. Undo is checked against a full capture of the model (node
columns with dtypes and row order, edges, comments/properties/trees with their dict order,
branch points, groups, parameters incl. the active node).
"""

import copy
import statistics
import time

import numpy as np
import pytest

from napari_knossos.annotation import graph
from napari_knossos.annotation.editing import REVIEW_MESSAGE, Change, EditRefused, Mode, SkeletonEditor
from napari_knossos.annotation.kzip import Annotation, read_kzip, write_kzip
from napari_knossos.annotation.nml import read_nml, write_nml
from napari_knossos.annotation.skeleton import BoundingBox, Group, MetadataEntry, Skeleton

ADV = Mode.TRACING_ADVANCED

# tree 1:  1 → 2 → 3 → 4,  3 → 5 → 6,  7 isolated;  tree 2: 10 → 11 → 12 → 10 (cycle), 12 → 13
# tree 3:  20 → 21;  across trees: 6 → 20
NODES = {  # id: (tree, x, y, z)
    1: (1, 0, 0, 0), 2: (1, 3, 4, 0), 3: (1, 3, 4, 12), 4: (1, 3, 4, 13), 5: (1, 6, 8, 12),
    6: (1, 6, 8, 13), 7: (1, 100, 100, 100),
    10: (2, 0, 0, 0), 11: (2, 1, 0, 0), 12: (2, 1, 1, 0), 13: (2, 1, 1, 1),
    20: (3, 50, 0, 0), 21: (3, 50, 0, 2),
}  # fmt: skip
EDGES = [(1, 2), (2, 3), (3, 4), (3, 5), (5, 6), (10, 11), (11, 12), (12, 10), (12, 13), (20, 21), (6, 20)]


def sample() -> Skeleton:
    """A skeleton using every part of the model, dict orders deliberately not sorted."""
    skel = Skeleton()
    for tid in (1, 2, 3):
        skel.add_tree(id=tid)
    ids = list(NODES)
    cols = np.array([NODES[i] for i in ids], dtype=float)
    radius = np.arange(len(ids), dtype=np.float32) + 1
    radius[2] = np.nan  # node 3 has no radius
    skel.set_nodes({"id": ids, "tree": cols[:, 0].astype(int), "x": cols[:, 1], "y": cols[:, 2], "z": cols[:, 3],
                    "radius": radius, "time": np.arange(len(ids)) * 1000, "in_vp": np.zeros(len(ids))})
    skel.set_edges(EDGES)
    t1 = skel.trees[1]
    t1.name, t1.color, t1.group_id = "axon", (1.0, 0.0, 0.0, 1.0), 7
    t1.properties = {"myNumber": "1"}
    t1.metadata = [MetadataEntry("kind", "axon")]
    skel.trees[2].properties = {"note": "two"}
    skel.trees[3].metadata = [MetadataEntry("kind", "dendrite"), MetadataEntry("score", 0.5)]
    skel.groups = [Group(7, "neurons", children=[Group(8, "sub")]), Group(9, "other")]
    for nid, text in ((5, "five"), (20, "twenty"), (1, "first"), (12, "twelve")):
        skel.set_comment(nid, text)
    skel.node_properties = {"myNumber": {6: "6", 21: "21", 2: "2"}, "score": {3: "0.5"}}
    skel.branchpoints = [(13, None), (3, 1234), (6, None)]
    skel.parameters.active_node = 4
    skel.parameters.scale = (10.0, 10.0, 20.0)
    return skel


def state(skel: Skeleton) -> dict:
    """Everything undo must restore, as plain values (dict orders included)."""
    return {
        "nodes": {k: (v.dtype.str, v.copy()) for k, v in skel.nodes.items()},
        "edges": np.asarray(skel.edges).copy(),
        "comments": list(skel.comments.items()),
        "node_properties": [(k, list(v.items())) for k, v in skel.node_properties.items()],
        "branchpoints": list(skel.branchpoints),
        "trees": [(tid, copy.deepcopy(t)) for tid, t in skel.trees.items()],
        "groups": copy.deepcopy(skel.groups),
        "parameters": copy.deepcopy(skel.parameters),
    }


def assert_same(a: dict, b: dict) -> None:
    assert list(a["nodes"]) == list(b["nodes"])
    for name, (dtype, values) in a["nodes"].items():
        other_dtype, other = b["nodes"][name]
        assert dtype == other_dtype, name
        assert np.array_equal(values, other, equal_nan=values.dtype.kind == "f"), name
    assert a["edges"].shape == b["edges"].shape
    assert np.array_equal(a["edges"], b["edges"])
    for key in ("comments", "node_properties", "branchpoints", "trees", "groups", "parameters"):
        assert a[key] == b[key], key


def check_undo(editor: SkeletonEditor, action):
    """Run ``action``: undo must give the state before exactly, redo the state after (twice)."""
    before = state(editor.skel)
    result = action()
    after = state(editor.skel)
    for _ in range(2):
        editor.undo()
        assert_same(state(editor.skel), before)
        editor.redo()
        assert_same(state(editor.skel), after)
    return result


def editor_for(mode=ADV, skel=None) -> SkeletonEditor:
    return SkeletonEditor(sample() if skel is None else skel, mode, clock=lambda: 1700000000.5)


# -- exact undo of every command -------------------------------------------------------------
def _synapse_post(e):
    e.start_synapse()
    e.place_node((3, 5, 13))
    e.place_node((3, 6, 13))
    e.end_cleft()
    return e.place_node((3, 8, 13))


def _slotted(e):
    e.comment_slots[2] = "spine"
    e.apply_comment_slot(2)


def _batch(e):
    with e.batch("several"):
        n = e.place_node((9, 9, 9))
        e.set_comment(n, "new")
        e.link(n, 7)
        e.delete_nodes([1])


COMMANDS = {
    "place linked": (Mode.TRACING, lambda e: e.place_node((5, 5, 14))),
    "place unlinked": (ADV, lambda e: e.place_node((5, 5, 14), link=False)),
    "place branch stub": (ADV, lambda e: e.place_node((5, 5, 14), branch_stub=True)),
    "place first node marked": (ADV, lambda e: (setattr(e, "mark_first_node", True), e.new_tree(),
                                                 e.place_node((1, 2, 3)))),
    "delete middle node": (ADV, lambda e: e.delete_nodes([3])),
    "delete active node": (ADV, lambda e: e.delete_nodes([4])),
    "delete many": (ADV, lambda e: e.delete_nodes([1, 5, 12, 20, 21, 13])),
    "move": (ADV, lambda e: e.move_nodes({3: (7, 7, 7), 5: (1.5, 2.5, 3.5)})),
    "link": (ADV, lambda e: e.link(4, 7)),
    "link tracing": (Mode.TRACING, lambda e: e.link(7, 4)),
    "link cycle advanced": (ADV, lambda e: e.link(4, 1)),
    "unlink middle edge": (ADV, lambda e: e.unlink(12, 10)),
    "toggle link": (ADV, lambda e: e.toggle_link(11, 10)),
    "set radius": (ADV, lambda e: e.set_radius([3, 4], 2.5)),
    "scale radius": (ADV, lambda e: e.scale_radius([2, 3], 1.1)),
    "add comment": (ADV, lambda e: e.set_comment(4, "four")),
    "change comment": (ADV, lambda e: e.set_comment(20, "20!")),
    "remove comment in the middle": (ADV, lambda e: e.set_comment(20, "")),
    "comment slot": (ADV, _slotted),
    "new node property": (ADV, lambda e: e.set_node_property(4, "colour", 3)),
    "set node property": (ADV, lambda e: e.set_node_property(7, "myNumber", "7")),
    "remove node property": (ADV, lambda e: e.set_node_property(21, "myNumber", None)),
    "set tree property": (ADV, lambda e: e.set_tree_property(2, "k", "v")),
    "remove tree property": (ADV, lambda e: e.set_tree_property(1, "myNumber", None)),
    "push branch point": (ADV, lambda e: e.push_branchpoint(4)),
    "pop branch point": (ADV, lambda e: e.pop_branchpoint()),
    "new tree": (ADV, lambda e: e.new_tree(name="new", color=(0, 1, 0, 1))),
    "tree attributes": (ADV, lambda e: e.set_tree_attrs(2, name="two", color=(0, 0, 1, 1), visible=False)),
    "delete tree": (ADV, lambda e: e.delete_trees([1])),
    "delete trees": (ADV, lambda e: e.delete_trees([3, 2])),
    "merge trees": (ADV, lambda e: e.merge_trees([3, 1, 2])),
    "split": (ADV, lambda e: e.split_at_edge(3, 5)),
    "split cycle edge": (ADV, lambda e: e.split_at_edge(12, 10)),
    "split cross edge": (ADV, lambda e: e.split_at_edge(6, 20)),
    "extract component": (ADV, lambda e: e.extract_component(20)),
    "move nodes to tree": (ADV, lambda e: e.move_nodes_to_tree([5, 6], 2)),
    "add group": (ADV, lambda e: e.add_group("new", parent_id=8)),
    "rename group": (ADV, lambda e: e.rename_group(8, "renamed")),
    "move group": (ADV, lambda e: e.move_group(9, 8)),
    "delete group": (ADV, lambda e: e.delete_group(7)),
    "trees to group": (ADV, lambda e: e.move_trees_to_group([2, 3], 9)),
    "start synapse": (ADV, lambda e: e.start_synapse()),
    "end cleft": (ADV, lambda e: (e.start_synapse(), e.place_node((3, 5, 13)), e.end_cleft())),
    "post synapse": (ADV, _synapse_post),
    "make synapse": (ADV, lambda e: e.make_synapse(5, 11)),
    "reverse synapse": (ADV, lambda e: e.reverse_synapse(e.make_synapse(5, 11))),
    "batch": (ADV, _batch),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_undoes_exactly(name):
    """Undo gives the state before exactly, redo the state after (twice over); commands that
    are a short workflow (several steps) are undone and redone as a whole."""
    mode, action = COMMANDS[name]
    editor = editor_for(mode)
    start = state(editor.skel)
    action(editor)
    end = state(editor.skel)
    steps = len(editor._undo)
    assert steps >= 1 and not editor.can_redo
    for _ in range(2):
        for _ in range(steps):
            editor.undo()
        assert_same(state(editor.skel), start)
        assert not editor.can_undo
        for _ in range(steps):
            editor.redo()
        assert_same(state(editor.skel), end)


def test_undo_of_multi_step_workflows_restores_every_intermediate_state():
    editor = editor_for(ADV)
    states = [state(editor.skel)]
    editor.mark_first_node = True
    for act in (lambda: editor.start_synapse(), lambda: editor.place_node((3, 5, 13)),
                lambda: editor.place_node((3, 6, 13)), lambda: editor.end_cleft(),
                lambda: editor.place_node((3, 8, 13)), lambda: editor.reverse_synapse(editor.synapse_cleft or 4),
                lambda: editor.new_tree(), lambda: editor.place_node((1, 2, 3))):
        try:
            act()
        except EditRefused:
            continue
        states.append(state(editor.skel))
    for expected in reversed(states[:-1]):
        editor.undo()
        assert_same(state(editor.skel), expected)
    for expected in states[1:]:
        editor.redo()
        assert_same(state(editor.skel), expected)


def test_place_on_an_empty_skeleton_and_undo_to_empty():
    editor = SkeletonEditor(Skeleton())
    empty = state(editor.skel)
    nid = check_undo(editor, lambda: editor.place_node((1, 2, 3)))
    assert nid == 1 and list(editor.skel.trees) == [1] and editor.active_node == 1
    second = check_undo(editor, lambda: editor.place_node((2, 2, 3)))
    assert editor.skel.edges.tolist() == [[1, second]]
    editor.undo()
    editor.undo()
    assert_same(state(editor.skel), empty)


def test_graph_operations_match_graph_module():
    """The editor's tree surgery gives exactly what graph.py gives."""
    cases = [  # (editor call, graph call, whether both return the new tree id)
        (lambda e: e.merge_trees([1, 3]), lambda s: graph.merge_trees(s, 1, 3), False),
        (lambda e: e.merge_trees([2, 1, 3]), lambda s: (graph.merge_trees(s, 2, 1), graph.merge_trees(s, 2, 3)), False),
        (lambda e: e.split_at_edge(3, 5), lambda s: graph.split_tree_at_edge(s, 3, 5), True),
        (lambda e: e.split_at_edge(12, 10), lambda s: graph.split_tree_at_edge(s, 12, 10), True),
        (lambda e: e.extract_component(20), lambda s: graph.extract_component(s, 20), True),
        (lambda e: e.extract_component(7), lambda s: graph.extract_component(s, 7), True),
        (lambda e: e.extract_component(10), lambda s: graph.extract_component(s, 10), True),
        (lambda e: e.move_nodes_to_tree([5, 6], 2), lambda s: graph.move_nodes_to_tree(s, [5, 6], 2), False),
        (lambda e: e.delete_nodes([3, 20]), lambda s: s.delete_nodes([3, 20]), False),
        (lambda e: e.delete_trees([2]), lambda s: graph.delete_tree(s, 2), False),
    ]
    for edit, reference, same_result in cases:
        editor, skel = editor_for(ADV), sample()
        got, want = edit(editor), reference(skel)
        skel.parameters.active_node = editor.skel.parameters.active_node  # the editor passes it on
        assert_same(state(editor.skel), state(skel))
        if same_result:
            assert got == want


def test_random_edit_sequences_undo_and_redo_exactly():
    rng = np.random.default_rng(7)
    editor = editor_for(ADV)
    editor.mark_first_node = True
    skel = editor.skel
    states = [state(skel)]
    def pick(k=1):
        ids = skel.nodes["id"]
        return rng.choice(ids, size=min(k, len(ids)), replace=False).tolist()

    for _ in range(250):
        ids = skel.nodes["id"]
        op = rng.integers(16)
        try:
            if op <= 3 or not len(ids):
                editor.place_node(rng.uniform(0, 60, 3).round(), link=bool(rng.integers(2)),
                                  branch_stub=bool(rng.integers(4) == 0))
            elif op == 4:
                editor.delete_nodes(pick(int(rng.integers(1, 40))))
            elif op == 5:
                editor.move_nodes({n: tuple(rng.uniform(0, 60, 3)) for n in pick(3)}, coalesce=bool(rng.integers(2)))
            elif op == 6 and len(ids) > 1:
                a, b = pick(2)
                editor.toggle_link(a, b)
            elif op == 7:
                editor.set_comment(pick()[0], rng.choice(["", "x", "seed", "y"]))
            elif op == 8:
                editor.set_node_property(pick()[0], str(rng.choice(["p", "q", "myNumber"])), rng.choice([None, 1, "v"]))
            elif op == 9:
                editor.scale_radius(pick(4), 1.1)
            elif op == 10:
                editor.push_branchpoint(pick()[0]) if rng.integers(2) else editor.pop_branchpoint()
            elif op == 11:
                editor.new_tree()
            elif op == 12 and len(skel.trees) > 1:
                editor.merge_trees(rng.choice(list(skel.trees), 2, replace=False).tolist())
            elif op == 13 and skel.num_edges:
                a, b = skel.edges[rng.integers(skel.num_edges)].tolist()
                editor.split_at_edge(a, b)
            elif op == 14:
                editor.extract_component(pick()[0])
            elif op == 15:
                editor.move_nodes_to_tree(pick(3), int(rng.choice(list(skel.trees))))
            else:
                continue
        except EditRefused:
            assert_same(state(skel), states[-1])
            continue
        if len(editor._undo) == len(states):
            states.append(state(skel))
        elif op == 5:
            states[-1] = state(skel)  # a move merged into the last step
        else:  # no step: nothing changed
            assert_same(state(skel), states[-1])
    assert len(states) > 150
    for expected in reversed(states[:-1]):
        editor.undo()
        assert_same(state(skel), expected)
    for expected in states[1:]:
        editor.redo()
        assert_same(state(skel), expected)


def test_delete_of_many_nodes_of_a_large_skeleton():
    skel = big_skeleton(5_000, 5)
    skel.set_comment(17, "c17")
    skel.set_comment(4000, "c4000")
    skel.node_properties["p"] = {100: "a", 17: "b", 4500: "c"}
    skel.branchpoints = [(4000, None), (3, None)]
    editor = SkeletonEditor(skel, ADV)
    victims = np.random.default_rng(1).choice(skel.nodes["id"], 700, replace=False)
    check_undo(editor, lambda: editor.delete_nodes(np.append(victims, [17, 4000, 100])))


def test_graph_caches_see_undone_appends():
    """Undo of an append then another append of the same id must not leave graph.py's
    incrementally updated caches stale."""
    editor = editor_for(ADV)
    skel = editor.skel
    n = editor.place_node((9, 9, 9))
    assert graph.neighbors(skel, n).tolist() == [4] and graph.component_nodes(skel, n).tolist()[:2] == [1, 2]
    editor.undo()
    editor.set_active_node(13)
    assert editor.place_node((9, 9, 9)) == n
    assert graph.neighbors(skel, n).tolist() == [13]
    assert graph.component_nodes(skel, n).tolist() == [10, 11, 12, 13, n]
    fresh = Skeleton()
    fresh.set_nodes(dict(skel.nodes))
    fresh.set_edges(skel.edges.copy())
    for name in ("indptr", "neighbors", "direction"):
        assert np.array_equal(getattr(graph.adjacency(skel), name), getattr(graph.adjacency(fresh), name))


def test_undo_history_is_bounded():
    editor = SkeletonEditor(sample(), ADV, max_undo=3)
    for x in range(5):
        editor.place_node((x, 0, 0))
    for _ in range(3):
        editor.undo()
    assert not editor.can_undo and editor.dirty and editor.skel.num_nodes == len(NODES) + 2
    editor.undo()  # nothing left: no-op
    assert editor.redo_text == "Place node"


# -- modes -------------------------------------------------------------------------------------
def test_tracing_mode_rules():
    editor = editor_for(Mode.TRACING)
    with pytest.raises(EditRefused, match="Tracing Advanced"):
        editor.place_node((1, 1, 1), link=False)
    with pytest.raises(EditRefused, match="cycle"):
        editor.link(4, 1)
    with pytest.raises(EditRefused, match="Tracing Advanced"):
        editor.new_tree()
    for act in (editor.start_synapse, editor.end_cleft, lambda: editor.make_synapse(5, 11), editor.reverse_synapse):
        with pytest.raises(EditRefused, match="switch the work mode to Tracing Advanced"):
            act()
    with pytest.raises(EditRefused):
        editor.cycle_linking()
    editor.linking = False  # ignored in Tracing: always linked
    n = editor.place_node((3, 4, 14))
    assert editor.skel.edges[-1].tolist() == [4, n] and editor.active_node == n
    editor.link(7, 13)  # different components: fine
    assert not editor.can_redo


def test_tracing_advanced_unlinked_nodes_cycles_and_linking_states():
    editor = editor_for(ADV)
    editor.link(4, 1)  # a cycle is fine
    edges = editor.skel.num_edges
    assert editor.linking_state == "on"
    assert editor.cycle_linking() == "off once"
    a = editor.place_node((9, 9, 9))
    assert editor.skel.num_edges == edges and editor.linking_state == "on"
    b = editor.place_node((9, 9, 10))
    assert editor.skel.edges[-1].tolist() == [a, b]
    editor.cycle_linking()
    assert editor.cycle_linking() == "off"
    c = editor.place_node((9, 9, 11))
    d = editor.place_node((9, 9, 12))
    assert editor.skel.edges[-1].tolist() == [a, b] and editor.active_node == d and c == d - 1
    assert editor.cycle_linking() == "on"
    e = editor.place_node((9, 9, 13), link=False)
    assert editor.skel.edges[-1].tolist() == [a, b] and editor.active_node == e


def test_new_tree_starts_unlinked_and_keeps_the_active_node_until_then():
    editor = editor_for(ADV)
    tid = editor.new_tree(name="fresh")
    assert editor.active_tree == tid and editor.active_node == 4
    n = editor.place_node((30, 30, 30))
    assert editor.skel.tree_of(n) == tid and not graph.neighbors(editor.skel, n).size
    m = editor.place_node((31, 30, 30))
    assert editor.skel.edges[-1].tolist() == [n, m]


REVIEW_EDITS = {
    "place_node": lambda e: e.place_node((1, 1, 1)),
    "delete_nodes": lambda e: e.delete_nodes([3]),
    "move_nodes": lambda e: e.move_nodes({3: (0, 0, 0)}),
    "link": lambda e: e.link(4, 7),
    "unlink": lambda e: e.unlink(1, 2),
    "toggle_link": lambda e: e.toggle_link(1, 2),
    "set_radius": lambda e: e.set_radius([3], 2),
    "scale_radius": lambda e: e.scale_radius([3], 1.1),
    "set_comment": lambda e: e.set_comment(3, "x"),
    "apply_comment_slot": lambda e: e.apply_comment_slot(0),
    "set_node_property": lambda e: e.set_node_property(3, "p", 1),
    "set_tree_property": lambda e: e.set_tree_property(1, "p", 1),
    "push_branchpoint": lambda e: e.push_branchpoint(4),
    "pop_branchpoint": lambda e: e.pop_branchpoint(),
    "new_tree": lambda e: e.new_tree(),
    "set_tree_attrs": lambda e: e.set_tree_attrs(1, name="x"),
    "delete_trees": lambda e: e.delete_trees([1]),
    "merge_trees": lambda e: e.merge_trees([1, 2]),
    "split_at_edge": lambda e: e.split_at_edge(3, 5),
    "extract_component": lambda e: e.extract_component(20),
    "move_nodes_to_tree": lambda e: e.move_nodes_to_tree([5], 2),
    "add_group": lambda e: e.add_group("g"),
    "move_trees_to_group": lambda e: e.move_trees_to_group([1], 9),
    "move_group": lambda e: e.move_group(9, 7),
    "rename_group": lambda e: e.rename_group(9, "x"),
    "delete_group": lambda e: e.delete_group(9),
    "start_synapse": lambda e: e.start_synapse(),
    "end_cleft": lambda e: e.end_cleft(),
    "make_synapse": lambda e: e.make_synapse(5, 11),
    "reverse_synapse": lambda e: e.reverse_synapse(),
    "undo": lambda e: e.undo(),
    "redo": lambda e: e.redo(),
    "batch": lambda e: e.batch("x").__enter__(),
}


def test_review_mode_refuses_every_edit_but_allows_navigation():
    editor = editor_for(ADV)
    editor.set_comment(4, "before review")
    editor.comment_slots[0] = "slot"
    editor.set_mode(Mode.REVIEW)
    before = state(editor.skel)
    for name, edit in REVIEW_EDITS.items():
        with pytest.raises(EditRefused, match="^Review mode: the skeleton is read-only$"):
            edit(editor)
        assert_same(state(editor.skel), before), name
    assert REVIEW_MESSAGE == "Review mode: the skeleton is read-only"
    editor.set_active_node(2)
    assert editor.traverse() == 3
    editor.select_nodes([1, 2])
    assert editor.selected_nodes == {1, 2}
    editor.set_mode("Tracing Advanced")
    editor.undo()
    assert 4 not in editor.skel.comments


# -- radius locking and movement area --------------------------------------------------------
def test_radius_locking_refuses_far_nodes_around_a_seed():
    editor = editor_for(ADV)
    editor.radius_locking = True
    editor.set_comment(4, "the SEED node")  # case-insensitive, like KNOSSOS; 4 is active: locks
    assert editor.locked_node == 4
    far = (3 + 101, 4, 13)
    with pytest.raises(EditRefused, match="Radius locking: 101 voxels from node 4"):
        editor.place_node(far)
    near = editor.place_node((3 + 60, 4, 13))
    # the lock stays on the seed (KNOSSOS): 60 voxels on is within 100 of the new node but not of the seed
    with pytest.raises(EditRefused, match="Radius locking"):
        editor.place_node((3 + 120, 4, 13))
    assert editor.active_node == near
    editor.place_node((3, 4 + 99, 13))
    editor.radius_locking = False
    editor.place_node(far)
    editor.radius_locking = True  # active node has no seed comment: no new lock
    editor.place_node((1000, 1000, 1000))
    editor.set_active_node(4)
    assert editor.locked_node == 4
    editor.unlock_position()
    editor.set_active_node(1)
    editor.place_node((1000, 0, 0))


def test_radius_locking_settings_come_from_the_nml():
    skel = sample()
    skel.parameters.knossos["RadiusLocking"] = {"enableCommentLocking": "1", "lockingRadius": "10",
                                                "lockToNodesWithComment": "start"}
    skel.comments[4] = "start here"
    editor = SkeletonEditor(skel, ADV)
    assert editor.radius_locking and editor.locking_radius == 10 and editor.locking_word == "start"
    with pytest.raises(EditRefused, match="more than 10 allowed"):
        editor.place_node((3, 4, 24))
    editor.place_node((3, 4, 22))


def test_movement_area_refuses_placement_and_moves_outside():
    editor = editor_for(ADV)
    editor.skel.parameters.movement_area = BoundingBox((0, 0, 0), (20, 20, 20))
    editor.place_node((19.5, 0, 19))
    for outside in ((20, 5, 5), (-0.5, 5, 5), (5, 5, 25)):
        with pytest.raises(EditRefused, match="Outside the movement area"):
            editor.place_node(outside)
    before = state(editor.skel)
    with pytest.raises(EditRefused, match=r"\(20, 5, 5\)"):
        editor.move_nodes({3: (1, 1, 1), 4: (20, 5, 5)})
    assert_same(state(editor.skel), before)
    editor.move_nodes({3: (1, 1, 1)})


# -- synapses ------------------------------------------------------------------------------------
def test_synapse_workflow_stores_knossos_cleft_trees():
    editor = editor_for(ADV)
    assert editor.synapse_state == "idle"
    cleft = editor.start_synapse()
    assert editor.synapse_state == "cleft" and editor.active_tree == cleft and editor.active_node == 4
    c1 = editor.place_node((4, 5, 13))
    c2 = editor.place_node((5, 5, 13))
    assert editor.skel.tree_of(c1) == cleft and editor.skel.edges[-1].tolist() == [c1, c2]
    assert graph.neighbors(editor.skel, c1).tolist() == [c2]  # the cleft starts unlinked
    post_tree = editor.end_cleft()
    assert editor.synapse_state == "awaiting_post" and editor.active_tree == post_tree
    post = editor.place_node((6, 5, 13))
    assert editor.synapse_state == "idle" and editor.skel.tree_of(post) == post_tree
    tree = editor.skel.trees[cleft]
    assert tree.properties == {"synapticCleft": "true", "preSynapse": "4", "postSynapse": str(post)}
    assert not tree.visible and tree.is_synapse
    assert editor.skel.synapses() == [{"cleft_tree": cleft, "pre_node": 4, "post_node": post}]
    editor.undo()
    assert editor.synapse_state == "awaiting_post" and "postSynapse" not in editor.skel.trees[cleft].properties
    editor.undo()
    assert editor.synapse_state == "cleft" and post_tree not in editor.skel.trees
    editor.new_tree()  # C while tracing the cleft ends it
    assert editor.synapse_state == "awaiting_post"


def test_a_linked_node_interrupts_the_synapse_workflow():
    editor = editor_for(ADV)
    cleft = editor.start_synapse()
    editor.place_node((4, 5, 13))
    editor.end_cleft()
    editor.set_active_node(2)
    before_interrupt = state(editor.skel)
    n = editor.place_node((3, 5, 1))
    assert editor.synapse_state == "idle" and cleft not in editor.skel.trees
    assert editor.skel.edges[-1].tolist() == [2, n]
    editor.undo()
    assert_same(state(editor.skel), before_interrupt)
    assert editor.synapse_state == "awaiting_post"


def test_make_and_reverse_synapse():
    editor = editor_for(ADV)
    with pytest.raises(EditRefused, match="two different trees"):
        editor.make_synapse(5, 6)
    cleft = editor.make_synapse(5, 11)  # 5 at (6, 8, 12), 11 at (1, 0, 0)
    tree = editor.skel.trees[cleft]
    assert tree.properties == {"synapticCleft": "true", "preSynapse": "5", "postSynapse": "11"} and not tree.visible
    (node,) = editor.skel.node_ids(cleft)
    assert editor.skel.position(node).tolist() == [3, 4, 6]
    assert editor.active_node == 4
    with pytest.raises(EditRefused, match="cleft"):
        editor.make_synapse(node, 13)
    assert editor.make_synapse(20, 11) == cleft  # 11 already synaptic: that synapse changes
    assert editor.skel.trees[cleft].properties["preSynapse"] == "20"
    editor.set_active_node(11)
    editor.reverse_synapse()
    assert editor.skel.synapses() == [{"cleft_tree": cleft, "pre_node": 11, "post_node": 20}]
    editor.set_active_node(1)
    with pytest.raises(EditRefused, match="No synapse to reverse"):
        editor.reverse_synapse()


@pytest.mark.parametrize("dialect", ["knossos", "webknossos"])
def test_synapses_survive_nml_and_kzip(dialect):
    editor = editor_for(ADV)
    _synapse_post(editor)
    editor.make_synapse(5, 11)
    expected = editor.skel.synapses()
    assert len(expected) == 2 and all(s["pre_node"] and s["post_node"] for s in expected)
    back = read_nml(write_nml(editor.skel, dialect=dialect))
    assert back.synapses() == expected
    for s in expected:
        assert back.trees[s["cleft_tree"]].properties == editor.skel.trees[s["cleft_tree"]].properties
        assert not back.trees[s["cleft_tree"]].visible
    zipped = read_kzip(write_kzip(Annotation(skeleton=editor.skel)))
    assert zipped.skeleton.synapses() == expected


# -- navigation --------------------------------------------------------------------------------
def test_traverse_and_branch_points():
    editor = editor_for(ADV)
    editor.set_active_node(1)
    seen = [1]
    while (n := editor.traverse()) is not None:
        seen.append(n)
    assert seen == [1, 2, 3, 4, 5, 6, 7] and editor.active_node == 7
    assert editor.traverse(-1) == 6
    editor.set_active_node(13)
    assert editor.traverse() is None and editor.traverse(-1) == 12
    assert editor.pop_branchpoint() == 6 and editor.active_node == 6 and editor.active_tree == 1
    assert editor.push_branchpoint() and not editor.push_branchpoint(6)
    assert editor.skel.branchpoints[-1] == (6, None)


def test_deleting_the_active_node_passes_it_on_as_knossos():
    editor = editor_for(ADV)
    editor.set_active_node(3)
    editor.delete_nodes([3])
    assert editor.active_node == 4  # first edge target of 3
    editor.delete_nodes([4])
    assert editor.active_node == 6  # no links left: the nearest node of its tree
    editor.set_active_node(21)
    editor.delete_nodes([21])
    assert editor.active_node == 20  # edge source
    editor.delete_trees([1])
    assert (editor.active_node, editor.active_tree) == (20, 3)
    editor.delete_trees([3])
    assert (editor.active_node, editor.active_tree) == (10, 2)  # first remaining tree, its first node


def test_set_active_tree_picks_its_node_nearest_to_the_active_node():
    editor = editor_for(ADV)
    seen = []
    editor.subscribe(seen.append)
    editor.set_active_tree(2)
    assert (editor.active_tree, editor.active_node) == (2, 13)
    assert seen[-1].kind == "active" and seen[-1].node_ids.tolist() == [13] and seen[-1].tree_ids == (2,)
    assert not editor.can_undo


def test_selection_follows_deletions():
    editor = editor_for(ADV)
    seen = []
    editor.subscribe(seen.append)
    editor.select_nodes([1, 2])
    editor.select_nodes([3], mode="add")
    editor.select_nodes([2], mode="toggle")
    assert editor.selected_nodes == {1, 3}
    editor.delete_nodes([3])
    assert editor.selected_nodes == {1}
    assert seen[-1].kind == "selection" and seen[-1].node_ids.tolist() == [1]


# -- change notifications ---------------------------------------------------------------------
def test_place_node_notifies_an_append_and_undo_its_removal():
    editor = editor_for(Mode.TRACING)
    seen: list[Change] = []
    editor.subscribe(seen.append)
    n = editor.place_node((3, 4, 14))
    assert [c.kind for c in seen] == ["nodes_added", "active"]
    assert seen[0].node_ids.tolist() == [n] and seen[0].tree_ids == (1,)
    assert editor.skel.nodes["id"][-1] == n and editor.skel.edges[-1].tolist() == [4, n]
    seen.clear()
    editor.undo()
    assert [c.kind for c in seen] == ["nodes_removed", "active"] and seen[0].node_ids.tolist() == [n]
    seen.clear()
    editor.redo()
    assert [c.kind for c in seen] == ["nodes_added", "active"]
    editor.unsubscribe(seen.append)
    seen.clear()
    editor.place_node((3, 4, 15))
    assert seen == []


class Mirror:
    """An incremental consumer like the napari adapter: appends, truncates and moves in place,
    rebuilds on anything else; it must always equal the model."""

    def __init__(self, skel):
        self.skel = skel
        self.rebuild()

    def rebuild(self):
        self.ids = self.skel.nodes["id"].copy()
        self.pos = self.skel.positions()
        self.edges = np.asarray(self.skel.edges).copy().reshape(-1, 2)

    def __call__(self, change):
        skel = self.skel
        if change.kind == "nodes_added":
            n, m = len(self.ids), len(self.edges)
            assert set(change.node_ids.tolist()) <= set(skel.nodes["id"][n:].tolist())
            self.ids = np.concatenate([self.ids, skel.nodes["id"][n:]])
            self.pos = np.concatenate([self.pos, skel.positions()[n:]])
            self.edges = np.concatenate([self.edges, skel.edges[m:]])
        elif change.kind == "nodes_removed":
            n = skel.num_nodes
            assert set(change.node_ids.tolist()) == set(self.ids[n:].tolist())
            self.ids, self.pos, self.edges = self.ids[:n], self.pos[:n], self.edges[: skel.num_edges]
        elif change.kind == "nodes_moved":
            rows = np.searchsorted(self.ids, change.node_ids)
            self.pos[rows] = skel.positions()[skel.rows(change.node_ids)]
        elif change.kind in ("selection", "active", "mode", "nodes_changed", "groups_changed"):
            pass
        else:
            self.rebuild()

    def check(self):
        assert np.array_equal(self.ids, self.skel.nodes["id"])
        assert np.array_equal(self.pos, self.skel.positions())
        assert np.array_equal(self.edges, np.asarray(self.skel.edges).reshape(-1, 2))


def test_notifications_keep_an_incremental_consumer_exact():
    rng = np.random.default_rng(3)
    editor = editor_for(ADV)
    editor.mark_first_node = True
    mirror = Mirror(editor.skel)
    editor.subscribe(mirror)
    for i in range(300):
        ids = editor.skel.nodes["id"]
        choice = rng.integers(9)
        try:
            if choice <= 3:
                editor.place_node(rng.uniform(0, 50, 3), link=bool(rng.integers(3)), branch_stub=choice == 3)
            elif choice == 4:
                editor.undo()
            elif choice == 5:
                editor.redo()
            elif choice == 6:
                editor.move_nodes({int(rng.choice(ids)): tuple(rng.uniform(0, 50, 3))})
            elif choice == 7:
                editor.delete_nodes([int(rng.choice(ids))])
            elif choice == 8 and i % 3 == 0:
                with editor.batch("batch"):
                    a = editor.place_node(rng.uniform(0, 50, 3))
                    editor.move_nodes({a: (1, 2, 3)})
                    editor.place_node(rng.uniform(0, 50, 3))
            elif choice == 8:
                editor.new_tree()
        except EditRefused:
            pass
        mirror.check()


# -- undo bookkeeping ---------------------------------------------------------------------------
def test_dirty_flag_follows_the_saved_state():
    editor = editor_for(ADV)
    assert not editor.dirty
    editor.place_node((1, 1, 1))
    assert editor.dirty
    editor.mark_saved()
    assert not editor.dirty
    editor.place_node((2, 1, 1))
    assert editor.dirty
    editor.undo()
    assert not editor.dirty
    editor.undo()
    assert editor.dirty
    editor.redo()
    assert not editor.dirty
    editor.set_comment(1, "other branch")  # discards the redo: the saved state is still this one
    assert editor.dirty and not editor.can_redo
    editor.undo()
    assert not editor.dirty
    n = editor.skel.nodes["id"][-1]
    editor.mark_saved()
    editor.move_nodes({int(n): (5, 5, 5)})
    editor.mark_saved()
    editor.move_nodes({int(n): (6, 5, 5)})  # merges into the saved step: the state differs
    assert editor.dirty
    editor.set_active_node(1)  # navigation is no edit
    editor.undo()
    assert editor.dirty


def test_moves_of_the_same_nodes_merge_into_one_step():
    editor = editor_for(ADV)
    before = state(editor.skel)
    for x in range(5):
        editor.move_nodes({3: (x, 0, 0)})
    assert len(editor._undo) == 1 and editor.undo_text == "Move 1 node"
    assert editor.skel.position(3).tolist() == [4, 0, 0]
    editor.seal()
    editor.move_nodes({3: (9, 0, 0)})
    editor.move_nodes({3: (9, 9, 0), 4: (0, 0, 0)})
    assert len(editor._undo) == 3
    editor.undo()
    editor.undo()
    assert editor.skel.position(3).tolist() == [4, 0, 0]
    editor.undo()
    assert_same(state(editor.skel), before)


def test_batch_is_one_step_and_atomic():
    editor = editor_for(ADV)
    before = state(editor.skel)
    _batch(editor)
    assert len(editor._undo) == 1 and editor.undo_text == "several"
    editor.undo()
    assert_same(state(editor.skel), before)
    with pytest.raises(KeyError), editor.batch("fails"):
        editor.place_node((5, 5, 5))
        editor.set_comment(4, "x")
        editor.delete_nodes([999])
    assert_same(state(editor.skel), before)
    assert editor.can_redo and editor.redo_text == "several"


def test_a_refused_edit_inside_a_batch_leaves_the_others():
    editor = editor_for(ADV)
    before = state(editor.skel)
    with editor.batch("partly refused"):
        editor.set_comment(4, "kept")
        with pytest.raises(EditRefused, match="synapse"):
            editor.make_synapse(5, 6)  # refused inside its own (nested) step: nothing of it stays
        with pytest.raises(KeyError), editor.batch("inner"):
            editor.set_comment(3, "rolled back")
            editor.move_nodes({999: (0, 0, 0)})
        editor.place_node((8, 8, 8))
    assert editor.skel.comments[4] == "kept" and 3 not in editor.skel.comments
    assert len(editor._undo) == 1 and editor.undo_text == "partly refused"
    editor.undo()
    assert_same(state(editor.skel), before)


def test_nested_groups():
    editor = editor_for(ADV)
    editor.move_trees_to_group([2], 8)
    check_undo(editor, lambda: editor.delete_group(8))
    assert [g.id for g in editor.skel.groups[0].children] == [] and editor.skel.trees[2].group_id == 7
    check_undo(editor, lambda: editor.move_group(9, None))
    nested = check_undo(editor, lambda: editor.add_group("deep", 9))
    editor.move_group(nested, None)
    assert [g.id for g in editor.skel.groups] == [7, 9, nested]
    with pytest.raises(KeyError, match="no tree group with id 42"):
        editor.move_trees_to_group([1], 42)


def test_deleting_the_cleft_in_progress_ends_the_synapse_workflow():
    editor = editor_for(ADV)
    cleft = editor.start_synapse()
    editor.place_node((4, 5, 13))
    editor.delete_trees([cleft])
    assert editor.synapse_state == "idle" and editor.active_tree == 1
    editor.undo()
    assert editor.synapse_state == "cleft" and editor.active_tree == cleft
    editor.set_mode(Mode.TRACING)  # leaving Tracing Advanced abandons it (the trees stay)
    assert editor.synapse_state == "idle" and cleft in editor.skel.trees


def test_webknossos_radii_are_stored_in_nm():
    skel = sample()
    skel.dialect = "webknossos"
    editor = SkeletonEditor(skel, ADV, clock=lambda: 12.345)
    n = editor.place_node((1, 1, 1))
    assert skel.nodes["radius"][-1] == pytest.approx(15.0) and skel.nodes["time"][-1] == 12345
    editor.set_radius([n], 2)
    assert skel.nodes["radius"][-1] == pytest.approx(20.0)
    editor.push_branchpoint(n)
    assert skel.branchpoints[-1] == (n, 12345)


def test_refusals_name_what_is_wrong():
    editor = editor_for(ADV)
    with pytest.raises(EditRefused, match="itself"):
        editor.link(3, 3)
    with pytest.raises(EditRefused, match="not linked"):
        editor.split_at_edge(1, 7)
    with pytest.raises(EditRefused, match="Ctrl\\+3 has no text"):
        editor.apply_comment_slot(2)
    with pytest.raises(EditRefused, match="node attribute"):
        editor.set_node_property(3, "radius", 3)
    with pytest.raises(EditRefused, match="into itself"):
        editor.move_group(7, 8)
    with pytest.raises(EditRefused, match="at least two"):
        editor.merge_trees([1])
    with pytest.raises(KeyError, match="no node with id 999"):
        editor.delete_nodes([999])
    assert not editor.can_undo


# -- speed -------------------------------------------------------------------------------------
def big_skeleton(n: int, trees: int) -> Skeleton:
    """``trees`` chains of ``n // trees`` nodes each, built column-wise."""
    skel = Skeleton()
    for t in range(1, trees + 1):
        skel.add_tree(id=t)
    ids = np.arange(1, n + 1)
    per = n // trees
    tree = (ids - 1) // per + 1
    rng = np.random.default_rng(0)
    skel.set_nodes({"id": ids, "tree": tree, "x": rng.uniform(0, 1000, n), "y": rng.uniform(0, 1000, n),
                    "z": rng.uniform(0, 1000, n), "radius": np.full(n, 1.5)})
    chain = np.stack([ids[:-1], ids[1:]], axis=1)
    skel.set_edges(chain[tree[:-1] == tree[1:]])
    skel.parameters.active_node = int(ids[-1])
    return skel


def _median_ms(times) -> float:
    return statistics.median(times) * 1000


def test_speed_at_100k_nodes(capsys):
    skel = big_skeleton(100_000, 10)
    editor = SkeletonEditor(skel, Mode.TRACING)
    editor.subscribe(lambda change: None)
    editor.place_node((1, 2, 3))  # the first append moves the columns into spare-capacity buffers
    place, undo, delete = [], [], []
    for i in range(200):
        t0 = time.perf_counter()
        editor.place_node((i, 2, 3))
        place.append(time.perf_counter() - t0)
    for _ in range(100):
        t0 = time.perf_counter()
        editor.undo()
        undo.append(time.perf_counter() - t0)
    rng = np.random.default_rng(5)
    for nid in rng.choice(skel.nodes["id"][:-200], 20, replace=False).tolist():
        t0 = time.perf_counter()
        editor.delete_nodes([nid])
        editor.undo()
        delete.append(time.perf_counter() - t0)
    medians = _median_ms(place), _median_ms(undo), _median_ms(delete)
    with capsys.disabled():
        print("\n100k nodes: place_node {:.3f} ms, undo of place {:.3f} ms, delete + undo {:.3f} ms (medians)"
              .format(*medians))
    assert medians[0] < 50 and medians[1] < 50 and medians[2] < 100
    assert skel.num_nodes == 100_000 + 1 + 100

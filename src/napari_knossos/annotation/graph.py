"""Graph operations on a :class:`~.skeleton.Skeleton`: adjacency, components, traversal, tree surgery.

Vectorised numpy over the column-wise model, sized for a million nodes; no scipy.

Conventions:

* Node ids in, node ids out. "Rows" index the columns of ``skel.nodes`` (sorted by id, so
  ascending rows are ascending ids).
* The graph is undirected and simple: an edge stored twice (either direction) counts once;
  self-loops and edges naming a missing node are ignored (KNOSSOS skips such edges on load).
  The stored direction (source → target, KNOSSOS's tracing direction) is kept for
  :func:`dfs_order`'s forward/backward traversal.
* ``tree_id=None`` means the whole skeleton with every edge, including edges between trees
  (KNOSSOS Tracing Advanced allows them). A tree id restricts to that tree's nodes and the
  edges with both ends in it.
* Unknown node, tree or edge ids raise ``KeyError``.
* Editing functions bump ``skel.version``. Node ids never change, so comments, branch points,
  node properties and the active node follow their nodes.
* A tree's "first node" is its node with the smallest id.
* Whole-graph structures (:func:`adjacency`, component labels) are cached per skeleton until
  its node ids or edges change, and updated in place of a rebuild when nodes and edges were
  only appended (tracing). Per-tree operations work from the tree's own nodes and edges.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import numpy as np

from .skeleton import Skeleton, Tree

__all__ = [
    "Adjacency",
    "add_linked_node",
    "adjacency",
    "branch_nodes",
    "component_nodes",
    "connected_components",
    "delete_tree",
    "dfs_order",
    "extract_component",
    "find_cycle_edges",
    "has_cycle",
    "merge_trees",
    "move_nodes_to_tree",
    "neighbors",
    "next_branchpoint",
    "node_degree",
    "path_length_nm",
    "path_lengths_nm",
    "split_connected_components",
    "split_tree_at_edge",
]

# tree properties naming a tree's synapse role (KNOSSOS): never inherited by a merge
SYNAPSE_PROPERTIES = ("synapticCleft", "preSynapse", "postSynapse")
_FOLLOW = {"any": 3, "forward": 1, "backward": 2}
_PYTHON_BFS_LIMIT = 100_000  # larger components are found with the vectorised labels


class Adjacency:
    """Compressed sparse rows of the simple undirected graph, over node rows.

    The neighbours of row ``r`` are ``neighbors[indptr[r]:indptr[r + 1]]`` (rows, ascending).
    ``direction`` says per entry how the edge is stored: 1 as ``(r, neighbour)`` (forward),
    2 as ``(neighbour, r)`` (backward), 3 both. ``edges`` are the distinct edges as row
    pairs ``u < v``, sorted. ``ids`` is the node id column it was built from, ``version``
    the skeleton's version then.
    """

    __slots__ = ("_edges", "direction", "ids", "indptr", "neighbors", "version")

    def __init__(self, ids, indptr, neighbors, direction, version, edges=None):
        self.ids, self.indptr, self.neighbors = ids, indptr, neighbors
        self.direction, self.version, self._edges = direction, version, edges

    @property
    def num_nodes(self) -> int:
        return len(self.ids)

    @property
    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def edges(self) -> np.ndarray:
        if self._edges is None:  # derived from the rows on demand
            src = np.repeat(np.arange(self.num_nodes), self.degree)
            lower = src < self.neighbors
            edges = np.empty((2, int(np.count_nonzero(lower))), np.int64)
            np.compress(lower, src, out=edges[0])
            np.compress(lower, self.neighbors, out=edges[1])
            self._edges = edges.T  # (E, 2) with contiguous columns
        return self._edges

    def neighbor_rows(self, row: int) -> np.ndarray:
        return self.neighbors[self.indptr[row] : self.indptr[row + 1]]


# -- caches ---------------------------------------------------------------------------------
# Per skeleton, keyed on the identity of the id column and the edges array: model methods
# replace those arrays whenever they change them, so edits that only move nodes, set
# attributes or comments keep the cache. Nodes and edges appended in place (the model's
# amortised add_node / link) update a cached value instead of rebuilding it.
_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MAX_INCREMENTAL_EDGES = 256  # more new edges than this: rebuild


def _cached(skel: Skeleton, name: str, build, extend=None):
    """``build()``, remembered until the id column or edges change; when both only grew in
    place, ``extend(old_value, old_num_nodes, old_num_edges)`` (None: rebuild) updates it."""
    cache = _CACHES.setdefault(skel, {})
    ids, edges = skel.nodes["id"], skel.edges
    hit = cache.get(name)
    value = None
    if hit is not None:
        old_ids, old_edges, old_value = hit
        if old_ids is ids and old_edges is edges:
            return old_value
        if extend is not None and _grew_in_place(old_ids, ids) and _grew_in_place(old_edges, edges):
            value = extend(old_value, len(old_ids), len(old_edges))
    if value is None:
        value = build()
    cache[name] = (ids, edges, value)
    return value


def _grew_in_place(old: np.ndarray, new: np.ndarray) -> bool:
    """``new`` is ``old`` or ``old`` plus rows appended into the same buffer (same start)."""
    if old is new:
        return True
    return (old.base is not None and new.base is old.base and len(new) >= len(old)
            and new.__array_interface__["data"][0] == old.__array_interface__["data"][0])


def _new_edge_rows(skel: Skeleton, first_edge: int) -> np.ndarray | None:
    """Valid row pairs of ``skel.edges[first_edge:]``; None when there are too many."""
    tail = np.asarray(skel.edges[first_edge:], np.int64).reshape(-1, 2)
    if len(tail) > _MAX_INCREMENTAL_EDGES:
        return None
    ids = skel.nodes["id"]
    if not len(ids):
        return np.empty((0, 2), np.int64)
    rows = np.minimum(np.searchsorted(ids, tail), len(ids) - 1)
    ok = (ids[rows] == tail).all(axis=1) & (rows[:, 0] != rows[:, 1])
    return rows[ok]


def _id_lookup(ids: np.ndarray):
    """A function mapping node ids (any shape) to rows, -1 for unknown ids.

    O(1) per id through an offset (ids 1..N without gaps) or a lookup table (ids dense
    enough); binary search otherwise.
    """
    n = len(ids)
    if n == 0:
        return lambda q: np.full(np.shape(q), -1, np.int64)
    lo, span = int(ids[0]), int(ids[-1]) - int(ids[0]) + 1
    if span == n:
        def lookup(q):
            r = np.asarray(q, np.int64) - lo
            return np.where((r >= 0) & (r < n), r, -1)
    elif span <= 4 * n + 4096:
        table = np.full(span + 2, -1, np.int64)  # one -1 sentinel either side
        table[ids - (lo - 1)] = np.arange(n)

        def lookup(q):
            return table[np.clip(np.asarray(q, np.int64) - (lo - 1), 0, span + 1)]
    else:
        def lookup(q):
            q = np.asarray(q, np.int64)
            r = np.minimum(np.searchsorted(ids, q), n - 1)
            return np.where(ids[r] == q, r, -1)
    return lookup


def _valid_edge_rows(skel: Skeleton) -> np.ndarray:
    """(E', 2) row pairs of the stored edges, dangling edges and self-loops dropped."""

    def build():
        edges = np.asarray(skel.edges, np.int64).reshape(-1, 2)
        rows = _id_lookup(skel.nodes["id"])(edges)
        ok = (rows[:, 0] >= 0) & (rows[:, 1] >= 0) & (rows[:, 0] != rows[:, 1])
        return rows if ok.all() else rows[ok]

    return _cached(skel, "edge_rows", build)


def adjacency(skel: Skeleton) -> Adjacency:
    """The skeleton's :class:`Adjacency`, built once per change of its nodes or edges
    (updated, not rebuilt, after nodes and edges were only added)."""
    return _cached(skel, "adjacency", lambda: _build_adjacency(skel),
                   lambda old, n0, m0: _extend_adjacency(skel, old, n0, m0))


def _extend_adjacency(skel: Skeleton, adj: Adjacency, n0: int, m0: int) -> Adjacency | None:
    """``adj`` plus the nodes after row ``n0`` and the edges after ``m0`` (all appended)."""
    new_rows = _new_edge_rows(skel, m0)
    if new_rows is None:
        return None
    ids = skel.nodes["id"]
    n = len(ids)
    indptr = adj.indptr
    if n > n0:
        indptr = np.concatenate([indptr, np.full(n - n0, indptr[-1])])
    neighbors, direction = adj.neighbors, adj.direction
    flags_here: dict[int, int] = {}  # entry index -> direction bits to add
    added: dict[tuple[int, int], int] = {}  # (row, neighbour) -> direction bits
    for u, v in new_rows.tolist():
        for row, other, bit in ((u, v, 1), (v, u, 2)):
            lo, hi = int(indptr[row]), int(indptr[row + 1])
            j = lo + int(np.searchsorted(neighbors[lo:hi], other))
            if j < hi and neighbors[j] == other:
                flags_here[j] = flags_here.get(j, 0) | bit
            else:
                added[(row, other)] = added.get((row, other), 0) | bit
    if flags_here:
        direction = direction.copy()
        for j, bit in flags_here.items():
            direction[j] |= bit
    if not added:
        return Adjacency(ids, indptr, neighbors, direction, skel.version, adj._edges)  # same edges
    items = sorted(added.items())
    rows = [row for (row, _), _ in items]
    # insertion points in the old arrays (rows added since have no entries yet)
    at = [int(indptr[r]) + (int(np.searchsorted(adj.neighbor_rows(r), o)) if r < n0 else 0) for (r, o), _ in items]
    neighbors = _insert_sorted(neighbors, at, [o for (_, o), _ in items])
    direction = _insert_sorted(direction, at, [b for _, b in items])
    indptr = indptr.copy()
    for row in sorted(set(rows)):
        indptr[row + 1 :] += rows.count(row)
    return Adjacency(ids, indptr, neighbors, direction, skel.version)


def _insert_sorted(a: np.ndarray, at: list[int], values: list) -> np.ndarray:
    """``np.insert`` for a few ascending positions, as block copies."""
    out = np.empty(len(a) + len(at), a.dtype)
    start = 0
    for shift, (pos, value) in enumerate(zip(at, values)):
        out[start + shift : pos + shift] = a[start:pos]
        out[pos + shift] = value
        start = pos
    out[start + len(at) :] = a[start:]
    return out


def _build_adjacency(skel: Skeleton) -> Adjacency:
    ids = skel.nodes["id"]
    n = len(ids)
    rows = _valid_edge_rows(skel)
    u, v = rows[:, 0], rows[:, 1]
    bits = max(int(n - 1).bit_length(), 1)
    mask = (1 << bits) - 1
    # one key per half-edge: row, neighbour, and a low bit set when stored the other way round
    forward, backward = ((u << bits) | v) << 1, (((v << bits) | u) << 1) | 1
    both_sorted = _is_sorted(forward) and _is_sorted(backward)
    key = np.concatenate([forward, backward])
    key.sort(kind="stable" if both_sorted else "quicksort")  # stable = merge of two runs
    direction = (key & 1).astype(np.uint8) + 1
    pair = key >> 1
    if len(pair) > 1:
        first = np.empty(len(pair), bool)
        first[0] = True
        np.not_equal(pair[1:], pair[:-1], out=first[1:])
        if not first.all():
            starts = np.flatnonzero(first)
            direction = np.bitwise_or.reduceat(direction, starts)
            pair = pair[starts]
    src = pair >> bits
    dst = pair & mask
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    lower = pair[src < dst]
    edges = np.empty((2, len(lower)), np.int64)  # used as (E, 2) with contiguous columns
    np.right_shift(lower, bits, out=edges[0])
    np.bitwise_and(lower, mask, out=edges[1])
    return Adjacency(ids, indptr, dst, direction, skel.version, edges.T)


def _is_sorted(a: np.ndarray) -> bool:
    return len(a) < 2 or bool((a[1:] >= a[:-1]).all())


# -- components -----------------------------------------------------------------------------
def _component_roots(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per vertex the smallest vertex of its component (edges u–v over vertices 0..n-1).

    Vectorised union-find (FastSV: min-hooking of parents and grandparents, then pointer
    jumping to stars) in O(log n) rounds of O(n + e) work; skeletons need one or two.
    """
    f = np.arange(n, dtype=np.int64)
    if not len(u):
        return f
    while True:
        fu, fv = f[u], f[v]
        gu, gv = f[fu], f[fv]
        np.minimum.at(f, fu, gv)  # hook the parent of one end under the other's grandparent
        np.minimum.at(f, fv, gu)
        np.minimum.at(f, u, gv)  # and the ends themselves (aggressive hooking)
        np.minimum.at(f, v, gu)
        while True:  # pointer jumping until every tree is a star
            ff = f[f]
            if np.array_equal(ff, f):
                break
            f = ff
        # parents only ever decrease, so stars agreeing across every edge are rooted at the
        # smallest vertex of their component
        if np.array_equal(f[u], f[v]):
            return f


def _roots(skel: Skeleton) -> np.ndarray:
    """Per row, the smallest row of its connected component (all edges), cached."""

    def build():
        e = _valid_edge_rows(skel)
        return _component_roots(skel.num_nodes, e[:, 0], e[:, 1])

    def extend(roots, n0, m0):
        new_rows = _new_edge_rows(skel, m0)
        if new_rows is None:
            return None
        roots = np.concatenate([roots, np.arange(n0, skel.num_nodes)])
        joins = 0
        for u, v in new_rows.tolist():
            a, b = roots[u], roots[v]
            if a != b:  # two components joined: relabel the one with the larger root, O(N)
                joins += 1
                if joins > 16:
                    return None
                roots[roots == max(a, b)] = min(a, b)
        return roots

    return _cached(skel, "roots", build, extend)


def _labels_from_roots(roots: np.ndarray) -> np.ndarray:
    """Consecutive component labels 0..k-1 ordered by each component's smallest vertex."""
    is_root = roots == np.arange(len(roots))
    label_of = np.cumsum(is_root) - 1
    return label_of[roots]


def _tree(skel: Skeleton, tree_id: int) -> Tree:
    try:
        return skel.trees[tree_id]
    except KeyError:
        raise KeyError(f"no tree with id {tree_id}") from None


def _row(skel: Skeleton, node_id: int) -> int:
    return int(skel.rows(node_id)[0])


def _tree_subgraph(skel: Skeleton, tree_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the tree's nodes and its distinct internal edges as local indices (u < v).

    Works from the tree's node ids (membership test over the edge ids), so it needs no
    whole-graph structure and costs the same with or without a warm cache.
    """
    _tree(skel, tree_id)
    rows = np.flatnonzero(skel.nodes["tree"] == tree_id)
    members = skel.nodes["id"][rows]
    edges = np.ascontiguousarray(skel.edges, np.int64).reshape(-1, 2)
    hit = np.isin(edges.reshape(-1), members).reshape(-1, 2)
    e = np.searchsorted(members, edges[hit[:, 0] & hit[:, 1]])
    e = e[e[:, 0] != e[:, 1]]
    k = max(len(rows), 1)
    key = np.unique(np.minimum(e[:, 0], e[:, 1]) * k + np.maximum(e[:, 0], e[:, 1]))
    return rows, key // k, key % k


def _restricted(skel: Skeleton, tree_id: int | None):
    """(rows, u, v): the node rows and distinct edges (local indices u < v) to work on."""
    if tree_id is None:
        adj = adjacency(skel)
        return np.arange(adj.num_nodes), adj.edges[:, 0], adj.edges[:, 1]
    return _tree_subgraph(skel, tree_id)


def connected_components(skel: Skeleton, tree_id: int | None = None) -> np.ndarray:
    """Component label per node of ``skel.node_ids(tree_id)``: 0..k-1, numbered by each
    component's smallest node id (so the first node's component is 0)."""
    if tree_id is None:
        return _labels_from_roots(_roots(skel))
    rows, u, v = _tree_subgraph(skel, tree_id)
    return _labels_from_roots(_component_roots(len(rows), u, v))


def _component_rows(skel: Skeleton, start: int) -> np.ndarray:
    """Sorted rows connected to ``start``: a search over the adjacency, or the whole-graph
    labels for huge components."""
    rows = _search_component(adjacency(skel), start)
    if rows is None:
        roots = _roots(skel)
        rows = np.flatnonzero(roots == roots[start])
    return rows


def _search_component(adj: Adjacency, start: int) -> np.ndarray | None:
    """Sorted rows reachable from ``start`` by a Python search; None past the size limit."""
    indptr, nbrs = adj.indptr, adj.neighbors
    seen = {start}
    stack = [start]
    while stack:
        r = stack.pop()
        for x in nbrs[indptr[r] : indptr[r + 1]].tolist():
            if x not in seen:
                seen.add(x)
                stack.append(x)
        if len(seen) > _PYTHON_BFS_LIMIT:
            return None
    return np.sort(np.fromiter(seen, np.int64, len(seen)))


def component_nodes(skel: Skeleton, node_id: int) -> np.ndarray:
    """Ids of the nodes connected to ``node_id`` (itself included, across trees), ascending."""
    return skel.nodes["id"][_component_rows(skel, _row(skel, node_id))]


# -- degrees, neighbours --------------------------------------------------------------------
def node_degree(skel: Skeleton, tree_id: int | None = None) -> np.ndarray:
    """Number of distinct neighbours per node of ``skel.node_ids(tree_id)`` (within the tree
    when a tree is given)."""
    if tree_id is None:
        return adjacency(skel).degree
    rows, u, v = _tree_subgraph(skel, tree_id)
    return np.bincount(np.concatenate([u, v]), minlength=len(rows))


def neighbors(skel: Skeleton, node_id: int) -> np.ndarray:
    """Ids of the nodes linked to ``node_id``, ascending."""
    r = _row(skel, node_id)
    adj = adjacency(skel)
    return adj.ids[adj.neighbor_rows(r)]


def branch_nodes(skel: Skeleton, tree_id: int | None = None) -> np.ndarray:
    """Ids of nodes with three or more neighbours (within the tree when a tree is given)."""
    return skel.node_ids(tree_id)[node_degree(skel, tree_id) >= 3]


# -- traversal ------------------------------------------------------------------------------
def dfs_order(skel: Skeleton, start_node: int, follow: str = "any") -> np.ndarray:
    """Node ids in depth-first preorder from ``start_node``, neighbours by ascending id.

    ``follow="any"`` walks the whole connected component (across trees). KNOSSOS ``X`` /
    ``Shift+X`` traverse only along the tracing direction: ``"forward"`` follows edges from
    their stored source to their target, ``"backward"`` the other way round; the order then
    holds the nodes reachable that way. The order equals recursive DFS, cycles included.
    """
    if follow not in _FOLLOW:
        raise ValueError(f"follow must be one of {sorted(_FOLLOW)}, not {follow!r}")
    start = _row(skel, start_node)
    adj = adjacency(skel)
    indptr, nbrs, direction = adj.indptr, adj.neighbors, adj.direction
    bit = _FOLLOW[follow]
    seen: set[int] = set()
    order: list[int] = []
    stack = [start]
    while stack:
        r = stack.pop()
        if r in seen:
            continue
        seen.add(r)
        order.append(r)
        lo, hi = indptr[r], indptr[r + 1]
        nb = nbrs[lo:hi]
        if bit != 3:
            nb = nb[(direction[lo:hi] & bit) != 0]
        stack.extend(nb[::-1].tolist())  # smallest id on top of the stack
    return adj.ids[np.asarray(order, np.int64)]


def next_branchpoint(skel: Skeleton, node_id: int, direction: int = 1) -> int | None:
    """The next (``direction=1``) or previous (``-1``) branch point after ``node_id``.

    Order: :func:`dfs_order` of the node's connected component from its smallest node id.
    Branch points: nodes with ≥ 3 neighbours and nodes on the branch point stack
    (KNOSSOS ``B``). None when there is none in that direction.
    """
    if direction not in (1, -1):
        raise ValueError("direction must be 1 or -1")
    component = component_nodes(skel, node_id)
    order = dfs_order(skel, int(component[0]))
    adj = adjacency(skel)
    stacked = np.fromiter((b[0] for b in skel.branchpoints), np.int64, len(skel.branchpoints))
    is_branch = (adj.degree[skel.rows(order)] >= 3) | np.isin(order, stacked)
    pos = int(np.flatnonzero(order == node_id)[0])
    after = np.flatnonzero(is_branch[pos + 1 :]) if direction == 1 else np.flatnonzero(is_branch[:pos])
    if not len(after):
        return None
    return int(order[pos + 1 + after[0]]) if direction == 1 else int(order[after[-1]])


# -- measures -------------------------------------------------------------------------------
def _scale(skel: Skeleton, scale_xyz) -> np.ndarray:
    scale = skel.parameters.scale if scale_xyz is None else scale_xyz
    if scale is None:
        raise ValueError("no voxel size: pass scale_xyz (the annotation has no <scale>)")
    return np.asarray(scale, np.float64).reshape(3)


def _edge_lengths_nm(skel: Skeleton, rows_u: np.ndarray, rows_v: np.ndarray, scale) -> np.ndarray:
    total = np.zeros(len(rows_u))
    for axis, name in enumerate(("x", "y", "z")):
        col = skel.nodes[name]
        d = col[rows_u]
        d -= col[rows_v]
        d *= scale[axis]
        d *= d
        total += d
    return np.sqrt(total, out=total)


def path_length_nm(skel: Skeleton, tree_id: int | None = None, scale_xyz=None) -> float:
    """Sum of edge lengths in nm of one tree (its internal edges) or of the whole skeleton
    (every edge, between trees too). ``scale_xyz``: nm per voxel, default the NML scale."""
    scale = _scale(skel, scale_xyz)
    rows, u, v = _restricted(skel, tree_id)
    return float(_edge_lengths_nm(skel, rows[u], rows[v], scale).sum())


def path_lengths_nm(skel: Skeleton, scale_xyz=None) -> dict[int, float]:
    """Path length in nm of every tree (internal edges; 0.0 without edges), in one pass."""
    scale = _scale(skel, scale_xyz)
    tree_ids = np.array(sorted(skel.trees), np.int64)
    edges = adjacency(skel).edges
    u, v = edges[:, 0], edges[:, 1]
    tree_col = skel.nodes["tree"]
    owner = tree_col[u]
    inside = owner == tree_col[v]
    if not inside.all():
        u, v, owner = u[inside], v[inside], owner[inside]
    sums = _sum_per_tree(owner, _edge_lengths_nm(skel, u, v, scale), tree_ids)
    return dict(zip(tree_ids.tolist(), sums.tolist()))


def _sum_per_tree(owner: np.ndarray, values: np.ndarray, tree_ids: np.ndarray) -> np.ndarray:
    """Sum of ``values`` per entry of ``tree_ids`` (sorted), by each value's owning tree."""
    if not len(tree_ids) or not len(owner):
        return np.zeros(len(tree_ids))
    top = max(int(owner.max()), int(tree_ids[-1]))
    if int(owner.min()) >= 0 and int(tree_ids[0]) >= 0 and top <= 4 * (len(owner) + len(tree_ids)) + 65536:
        return np.bincount(owner, weights=values, minlength=top + 1)[tree_ids]
    slot = np.minimum(np.searchsorted(tree_ids, owner), len(tree_ids) - 1)
    known = tree_ids[slot] == owner
    return np.bincount(slot[known], weights=values[known], minlength=len(tree_ids))


# -- cycles ---------------------------------------------------------------------------------
def has_cycle(skel: Skeleton, tree_id: int | None = None) -> bool:
    """Whether the skeleton (or one tree's internal edges) contains a cycle."""
    rows, u, v = _restricted(skel, tree_id)
    if not len(u):
        return False
    roots = _roots(skel) if tree_id is None else _component_roots(len(rows), u, v)
    components = int(np.count_nonzero(roots == np.arange(len(rows))))
    return len(u) > len(rows) - components  # a forest has exactly nodes − components edges


def find_cycle_edges(skel: Skeleton, tree_id: int | None = None) -> np.ndarray:
    """(K, 2) node id pairs (smaller id first, sorted) of every edge lying on a cycle.

    Those are the edges that are not bridges. KNOSSOS ``L`` jumps to a cycle: any of these
    edges' nodes is on one. Only components with more edges than a tree are searched.
    """
    rows, u, v = _restricted(skel, tree_id)
    n = len(rows)
    if not len(u):
        return np.empty((0, 2), np.int64)
    roots = _roots(skel) if tree_id is None else _component_roots(n, u, v)
    node_count = np.bincount(roots, minlength=n)
    edge_count = np.bincount(roots[u], minlength=n)
    cyclic = edge_count > node_count - 1  # per root
    keep = cyclic[roots[u]]
    u, v = u[keep], v[keep]
    vertices = np.unique(np.concatenate([u, v]))
    on_cycle = ~_bridges(len(vertices), np.searchsorted(vertices, u), np.searchsorted(vertices, v))
    ids = skel.nodes["id"][rows]
    return np.stack([ids[u[on_cycle]], ids[v[on_cycle]]], axis=1)


def _bridges(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bridge flag per edge of a simple graph (iterative Tarjan lowlink over the edges' vertices)."""
    m = len(u)
    src = np.concatenate([u, v])
    dst = np.concatenate([v, u])
    eid = np.concatenate([np.arange(m), np.arange(m)])
    order = np.argsort(src, kind="stable")
    dst, eid = dst[order].tolist(), eid[order].tolist()
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    indptr = indptr.tolist()
    disc: dict[int, int] = {}
    low: dict[int, int] = {}
    bridge = np.zeros(m, bool)
    counter = 0
    for root in range(n):
        if root in disc:
            continue
        disc[root] = low[root] = counter
        counter += 1
        stack = [(root, -1, indptr[root])]  # vertex, edge it was entered by, next adjacency slot
        while stack:
            x, parent_edge, i = stack[-1]
            if i < indptr[x + 1]:
                stack[-1] = (x, parent_edge, i + 1)
                y, e = dst[i], eid[i]
                if e == parent_edge:
                    continue
                if y in disc:
                    low[x] = min(low[x], disc[y])
                else:
                    disc[y] = low[y] = counter
                    counter += 1
                    stack.append((y, e, indptr[y]))
            else:
                stack.pop()
                if stack:
                    p = stack[-1][0]
                    low[p] = min(low[p], low[x])
                    if low[x] > disc[p]:
                        bridge[parent_edge] = True
    return bridge


# -- editing --------------------------------------------------------------------------------
def _new_tree_like(skel: Skeleton, template: Tree) -> Tree:
    """A new tree with default name and colour, in the same group as ``template``."""
    return skel.add_tree(group_id=template.group_id)


def _assign_tree(skel: Skeleton, rows: np.ndarray, tree_id: int) -> None:
    skel.nodes["tree"][rows] = tree_id
    skel._touch()


def add_linked_node(skel: Skeleton, position, tree_id: int, link_to: int | None = None, **attrs) -> int:
    """Add a node to ``tree_id`` and link it from ``link_to`` (stored as ``(link_to, new)``:
    the tracing direction, as KNOSSOS does); returns the new id."""
    _tree(skel, tree_id)
    if link_to is not None:
        skel.rows(link_to)
    nid = skel.add_node(position, tree_id, **attrs)
    if link_to is not None:
        skel.link(int(link_to), nid)
    return nid


def move_nodes_to_tree(skel: Skeleton, node_ids: Iterable[int], tree_id: int, delete_empty_trees: bool = False) -> None:
    """Move nodes to another tree; edges stay. Trees left empty are kept (as KNOSSOS
    "move selected nodes to tree" does) unless ``delete_empty_trees``."""
    _tree(skel, tree_id)
    rows = skel.rows(np.fromiter(node_ids, np.int64))
    old = np.unique(skel.nodes["tree"][rows])
    _assign_tree(skel, rows, tree_id)
    if delete_empty_trees:
        _drop_empty_trees(skel, old)


def _drop_empty_trees(skel: Skeleton, candidates: np.ndarray) -> None:
    candidates = candidates[np.isin(candidates, list(skel.trees))]
    if not len(candidates):
        return
    present = np.isin(candidates, skel.nodes["tree"])
    for tid in candidates[~present].tolist():
        del skel.trees[tid]
    skel._touch()


def delete_tree(skel: Skeleton, tree_id: int) -> None:
    """Delete a tree with its nodes, their edges, comments, properties and branch points."""
    _tree(skel, tree_id)
    skel.delete_nodes(skel.node_ids(tree_id))
    del skel.trees[tree_id]
    skel._touch()


def merge_trees(skel: Skeleton, keep_id: int, other_id: int, link: tuple[int, int] | None = None) -> None:
    """Move every node of ``other_id`` into ``keep_id`` and remove ``other_id``.

    ``link=(a, b)`` also adds the edge a–b (both nodes in either tree), like webKnossos's
    merge by connecting two nodes. Tree attributes: ``keep_id``'s stay; ``other_id``'s
    properties and metadata are added only for keys ``keep_id`` lacks, never the synapse
    role keys. (KNOSSOS "Merge trees" moves the nodes without an edge and drops the other
    tree's attributes; linking nodes of two trees there adds a cross-tree edge, no merge.)
    """
    if keep_id == other_id:
        raise ValueError(f"cannot merge tree {keep_id} with itself")
    keep, other = _tree(skel, keep_id), _tree(skel, other_id)
    if link is not None:
        a, b = (int(x) for x in link)
        if a == b:
            raise ValueError("cannot link a node to itself")
        trees = skel.nodes["tree"][skel.rows([a, b])]
        if not np.isin(trees, [keep_id, other_id]).all():
            raise ValueError(f"link {a}–{b} must join nodes of trees {keep_id} and {other_id}")
    for key, value in other.properties.items():
        if key not in SYNAPSE_PROPERTIES:
            keep.properties.setdefault(key, value)
    have = {m.key for m in keep.metadata}
    keep.metadata.extend(m for m in other.metadata if m.key not in have)
    tree_col = skel.nodes["tree"]
    _assign_tree(skel, np.flatnonzero(tree_col == other_id), keep_id)
    del skel.trees[other_id]
    if link is not None:
        skel.link(a, b)


def split_tree_at_edge(skel: Skeleton, a: int, b: int) -> int | None:
    """Remove the edge a–b; if that disconnects b's part of its tree from a, move that part
    (the nodes of b's tree still connected to b) to a new tree and return its id.

    None when nothing moved: a and b are still connected within the tree (the edge was on a
    cycle) or were in different trees. The new tree has a default name and colour and the
    group of the old one.
    """
    ra, rb = skel.rows([a, b])
    if not skel.has_edge(a, b):
        raise KeyError(f"no edge between nodes {a} and {b}")
    skel.unlink(a, b)
    tree_col = skel.nodes["tree"]
    tid = int(tree_col[rb])
    if int(tree_col[ra]) != tid:
        return None
    rows, u, v = _tree_subgraph(skel, tid)
    roots = _component_roots(len(rows), u, v)
    la, lb = np.searchsorted(rows, [ra, rb])
    if roots[la] == roots[lb]:
        return None
    new = _new_tree_like(skel, skel.trees[tid])
    _assign_tree(skel, rows[roots == roots[lb]], new.id)
    return new.id


def extract_component(skel: Skeleton, node_id: int) -> int | None:
    """Move the connected component of ``node_id`` (across trees) into a new tree.

    KNOSSOS "extract connected component": nothing happens (None) when the component is
    exactly one whole tree; trees left empty are deleted. The new tree takes the group of
    ``node_id``'s tree, default name and colour. Returns the new tree id.
    """
    start = _row(skel, node_id)
    comp = _component_rows(skel, start)
    tree_col = skel.nodes["tree"]
    seen = np.unique(tree_col[comp])
    if len(seen) == 1 and np.count_nonzero(tree_col == seen[0]) == len(comp):
        return None
    template = skel.trees.get(int(tree_col[start])) or Tree(id=0)
    new = _new_tree_like(skel, template)
    _assign_tree(skel, comp, new.id)
    _drop_empty_trees(skel, seen)
    return new.id


def split_connected_components(skel: Skeleton, tree_id: int) -> list[int]:
    """Give every connected component of a tree but the first node's its own new tree
    (internal edges only). New trees (default name and colour, same group) are created in
    order of their smallest node id; returns their ids, empty when the tree is connected."""
    rows, u, v = _tree_subgraph(skel, tree_id)
    labels = _labels_from_roots(_component_roots(len(rows), u, v))
    count = int(labels.max()) + 1 if len(labels) else 0
    if count <= 1:
        return []
    template = skel.trees[tree_id]
    new_ids = np.array([_new_tree_like(skel, template).id for _ in range(count - 1)], np.int64)
    moving = labels > 0
    skel.nodes["tree"][rows[moving]] = new_ids[labels[moving] - 1]
    skel._touch()
    return new_ids.tolist()

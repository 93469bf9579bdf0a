"""KNOSSOS synapses as a table and a connectivity matrix (pure Python + numpy).

A KNOSSOS synapse is a **cleft tree**: tree properties ``synapticCleft="true"``,
``preSynapse="<node id>"``, ``postSynapse="<node id>"``; the pre/post nodes lie in the
neuron trees (knossos-project/knossos:skeleton/skeletonizer.h ``Synapse``). The cleft tree's
own nodes trace the synaptic cleft.

Definitions used here:

* ``cleft_size_nm``: path length of the cleft tree in nm (sum of its distinct edges; 0 for a
  single-node cleft). In KNOSSOS the annotator traces the cleft as a tree between Shift+C
  and C, so the traced length is the cleft's length; NaN when the voxel size is unknown.
* ``cleft_extent_nm``: diagonal of the axis-aligned bounding box of the cleft nodes in nm, for
  clefts marked by scattered nodes: at least the largest node-to-node distance, equal to it
  for two nodes; NaN without a voxel size.
* position ``x, y, z``: centroid of the cleft nodes in 0-based mag-1 voxels; without cleft
  nodes the pre node's position, then the post node's, else NaN.
* A missing or unknown ``preSynapse``/``postSynapse`` node gives -1 for the node and its tree
  (KNOSSOS keeps such trees as "incomplete synapses").
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, fields

import numpy as np

from .graph import adjacency
from .skeleton import Skeleton

__all__ = [
    "SynapseTable",
    "connectivity_matrix",
    "synapse_table",
    "write_connectivity_csv",
    "write_synapses_csv",
]


@dataclass
class SynapseTable:
    """One row per cleft tree, sorted by cleft tree id; columns are equal-length arrays."""

    cleft_tree: np.ndarray  # int64
    pre_node: np.ndarray  # int64, -1: missing
    pre_tree: np.ndarray  # int64, -1: missing
    post_node: np.ndarray  # int64, -1: missing
    post_tree: np.ndarray  # int64, -1: missing
    cleft_nodes: np.ndarray  # int64: number of nodes in the cleft tree
    cleft_size_nm: np.ndarray  # float64: cleft tree path length
    cleft_extent_nm: np.ndarray  # float64: bounding-box diagonal of the cleft nodes
    x: np.ndarray  # float64, voxels
    y: np.ndarray
    z: np.ndarray
    name: np.ndarray  # object (str): the cleft tree's name (KNOSSOS ``comment``)

    def __len__(self) -> int:
        return len(self.cleft_tree)

    @property
    def complete(self) -> np.ndarray:
        """Rows whose pre and post nodes both exist."""
        return (self.pre_node >= 0) & (self.post_node >= 0)

    @classmethod
    def column_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.column_names()}


def _synapse_node(tree_properties: dict[str, str], key: str) -> int:
    try:
        return int(tree_properties.get(key, "").strip())
    except ValueError:
        return -1


def _lookup_rows(skel: Skeleton, node_ids: np.ndarray) -> np.ndarray:
    """Row of each node id in the node table, -1 for ids that do not exist."""
    all_ids = skel.nodes["id"]
    if not len(all_ids) or not len(node_ids):
        return np.full(len(node_ids), -1, np.int64)
    rows = np.minimum(np.searchsorted(all_ids, node_ids), len(all_ids) - 1)
    return np.where(all_ids[rows] == node_ids, rows, -1)


def _voxel_size(skel: Skeleton, scale_xyz) -> np.ndarray | None:
    scale = skel.parameters.scale if scale_xyz is None else scale_xyz
    return None if scale is None else np.asarray(scale, np.float64).reshape(3)


def _take(column: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``column[rows]`` with -1 where ``rows`` is -1."""
    if not len(column):
        return np.full(len(rows), -1, np.int64)
    return np.where(rows >= 0, column[np.maximum(rows, 0)], -1)


@dataclass
class _Links:
    cleft_ids: np.ndarray
    pre_node: np.ndarray
    post_node: np.ndarray
    pre_rows: np.ndarray
    post_rows: np.ndarray
    pre_tree: np.ndarray
    post_tree: np.ndarray


def _links(skel: Skeleton) -> _Links:
    """Cleft tree ids (sorted) with their pre/post node ids, rows and trees (-1: missing)."""
    clefts = sorted(tid for tid, tree in skel.trees.items() if tree.is_synapse)
    pre = np.array([_synapse_node(skel.trees[t].properties, "preSynapse") for t in clefts], np.int64)
    post = np.array([_synapse_node(skel.trees[t].properties, "postSynapse") for t in clefts], np.int64)
    pre_rows, post_rows = _lookup_rows(skel, pre), _lookup_rows(skel, post)
    tree_col = skel.nodes["tree"]
    return _Links(
        cleft_ids=np.array(clefts, np.int64),
        pre_node=np.where(pre_rows >= 0, pre, -1),
        post_node=np.where(post_rows >= 0, post, -1),
        pre_rows=pre_rows,
        post_rows=post_rows,
        pre_tree=_take(tree_col, pre_rows).astype(np.int64),
        post_tree=_take(tree_col, post_rows).astype(np.int64),
    )


def _path_lengths_nm(skel: Skeleton, slot_of_row: np.ndarray, n: int, scale: np.ndarray) -> np.ndarray:
    """Sum of edge lengths (nm) per cleft slot, over the distinct edges inside each cleft tree
    (the graph module's simple graph: duplicates once, self-loops and dangling edges ignored)."""
    edges = adjacency(skel).edges
    su, sv = slot_of_row[edges[:, 0]], slot_of_row[edges[:, 1]]
    inside = np.flatnonzero((su >= 0) & (su == sv))
    u, v = edges[inside, 0], edges[inside, 1]
    squared = np.zeros(len(inside))
    for axis, name in enumerate(("x", "y", "z")):
        col = skel.nodes[name]
        squared += ((col[u] - col[v]) * scale[axis]) ** 2
    return np.bincount(su[inside], weights=np.sqrt(squared), minlength=n)


def synapse_table(skel: Skeleton, scale_xyz=None) -> SynapseTable:
    """Every cleft tree of ``skel`` as one row (see the module docstring for definitions).

    ``scale_xyz``: nm per mag-1 voxel (x, y, z); default the annotation's ``<scale>``.
    """
    links = _links(skel)
    cleft_ids = links.cleft_ids
    n = len(cleft_ids)
    names = np.empty(n, object)
    names[:] = [skel.trees[t].name for t in cleft_ids.tolist()]
    tree_col = skel.nodes["tree"]

    counts = np.zeros(n, np.int64)
    centroid = np.full((n, 3), np.nan)
    lo = np.full((n, 3), np.inf)
    hi = np.full((n, 3), -np.inf)
    slot_of_row = np.full(len(tree_col), -1, np.int64)  # index among the clefts of each node's tree
    if n and len(tree_col):
        slot = np.minimum(np.searchsorted(cleft_ids, tree_col), n - 1)
        in_cleft = np.flatnonzero(cleft_ids[slot] == tree_col)
        slot = slot[in_cleft]
        slot_of_row[in_cleft] = slot
        counts = np.bincount(slot, minlength=n)
        has_nodes = counts > 0
        for axis, name in enumerate(("x", "y", "z")):
            values = skel.nodes[name][in_cleft]
            sums = np.bincount(slot, weights=values, minlength=n)
            centroid[has_nodes, axis] = sums[has_nodes] / counts[has_nodes]
            np.minimum.at(lo[:, axis], slot, values)
            np.maximum.at(hi[:, axis], slot, values)

    position = centroid
    for rows in (links.pre_rows, links.post_rows):  # fallbacks for clefts without nodes
        fill = np.flatnonzero(np.isnan(position[:, 0]) & (rows >= 0))
        for axis, name in enumerate(("x", "y", "z")):
            position[fill, axis] = skel.nodes[name][rows[fill]]

    size = np.full(n, np.nan)
    extent = np.full(n, np.nan)
    scale = _voxel_size(skel, scale_xyz)
    if scale is not None and n:
        size = _path_lengths_nm(skel, slot_of_row, n, scale)
        span = np.where(counts[:, None] > 0, hi - lo, 0.0) * scale
        extent = np.sqrt((span * span).sum(axis=1))

    return SynapseTable(
        cleft_tree=cleft_ids,
        pre_node=links.pre_node,
        pre_tree=links.pre_tree,
        post_node=links.post_node,
        post_tree=links.post_tree,
        cleft_nodes=np.asarray(counts, np.int64),
        cleft_size_nm=size,
        cleft_extent_nm=extent,
        x=position[:, 0].copy(),
        y=position[:, 1].copy(),
        z=position[:, 2].copy(),
        name=names,
    )


def connectivity_matrix(skel: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """Synapse counts between trees: ``(tree_ids, matrix)`` with ``matrix[i, j]`` = number of
    synapses whose pre node is in ``tree_ids[i]`` and post node in ``tree_ids[j]``.

    ``tree_ids``: sorted ids of the non-cleft trees taking part in at least one complete
    synapse. Synapses with a missing pre/post node, or with a pre/post node inside a cleft tree,
    are not counted. Autapses count on the diagonal.
    """
    links = _links(skel)
    usable = (links.pre_tree >= 0) & (links.post_tree >= 0)
    usable &= ~np.isin(links.pre_tree, links.cleft_ids) & ~np.isin(links.post_tree, links.cleft_ids)
    pre, post = links.pre_tree[usable], links.post_tree[usable]
    tree_ids = np.unique(np.concatenate([pre, post]))
    k = len(tree_ids)
    flat = np.searchsorted(tree_ids, pre) * k + np.searchsorted(tree_ids, post)
    matrix = np.bincount(flat, minlength=k * k).astype(np.int64).reshape(k, k)
    return tree_ids, matrix


# -- CSV ------------------------------------------------------------------------------------
def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    return str(value)


def _write_text_atomically(path, text: str) -> None:
    """Write ``text`` (UTF-8) to a temp file beside ``path``, then rename it over ``path``."""
    from ..formats.atomic import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def write_synapses_csv(skel: Skeleton, path, scale_xyz=None) -> None:
    """Write :func:`synapse_table` as CSV (header row = column names; NaN as an empty cell),
    atomically."""
    table = synapse_table(skel, scale_xyz)
    columns = table.to_dict()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    as_lists = [col.tolist() for col in columns.values()]
    for row in zip(*as_lists):
        writer.writerow([_cell(v) for v in row])
    _write_text_atomically(path, buf.getvalue())


def write_connectivity_csv(skel: Skeleton, path, labels: str = "id") -> None:
    """Write :func:`connectivity_matrix` as CSV, atomically: rows are pre trees, columns post
    trees. The first row and first column label the trees: ``labels="id"`` (default; unique
    and stable) writes tree ids, ``labels="name"`` tree names (the id where a tree has no name).
    The corner cell is ``pre\\post``."""
    if labels not in ("id", "name"):
        raise ValueError(f"labels must be 'id' or 'name', not {labels!r}")
    tree_ids, matrix = connectivity_matrix(skel)
    if labels == "name":
        heads = [skel.trees[t].name or str(t) for t in tree_ids.tolist()]
    else:
        heads = [str(t) for t in tree_ids.tolist()]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["pre\\post", *heads])
    for head, row in zip(heads, matrix.tolist()):
        writer.writerow([head, *row])
    _write_text_atomically(path, buf.getvalue())

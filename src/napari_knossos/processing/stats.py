"""Per-tree statistics of a skeleton annotation (NML or KNOSSOS .k.zip): nodes, edges, path
length in nm, branch points, comments and synapses. Pure Python + numpy; no napari or Qt.

Definitions (those of :mod:`napari_knossos.annotation.graph` and
:mod:`~napari_knossos.annotation.synapses`):

* ``edges``: a tree's distinct edges with both ends in it (an edge stored twice counts once;
  self-loops and edges to missing nodes are ignored); edges between trees are counted in the
  totals as ``edges_between_trees``;
* ``path_length_nm``: sum of those edges' lengths in nm (mag-1 voxel size from the file's
  ``<scale>``, or ``scale_xyz``); None without a voxel size;
* ``branch_points``: nodes with three or more neighbours inside the tree;
  ``branchpoint_stack``: the tree's nodes on KNOSSOS's branch point stack (``B``);
* ``comments``: nodes of the tree with a comment;
* ``synapses_pre`` / ``synapses_post``: synapses (cleft trees) whose pre / post node lies in
  the tree; cleft trees themselves are rows with ``synaptic_cleft`` true;
* totals: sums over every tree (cleft trees included), plus ``synapses`` (cleft trees) and
  ``complete_synapses`` (both pre and post node present).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import zipfile

import numpy as np

from ..annotation.graph import adjacency, path_lengths_nm
from ..annotation.skeleton import Skeleton
from ..annotation.synapses import synapse_table
from ..formats.atomic import atomic_write_bytes

__all__ = ["TREE_COLUMNS", "add_cli_commands", "format_table", "nml_stats", "read_skeleton", "skeleton_stats",
           "write_stats_csv"]

TREE_COLUMNS = ("id", "name", "synaptic_cleft", "nodes", "edges", "path_length_nm", "branch_points",
                "branchpoint_stack", "comments", "synapses_pre", "synapses_post")


def read_skeleton(path, *, dataset_scale=None) -> Skeleton:
    """The skeleton of an ``.nml`` or ``.k.zip`` (recognised by content: a zip is a .k.zip).
    ``dataset_scale`` (x, y, z nm) rescales the nodes like KNOSSOS."""
    from ..annotation.kzip import read_kzip
    from ..annotation.nml import read_nml

    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        return read_kzip(path, dataset_scale=dataset_scale).skeleton
    return read_nml(path, dataset_scale=dataset_scale)


def _per_tree(tree_ids: np.ndarray, owner: np.ndarray, weights=None) -> np.ndarray:
    """Count (or sum ``weights``) per entry of sorted ``tree_ids`` by owning tree."""
    if not len(tree_ids) or not len(owner):
        return np.zeros(len(tree_ids), np.int64 if weights is None else np.float64)
    slot = np.minimum(np.searchsorted(tree_ids, owner), len(tree_ids) - 1)
    known = tree_ids[slot] == owner
    w = None if weights is None else np.asarray(weights)[known]
    out = np.bincount(slot[known], weights=w, minlength=len(tree_ids))
    return out.astype(np.int64) if weights is None else out


def _tree_of_nodes(skel: Skeleton, node_ids) -> np.ndarray:
    """Tree of each existing node id (unknown ids dropped)."""
    ids = np.asarray(list(node_ids), np.int64)
    all_ids = skel.nodes["id"]
    if not len(ids) or not len(all_ids):
        return np.zeros(0, np.int64)
    rows = np.minimum(np.searchsorted(all_ids, ids), len(all_ids) - 1)
    ok = all_ids[rows] == ids
    return skel.nodes["tree"][rows[ok]].astype(np.int64)


def skeleton_stats(skel: Skeleton, scale_xyz=None) -> dict:
    """Statistics of ``skel`` (see the module docstring): ``{"scale_nm", "trees": [row per tree,
    keys :data:`TREE_COLUMNS`, by tree id], "totals": {...}}``. ``scale_xyz``: nm per voxel,
    default the annotation's ``<scale>``."""
    scale = skel.parameters.scale if scale_xyz is None else tuple(float(v) for v in scale_xyz)
    tree_ids = np.array(sorted(skel.trees), np.int64)
    tree_col = skel.nodes["tree"].astype(np.int64)
    edges = adjacency(skel).edges
    u, v = edges[:, 0], edges[:, 1]
    inside = tree_col[u] == tree_col[v]
    degree = np.bincount(np.concatenate([u[inside], v[inside]]), minlength=len(tree_col))
    nodes = _per_tree(tree_ids, tree_col)
    n_edges = _per_tree(tree_ids, tree_col[u[inside]])
    branch = _per_tree(tree_ids, tree_col[degree >= 3])
    stack = _per_tree(tree_ids, _tree_of_nodes(skel, {b[0] for b in skel.branchpoints}))
    comments = _per_tree(tree_ids, _tree_of_nodes(skel, skel.comments))
    lengths = path_lengths_nm(skel, scale) if scale is not None else {}
    synapses = synapse_table(skel, scale)
    pre = _per_tree(tree_ids, synapses.pre_tree[synapses.pre_tree >= 0])
    post = _per_tree(tree_ids, synapses.post_tree[synapses.post_tree >= 0])
    rows = []
    for k, tid in enumerate(tree_ids.tolist()):
        tree = skel.trees[tid]
        length = lengths.get(tid)
        rows.append({
            "id": tid, "name": tree.name, "synaptic_cleft": bool(tree.is_synapse), "nodes": int(nodes[k]),
            "edges": int(n_edges[k]), "path_length_nm": None if length is None else float(length),
            "branch_points": int(branch[k]), "branchpoint_stack": int(stack[k]), "comments": int(comments[k]),
            "synapses_pre": int(pre[k]), "synapses_post": int(post[k]),
        })
    totals = {
        "trees": len(rows),
        "nodes": int(nodes.sum()),
        "edges": int(n_edges.sum()),
        "edges_between_trees": int(np.count_nonzero(~inside)),
        "path_length_nm": None if scale is None else float(sum(lengths.values())),
        "branch_points": int(branch.sum()),
        "branchpoint_stack": int(stack.sum()),
        "comments": int(comments.sum()),
        "synapses": len(synapses),
        "complete_synapses": int(np.count_nonzero(synapses.complete)),
    }
    return {"scale_nm": None if scale is None else [float(s) for s in scale], "trees": rows, "totals": totals}


def nml_stats(path, *, scale_xyz=None, dataset_scale=None) -> dict:
    """:func:`skeleton_stats` of an ``.nml`` or ``.k.zip`` file, with ``"source"`` and
    ``"experiment"``. ``scale_xyz`` replaces the file's voxel size for lengths;
    ``dataset_scale`` rescales the nodes to a dataset's voxel size first, as KNOSSOS does."""
    skel = read_skeleton(path, dataset_scale=dataset_scale)
    stats = skeleton_stats(skel, scale_xyz)
    return {"source": os.fspath(path), "experiment": skel.parameters.experiment, **stats}


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def format_table(stats: dict, max_name: int = 24) -> str:
    """A plain-text table: one line per tree, then the totals."""
    heads = ["tree", "name", "cleft", "nodes", "edges", "length_nm", "branch", "stack", "comments", "pre", "post"]
    lines = []
    for row in stats["trees"]:
        name = row["name"] if len(row["name"]) <= max_name else row["name"][: max_name - 1] + "…"
        lines.append([_cell(row[c]) if c != "name" else name for c in TREE_COLUMNS])
    t = stats["totals"]
    total = ["total", f"{t['trees']} trees", str(sum(r["synaptic_cleft"] for r in stats["trees"])),
             _cell(t["nodes"]), _cell(t["edges"]), _cell(t["path_length_nm"]), _cell(t["branch_points"]),
             _cell(t["branchpoint_stack"]), _cell(t["comments"]),
             str(sum(r["synapses_pre"] for r in stats["trees"])), str(sum(r["synapses_post"] for r in stats["trees"]))]
    widths = [max(len(h), *(len(r[i]) for r in [*lines, total])) for i, h in enumerate(heads)]
    left = {1}

    def fmt(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [fmt(heads), "  ".join("-" * w for w in widths), *(fmt(r) for r in lines),
           "  ".join("-" * w for w in widths), fmt(total)]
    out.append(f"synapses: {t['synapses']} ({t['complete_synapses']} with pre and post node)")
    scale = stats.get("scale_nm")
    out.append("voxel size: " + (" × ".join(f"{s:g}" for s in scale) + " nm" if scale else
                                 "unknown (no <scale>; pass --scale) — no path lengths"))
    if t["edges_between_trees"]:
        out.append(f"edges between trees (not in any tree's length): {t['edges_between_trees']}")
    return "\n".join(out)


def write_stats_csv(stats: dict, path) -> None:
    """One CSV row per tree (columns :data:`TREE_COLUMNS`), written atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TREE_COLUMNS)
    for row in stats["trees"]:
        writer.writerow(["" if row[c] is None else (repr(row[c]) if isinstance(row[c], float) else row[c])
                         for c in TREE_COLUMNS])
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _parse_scale(text: str | None):
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) <= 0:
        raise ValueError(f"--scale: expected three positive numbers x,y,z (nm), got {text!r}")
    return tuple(values)


def _run_nml_stats(args) -> int:
    stats = nml_stats(args.file, scale_xyz=_parse_scale(args.scale))
    if args.csv:
        write_stats_csv(stats, args.csv)
    if args.json:
        json.dump(stats, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(stats))
        if args.csv:
            print(f"wrote {args.csv}")
    return 0


def add_cli_commands(subparsers) -> None:
    """Add ``nml-stats FILE [--json] [--csv OUT] [--scale X,Y,Z]`` (see :mod:`napari_knossos.cli`)."""
    p = subparsers.add_parser(
        "nml-stats", help="per-tree nodes, path length, branch points, synapses of an NML/.k.zip",
        description="Statistics per tree of a skeleton annotation (.nml or .k.zip): nodes, edges, path length "
        "in nm, branch points (degree ≥ 3 and the branch point stack), comments, synapses (pre/post).")
    p.add_argument("file", help=".nml or .k.zip file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--csv", metavar="OUT", help="also write one CSV row per tree to OUT")
    p.add_argument("--scale", metavar="X,Y,Z", help="voxel size in nm (default: the file's <scale>)")
    p.set_defaults(run=_run_nml_stats)
